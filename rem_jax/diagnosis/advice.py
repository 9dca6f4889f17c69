"""Which method to use where a task lies on the map: read from a benchmark's records.

A *summary* holds what advice needs from a benchmark: the regularity score each benchmark task
measured (`regularity.ROWS` maps a task to its row) and, per (base, task, discovery rate,
method), the mean H×U ± SEM over seeds at the methods' defaults. `summarise` builds one from a
sweep's records; the CPU map's ships inside the package (`PACKAGED`).
"""

import collections
import json
import math
import pathlib

import numpy as np

from rem_jax import files
from rem_jax import metrics
from rem_jax.diagnosis import regularity
from rem_jax.methods import rem

PACKAGED = pathlib.Path(__file__).with_name('map_summary.json')
# Run by benchmarks, never advised: an ablation is REM with a part missing, an oracle reads D_c.
NOT_ADVISED = rem.ABLATIONS + rem.ORACLES


def summarise(records, regularity_scores: dict[str, float] | None = None, *,
              passed=lambda record: True, source: str = '',
              suspect_gains: dict | None = None) -> dict:
  """The summary of a sweep's records: completed cells at the defaults (a tuning grid's
  variants, REM's ablations and oracles are left out) whose original model `passed` its
  preconditions; the regularity references (measured as `regularity.MEASURE`) and the gains
  from adding suspects per task (`suspects_decision`) are carried as given."""
  cells = collections.defaultdict(list)
  for record in records:
    if ('error' in record or record['variant'] != record['method']
        or record['method'] in NOT_ADVISED or not passed(record)):
      continue
    key = (record['base'], record['task'], record['discovery_rate'], record['method'])
    cells[key].append(record['after']['healed_x_utility'])
  rows = []
  for (base, task, rate, method), values in sorted(cells.items()):
    mean, sem = metrics.mean_sem(values)
    rows.append({'base': base, 'task': task, 'discovery_rate': rate, 'method': method,
                 'healed_x_utility': mean, 'sem': sem, 'seeds': len(values)})
  return {'source': source, 'regularity_scores': dict(regularity_scores or {}),
          'regularity_measure': regularity.MEASURE, 'suspect_gains': dict(suspect_gains or {}),
          'cells': rows}


def read_records(path: pathlib.Path) -> list[dict]:
  """The records of a sweep's results.jsonl, every line JSON (a ValueError names the line)."""
  rows = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      rows.append(json.loads(line))
    except ValueError:
      raise ValueError(f'records={str(path)!r}: line {number} is not JSON.') from None
  return rows


def load(path=None) -> dict | None:
  """A summary: `path` a summary .json or a sweep's results.jsonl; None: the packaged one (None
  while this installation ships none: a diagnosis then places nothing and advises nothing).

  A results.jsonl has no regularity scores (nor suspect gains) of its own: the packaged
  summary's are used.
  """
  if path is None:
    return json.loads(PACKAGED.read_text()) if PACKAGED.is_file() else None
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise ValueError(f'records={str(path)!r} is not a file.')
  if path.suffix == '.jsonl':
    records = read_records(path)
    missing = [k for k in ('variant', 'method', 'base', 'task', 'discovery_rate')
               if records and k not in records[0]]
    if not records or missing:
      raise ValueError(f'records={str(path)!r} holds no sweep records'
                       + (f' (no field {missing[0]!r})' if missing else '') + '.')
    packaged = load() or {}
    if packaged.get('regularity_measure') != regularity.MEASURE:
      packaged = {}
    return summarise(records, packaged.get('regularity_scores'), source=str(path),
                     suspect_gains=packaged.get('suspect_gains'))
  try:
    summary = json.loads(path.read_text())
  except ValueError:
    raise ValueError(f'records={str(path)!r} is neither JSON nor a results.jsonl.') from None
  if not isinstance(summary, dict) or 'cells' not in summary:
    raise ValueError(f'records={str(path)!r} is not a map summary (no "cells").')
  return summary


def write(summary: dict, path) -> None:
  files.write_json_atomic(pathlib.Path(path), summary)


def _pick(c):
  return None if c is None else {k: c[k] for k in ('method', 'healed_x_utility', 'sem', 'seeds')}


