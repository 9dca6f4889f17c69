"""The diagnosis measured on the CPU map (issue 19): regularity, suspects, cost.

    python benchmarks/diagnose_map.py --workdir=workdirs/diagnose_map
    python benchmarks/diagnose_map.py --workdir=workdirs/diagnose_map --report

For each task of `configs/cpu_map.py`, seed (`--seeds`, default 0-2) and discovery rate
(`--rates`, default 0.2 and 0.5) it diagnoses the map's trained original model
(`--originals`, the plain grid's `originals/`: nothing is retrained) with D_f the map's forget
set at that rate, and appends one record to `<workdir>/results.jsonl` (a re-run skips the
recorded ones): the regularity score; for each signal (co-forgetting, disagreement, their
combination) and two baselines (the trained model's own loss, a random ranking) the precision
and recall at k = |D_c \\ D_f| among D_r; the calibrated estimates (corrupted left, discovery
rate, the suspects) against the truth; the wall time against the original's training run.
Probes train `--probe_steps` steps (default: half the map's 1,200).

`--report` writes `benchmarks/results/diagnose_map.{json,md}` (a table per measurement, means
over seeds) and, with the map's records (`--map_results`), the map summary a diagnosis advises
from (`rem_jax/diagnosis/map_summary.json`): each task's mean regularity score and the plain
and ETD grids' cells.
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
from rem_jax.diagnosis import suspects  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import cell  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import diagnose  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import store  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
RANKINGS = ('co_forgetting', 'disagreement', 'combined', 'own_loss', 'random')


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


def measure(task: str, seed: int, rate: float, originals: pathlib.Path, probe_steps: int,
            mesh) -> dict:
  """One diagnosis of the map's (task, seed) original at `rate`, scored against D_c."""
  config = cpu_map.cell(task=task, seed=seed, discovery_rate=rate)
  directory = originals / cell.original_key(config)
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
      'cell': f'task={task},seed={seed},rate={rate}', 'task': task, 'seed': seed,
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


# ---- The report ---------------------------------------------------------------------------------


def _mean(rows, get, digits: int = 3) -> str:
  values = [get(r) for r in rows]
  values = [v for v in values if v is not None and v == v]
  if not values:
    return 'n/a'
  mean, sem = metrics.mean_sem(values)
  return f'{mean:.{digits}f}' + (f' ± {sem:.{digits}f}' if sem == sem else '')


def report_markdown(rows) -> str:
  tasks = [t for t in cpu_map.TASKS if any(r['task'] == t for r in rows)]
  seeds = sorted({r['seed'] for r in rows})
  lines = [f'Diagnosis on the CPU map (`configs/cpu_map.py`), seeds {seeds}: mean ± SEM over '
           'seeds. Command: `python benchmarks/diagnose_map.py` (its docstring).', '',
           '## Regularity score', '', '| task | rate | score | per seed |', '|---|---|---|---|']
  groups = {}
  for r in rows:
    groups.setdefault((r['task'], r['discovery_rate']), []).append(r)
  ordered = sorted(groups.items(), key=lambda kv: (tasks.index(kv[0][0]), kv[0][1]))
  for (task, rate), group in ordered:
    per_seed = ', '.join(f'{r["regularity"]["score"]:.2f}'
                         for r in sorted(group, key=lambda r: r['seed']))
    lines.append(f'| {task} | {rate} | {_mean(group, lambda r: r["regularity"]["score"])} | '
                 f'{per_seed} |')
  lines += ['', '## Suspects: precision at k = |D_c \\ D_f| among D_r', '',
            '| task | rate | k | ' + ' | '.join(RANKINGS) + ' |',
            '|---|---|---|' + '---|' * len(RANKINGS)]
  for (task, rate), group in ordered:
    cells = [_mean(group, lambda r, n=n: r['at_k'][n]['precision']) for n in RANKINGS]
    lines.append(f'| {task} | {rate} | {_mean(group, lambda r: r["num_unfound"], 0)} | '
                 + ' | '.join(cells) + ' |')
  lines += ['', 'Recall at k equals precision at k (k is the number of unfound corrupted '
            'examples).', '', '## The calibrated threshold against the truth', '',
            '| task | rate | corrupted left: estimated | true | discovery rate: estimated | '
            'true | suspects | their precision | their recall |', '|---|---|---|---|---|---|---|---|---|']
  for (task, rate), group in ordered:
    lines.append(
        f'| {task} | {rate} | {_mean(group, lambda r: r["threshold"]["remaining"], 1)} | '
        f'{_mean(group, lambda r: r["num_unfound"], 0)} | '
        f'{_mean(group, lambda r: r["threshold"]["estimated_discovery_rate"])} | '
        f'{_mean(group, lambda r: r["true_discovery_rate"])} | '
        f'{_mean(group, lambda r: r["suspects"]["count"], 0)} | '
        f'{_mean(group, lambda r: r["suspects"]["precision"])} | '
        f'{_mean(group, lambda r: r["suspects"]["recall"])} |')
  lines += ['', '## Cost', '', f'Diagnosis wall time over the original training run: '
            f'{_mean(rows, lambda r: r["cost_over_training"])} (probes of '
            f'{rows[0]["probe_steps"]} steps, 2 folds).']
  return '\n'.join(lines) + '\n'


