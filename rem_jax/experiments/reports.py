"""Tables and figures like the paper's, from sweep records alone (never from paths).

    python -m rem_jax.experiments.reports --results=WORKDIR/results.jsonl --outdir=WORKDIR/reports

(`--results` takes several files, comma-separated: the sweeps of one benchmark, pooled.)

Every number is in percent. Aggregation (SPEC §9): a run's Healed x Utility is computed per run;
a table row pools every run of a (base, method) pair (regularities x discovery rates x seeds)
and shows mean ± SEM (ddof 1). `table.*` (a benchmark's table (a)) has the pairs run on every
seed of the records; one run on fewer (a tuning grid's variants, the ablations on seed 0) is
named under it and tabulated in `table_tuned.md` and `claims.md`. Rows are sorted by Healed x
Utility. "Best per cell" (the paper's Tables 5-9) first keeps, for each (base, method, task,
rate), the hyperparameter variant with the best Healed x Utility averaged over the seeds the
variants ran on, then pools. It reads the test set and D_c to choose: an oracle, never a
headline. "Tuned" (table (b) of a benchmark: `configs/cpu_map.py:tuned`) chooses the same way
by the training-data proxy Acc(D_r)·(1 − max(Acc(D_f), 0.2)) instead: a choice a practitioner
could make.

Preconditions: a task only means something if the original model learned the corruption and
the task. Per original model (base, task, seed), from its metrics before unlearning: test
accuracy ≥ `utility_floor`; poison: poison success on D_c ≥ `poison_floor`; label swaps:
accuracy on D_c against the corrupted labels ≥ `memorised_floor`. Runs of a failing original
are listed in the preconditions table and left out of every other table and figure.

Pooling weighs each rate of the grid alike, so on few rates full discovery weighs more than
among the paper's ten (the CPU map's 0.2, 0.5, 1.0: a third against a tenth), which favours the
methods that need every corrupted sample found. `table.md` therefore also pools the same runs
over the partial rates alone (below 1.0), and at each rate over tasks x seeds.

Written files: `table.{md,csv,tex}` (pooled), `table_partial.csv` and `table_by_rate.csv` (where
the records hold several rates: pooled over the partial rates when some rate is 1.0, and at each
rate), `table_best.{md,csv,tex}` and `table_tuned.md`
(when some method has hyperparameter variants), `preconditions.md`, `failures.md` (cells whose
method diverged: left out of everything else), `costs.{md,csv}` (unlearning wall time relative
to training, the paper's A.8 next to it; the records' total compute under it), `claims.md` (the
paper's claims checked one by one, `rem_jax.experiments.claims`; when the records span several
tasks), `heatmap_<base>_<variant>.png` and `heatmaps.png` (regularity rows x discovery-rate
columns, a no-unlearning column at rate 0, like Fig. 1/10),
`dynamics_<base>_<variant>_<task>.png` (REM's Fig. 5).
"""

import collections
import csv
import dataclasses
import io
import json
import math
import os
import pathlib
import sys
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from absl import app
from absl import flags
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from rem_jax import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import claims  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import plots  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import records as records_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import selection  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import store  # pylint: disable=g-import-not-at-top,wrong-import-position

# Heatmap rows, high to low regularity (SPEC §1).
TASK_ROWS = tuple(claims.REGULARITY.items())
METRICS = (('healed', 'Healed'), ('utility', 'Utility'), ('healed_x_utility', 'H×U'))
# Unlearning time relative to training, the paper's appendix A.8 (percent).
PAPER_COST_PERCENT = {'bad_teacher': 24.7, 'scrub': 14.0, 'rem': 10.7, 'potion': 9.1,
                      'npo': 0.2, 'ascent': 0.2}


# What every copy of table_best says: it chose by the test set, so it is never a headline.
ORACLE = 'Best per cell by H×U (an oracle: it reads the test set and D_c)'


mean_sem = metrics.mean_sem  # Its home is rem_jax.metrics; the tables call it by this name.


# ---- Preconditions ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """What an original model must reach for its task to count (see the module docstring)."""
  utility_floor: float = 0.5
  poison_floor: float = 0.8
  memorised_floor: float = 0.5