def plausible_rates(rates, interval) -> list[float]:
  """The map's rates whose cell some rate of `interval` (low, high) would read (each rate
  reads its nearest map rate); None or an interval with a NaN end: every rate (unknown)."""
  rates = sorted(rates)
  if interval is None or any(v != v for v in interval):
    return rates
  nearest = lambda value: min(rates, key=lambda r: (abs(r - value), r))
  low, high = nearest(min(interval)), nearest(max(interval))
  return [r for r in rates if low <= r <= high]


def _ranked_on_average(cells, count: int) -> list[dict]:
  """Each method's H×U averaged over its `cells` (the methods with all `count` of them; `sem`
  the average's, from the cells' SEMs), best first."""
  by_method = collections.defaultdict(list)
  for c in cells:
    by_method[c['method']].append(c)
  return sorted(({'method': method,
                  'healed_x_utility': float(np.mean([c['healed_x_utility'] for c in group])),
                  'sem': float(np.sqrt(np.sum([c['sem'] ** 2 for c in group])) / len(group)),
                  'seeds': min(c['seeds'] for c in group)}
                 for method, group in by_method.items() if len(group) == count),
                key=lambda c: -c['healed_x_utility'])


def advise(summary: dict, task: str, discovery_rate: float | None, base: str = 'plain', *,
           interval=None) -> dict:
  """The method with the best mean H×U in the map's cell (task's row, nearest rate), and the
  runner-up; `per_rate`: the best and the runner-up at each plausible rate (`plausible_rates`
  of `interval`, the discovery rate's interval). A ValueError when the summary has no cell for
  that row and base.

  An unknown discovery rate (None: the diagnosis could not estimate it) reads no single cell:
  `discovery_rate` is None, every rate of the row is plausible, and `best`, `runner_up` and
  `cell` rank the methods by their H×U averaged over those rates (the best choice if each
  rate is as likely as the others; `sem` is that average's, from the cells' SEMs), so that
  advice covers what is known without a rate the calibration cannot support.
  """
  cells = [c for c in summary['cells'] if c['task'] == task and c['base'] == base]
  if not cells:
    raise ValueError(f'records: no {base}-base cells of task {task!r} '
                     f'({regularity.ROWS.get(task, "?")} regularity); the records must cover '
                     'it.')
  rates = sorted({c['discovery_rate'] for c in cells})
  ranked_at = lambda rate: sorted((c for c in cells if c['discovery_rate'] == rate),
                                  key=lambda c: -c['healed_x_utility'])
  plausible = plausible_rates(rates, None if discovery_rate is None else interval)
  per_rate = []
  for rate in plausible:
    ranked = ranked_at(rate)
    per_rate.append({'discovery_rate': rate, 'best': _pick(ranked[0]),
                     'runner_up': _pick(ranked[1] if len(ranked) > 1 else None)})
  if discovery_rate is not None:
    rate = min(rates, key=lambda r: (abs(r - discovery_rate), r))
    ranked = ranked_at(rate)
  else:
    rate = None
    ranked = _ranked_on_average([c for c in cells if c['discovery_rate'] in plausible],
                                len(plausible))
  return {'task': task, 'row': regularity.ROWS[task], 'base': base, 'discovery_rate': rate,
          'best': _pick(ranked[0]), 'runner_up': _pick(ranked[1] if len(ranked) > 1 else None),
          'cell': [_pick(c) for c in ranked], 'plausible_rates': plausible,
          'per_rate': per_rate, 'by_row': []}


def across_rows(advised: list[dict]) -> dict:
  """One ranking over several rows' `advise` outputs: each method's H×U averaged over the rows
  (methods every row ranks; `sem` that average's), the best choice if each row is as likely."""
  ranked = _ranked_on_average([c for row in advised for c in row['cell']], len(advised))
  return {'best': _pick(ranked[0]), 'runner_up': _pick(ranked[1] if len(ranked) > 1 else None),
          'cell': [_pick(c) for c in ranked]}


