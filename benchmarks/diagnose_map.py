"""The diagnosis measured on the CPU map (issue 19): regularity, suspects, cost.

    python benchmarks/diagnose_map.py --workdir=workdirs/diagnose_map
    python benchmarks/diagnose_map.py --workdir=workdirs/diagnose_map --seeds=0 --end_to_end
    python benchmarks/diagnose_map.py --workdir=workdirs/diagnose_map --report --write_summary
    python benchmarks/diagnose_map.py --grid=proportions --rates=0.5 \
      --workdir=workdirs/diagnose_map_proportions \
      --originals=workdirs/cpu_map/proportions/originals,workdirs/cpu_map/proportions_inter_class/originals \
      --map_results=benchmarks/results/cpu_map_proportions/results.jsonl \
      --output=benchmarks/results/diagnose_map_proportions
    python benchmarks/diagnose_map.py --grid=rung --rates=0.5 --tasks=poison_trigger --seeds=0 \
      --workdir=workdirs/diagnose_map_rung --originals=workdirs/cpu_map/rung/originals \
      --map_results=workdirs/cpu_map/rung/results.jsonl --output=benchmarks/results/diagnose_map_rung

For each task of `configs/cpu_map.py`, seed (`--seeds`, default 0-2) and discovery rate
(`--rates`, default 0.2 and 0.5) it diagnoses the map's trained original model
(`--originals`, the plain grid's `originals/`: nothing is retrained) with D_f the map's forget
set at that rate, and appends one record to `<workdir>/results.jsonl` (a re-run skips the
recorded ones): the regularity score; for each signal (co-forgetting, disagreement, their
combination) and two baselines (the trained model's own loss, a random ranking) the precision
and recall at k = |D_c \\ D_f| among D_r; the calibrated estimates (corrupted left, discovery
rate, the suspects) against the truth; the wall time against the original's training run.
Probes train `--probe_steps` steps (default: `configs/diagnose.py`'s, 1.5 × the map's 1,200 ÷ 2
folds = 900; the committed 10 %-budget records used 600). `--grid=proportions` diagnoses the originals of the map in the paper's proportions
(`configs/cpu_map.py:proportions` and `:proportions,inter_class`, whose `originals/` folders
`--originals` lists).

`--end_to_end` then unlearns, from the same original, D_f together with each recorded
diagnosis's suspects, with each method of `--end_to_end_methods` at the map's defaults:
`rem`, and `advised`, the method the diagnosis advises (its task placed by its regularity score
and estimated discovery rate, in the summary of the map's records `--map_results`, the
regularity references being these records' mean scores). Records go to
`<workdir>/end_to_end.jsonl`; the report sets each against the map's own seed-matched record
of REM on D_f alone.

`--report` writes `benchmarks/results/diagnose_map.{json,md}` (a table per measurement, means
over seeds, every placement held out by seed, and the end-to-end table; records of an earlier
regularity measure are re-scored exactly, `current`); `--write_summary` also writes, from
`--map_results`, the map summary a diagnosis advises from (`rem_jax/diagnosis/map_summary.json`):
each task's mean regularity score, the plain and ETD grids' cells and the gains from adding
suspects (the committed one: the first command's records, which are
`benchmarks/results/diagnose_map.json`'s, with the 10 %-budget map's results). The second and
third commands diagnose the originals of the map in the paper's proportions and of the rung;
their reports also place each diagnosis by the packaged references, as a user's is.
"""

import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # For `configs`.

from configs import cpu_map  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import trainer  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.data import corruptions  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import advice  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import regularity  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import suspects  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import cell  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import diagnose  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import records as records_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import store  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
RANKINGS = ('co_forgetting', 'disagreement', 'combined', 'own_loss', 'random')
END_TO_END_FILE = 'end_to_end.jsonl'
NUM_CLASSES = cpu_map.cell().model.num_classes
ADVISED = 'advised'