def precondition(record: dict, thresholds: Thresholds) -> dict:
  """{'utility', 'learned', 'learned_metric', 'passed'} of the record's original model."""
  before = record['before']
  if record['task'] == 'poison_trigger':
    metric, floor = 'poison_success_corrupted', thresholds.poison_floor
  else:
    metric, floor = 'corrupted_label_accuracy', thresholds.memorised_floor
  learned = before.get(metric, math.nan)
  passed = before['utility'] >= thresholds.utility_floor and learned >= floor
  return {'utility': before['utility'], 'learned': learned, 'learned_metric': metric,
          'passed': bool(passed)}


def preconditions(records: Iterable[dict], thresholds: Thresholds) -> dict[tuple, dict]:
  """{(base, task, seed, original): precondition} over the records' original models."""
  return {(r['base'], r['task'], r['seed'], r['original']): precondition(r, thresholds)
          for r in records}


def passing(records: Sequence[dict], thresholds: Thresholds) -> list[dict]:
  return [r for r in records if precondition(r, thresholds)['passed']]


def preconditions_markdown(records: Sequence[dict], thresholds: Thresholds) -> str:
  lines = [f'Floors: test accuracy ≥ {thresholds.utility_floor}; poison success on D_c ≥ '
           f'{thresholds.poison_floor}; label swaps: accuracy on D_c against the corrupted '
           f'labels ≥ {thresholds.memorised_floor}.', '',
           '| base | task | seed | test accuracy | learned the corruption | meets preconditions |',
           '|---|---|---|---|---|---|']
  for (base, task, seed, _), p in sorted(preconditions(records, thresholds).items()):
    lines.append(f'| {base} | {task} | {seed} | {100 * p["utility"]:.2f} | '
                 f'{100 * p["learned"]:.2f} ({p["learned_metric"]}) | '
                 f'{"yes" if p["passed"] else "**no**: not tabulated"} |')
  return '\n'.join(lines) + '\n'


# ---- Tables ------------------------------------------------------------------------------------


def by_method(records: Sequence[dict]) -> dict[tuple[str, str], list[dict]]:
  """{(base, variant): its records}, in first-seen order: one table row or heatmap each."""
  groups = collections.defaultdict(list)
  for record in records:
    groups[(record['base'], record['variant'])].append(record)
  return groups


def tuned_markdown(records: Sequence[dict]) -> str:
  """The tuned table beside the defaults on the same seeds, and which variant each cell chose."""
  seeds = selection.tuned_seeds(records)
  chosen = selection.tuned(records)
  defaults = [r for r in records if r['seed'] in seeds and r['variant'] == r['method']]
  gamma = selection.PROXY_GAMMA
  lines = [f'Tuned (seeds {seeds}): per (base, method, task, discovery rate), the variant with '
           f'the best training-data proxy Acc(D_r)·(1 − max(Acc(D_f), {gamma})), mean over '
           'those seeds; never the test set or D_c.', '', table_markdown(pooled_rows(chosen)),
           'Defaults on the same seeds:', '', table_markdown(pooled_rows(defaults)),
           'Chosen variants:', '', '| base | method | task | rate | chosen |', '|---|---|---|---|---|']
  picks = {(r['base'], r['method'], r['task'], r['discovery_rate']): r['chosen'] for r in chosen}
  for (base, method, task, rate), variant in sorted(picks.items()):
    lines.append(f'| {base} | {method} | {task} | {rate} | {variant} |')
  return '\n'.join(lines) + '\n'


def pooled_rows(records: Sequence[dict]) -> list[dict]:
  """One row per (base, variant): n and mean ± SEM (percent) of each metric, sorted by H×U."""
  groups = by_method(records)
  rows = []
  for (base, variant), group in groups.items():
    row = {'base': base, 'method': variant, 'runs': len(group)}
    for key, _ in METRICS:
      row[key] = mean_sem([100 * r['after'][key] for r in group])
    rows.append(row)
  return sorted(rows, key=lambda row: -row['healed_x_utility'][0])


def rate_tables(records: Sequence[dict]) -> tuple[list[dict], list[dict]]:
  """`pooled_rows` at each discovery rate and over the partial rates (below 1.0) alone.

  Returns (by rate: rates ascending, each row with its 'discovery_rate'; partial). Each is empty
  where it would repeat the pooled table: both on one rate, partial without rate 1.0.
  """
  rates = sorted({r['discovery_rate'] for r in records})
  if len(rates) < 2:
    return [], []
  by_rate = [{'discovery_rate': rate, **row} for rate in rates
             for row in pooled_rows([r for r in records if r['discovery_rate'] == rate])]
  partial = (pooled_rows([r for r in records if r['discovery_rate'] < 1.0])
             if rates[-1] == 1.0 else [])
  return by_rate, partial


