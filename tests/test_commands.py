"""The commands of the README and docs/ run as written after the README's install line, each in a
fresh process."""

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

from rem_jax.data import corruptions
from rem_jax.experiments import cell
from rem_jax.experiments import diagnose
from rem_jax.experiments import practitioner
from rem_jax.experiments import tiny
from tests.cli import ROOT

BENCHMARKS = sorted((ROOT / 'benchmarks').glob('*.py'))
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def test_every_benchmark_starts_from_the_repository_root():
  # `python benchmarks/X.py` puts benchmarks/, not the root, on sys.path: rem_jax must come from
  # the install (requirements.txt installs the package itself). --help stops after the imports
  # and the flag definitions (absl exits with status 1 after printing it).
  env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
  processes = {path.name: subprocess.Popen(
      [sys.executable, str(path.relative_to(ROOT)), '--help'], cwd=ROOT, env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for path in BENCHMARKS}
  for name, process in processes.items():
    output = process.communicate(timeout=300)[0]
    assert 'Traceback' not in output and 'Error' not in output, f'{name}:\n{output[-3000:]}'
    assert '--output' in output or '--config' in output, f'{name}:\n{output[-3000:]}'


def test_every_python_command_in_the_readme_and_the_docs_names_an_existing_script():
  text = '\n'.join(page.read_text() for page in PAGES)
  scripts = set(re.findall(r'python\s+((?:benchmarks|configs)/\w+\.py|launch\.py)', text))
  modules = set(re.findall(r'python\s+-m\s+([\w.]+)', text)) - {'pytest', 'venv'}
  assert scripts and all((ROOT / script).is_file() for script in scripts), scripts
  for module in modules:
    path = ROOT / pathlib.Path(*module.split('.'))
    assert path.with_suffix('.py').is_file() or (path / '__main__.py').is_file(), module


def _launch_commands(page: pathlib.Path, config: str) -> list[list[str]]:
  """The `python launch.py --config=configs/<config>.py ...` commands of `page`'s bash blocks,
  each as its argv (a backslash-newline continues a command)."""
  commands = []
  for block in re.findall(r'^```bash\n(.*?)^```', page.read_text(), re.S | re.M):
    for line in block.replace('\\\n', ' ').splitlines():
      argv = shlex.split(line)
      if argv[:2] == ['python', 'launch.py'] and f'--config=configs/{config}.py' in argv:
        commands.append(argv)
  return commands


def _run_as_written(argv: list[str], tmp: pathlib.Path) -> pathlib.Path:
  """Runs `argv` in a fresh process at the tiny size (`rem_jax.experiments.tiny`), its /tmp/
  paths moved under `tmp` (a user's own /tmp/rem_quickstart stays untouched); its workdir."""
  argv = [sys.executable, *(arg.replace('=/tmp/', f'={tmp}/') for arg in argv[1:])]
  result = subprocess.run(argv, cwd=ROOT, env={**os.environ, tiny.ENV: '1'},
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, f'{shlex.join(argv)}:\n{result.stderr[-3000:]}'
  (workdir,) = [arg.split('=', 1)[1] for arg in argv if arg.startswith('--workdir=')]
  return pathlib.Path(workdir)


def test_the_unlearn_and_diagnose_commands_run_as_written_after_the_quickstart(tmp_path):
  (quickstart,) = [argv for argv in _launch_commands(PAGES[0], 'quickstart')
                   if argv[-1] == '--workdir=/tmp/rem_quickstart']
  readme = {config: _launch_commands(PAGES[0], config) for config in ('unlearn', 'diagnose')}
  assert [len(commands) for commands in readme.values()] == [1, 1], readme
  # The docs' commands too: each distinct one runs once.
  commands = {shlex.join(argv): (config, argv) for page in PAGES for config in readme
              for argv in _launch_commands(page, config)}
  # The quickstart leaves its D_f where the commands below read it.
  workdir = _run_as_written(quickstart, tmp_path)
  found = [int(line) for line in (workdir / cell.FOUND_IDS_FILE).read_text().splitlines()]
  record = corruptions.load_record(workdir / cell.IDS_FILE)
  assert found == record.forget_ids_at(0.5).tolist() and len(found) == 16
  for config, argv in commands.values():
    output = _run_as_written(argv, tmp_path)
    if config == 'unlearn':
      used = json.loads((output / practitioner.IDS_FILE).read_text())['forget_ids']
      assert used == sorted(found), argv
    else:
      summary = json.loads((output / diagnose.RESULTS_FILE).read_text())
      assert summary['num_found'] == len(found), argv