def original(config, directory: pathlib.Path, mesh):
  """The map's trained original model of `config`, its data and its corruption (as the sweep
  drew them: every rate of the map, so the forget sets are the map's)."""
  splits = cell.load_splits(config)
  record = corruptions.corrupt(
      splits.train.labels, task=config.task, seed=config.seed,
      num_classes=splits.train.num_classes, num_corrupted=config.num_corrupted,
      class_pair=tuple(config.class_pair), rates=cpu_map.RATES)
  saved = corruptions.load_record(directory / cell.IDS_FILE)
  if not np.array_equal(saved.corrupted_ids, record.corrupted_ids):
    raise ValueError(f'{directory}: its corruption is not the one this config draws.')
  model, mask_config = cell.original_model(config)
  variables, _ = trainer.load_variables(directory, model, splits.train.images.shape[1:])
  trained = methods.TrainedModel(model, sharding.replicate(variables, mesh), mask_config)
  train_record = json.loads((directory / cell.TRAIN_RECORD_FILE).read_text())
  return splits, record, trained, train_record


def map_cell(task: str, seed: int, rate: float, grid: str = '', **overrides):
  """The cell config of the map's `grid` ('': the 10 %-budget map, `configs/cpu_map.py`;
  'proportions': its grid in the paper's proportions, whose inter-class row has its own
  |D_c|; 'rung': one rung up, twice the images): the originals it names are that grid's."""
  if grid in ('proportions', 'rung'):
    config = config_lib.in_paper_proportions(
        cpu_map.cell(**cpu_map.RUNG) if grid == 'rung' else cpu_map.cell())
    if task == 'inter_class_confusion':
      config.num_corrupted = config_lib.inter_class_corrupted(config)
  else:
    config = cpu_map.cell()
  for path, value in {'task': task, 'seed': seed, 'discovery_rate': rate, **overrides}.items():
    config[path] = value
  return config


def find_original(originals, config) -> pathlib.Path:
  """The folder of `config`'s original among the `originals` folders (a grid's originals/)."""
  key = cell.original_key(config)
  for folder in originals:
    if (pathlib.Path(folder) / key).is_dir():
      return pathlib.Path(folder) / key
  raise ValueError(f'no original {key} ({config.task}, seed {config.seed}) in {originals}.')


def measure(task: str, seed: int, rate: float, originals, probe_steps: int,
            mesh, grid: str = '') -> dict:
  """One diagnosis of the map's (task, seed) original at `rate`, scored against D_c."""
  config = map_cell(task, seed, rate, grid)
  directory = find_original(originals, config)
  splits, record, trained, train_record = original(config, directory, mesh)
  forget_ids = record.forget_ids_at(rate)
  views = pipeline.make_views(splits, record, forget_ids, pipeline.put_images(splits, mesh))
  diagnose_config = config_lib.diagnose_config()
  diagnose_config.methods = config.methods
  diagnose_config.batch_size = config.train.batch_size
  diagnose_config.eval_batch_size = config.eval_batch_size
  diagnose_config.probe_steps = probe_steps
  diagnose_config.seed = seed
  settings = diagnose.settings_from(diagnose_config, trainer.Recipe.from_config(config.train))
  began = time.perf_counter()
  result = diagnose.diagnose(trained, views, forget_ids, mesh=mesh, settings=settings,
                             map_summary=None, num_classes=splits.train.num_classes)
  wall = time.perf_counter() - began
  scores = result.scores
  retain = ~scores['in_forget']
  corrupted = np.isin(scores['ids'], record.corrupted_ids)[retain]
  unfound = int(corrupted.sum())
  rng = np.random.default_rng(seed)
  rankings = {name: scores[name][retain] for name in RANKINGS if name != 'random'}
  rankings['random'] = rng.permutation(retain.sum()).astype(np.float64)
  at_k = {}
  for name, ranking in rankings.items():
    precision, recall = suspects.precision_recall_at(ranking, corrupted, unfound)
    at_k[name] = {'precision': precision, 'recall': recall, 'auc': suspects.auc(ranking, corrupted)}
  summary = result.summary
  found = np.isin(result.suspect_ids, record.corrupted_ids)
  return {
      'cell': f'task={task},seed={seed},rate={rate}', 'grid': grid, 'task': task, 'seed': seed,
      'discovery_rate': rate, 'num_found': len(forget_ids), 'num_unfound': unfound,
      'num_retain': int(retain.sum()), 'regularity': summary['regularity'],
      'at_k': at_k, 'random_precision': unfound / retain.sum(),
      'calibration': summary['calibration'], 'threshold': summary['threshold'],
      'suspects': {'count': int(len(result.suspect_ids)), 'corrupted': int(found.sum()),
                   'precision': float(found.mean()) if found.size else None,
                   'recall': float(found.sum() / unfound) if unfound else None},
      'true_discovery_rate': len(forget_ids) / record.num_corrupted,
      'flush': summary['co_forgetting'], 'probe_steps': summary['probe_steps'],
      'wall_time_s': wall, 'training_wall_time_s': train_record['wall_time_s'],
      'cost_over_training': wall / train_record['wall_time_s'],
      'suspect_ids': result.suspect_ids.tolist()}