def rates_markdown(by_rate: Sequence[dict], partial: Sequence[dict]) -> str:
  """`rate_tables`' tables as sections under table (a), partial first: the other pooled table,
  to read beside table (a)."""
  rates = sorted({row['discovery_rate'] for row in by_rate})
  text = ''
  if partial:
    shown = ', '.join(str(rate) for rate in rates[:-1])
    text += (f'\n## Pooled over the partial discovery rates ({shown})\n\nThe same runs without '
             f'rate 1.0 (full discovery), which weighs 1/{len(rates)} in the table above and '
             "1/10 among the paper's ten rates.\n\n" + table_markdown(partial))
  if by_rate:
    text += '\n## At each discovery rate\n\nThe same runs, pooled over tasks × seeds.\n'
    for rate in rates:
      text += f'\n### Discovery rate {rate}\n\n' + table_markdown(
          [row for row in by_rate if row['discovery_rate'] == rate])
  return text


def on_every_seed(records: Sequence[dict]) -> tuple[list[dict], dict[tuple[str, str], list]]:
  """Table (a)'s records, and the records of each (base, variant) left out of it.

  Table (a) pools each (base, variant) run on every seed of the records. A tuning grid's
  variants and the ablations run on one seed: their means pool other cells than the rest's, so
  they go in `table_tuned.md` and `claims.md`, not beside table (a)'s rows.
  """
  every_seed = {r['seed'] for r in records}
  kept, fewer = [], {}
  for key, group in by_method(records).items():
    if {r['seed'] for r in group} == every_seed:
      kept.extend(group)
    else:
      fewer[key] = group
  return kept, fewer


def fewer_seeds_note(fewer: dict[tuple[str, str], list]) -> str:
  """The line under table (a) that names what `on_every_seed` left out."""
  if not fewer:
    return ''
  untuned = [f'{variant} ({base}, seeds {sorted({r["seed"] for r in group})})'
             for (base, variant), group in fewer.items() if variant == group[0]['method']]
  tuning = len(fewer) - len(untuned)
  parts = untuned + ([f'{tuning} hyperparameter variant{"s" * (tuning > 1)} (table_tuned.md)']
                    if tuning else [])
  return '\nRun on fewer seeds, so not pooled here: ' + '; '.join(parts) + '.\n'


def uneven_cells_note(records: Sequence[dict]) -> str:
  """A warning under a pooled table whose rows pool different (task, rate, seed) cells.

  A partial grid (a sweep still running, or one run with `only`) can give one method rate 1.0
  and another not; their pooled means then are not comparable. Empty when every row pools the
  same cells.
  """
  cells = {key: {(r['task'], r['discovery_rate'], r['seed']) for r in group}
           for key, group in by_method(records).items()}
  every = set().union(*cells.values()) if cells else set()
  lacking = [(key, sorted(every - have)) for key, have in cells.items() if have != every]
  if not lacking:
    return ''
  lines = ['', 'Rows pool different cells (a partial grid): compare methods cell by cell (the '
           'heatmaps). Missing (task, discovery rate, seed):']
  for (base, variant), missing in lacking:
    shown = ', '.join(f'({task}, {rate}, {seed})' for task, rate, seed in missing[:6])
    more = f' and {len(missing) - 6} more' if len(missing) > 6 else ''
    lines.append(f'- {base} {variant}: {shown}{more}')
  return '\n'.join(lines) + '\n'


def _cell(value: tuple[float, float], sep: str = ' ± ') -> str:
  mean, sem = value
  return f'{mean:.2f}' if math.isnan(sem) else f'{mean:.2f}{sep}{sem:.2f}'


def table_markdown(rows: Sequence[dict]) -> str:
  header = '| base | method | runs | ' + ' | '.join(name for _, name in METRICS) + ' |'
  lines = [header, '|' + '---|' * (3 + len(METRICS))]
  for row in rows:
    lines.append(f'| {row["base"]} | {row["method"]} | {row["runs"]} | '
                 + ' | '.join(_cell(row[key]) for key, _ in METRICS) + ' |')
  return '\n'.join(lines) + '\n'


