"""The README stays true: its library snippet runs, and its config table matches the defaults
and the checks every field gets."""

import pathlib
import re

import pytest

from rem_jax.experiments import cell, config_lib, fields

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'
SNIPPET_MARK = '<!-- tests/test_readme.py runs this snippet. -->'
TABLE_MARK = ('<!-- tests/test_readme.py checks this table against config_lib.cell_config() '
              '(defaults) and\n     rem_jax.experiments.fields.CELL_FIELDS (allowed). -->')
# A value each field's "allowed" column rules out (of the type the field holds).
BAD_VALUES = {
    'seed': -1, 'dataset': 'mnist', 'data.path': '', 'data.data_dir': ' ',
    'data.image_size': -1, 'data.num_train': -5, 'data.num_test': -1, 'task': 'label_noise',
    'num_corrupted': 0, 'class_pair': (3, 3), 'discovery_rate': 1.5, 'method': 'rem_typo',
    'base': 'full', 'p_mem': 0.0, 'model.name': 'resnet50', 'model.num_classes': 1,
    'model.capacity': 1.5, 'model.expansion': -0.5, 'model.width_multiplier': 0.0,
    'model.dtype': 'float16', 'train.optimizer': 'rmsprop', 'train.learning_rate': 0.0,
    'train.schedule': 'cosine', 'train.steps': 0, 'train.batch_size': 0, 'train.momentum': 1.5,
    'train.weight_decay': -1e-4, 'train.checkpoint_every': 0, 'eval_batch_size': 0,
}


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


def _table() -> dict[str, tuple[str, str]]:
  """{field: (default, allowed)} as the README's config table shows them."""
  table = _after(TABLE_MARK).split('\n\n', 2)[1]
  rows = {}
  for line in table.splitlines()[2:]:
    cells = [c.strip() for c in re.split(r'(?<!\\)\|', line.strip().strip('|'))]
    rows[cells[0].strip('`')] = (cells[1], cells[2])
  return rows


def test_the_config_table_lists_every_field_with_its_default_and_what_it_allows():
  rows = _table()
  defaults = dict(_fields(config_lib.cell_config().to_dict()))
  assert sorted(rows) == sorted(defaults) == sorted(fields.CELL_FIELDS)
  for field, value in defaults.items():
    assert rows[field][0] == _shown(value), field
    assert rows[field][1] == fields.CELL_FIELDS[field].allowed, field
    assert fields.CELL_FIELDS[field].check(value), f'the default of {field} is not allowed'


@pytest.mark.parametrize('field', sorted(BAD_VALUES))
def test_a_value_outside_the_allowed_column_is_an_error_naming_the_field(field):
  assert sorted(BAD_VALUES) == sorted(fields.CELL_FIELDS)
  config = config_lib.cell_with(**{field: BAD_VALUES[field]})
  with pytest.raises(ValueError) as error:
    cell.check_config(config)
  accepts = fields.CELL_FIELDS[field].accepts.replace('`', '')
  assert str(error.value) == (f'{field}={BAD_VALUES[field]!r} is not allowed; allowed: '
                              f'{accepts}.')