# ---- End to end ---------------------------------------------------------------------------------


def current(rows) -> list[dict]:
  """`rows` with each record's regularity read as `regularity.MEASURE`: a record of an earlier
  measure is re-scored from what it holds (the held-out agreement on D_f and D_r are counts of
  per-example 0/1 outcomes, so the score and its bootstrap interval are exactly recomputed),
  and co-forgetting's calibration gets the `informative` verdict of today's rule
  (`suspects.auc_interval` over |hidden half| and D_r) where it predates it."""
  return [_current(r) for r in rows]


def _current(record: dict) -> dict:
  reg = record['regularity']
  calibration = record['calibration']['co_forgetting']
  if reg.get('measure') == regularity.MEASURE and 'informative' in calibration:
    return record
  outcomes = lambda share, n: np.arange(n) < round(share * n)
  rescored = regularity.score(
      outcomes(reg['forget_agreement'], record['num_found']),
      outcomes(reg['retain_agreement'], record['num_retain']), num_classes=NUM_CLASSES,
      bootstrap=reg['bootstrap'], rng=np.random.default_rng(record['seed']), level=reg['level'])
  low, _ = suspects.auc_interval(calibration['auc'], calibration['num_hidden'],
                                 record['num_retain'])
  calibrations = {**record['calibration'],
                  'co_forgetting': {**calibration, 'informative': bool(low > 0.5)}}
  placed = ('nearest_task', 'row', 'reference_scores')  # The old measure's placement.
  kept = {k: v for k, v in reg.items() if k not in placed}
  return {**record, 'regularity': {**kept, **rescored}, 'calibration': calibrations}


def map_summary(rows, map_records, end_to_end_rows=(), exclude_seed: int | None = None
                ) -> dict:
  """The summary a diagnosis advises from: the map's cells whose original passed its
  preconditions, placed by these diagnosis records' mean regularity scores, with the gains
  from adding suspects (`suspect_gains`). `exclude_seed`: all three read without that seed's
  records, so a diagnosis of that seed is judged out of sample."""
  thresholds = reports.Thresholds()
  rows = current(rows)
  kept = lambda r: r.get('seed') != exclude_seed
  map_records = [r for r in map_records if kept(r)]
  return advice.summarise(
      map_records, regularity_scores([r for r in rows if kept(r)]),
      source='the CPU map (benchmarks/results/cpu_map)',
      passed=lambda r: reports.precondition(r, thresholds)['passed'],
      suspect_gains=suspect_gains([r for r in end_to_end_rows if kept(r)], map_records))


def suspect_gains(end_to_end_rows, map_records) -> dict[str, dict]:
  """Per task: REM's H×U on D_f and a diagnosis's suspects minus the map's REM on D_f alone,
  the mean over the (seed, rate) cells that have both, and those cells' gains."""
  alone = rem_alone(map_records)
  by_task = {}
  for r in end_to_end_rows:
    key = (r['task'], r['seed'], r['discovery_rate'])
    if r['method'] == 'rem' and key in alone:
      by_task.setdefault(r['task'], []).append(
          r['after']['healed_x_utility'] - alone[key]['healed_x_utility'])
  return {task: {'gain': float(np.mean(gains)), 'cells': gains}
          for task, gains in by_task.items()}


def advised_method(diagnosis: dict, summary: dict) -> str:
  """What the diagnosis `diagnosis` advises: its task placed by its regularity score and its
  estimated discovery rate, the best method of that cell of `summary` (no estimated rate, the
  calibration could not tell: the best on average over the map's rates; no row: the best on
  average over the rows)."""
  diagnosis = _current(diagnosis)
  cut, reg = diagnosis['threshold'], diagnosis['regularity']
  shown = regularity.placeable(reg['score'], summary['regularity_scores'],
                               diagnosis['calibration']['co_forgetting']['informative'])
  _, _, advised = advice.place(summary, {**reg, 'measurable': shown},
                               None if cut is None else cut['estimated_discovery_rate'])
  return advised['best']['method']