def table_csv(rows: Sequence[dict], label: str = '', keys: Sequence[str] = ()) -> str:
  """The rows as CSV; `keys` (what else tells rows apart: `rate_tables`' 'discovery_rate') come
  first; a `label` (how the rows were chosen: `ORACLE`) goes in a column of its own on every
  row, so no reader of the file can miss it."""
  labelled = lambda cells, value: cells + ([value] if label else [])
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(labelled([*keys, 'base', 'method', 'runs']
                           + [f'{k}_{s}' for k, _ in METRICS for s in ('mean', 'sem')],
                           'chosen_by'))
  for row in rows:
    writer.writerow(labelled([row[name] for name in (*keys, 'base', 'method', 'runs')]
                             + [f'{v:.4f}' for key, _ in METRICS for v in row[key]], label))
  return out.getvalue()


def table_latex(rows: Sequence[dict], label: str = '') -> str:
  """The rows as a LaTeX tabular; a `label` (`ORACLE`) is its last row, under the rule."""
  escape = lambda text: str(text).replace('_', r'\_').replace('×', r'$\times$')
  lines = [r'\begin{tabular}{llr' + 'r' * len(METRICS) + '}', r'\toprule',
           'Base & Method & Runs & ' + ' & '.join(escape(name) for _, name in METRICS)
           + r' \\', r'\midrule']
  for row in rows:
    lines.append(f'{escape(row["base"])} & {escape(row["method"])} & {row["runs"]} & '
                 + ' & '.join(_cell(row[key], r' $\pm$ ') for key, _ in METRICS) + r' \\')
  lines.append(r'\bottomrule')
  if label:
    lines.append(f'\\multicolumn{{{3 + len(METRICS)}}}{{l}}{{{escape(label)}}} \\\\')
  lines.append(r'\end{tabular}')
  return '\n'.join(lines) + '\n'


def device_seconds(record: dict, seconds: float | None = None) -> float:
  """`seconds` (default: the run's unlearning wall time) times the devices the run held: a
  sweep cell's share of its process's devices, as recorded (1 where a record predates the
  field)."""
  wall = record['unlearn']['wall_time_s'] if seconds is None else seconds
  return wall * record.get('num_devices', 1)


def cost_rows(records: Sequence[dict]) -> list[dict]:
  """Per (base, variant): mean unlearning wall time, its percent of the training run (the mean,
  and the median, which a few runs slowed by other work on the machine or held paused do not
  move), and the device-hours of all its runs."""
  groups = by_method(records)
  rows = []
  for (base, variant), group in groups.items():
    percents, percents_no_eval, seconds = [], [], []
    for record in group:
      wall = record['unlearn']['wall_time_s']
      no_eval = record['unlearn'].get('wall_time_without_evaluation_s', wall)
      seconds.append(wall)
      percents.append(records_lib.percent_of_training(record))
      percents_no_eval.append(100 * no_eval / records_lib.training_seconds(record))
    rows.append({'base': base, 'method': variant, 'runs': len(group),
                 'wall_time_s': float(np.mean(seconds)),
                 'device_hours': sum(map(device_seconds, group)) / 3600,
                 'percent_of_training': float(np.mean(percents)),
                 'median_percent_of_training': float(np.median(percents)),
                 'percent_without_evaluation': float(np.mean(percents_no_eval)),
                 'paper_percent': PAPER_COST_PERCENT.get(group[0]['method'])})
  return sorted(rows, key=lambda row: -row['percent_of_training'])