def regularity_scores(rows) -> dict[str, float]:
  """Each task's mean score over its records: the references a diagnosis places a task by."""
  by_task = {}
  for r in rows:
    by_task.setdefault(r['task'], []).append(r['regularity']['score'])
  return {task: float(np.mean(values)) for task, values in by_task.items()}


def write_report(rows, output: pathlib.Path, map_results: list[pathlib.Path],
                 summary_path: pathlib.Path) -> None:
  files.write_json_atomic(output.with_suffix('.json'), {'records': rows})
  text = report_markdown(rows)
  files.write_atomic(output.with_suffix('.md'), lambda f: f.write(text.encode()))
  print(text)
  if map_results:
    records = [r for path in map_results for r in store.ResultStore(path).read()]
    thresholds = reports.Thresholds()
    summary = advice.summarise(
        records, regularity_scores(rows), source='the CPU map (benchmarks/results/cpu_map)',
        passed=lambda r: reports.precondition(r, thresholds)['passed'])
    advice.write(summary, summary_path)
    print(f'Wrote {summary_path}: {len(summary["cells"])} cells.')


_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/diagnose_map', 'Where records go.')
_ORIGINALS = flags.DEFINE_string('originals', 'workdirs/cpu_map/plain/originals',
                                 "The CPU map's trained originals.")
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
_RATES = flags.DEFINE_list('rates', ['0.2', '0.5'], 'Discovery rates.')
_TASKS = flags.DEFINE_list('tasks', list(cpu_map.TASKS), 'Tasks.')
_PROBE_STEPS = flags.DEFINE_integer('probe_steps', 600, "Each probe's training steps.")
_REPORT = flags.DEFINE_bool('report', False, 'Only write the report from the records.')
_OUTPUT = flags.DEFINE_string('output', str(ROOT / 'benchmarks' / 'results' / 'diagnose_map'),
                              'The report (.json and .md).')
_MAP_RESULTS = flags.DEFINE_list('map_results', [], "The map's results.jsonl files, for the "
                                 'packaged summary.')


def main(argv):
  del argv
  workdir = pathlib.Path(_WORKDIR.value)
  results = store.ResultStore(workdir / store.RESULTS_FILE)
  if not _REPORT.value:
    mesh = sharding.make_mesh()
    done = results.finished_cells()
    for task in _TASKS.value:
      for seed in map(int, _SEEDS.value):
        for rate in map(float, _RATES.value):
          key = f'task={task},seed={seed},rate={rate}'
          if key in done:
            continue
          print(f'diagnose_map: {key}', file=sys.stderr, flush=True)
          results.append(measure(task, seed, rate, pathlib.Path(_ORIGINALS.value),
                                 _PROBE_STEPS.value, mesh))
  rows = results.read()
  if not rows:
    sys.exit(f'diagnose_map.py: error: no records in {workdir / store.RESULTS_FILE}.')
  write_report(rows, pathlib.Path(_OUTPUT.value), [pathlib.Path(p) for p in _MAP_RESULTS.value],
               advice.PACKAGED)


if __name__ == '__main__':
  app.run(main)