def held_out_placement(rows, references=None) -> list[dict]:
  """Each record's row placed by references from the other seeds' records alone (or by
  `references`, e.g. the packaged summary's, where given): {'cell', 'task', 'measurable',
  'nearest', 'tasks_within', ...} (measurable None: no references of all three tasks without
  this seed; False: "cannot tell")."""
  placed = []
  rows = current(rows)
  for r in rows:
    if references is None:
      references_now = regularity_scores([o for o in rows if o['seed'] != r['seed']])
    else:
      references_now = references
    reg = r['regularity']
    measurable = nearest = None
    within = []
    if set(references_now) == set(regularity.ROWS):
      measurable = regularity.placeable(reg['score'], references_now,
                                        r['calibration']['co_forgetting']['informative'])
      if measurable:
        nearest = regularity.nearest_task(reg['score'], references_now)
        within = regularity.tasks_within(reg['low'], reg['high'], references_now)
    placed.append({'cell': r['cell'], 'task': r['task'], 'seed': r['seed'],
                   'discovery_rate': r['discovery_rate'], 'measurable': measurable,
                   'nearest': nearest, 'tasks_within': within, 'score': reg['score'],
                   'low': reg['low'], 'high': reg['high']})
  return placed


def held_out_markdown(rows, references=None) -> str:
  """The placement table: held out by seed, or (`references`) by the packaged summary's."""
  if references is None:
    title, how = ('The regularity row, held out by seed', "Each diagnosis placed with "
                  "references from the other seeds' records only (the mean score of each task "
                  'over them)')
  else:
    title, how = ("The regularity row by the packaged summary's references", 'Each diagnosis '
                  'placed as a user\'s is, by the references shipped in the package '
                  f'({", ".join(f"{t} {v:.2f}" for t, v in sorted(references.items()))}: the '
                  '10 %-budget map\'s diagnoses)')
  lines = [f'## {title}', '', f'{how}: the nearest row, and the rows its interval reaches.', '',
           '| task | rate | seed | score (interval) | nearest row | interval reaches | right? |',
           '|---|---|---|---|---|---|---|']
  placed = held_out_placement(rows, references)
  for p in sorted(placed, key=lambda p: (cpu_map.TASKS.index(p['task']), p['discovery_rate'],
                                         p['seed'])):
    if p['measurable'] is None:
      nearest, within, right = 'no references without this seed', '–', '–'
    elif not p['measurable']:
      nearest, within, right = 'cannot tell', '–', 'abstains'
    else:
      nearest = regularity.ROWS[p['nearest']]
      within = regularity.describe_rows(p['tasks_within'])
      right = ('yes' if p['nearest'] == p['task'] else
               'in interval' if p['task'] in p['tasks_within'] else 'no')
    lines.append(f'| {p["task"]} | {p["discovery_rate"]} | {p["seed"]} | '
                 f'{p["score"]:.2f} ({p["low"]:.2f}–{p["high"]:.2f}) | {nearest} | '
                 f'{within} | {right} |')
  return '\n'.join(lines) + '\n'


def end_to_end_key(task: str, seed: int, rate: float, method: str) -> str:
  return f'task={task},seed={seed},rate={rate},method={method}'


def end_to_end(diagnosis: dict, method: str, originals, mesh) -> dict:
  """`method` at the map's defaults on D_f and the diagnosis's suspects, from the map's
  original model, evaluated as the map evaluates (Healed on D_c, Utility on the test set)."""
  task, seed, rate = diagnosis['task'], diagnosis['seed'], diagnosis['discovery_rate']
  config = map_cell(task, seed, rate, diagnosis.get('grid', ''), method=method)
  splits, record, trained, train_record = original(
      config, find_original(originals, config), mesh)
  found = record.forget_ids_at(rate)
  record = record.with_forget_ids(rate, np.union1d(found, diagnosis['suspect_ids']))
  prepared = cell.Prepared(splits, pipeline.put_images(splits, mesh), record,
                           trainer.Recipe.from_config(config.train), trained, train_record,
                           corrupted_only=False)
  before, after, unlearned = cell.unlearn_and_evaluate(config, prepared, mesh)
  forget_ids = record.forget_ids_at(rate)
  corrupted = np.isin(forget_ids, record.corrupted_ids)
  return records_lib.run_record(
      config.to_dict(), mesh=mesh, train=train_record, before=before, after=after,
      unlearned=unlearned, cell=end_to_end_key(task, seed, rate, method), task=task,
      discovery_rate=rate, num_found=len(found),
      num_suspects=len(diagnosis['suspect_ids']), num_forget=len(forget_ids),
      forget_precision=float(corrupted.mean()),
      forget_recall=float(corrupted.sum() / record.num_corrupted))


