"""The README stays true: its library snippet runs, and its config table matches the defaults."""

import pathlib
import re

from rem_jax.experiments import config_lib

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'
SNIPPET_MARK = '<!-- tests/test_readme.py runs this snippet. -->'
TABLE_MARK = '<!-- tests/test_readme.py checks this table against config_lib.cell_config(). -->'


def _after(mark: str) -> str:
  text = README.read_text()
  assert mark in text, f'README.md lost the marker {mark!r}'
  return text.split(mark, 1)[1]


def test_the_library_snippet_runs():
  code = re.search(r'```python\n(.*?)```', _after(SNIPPET_MARK), re.S).group(1)
  exec(compile(code, 'README.md snippet', 'exec'), {})  # pylint: disable=exec-used


def _fields(tree: dict, prefix: str = ''):
  for name, value in tree.items():
    if name == 'methods':  # Per-method settings: the Methods section documents them.
      continue
    if isinstance(value, dict):
      yield from _fields(value, f'{prefix}{name}.')
    else:
      yield f'{prefix}{name}', value


def _shown(value) -> str:
  """A default as the table writes it."""
  if value is None:
    return 'unset'
  if isinstance(value, str):
    return f'`{value}`'
  return str(value)


def test_the_config_table_lists_every_field_with_its_default():
  table = _after(TABLE_MARK).split('\n\n', 2)[1]
  rows = {}
  for line in table.splitlines()[2:]:
    cells = [cell.strip() for cell in line.strip('|').split('|')]
    rows[cells[0].strip('`')] = cells[1]
  defaults = dict(_fields(config_lib.cell_config().to_dict()))
  assert sorted(rows) == sorted(defaults)
  for field, value in defaults.items():
    assert rows[field] == _shown(value), field