def place(summary: dict, score: dict, discovery_rate: float | None, base: str = 'plain', *,
          interval=None) -> tuple[str | None, list[str], dict]:
  """Where a regularity `score` (`regularity.score`'s dict) lies on the map, and the advice.

  Returns (task, tasks, advice): `task` the benchmark task whose reference is nearest the
  score (None where the score is not measurable: "cannot tell"), `tasks` every task its
  interval reaches (all of them when not measurable), and `advise` in `task`'s row with
  'by_row' (each reached row's best and runner-up) where the interval reaches more than one.
  Not measurable: the advice ranks methods by their H×U averaged over every row
  (`across_rows`), with 'task' and 'row' None.
  """
  check_measure(summary)
  references = summary['regularity_scores']
  if score['measurable']:
    task = regularity.nearest_task(score['score'], references)
    tasks = regularity.tasks_within(score['low'], score['high'], references)
  else:
    task, tasks = None, regularity.tasks_within(math.nan, math.nan, references)
  by_row = {t: advise(summary, t, discovery_rate, base, interval=interval) for t in tasks}
  if task is None:
    advised = {**by_row[tasks[0]], **across_rows(list(by_row.values())), 'task': None,
               'row': None}
  else:
    advised = advise(summary, task, discovery_rate, base, interval=interval)
  if len(tasks) > 1:
    advised['by_row'] = [{'task': t, 'row': regularity.ROWS[t], 'best': a['best'],
                          'runner_up': a['runner_up']} for t, a in by_row.items()]
  return task, tasks, advised


def suspects_decision(summary: dict, tasks, cut: dict | None) -> dict:
  """Whether to unlearn the suspects with D_f: {'add': bool, 'why': str}.

  Only where they are estimated at all (`cut` not None, suspects > 0) and, in every row the
  task may lie in (`tasks`), adding a diagnosis's suspects raised REM's H×U on the map
  (`summary['suspect_gains']`, written by benchmarks/diagnose_map.py from its end-to-end
  runs). The suspects' estimated precision alone cannot decide it: on the map it read 0.5-1.3
  for inter-class suspects whose true precision was 0.09-0.20, where adding them halved REM's
  H×U (benchmarks/results/diagnose_map.md).
  """
  if cut is None or not cut['num_suspects']:
    return {'add': False, 'why': 'no suspects are estimated'}
  gains = summary.get('suspect_gains', {})
  unmeasured = [regularity.ROWS[t] for t in tasks if t not in gains]
  if unmeasured:
    return {'add': False, 'why': f'the map has not measured adding suspects in the '
                                 f'{", ".join(unmeasured)} row(s)'}
  shown = ', '.join(f'{regularity.ROWS[t]} row {gains[t]["gain"]:+.3f}' for t in tasks)
  if any(gains[t]['gain'] <= 0 for t in tasks):
    return {'add': False, 'why': f'on the map, adding suspects did not raise REM\'s H×U in '
                                 f'every row the task may lie in ({shown})'}
  return {'add': True, 'why': f'on the map, adding suspects raised REM\'s H×U in every row '
                              f'the task may lie in ({shown})'}


def check_measure(summary: dict) -> None:
  """The summary's regularity references were measured as this version's score."""
  measure = summary.get('regularity_measure', 'agreement_ratio')  # Older summaries lack it.
  if measure != regularity.MEASURE:
    source = summary.get('source') or 'the packaged map summary'
    raise ValueError(f'records: {source} holds regularity scores measured as {measure!r}; '
                     f'this version measures {regularity.MEASURE!r} (re-measure them with '
                     'benchmarks/diagnose_map.py).')


def check_covers(summary: dict, base: str) -> None:
  """The summary can place any task and advise on `base`: every benchmark task has a measured
  regularity score and cells on that base (a ValueError says what is missing)."""
  source = summary.get('source') or 'the packaged map summary'
  scores = summary.get('regularity_scores', {})
  check_measure(summary)
  missing = [t for t in regularity.ROWS if t not in scores]
  if missing:
    raise ValueError(f'records: {source} has no measured regularity score for {missing}; '
                     'give a summary that has (benchmarks/diagnose_map.py writes one).')
  uncovered = [t for t in regularity.ROWS
               if not any(c['task'] == t and c['base'] == base for c in summary['cells'])]
  if uncovered:
    raise ValueError(f'records: {source} has no {base}-base cells of {uncovered}; the records '
                     'must cover every task on the checkpoint\'s base.')