def run_end_to_end(rows, results: store.ResultStore, methods_wanted, seeds, summary,
                   originals, mesh) -> None:
  """`end_to_end` for each diagnosis record of `seeds` and each wanted method (`advised`: by
  `summary(seed)`, the map summary without that seed); a re-run skips the recorded ones."""
  done = results.finished_cells()
  for diagnosis in sorted(rows, key=lambda r: (r['seed'], r['task'], r['discovery_rate'])):
    if diagnosis['seed'] not in seeds:
      continue
    held_out = summary(diagnosis['seed'])
    wanted = [advised_method(diagnosis, held_out) if name == ADVISED else name
              for name in methods_wanted]
    for method in dict.fromkeys(wanted):
      key = end_to_end_key(diagnosis['task'], diagnosis['seed'], diagnosis['discovery_rate'],
                           method)
      if key in done:
        continue
      print(f'diagnose_map: end to end, {key}', file=sys.stderr, flush=True)
      results.append(end_to_end(diagnosis, method, originals, mesh))


def rem_alone(map_records) -> dict[tuple[str, int, float], dict]:
  """{(task, seed, rate): metrics after} of the map's plain-base REM at its defaults."""
  return {(r['task'], r['seed'], r['discovery_rate']): r['after'] for r in map_records
          if r.get('method') == 'rem' and r.get('variant') == 'rem' and r.get('base') == 'plain'
          and 'after' in r}


def end_to_end_markdown(rows, end_to_end_rows, map_records) -> str:
  """Per task and rate: the map's REM on D_f against REM and the advised method (advised by
  today's map records) on D_f and the diagnosis's suspects, each H×U with Healed and Utility
  (one seed: no SEM)."""
  alone = rem_alone(map_records)
  diagnoses = {(r['task'], r['seed'], r['discovery_rate']): r for r in rows}
  show = lambda m: (f'{m["healed_x_utility"]:.3f} ({m["healed"]:.2f} / {m["utility"]:.2f})'
                    if m else '—')
  lines = ['## End to end: unlearning D_f and the suspects', '',
           'H×U (Healed / Utility) of each method at the map\'s defaults from the map\'s '
           'original model; "REM on D_f" is the map\'s own record. The advised method is placed '
           'by the regularity score and the estimated discovery rate, without D_c, in the map\'s '
           'records without that seed (references and cells: out of sample). REM gains: REM\'s H×U on D_f ∪ suspects minus on D_f '
           '(positive: adding the suspects beats REM on D_f). —: not recorded yet.', '',
           '| task | rate | seed | suspects (precision) | REM on D_f | REM on D_f ∪ suspects | '
           'REM gains | advised method | advised on D_f ∪ suspects | advised vs REM on D_f |',
           '|---|---|---|---|---|---|---|---|---|---|']
  by_cell = {}
  for r in end_to_end_rows:
    by_cell.setdefault((r['task'], r['seed'], r['discovery_rate']), []).append(r)
  order = lambda key: (cpu_map.TASKS.index(key[0]), key[2], key[1])
  for key in sorted(by_cell, key=order):
    task, seed, rate = key
    runs = by_cell[key]
    rem = next((r['after'] for r in runs if r['method'] == 'rem'), None)
    try:
      advised_name = advised_method(diagnoses[key],
                                    map_summary(rows, map_records, exclude_seed=seed))
    except (KeyError, ValueError):  # No diagnosis record, or the map has no such cells yet.
      advised_name = None
    advised = next((r for r in runs if r['method'] == advised_name), None)
    base = alone.get(key)
    gain = (f'{rem["healed_x_utility"] - base["healed_x_utility"]:+.3f}'
            if rem and base else 'n/a')
    versus = (f'{advised["after"]["healed_x_utility"] - base["healed_x_utility"]:+.3f}'
              if advised and base else 'n/a')
    suspects_found = diagnoses[key]['suspects'] if key in diagnoses else None
    lines.append(
        f'| {task} | {rate} | {seed} | '
        + (f'{suspects_found["count"]} ({suspects_found["precision"]:.2f})'
           if suspects_found and suspects_found['precision'] is not None else 'n/a')
        + f' | {show(base)} | {show(rem)} | {gain} | '
        + f'{advised_name or "n/a"} | {show(advised["after"] if advised else None)} | '
        f'{versus} |')
  return '\n'.join(lines) + '\n'