def costs_markdown(rows: Sequence[dict]) -> str:
  lines = ['| base | method | runs | wall s | % of training | median % of training | '
           '% without evaluations | paper A.8 % | device-h |',
           '|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    paper = '' if row['paper_percent'] is None else f'{row["paper_percent"]:.1f}'
    lines.append(f'| {row["base"]} | {row["method"]} | {row["runs"]} | '
                 f'{row["wall_time_s"]:.1f} | {row["percent_of_training"]:.1f} | '
                 f'{row["median_percent_of_training"]:.1f} | '
                 f'{row["percent_without_evaluation"]:.1f} | {paper} | '
                 f'{row["device_hours"]:.2f} |')
  return '\n'.join(lines) + '\n'


def total_compute(records: Sequence[dict]) -> dict:
  """Wall time the records took: every unlearning run, and every training run of their original
  models, each once however many records read it. Every training records its own time, so an
  original recorded with two times was trained twice (a sweep trained it again in a workdir
  that lacked it) and both count; a sweep that reuses a trained model adds nothing. A part of
  the records never counts more than the whole."""
  trainings = {(r['original'], records_lib.training_seconds(r)): r for r in records}
  unlearning = sum(r['unlearn']['wall_time_s'] for r in records)
  # A training run held the devices its cells' records name (a sweep trains on its cells' mesh).
  device_s = (sum(map(device_seconds, records))
              + sum(device_seconds(r, seconds) for (_, seconds), r in trainings.items()))
  return {'runs': len(records), 'unlearning_s': unlearning,
          'originals': len({original for original, _ in trainings}),
          'trainings': len(trainings), 'training_s': sum(s for _, s in trainings),
          'device_hours': device_s / 3600,
          'devices': sorted({str(r.get('device', 'unknown')) for r in records})}


def total_compute_markdown(total: dict, of: str = '') -> str:
  """One line; `of` names a part of the records (`'table (a)'`), else they are all."""
  hours = lambda seconds: f'{seconds / 3600:.1f} h'
  plural = lambda count, noun: f'{count} {noun}{"s" * (count != 1)}'
  return (f'\nTotal compute{f" of {of}" if of else ""} ({", ".join(total["devices"])}): '
          f'{hours(total["unlearning_s"])} unlearning in {total["runs"]} runs, '
          f'{hours(total["training_s"])} training {plural(total["originals"], "original model")} '
          f'in {plural(total["trainings"], "run")} '
          f'(mean {total["training_s"] / total["trainings"]:.0f} s); '
          f'{hours(total["unlearning_s"] + total["training_s"])} in all, '
          f'{total["device_hours"]:.1f} device-hours.\n')


def costs_csv(rows: Sequence[dict]) -> str:
  out = io.StringIO()
  fields = ['base', 'method', 'runs', 'wall_time_s', 'percent_of_training',
            'median_percent_of_training', 'percent_without_evaluation', 'paper_percent',
            'device_hours']
  writer = csv.DictWriter(out, fields, lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


# ---- Heatmaps ----------------------------------------------------------------------------------


def heatmap_grid(records: Sequence[dict]) -> tuple[np.ndarray, list[float]]:
  """(rows x (1 + rates)) mean H×U in percent: row = TASK_ROWS, column 0 = no unlearning (the
  original models' H×U), then one column per discovery rate; NaN where nothing was run."""
  rates = sorted({r['discovery_rate'] for r in records})
  grid = np.full((len(TASK_ROWS), 1 + len(rates)), np.nan)
  for row, (task, _) in enumerate(TASK_ROWS):
    runs = [r for r in records if r['task'] == task]
    if not runs:
      continue
    originals = {r['original']: r['before']['healed_x_utility'] for r in runs}
    grid[row, 0] = 100 * np.mean(list(originals.values()))
    for column, rate in enumerate(rates, start=1):
      values = [r['after']['healed_x_utility'] for r in runs if r['discovery_rate'] == rate]
      if values:
        grid[row, column] = 100 * np.mean(values)
  return grid, rates


def _draw_heatmap(axes, grid: np.ndarray, rates: Sequence[float], title: str) -> None:
  # Not run (or left out by its preconditions): light grey.
  colours = matplotlib.colormaps['viridis'].with_extremes(bad='0.88')
  axes.imshow(np.ma.masked_invalid(grid), cmap=colours, vmin=0, vmax=100, aspect='auto')
  for (row, column), value in np.ndenumerate(grid):
    text = 'n/a' if np.isnan(value) else f'{value:.0f}'
    colour = '0.4' if np.isnan(value) else 'white' if value < 60 else 'black'
    axes.text(column, row, text, ha='center', va='center', fontsize=7, color=colour)
  axes.set_xticks(range(1 + len(rates)), ['no UL'] + [f'{r:g}' for r in rates], fontsize=7)
  axes.set_yticks(range(len(TASK_ROWS)), [label for _, label in TASK_ROWS], fontsize=7)
  axes.set_xlabel('discovery rate', fontsize=7)
  axes.set_title(title, fontsize=8)


def _save(figure, path: pathlib.Path) -> pathlib.Path:
  figure.tight_layout()
  files.write_atomic(path, lambda f: figure.savefig(f, format='png'))
  plt.close(figure)
  return path


def overview_panels(records: Sequence[dict]) -> list[tuple[str, str]]:
  """`heatmaps.png`'s panels, (base, variant), best pooled H×U first: each method at its
  defaults on every seed of the records. A tuning grid's variants and a method run on fewer
  seeds (the ablations: seed 0) get files of their own only: their means are not comparable."""
  groups = by_method(on_every_seed(records)[0])
  shown = [key for key, group in groups.items() if all(r['variant'] == r['method'] for r in group)]
  return sorted(shown, key=lambda key: -np.mean(
      [r['after']['healed_x_utility'] for r in groups[key]]))


def drawn(records: Sequence[dict]) -> list[dict]:
  """The records that get heatmap and dynamics files of their own: all but a tuning grid's
  variants (a hyperparameter variant on fewer seeds than the rest), which table_tuned.md
  shows cell by cell."""
  fewer = on_every_seed(records)[1]
  return [r for r in records
          if r['variant'] == r['method'] or (r['base'], r['variant']) not in fewer]


def write_heatmaps(records: Sequence[dict], outdir: pathlib.Path) -> list[pathlib.Path]:
  """One heatmap of H×U per (base, variant), and `overview_panels`' in `heatmaps.png`."""
  groups = by_method(drawn(records))
  written = []
  for base, variant in groups:
    grid, rates = heatmap_grid(groups[(base, variant)])
    figure, axes = plt.subplots(figsize=(1.2 + 0.55 * len(rates), 2.0), dpi=120)
    _draw_heatmap(axes, grid, rates, f'{variant} ({base}): Healed × Utility, %')
    written.append(_save(figure, outdir / f'heatmap_{base}_{_slug(variant)}.png'))
  panels = overview_panels(records)
  if panels:
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, all_axes = plt.subplots(rows, columns, squeeze=False, dpi=120,
                                    figsize=(columns * (1.4 + 0.5 * len(grid[0])), 2.1 * rows))
    for axes, (base, variant) in zip(all_axes.flat, panels):
      grid, rates = heatmap_grid(groups[(base, variant)])
      _draw_heatmap(axes, grid, rates, f'{variant} ({base})')
    for axes in list(all_axes.flat)[len(panels):]:
      axes.axis('off')
    written.append(_save(figure, outdir / 'heatmaps.png'))
  return written


def _slug(text: str) -> str:
  return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in text).strip('_')


def write_dynamics(records: Sequence[dict], outdir: pathlib.Path) -> list[pathlib.Path]:
  """REM's dynamics (Fig. 5) per (base, variant, task): the lowest seed at the rate nearest 0.5."""
  groups = collections.defaultdict(list)
  for record in drawn(records):
    iterations = record['unlearn'].get('iterations') or []
    if iterations and 'corrupted_accuracy_shared_mask' in iterations[0]:
      groups[(record['base'], record['variant'], record['task'])].append(record)
  written = []
  for (base, variant, task), group in sorted(groups.items()):
    chosen = min(group, key=lambda r: (abs(r['discovery_rate'] - 0.5), r['seed']))
    written.append(plots.plot_dynamics(
        chosen['unlearn']['iterations'], outdir / f'dynamics_{base}_{_slug(variant)}_{task}.png',
        title=f'{variant} ({base}): {task}, rate {chosen["discovery_rate"]:g}, '
              f'seed {chosen["seed"]}'))
  return written


# ---- Everything --------------------------------------------------------------------------------


def failures(records: Sequence[dict]) -> list[dict]:
  """The records of cells whose method diverged (an 'error', no metrics)."""
  return [r for r in records if 'error' in r]


def completed(records: Sequence[dict]) -> list[dict]:
  return [r for r in records if 'error' not in r]


def failures_markdown(records: Sequence[dict]) -> str:
  lines = ['| cell | error |', '|---|---|']
  lines += [f'| {r["cell"]} | {r["error"]} |' for r in failures(records)]
  return '\n'.join(lines) + '\n'


def summary_table(records: Sequence[dict], thresholds: Thresholds = Thresholds()) -> str:
  """The pooled table of the runs that meet their preconditions, as Markdown."""
  records = completed(records)
  kept = passing(records, thresholds)
  if not kept:
    return ('No run meets its preconditions (see preconditions.md): nothing to tabulate.\n'
            + preconditions_markdown(records, thresholds))
  return table_a(kept).markdown


class TableA(NamedTuple):
  """Table (a): `on_every_seed`'s records (`runs`), their pooled `rows`, `table.md` with its
  notes and rate sections (`markdown`), and `rate_tables`' rows (`by_rate`, `partial`)."""
  runs: list[dict]
  rows: list[dict]
  markdown: str
  by_rate: list[dict]
  partial: list[dict]


def table_a(records: Sequence[dict]) -> TableA:
  """Table (a) of `records` (see `TableA`), every part computed once."""
  kept, fewer = on_every_seed(records)
  rows = pooled_rows(kept)
  by_rate, partial = rate_tables(kept)
  return TableA(kept, rows, (table_markdown(rows) + uneven_cells_note(kept)
                             + fewer_seeds_note(fewer) + rates_markdown(by_rate, partial)),
                by_rate, partial)


def write_reports(records: Sequence[dict], outdir, thresholds: Thresholds = Thresholds(),
                  across: Sequence[tuple[str, Sequence[dict]]] = ()) -> list[pathlib.Path]:
  """Writes every report of `records` into `outdir` (atomically); returns the paths.

  `across`: (label, records) of other settings of the same benchmark (the CPU map at another
  budget or scale), `records` usually among them; `claims.md` then also gives every claim's
  verdict in each, read through the same preconditions, and which way it moves.
  """
  outdir = pathlib.Path(outdir)
  written = []

  def text(name: str, content: str) -> None:
    path = outdir / name
    files.write_atomic(path, lambda f: f.write(content.encode('utf-8')))
    written.append(path)

  if failures(records):
    text('failures.md', failures_markdown(records))
  records = completed(records)
  if not records:
    return written
  text('preconditions.md', preconditions_markdown(records, thresholds))
  kept = passing(records, thresholds)
  if kept:
    table = table_a(kept)
    text('table.md', table.markdown)
    text('table.csv', table_csv(table.rows))
    text('table.tex', table_latex(table.rows))
    if table.partial:
      text('table_partial.csv', table_csv(table.partial))
    if table.by_rate:
      text('table_by_rate.csv', table_csv(table.by_rate, keys=('discovery_rate',)))
    if any(r['variant'] != r['method'] for r in kept):
      text('table_tuned.md', tuned_markdown(kept))
      best = pooled_rows(selection.tuned(kept, score=selection.healed_x_utility))
      text('table_best.md', f'{ORACLE}, seeds {selection.tuned_seeds(kept)}:\n\n'
           + table_markdown(best))
      text('table_best.csv', table_csv(best, ORACLE))
      text('table_best.tex', table_latex(best, ORACLE))
    if len({r['task'] for r in kept}) > 1:  # The claims are about the task space.
      text('claims.md', claims.claims_markdown(kept, records)
           + across_markdown(across, thresholds))
    costs = cost_rows(kept)
    text('costs.md', costs_markdown(costs)
         + (total_compute_markdown(total_compute(table.runs), of='table (a)')
            if 0 < len(table.runs) < len(records) else '')
         + total_compute_markdown(total_compute(records)))
    text('costs.csv', costs_csv(costs))
    written += write_heatmaps(kept, outdir)
    written += write_dynamics(kept, outdir)
  return written


def across_markdown(across: Sequence[tuple[str, Sequence[dict]]],
                    thresholds: Thresholds) -> str:
  """claims.md's section comparing settings (empty without `across`)."""
  if not across:
    return ''
  kept = [(label, passing(ran, thresholds), ran) for label, records in across
          for ran in [completed(records)]]
  return ('\n## Across settings\n\nEach claim\'s verdict and evidence in each setting, by '
          'the rules above, and which way it moves from the first to the last (settings that '
          'ran none of its cells left out). A setting run on one seed has no seed-to-seed '
          'spread of its own: its cells borrow it from the nearest setting before it that ran '
          'more seeds ("± ?" where none did).\n\n'
          + claims.across_markdown(kept))


# The settings an outdir's claims.md compares, written where `--across` is given, so that a later
# regeneration of the same outdir (benchmarks/collect_sweep.sh, the committed reports' test)
# compares the same ones: {label: results.jsonl relative to the outdir}, in order.
ACROSS_FILE = 'across.json'


def read_across(outdir) -> list[tuple[str, pathlib.Path]]:
  """(label, path) of the settings `outdir`'s claims.md compares; [] without its across.json."""
  path = pathlib.Path(outdir) / ACROSS_FILE
  if not path.is_file():
    return []
  try:
    settings = json.loads(path.read_text())
  except json.JSONDecodeError as error:
    raise ValueError(f'not JSON ({error}).') from error
  if not isinstance(settings, dict) or not all(isinstance(v, str) for v in settings.values()):
    raise ValueError('must be a JSON object {label: results.jsonl relative to it}.')
  return [(label, path.parent / relative) for label, relative in settings.items()]


def write_across(outdir, settings: Sequence[tuple[str, pathlib.Path]]) -> None:
  outdir = pathlib.Path(outdir)
  relative = {label: os.path.relpath(path, outdir) for label, path in settings}
  files.write_atomic(outdir / ACROSS_FILE,
                     lambda f: f.write((json.dumps(relative, indent=1) + '\n').encode('utf-8')))


def parse_across(values: Sequence[str]) -> list[tuple[str, pathlib.Path]]:
  """`--across` values, `LABEL=results.jsonl`, as (label, path); a bad one raises ValueError."""
  settings = []
  for value in values:
    label, separator, path = value.partition('=')
    if not separator or not label or not pathlib.Path(path).is_file():
      raise ValueError(f'--across: {value!r} is not LABEL=PATH with PATH an existing '
                       'results.jsonl.')
    settings.append((label, pathlib.Path(path)))
  return settings


def _define_flags():
  """The command's flags (defined only when run as a script: importing defines none)."""
  flags.DEFINE_list('results', None, "Sweeps' results.jsonl files, pooled.")
  flags.DEFINE_string('outdir', None, 'Where the reports go (default: beside the results).')
  flags.DEFINE_list('across', [], 'Settings to compare the claims across, LABEL=results.jsonl '
                    "each, in the order to read them (e.g. '10 % budget=benchmarks/results/"
                    "cpu_map/results.jsonl,proportions=...'): claims.md adds a table. Kept in "
                    f'the outdir\'s {ACROSS_FILE}, which later runs without --across reuse.')
  flags.DEFINE_float('utility_floor', Thresholds.utility_floor,
                     'Minimum test accuracy of an original model.')
  flags.DEFINE_float('poison_floor', Thresholds.poison_floor,
                     'Minimum poison success on D_c of an original model.')
  flags.DEFINE_float('memorised_floor', Thresholds.memorised_floor,
                     'Minimum corrupted-label accuracy on D_c (label-swap tasks).')


def main(argv):
  del argv
  values = flags.FLAGS
  paths = [pathlib.Path(p) for p in values.results or []]
  missing = [str(p) for p in paths if not p.is_file()]
  if not paths or missing:
    print(f'reports: error: --results must name existing results.jsonl files, comma-separated '
          f'(not found: {missing or values.results}).', file=sys.stderr)
    sys.exit(1)
  outdir = pathlib.Path(values.outdir) if values.outdir else paths[0].parent / 'reports'
  try:
    settings = parse_across(values.across) if values.across else read_across(outdir)
    if not values.across:
      parse_across([f'{label}={path}' for label, path in settings])  # Each still exists.
  except ValueError as error:
    source = '' if values.across else f'{outdir / ACROSS_FILE}: '
    print(f'reports: error: {source}{error}', file=sys.stderr)
    sys.exit(1)
  records = [r for path in paths for r in store.ResultStore(path).read()]
  across = [(label, store.ResultStore(path).read()) for label, path in settings]
  thresholds = Thresholds(values.utility_floor, values.poison_floor, values.memorised_floor)
  if values.across:
    outdir.mkdir(parents=True, exist_ok=True)
    write_across(outdir, settings)
  for path in write_reports(records, outdir, thresholds, across):
    print(path)
  print(summary_table(records, thresholds))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
