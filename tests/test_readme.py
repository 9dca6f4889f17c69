"""The README and the docs/ pages stay true: the README's library snippet runs, docs/cli.md's
config table matches the defaults and the checks every field gets, and every relative link of
README.md and docs/*.md points to a file (and a heading) that exists."""

import pathlib
import re

import pytest

from configs import quickstart
from rem_jax.experiments import cell, config_lib, fields, store

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / 'README.md'
DOCS = ROOT / 'docs'
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


def _page(name: str) -> pathlib.Path:
  """README.md, or a page of docs/ ('cli' is docs/cli.md)."""
  return README if name == 'README' else DOCS / f'{name}.md'


def _after(mark: str, page: str = 'README') -> str:
  path = _page(page)
  text = path.read_text()
  assert mark in text, f'{path.relative_to(ROOT)} lost the marker {mark!r}'
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
  """{field: (default, allowed)} as docs/cli.md's config table shows them."""
  table = _after(TABLE_MARK, 'cli').split('\n\n', 2)[1]
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


def test_the_quickstart_numbers_are_the_committed_sweeps():
  # README's quickstart steps 2 and 3 quote benchmarks/results/quickstart_sweep/ (step 2's cell
  # is the sweep's REM cell at rate 0.5: same config, same trained model).
  records = store.ResultStore(ROOT / 'benchmarks' / 'results' / 'quickstart_sweep'
                              / 'results.jsonl').read()
  by_cell = {(r['method'], r['discovery_rate']): r for r in records}
  assert len(by_cell) == len(quickstart.SWEEP_METHODS) * len(quickstart.SWEEP_RATES)
  text = ' '.join(README.read_text().split())
  for method, label in (('rem', 'REM'), ('ascent', 'ascent'), ('npo', 'NPO')):
    shown = ' / '.join(f'{by_cell[(method, rate)]["after"]["healed_x_utility"]:.3f}'
                       for rate in quickstart.SWEEP_RATES)
    assert f'{label} {shown}' in text, (label, shown)
  rem = by_cell[('rem', 0.5)]
  for when in ('before', 'after'):
    shown = f'Healed {rem[when]["healed"]:.2f}, Utility {rem[when]["utility"]:.2f}'
    assert shown in text, (when, shown)
  # The timings too: step 2's cell, and each method's range over the rates.
  seconds = lambda r: f'{r["unlearn"]["wall_time_s"]:.0f}'
  shown = f'training {rem["train"]["wall_time_s"]:.0f} s, REM {seconds(rem)} s'
  assert shown in text, shown
  spans = {}
  for (method, _), record in by_cell.items():
    spans.setdefault(method == 'rem', []).append(record['unlearn']['wall_time_s'])
  span = lambda values: f'{min(values):.0f}–{max(values):.0f} s'
  shown = f"REM's run takes {span(spans[True])} per rate, the others {span(spans[False])}"
  assert shown in text, shown


def test_the_diagnosis_table_is_the_committed_reports_summary():
  report = (ROOT / 'benchmarks' / 'results' / 'diagnose_map.md').read_text()
  summary = report.split('## Summary\n')[1].split('\n## ')[0]
  rows = [line for line in summary.splitlines() if line.startswith('|')]
  readme = README.read_text().splitlines()
  assert rows and all(row in readme for row in rows), rows


def _table_rows(text: str) -> list[str]:
  """A Markdown text's table rows, headers and separators left out."""
  lines = text.splitlines()
  return [line for line, after in zip(lines, lines[1:] + ['']) if line.startswith('| ')
          and not after.startswith('|---')]


def _verdicts_only(row: str) -> str:
  """An across-settings row of claims.md with each setting's evidence left out: the claim, each
  setting's verdict, the movement."""
  cells = row.strip('| ').split(' | ')
  verdicts = [cell.split(':', 1)[0] if cell.startswith('**') else cell for cell in cells[1:]]
  return '| ' + ' | '.join([cells[0]] + verdicts) + ' |'


def test_the_cpu_map_tables_are_the_committed_reports():
  # The README's hero tables and docs/benchmarks.md's "Table (a)" and "Table (b)" sections quote
  # the CPU map's reports (the 10 %-budget map's and the map's in the paper's proportions) row
  # by row; a verdict row is claims.md's row without its evidence and rule, an across-settings
  # row its verdicts without their evidence.
  committed = set()
  for name in ('cpu_map', 'cpu_map_proportions'):
    results = ROOT / 'benchmarks' / 'results' / name
    committed |= set().union(*(_table_rows((results / table).read_text())
                               for table in ('table.md', 'table_tuned.md', 'table_best.md')
                               if (results / table).exists()))
    claims = _table_rows((results / 'claims.md').read_text())
    committed |= set(claims)
    committed |= {f'| {row.split(" | ")[0][2:]} | {row.split(" | ")[-1]}' for row in claims}
    committed |= {_verdicts_only(row) for row in claims}
  readme = README.read_text()
  hero = readme[:readme.index('## Install, test, run')]
  docs = (DOCS / 'benchmarks.md').read_text().split('### Table (a): what it shows')[1]
  quoted = _table_rows(hero) + _table_rows(docs.split('\n## ')[0])
  assert len(quoted) > 20, quoted
  assert [row for row in quoted if row not in committed] == []


def test_the_readme_shows_the_test_command_that_ci_runs():
  # .ci/run runs "exactly the README's test command": its install-and-test line is the README's.
  ci = [line for line in (ROOT / '.ci' / 'run').read_text().splitlines()
        if line.startswith('pip install')]
  assert len(ci) == 1 and ci[0] in README.read_text().splitlines(), ci


def _pages() -> list[pathlib.Path]:
  return [README, *sorted(DOCS.glob('*.md'))]


def _slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def _unfenced(text: str) -> str:
  """The text outside fenced code blocks (a `#` line in a shell script is no heading)."""
  return re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)


def _prose(text: str) -> str:
  """The text outside fenced code blocks and inline code (which may wrap onto the next line)."""
  return re.sub(r'`[^`]*`', '', _unfenced(text))


def _anchors(path: pathlib.Path) -> set[str]:
  headings = re.findall(r'^#{1,6} (.*)$', _unfenced(path.read_text()), re.M)
  return {_slug(heading.replace('`', '')) for heading in headings}


def test_every_relative_link_of_the_readme_and_the_docs_points_to_what_exists():
  pages = _pages()
  assert len(pages) > 5, pages
  links = 0
  for page in pages:
    for target in re.findall(r'\]\(([^()\s]+)\)', _prose(page.read_text())):
      if re.match(r'[a-z]+:', target):  # https://..., mailto:...
        continue
      links += 1
      file, _, anchor = target.partition('#')
      path = (page.parent / file).resolve() if file else page
      where = f'{page.relative_to(ROOT)}: {target}'
      assert path.exists(), where
      assert ROOT in path.parents or path == ROOT, where
      if anchor:
        assert path.suffix == '.md' and anchor in _anchors(path), where
  assert links > 10, links


def test_the_readme_links_every_docs_page():
  readme = README.read_text()
  for page in sorted(DOCS.glob('*.md')):
    assert f'](docs/{page.name})' in readme, page.name