# ---- The report ---------------------------------------------------------------------------------


def _mean(rows, get, digits: int = 3) -> str:
  values = [get(r) for r in rows]
  values = [v for v in values if v is not None and v == v]
  if not values:
    return 'n/a'
  mean, sem = metrics.mean_sem(values)
  return f'{mean:.{digits}f}' + (f' ± {sem:.{digits}f}' if sem == sem else '')


def _estimate(record: dict, key: str):
  """A calibrated estimate of the record's threshold; None where the diagnosis abstained (no
  informative signal: no count, no rate), which `_mean` leaves out."""
  return None if record['threshold'] is None else record['threshold'][key]


def _groups(rows) -> list[tuple[tuple[str, float], list[dict]]]:
  """[((task, rate), records)] in the map's task order, then by rate."""
  groups = {}
  for r in rows:
    groups.setdefault((r['task'], r['discovery_rate']), []).append(r)
  return sorted(groups.items(), key=lambda kv: (cpu_map.TASKS.index(kv[0][0]), kv[0][1]))


def summary_markdown(rows, end_to_end_rows, map_records) -> str:
  """The README's table: per task and rate, the regularity score and the combined ranking's
  precision at k (mean ± SEM over seeds), and on seed 0 REM's H×U on D_f (the map's record)
  and on D_f ∪ suspects."""
  alone = rem_alone(map_records)
  widened = {(r['task'], r['seed'], r['discovery_rate']): r['after']
             for r in end_to_end_rows if r['method'] == 'rem'}
  value = lambda m: '—' if m is None else f'{m["healed_x_utility"]:.3f}'
  lines = ['| task (regularity) | rate | regularity score | suspects\' precision at k: '
           'combined / random | REM\'s H×U on D_f → on D_f ∪ suspects (seed 0) |',
           '|---|---|---|---|---|']
  for (task, rate), group in _groups(rows):
    key = (task, 0, rate)
    lines.append(
        f'| {task} ({regularity.ROWS[task]}) | {rate} | '
        f'{_mean(group, lambda r: r["regularity"]["score"], 2)} | '
        f'{_mean(group, lambda r: r["at_k"]["combined"]["precision"], 2)} / '
        f'{_mean(group, lambda r: r["at_k"]["random"]["precision"], 2)} | '
        f'{value(alone.get(key))} → {value(widened.get(key))} |')
  return '\n'.join(lines) + '\n'


