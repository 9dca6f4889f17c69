"""The notebooks run top to bottom: every cell of each, in a fresh kernel, in the tiny setting.

Each notebook runs in its own IPython kernel (nbclient + ipykernel), started in a temporary
directory with `REM_JAX_NOTEBOOK_TINY=1`. The kernel inherits this process's environment, so
the XLA flags and the compilation cache of `tests/conftest.py` apply there too, and the
repository root goes first on its PYTHONPATH, so `rem_jax` imports without being installed.
"""

import os
import pathlib
import re

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / 'notebooks'
# Seconds per cell. The quickstart's sweep cell takes about 10 s with a warm compilation cache
# and up to 75 s with a cold one on 2 busy cores; a hung kernel fails the test instead of the
# whole suite's time.
CELL_TIMEOUT_S = 300
_COLOURS = re.compile(r'\x1b\[[0-9;]*m')  # IPython colours its tracebacks.


def _execute(name: str, workdir: pathlib.Path) -> nbformat.NotebookNode:
  """The notebook after running every cell; a failing cell fails the test with its traceback."""
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  env = dict(os.environ)
  env['REM_JAX_NOTEBOOK_TINY'] = '1'
  env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
  env['TMPDIR'] = str(workdir)  # The quickstart's workdir goes to tempfile.gettempdir().
  client = nbclient.NotebookClient(
      notebook, timeout=CELL_TIMEOUT_S, kernel_name='python3',
      resources={'metadata': {'path': str(workdir)}})
  try:
    client.execute(env=env)
  except nbclient.exceptions.CellExecutionError as error:
    failure = _COLOURS.sub('', str(error))
  else:
    return notebook
  # Outside the except block: the kernel's traceback is the whole story, no chained one.
  pytest.fail(f'{name}: a cell failed.\n{failure}', pytrace=False)


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
  return [output for cell in notebook.cells if cell.cell_type == 'code'
          for output in cell.outputs]


def test_quickstart_runs_every_cell_and_shows_the_heatmap(tmp_path):
  notebook = _execute('quickstart.ipynb', tmp_path)
  images = [o for o in _outputs(notebook) if 'image/png' in o.get('data', {})]
  # The heatmap and REM's dynamics: the tiny model learned the poison and the task (the reports'
  # preconditions), so the reports have figures to show.
  assert len(images) >= 2, [o.get('data', {}).keys() for o in _outputs(notebook)]
  assert (tmp_path / 'rem_jax_quickstart_tiny' / 'reports' / 'heatmaps.png').exists()


def test_losses_in_your_code_runs_every_cell(tmp_path):
  # Its last cells assert drop(expand(p)) == p, mask 0 == dropped model, and the forgetting.
  notebook = _execute('losses_in_your_code.ipynb', tmp_path)
  text = ''.join(o.get('text', '') for o in _outputs(notebook))
  assert 'D_f: accuracy on the wrong labels' in text


@pytest.mark.parametrize('name', ['quickstart.ipynb', 'losses_in_your_code.ipynb'])
def test_notebooks_are_committed_without_outputs(name):
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  nbformat.validate(notebook)
  for cell in notebook.cells:
    if cell.cell_type == 'code':
      assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