def report_markdown(rows, end_to_end_rows, map_records) -> str:
  """Every table: the summary, then one per measurement, then the end-to-end runs."""
  seeds = sorted({r['seed'] for r in rows})
  grid = rows[0].get('grid', '')
  lines = [f'Diagnosis on the CPU map (`configs/cpu_map.py{":" + grid if grid else ""}`), seeds '
           f'{seeds}: mean ± SEM over seeds. Command: `python benchmarks/diagnose_map.py'
           f'{" --grid=" + grid if grid else ""}` (its docstring).', '',
           '## Summary', '', summary_markdown(rows, end_to_end_rows, map_records),
           '## Regularity score', '', '| task | rate | score | per seed |', '|---|---|---|---|']
  ordered = _groups(rows)
  for (task, rate), group in ordered:
    per_seed = ', '.join(f'{r["regularity"]["score"]:.2f}'
                         for r in sorted(group, key=lambda r: r['seed']))
    lines.append(f'| {task} | {rate} | {_mean(group, lambda r: r["regularity"]["score"])} | '
                 f'{per_seed} |')
  lines += ['', order_line(rows), '', held_out_markdown(rows).rstrip('\n')]
  if rows[0].get('grid'):  # Not the map the packaged references were measured on.
    packaged = advice.load()['regularity_scores']
    lines += ['', held_out_markdown(rows, packaged).rstrip('\n')]
  lines += ['', '## Suspects: precision at k = |D_c \\ D_f| among D_r', '',
            '| task | rate | k | ' + ' | '.join(RANKINGS) + ' |',
            '|---|---|---|' + '---|' * len(RANKINGS)]
  for (task, rate), group in ordered:
    cells = [_mean(group, lambda r, n=n: r['at_k'][n]['precision']) for n in RANKINGS]
    lines.append(f'| {task} | {rate} | {_mean(group, lambda r: r["num_unfound"], 0)} | '
                 + ' | '.join(cells) + ' |')
  lines += ['', 'Recall at k equals precision at k (k is the number of unfound corrupted '
            'examples).', '', '## The calibrated threshold against the truth', '',
            'Means over the diagnoses that estimated (n/a: every one abstained, no signal told '
            'from chance in calibration).', '',
            '| task | rate | corrupted left: estimated | true | discovery rate: estimated | '
            'true | suspects | their precision | their recall |', '|---|---|---|---|---|---|---|---|---|']
  for (task, rate), group in ordered:
    lines.append(
        f'| {task} | {rate} | {_mean(group, lambda r: _estimate(r, "remaining"), 1)} | '
        f'{_mean(group, lambda r: r["num_unfound"], 0)} | '
        f'{_mean(group, lambda r: _estimate(r, "estimated_discovery_rate"))} | '
        f'{_mean(group, lambda r: r["true_discovery_rate"])} | '
        f'{_mean(group, lambda r: r["suspects"]["count"], 0)} | '
        f'{_mean(group, lambda r: r["suspects"]["precision"])} | '
        f'{_mean(group, lambda r: r["suspects"]["recall"])} |')
  lines += ['', '## Cost', '', f'Diagnosis wall time over the original training run: '
            f'{_mean(rows, lambda r: r["cost_over_training"])} (probes of '
            f'{rows[0]["probe_steps"]} steps, 2 folds); {len(rows)} diagnoses took '
            f'{sum(r["wall_time_s"] for r in rows) / 3600:.1f} h in all. Per record (a run '
            'that shared the 2 cores with another job took longer):', '',
            '| task | rate | seed | diagnosis s | training s | ratio |',
            '|---|---|---|---|---|---|']
  for (task, rate), group in ordered:
    for r in sorted(group, key=lambda r: r['seed']):
      lines.append(f'| {task} | {rate} | {r["seed"]} | {r["wall_time_s"]:.0f} | '
                   f'{r["training_wall_time_s"]:.0f} | {r["cost_over_training"]:.2f} |')
  if end_to_end_rows:
    lines += ['', end_to_end_markdown(rows, end_to_end_rows, map_records)]
  return '\n'.join(lines).rstrip('\n') + '\n'


def misordered(rows) -> tuple[int, list[tuple[int, float]]]:
  """How many (seed, rate) pairs have all of the map's tasks diagnosed, and those whose scores
  do not fall strictly in the map's row order (poison > inter-class > random swap)."""
  scores = {}
  for r in rows:
    scores.setdefault((r['seed'], r['discovery_rate']), {})[r['task']] = r['regularity']['score']
  complete = {pair: by_task for pair, by_task in sorted(scores.items())
              if set(by_task) == set(cpu_map.TASKS)}
  wrong = [pair for pair, by_task in complete.items()
           if any(by_task[a] <= by_task[b] for a, b in zip(cpu_map.TASKS, cpu_map.TASKS[1:]))]
  return len(complete), wrong


def order_line(rows) -> str:
  complete, wrong = misordered(rows)
  line = (f'The score orders the tasks as the map\'s rows ({" > ".join(cpu_map.TASKS)}) on '
          f'{complete - len(wrong)} of the {complete} (seed, rate) pairs with all three '
          'diagnosed')
  return line + (f'; not on {wrong}.' if wrong else '.')


def regularity_scores(rows) -> dict[str, float]:
  """Each task's mean score over its records (read by `current`, NaN left out): the references
  a diagnosis places a task by."""
  by_task = {}
  for r in rows:
    if r['regularity']['score'] == r['regularity']['score']:
      by_task.setdefault(r['task'], []).append(r['regularity']['score'])
  return {task: float(np.mean(values)) for task, values in by_task.items()}


def write_report(rows, end_to_end_rows, map_records, output: pathlib.Path,
                 summary_path: pathlib.Path | None) -> None:
  """The tables (.md) and every record (.json); the packaged summary if `summary_path` (its
  suspect gains from `end_to_end_rows`)."""
  files.write_json_atomic(output.with_suffix('.json'),
                          {'records': rows, 'end_to_end': end_to_end_rows})
  text = report_markdown(rows, end_to_end_rows, map_records)
  files.write_atomic(output.with_suffix('.md'), lambda f: f.write(text.encode()))
  print(text)
  if summary_path is not None:
    summary = map_summary(rows, map_records, end_to_end_rows)
    advice.write(summary, summary_path)
    print(f'Wrote {summary_path}: {len(summary["cells"])} cells.')


_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/diagnose_map', 'Where records go.')
_ORIGINALS = flags.DEFINE_list('originals', ['workdirs/cpu_map/plain/originals'],
                               "The CPU map's trained originals (folders searched in order).")
_GRID = flags.DEFINE_enum('grid', '', ['', 'proportions', 'rung'],
                          "The map's grid: '' the 10 %-budget map, 'proportions' the paper's, "
                          "'rung' one rung up (configs/cpu_map.py:rung).")
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
_RATES = flags.DEFINE_list('rates', ['0.2', '0.5'], 'Discovery rates.')
_TASKS = flags.DEFINE_list('tasks', list(cpu_map.TASKS), 'Tasks.')
_PROBE_STEPS = flags.DEFINE_integer(
    'probe_steps', None, "Each probe's training steps (unset: configs/diagnose.py's default, "
    "1.5 × the recipe's ÷ folds).")
_REPORT = flags.DEFINE_bool('report', False, 'Only write the report from the records.')
_OUTPUT = flags.DEFINE_string('output', str(ROOT / 'benchmarks' / 'results' / 'diagnose_map'),
                              'The report (.json and .md).')
_MAP_RESULTS = flags.DEFINE_list(
    'map_results', [str(ROOT / 'benchmarks' / 'results' / 'cpu_map' / 'results.jsonl')],
    "The map's results.jsonl files: REM on D_f alone, the advice, the packaged summary.")
_END_TO_END = flags.DEFINE_bool('end_to_end', False, 'Unlearn D_f and the recorded suspects.')
_END_TO_END_METHODS = flags.DEFINE_list(
    'end_to_end_methods', ['rem', ADVISED], f'With --end_to_end: methods, or {ADVISED!r}.')
_WRITE_SUMMARY = flags.DEFINE_bool('write_summary', False, 'Also write the packaged map summary '
                                   f'({advice.PACKAGED.name}) from --map_results.')


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  results = store.ResultStore(workdir / store.RESULTS_FILE)
  end_to_end_results = store.ResultStore(workdir / END_TO_END_FILE)
  map_records = [r for path in _MAP_RESULTS.value
                 for r in store.ResultStore(pathlib.Path(path)).read()]
  unknown = sorted(set(_END_TO_END_METHODS.value) - set(methods.METHODS) - {ADVISED})
  if unknown:
    sys.exit(f'diagnose_map.py: error: --end_to_end_methods: {unknown} unknown; allowed: '
             f'{sorted(methods.METHODS)} and {ADVISED!r}.')
  if _END_TO_END.value and not _REPORT.value:
    rows = results.read()
    summary = lambda seed: map_summary(rows, map_records, exclude_seed=seed)
    run_end_to_end(rows, end_to_end_results, _END_TO_END_METHODS.value,
                   set(map(int, _SEEDS.value)), summary, _ORIGINALS.value,
                   sharding.make_mesh())
  elif not _REPORT.value:
    mesh = sharding.make_mesh()
    done = results.finished_cells()
    for task in _TASKS.value:
      for seed in map(int, _SEEDS.value):
        for rate in map(float, _RATES.value):
          key = f'task={task},seed={seed},rate={rate}'
          if key in done:
            continue
          print(f'diagnose_map: {key}', file=sys.stderr, flush=True)
          results.append(measure(task, seed, rate, _ORIGINALS.value, _PROBE_STEPS.value,
                                 mesh, _GRID.value))
  rows = current(results.read())
  if not rows:
    sys.exit(f'diagnose_map.py: error: no records in {workdir / store.RESULTS_FILE}.')
  write_report(rows, end_to_end_results.read(), map_records, pathlib.Path(_OUTPUT.value),
               advice.PACKAGED if _WRITE_SUMMARY.value else None)


if __name__ == '__main__':
  app.run(main)
