"""The CPU map's setting: the cheapest candidate in which all three tasks take.

    python benchmarks/map_search.py --candidates=2k_w4 --seeds=0
    python benchmarks/map_search.py --candidates=2k_w4 --seeds=1,2
    python benchmarks/map_search.py --report

Each candidate is `configs/cpu_map.py`'s plain grid with its own data size, |D_c|, width and
training steps (`CANDIDATES`; the augmentation stays the paper's, every other field is the
map's). For each seed it runs the grid's No UL cells at discovery rate 0.5 (`--config.only`),
which trains one original model per task, into `--workdir/<candidate>`: a re-run resumes, and
the chosen candidate's `originals/` serve the map itself (`ln -s`: the folders are named by
what shapes them).

`--report` (also printed after every run) reads every candidate's records and writes
`--output` (.json and .md): per candidate, task and seed, the original model's test accuracy,
how much of the corruption it learned (poison success on D_c; accuracy on D_c against the
corrupted labels for the swaps), No UL's Healed, whether the preconditions hold
(`rem_jax.experiments.reports.Thresholds`: test accuracy ≥ 0.5, poison ≥ 0.8, swaps ≥ 0.5) and
the training wall time.
"""

import pathlib
import sys

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # For `configs`.

from configs import cpu_map  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import store  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import sweep  # pylint: disable=g-import-not-at-top,wrong-import-position

# name -> the cell fields that differ between candidates (the rest is configs/cpu_map.py's
# CELL). Epochs = steps x 256 / images: 100 for all but the 150-epoch one.
CANDIDATES = {
    '2k_w4': {'data.num_train': 2_000, 'num_corrupted': 100, 'model.width_multiplier': 0.25,
              'train.steps': 800},
    '2k_w4_150ep': {'data.num_train': 2_000, 'num_corrupted': 100,
                    'model.width_multiplier': 0.25, 'train.steps': 1200},
    '2k_w2': {'data.num_train': 2_000, 'num_corrupted': 100, 'model.width_multiplier': 0.5,
              'train.steps': 800},
    '3k_w4': {'data.num_train': 3_000, 'num_corrupted': 150, 'model.width_multiplier': 0.25,
              'train.steps': 1200},
    '4k_w4': {'data.num_train': 4_000, 'num_corrupted': 200, 'model.width_multiplier': 0.25,
              'train.steps': 1600},
}


def candidate_config(name: str, seed: int):
  config = cpu_map.get_config()
  config.cell = cpu_map.cell(**CANDIDATES[name])
  config.only = f'method=no_ul;discovery_rate=0.5;seed={seed}'
  return config


def rows(workdir: pathlib.Path) -> list[dict]:
  """One row per (candidate, task, seed) recorded under `workdir`."""
  thresholds = reports.Thresholds()
  out = []
  for name in CANDIDATES:
    results = workdir / name / store.RESULTS_FILE
    if not results.is_file():
      continue
    for record in store.ResultStore(results).read():
      if record['method'] != 'no_ul' or 'before' not in record:
        continue
      check = reports.precondition(record, thresholds)
      out.append({
          'candidate': name, 'fields': CANDIDATES[name], 'task': record['task'],
          'seed': record['seed'], 'test_accuracy': check['utility'],
          'learned': check['learned'], 'learned_metric': check['learned_metric'],
          'no_ul_healed': record['before']['healed'], 'passed': check['passed'],
          'train_wall_time_s': record['train']['wall_time_s']})
  return sorted(out, key=lambda r: (list(CANDIDATES).index(r['candidate']),
                                    cpu_map.TASKS.index(r['task']), r['seed']))


def markdown(table: list[dict]) -> str:
  lines = ['| candidate | fields | task | seed | test accuracy | learned (D_c) | '
           'No UL Healed | preconditions | training (s) |', '|' + '---|' * 9]
  for r in table:
    fields_changed = ', '.join(f'{k}={v}' for k, v in r['fields'].items())
    lines.append(f"| {r['candidate']} | {fields_changed} | {r['task']} | {r['seed']} | "
                 f"{r['test_accuracy']:.3f} | {r['learned']:.3f} | {r['no_ul_healed']:.3f} | "
                 f"{'hold' if r['passed'] else 'fail'} | {r['train_wall_time_s']:.0f} |")
  return '\n'.join(lines) + '\n'


def report(workdir: pathlib.Path, output: pathlib.Path) -> str:
  table = rows(workdir)
  files.write_json_atomic(output.with_suffix('.json'),
                          {'base_cell': cpu_map.CELL, 'rows': table})
  text = markdown(table)
  files.write_atomic(output.with_suffix('.md'), lambda f: f.write(text.encode()))
  return text


def main(argv):
  del argv
  values = flags.FLAGS
  workdir, output = pathlib.Path(values.workdir), pathlib.Path(values.output)
  if not values.report:
    unknown = [c for c in values.candidates if c not in CANDIDATES]
    if unknown:
      raise app.UsageError(f'--candidates: {unknown} unknown; allowed: {list(CANDIDATES)}.')
    for name in values.candidates:
      for seed in values.seeds:
        sweep.run(candidate_config(name, int(seed)), workdir / name)
  print(report(workdir, output))


if __name__ == '__main__':
  flags.DEFINE_list('candidates', ['2k_w4'], f'Among {list(CANDIDATES)}.')
  flags.DEFINE_list('seeds', ['0'], 'Seeds (each trains one model per task).')
  flags.DEFINE_string('workdir', 'workdirs/map_search', 'One sweep workdir per candidate.')
  flags.DEFINE_string('output', 'benchmarks/results/map_search.json', 'The table (.json, .md).')
  flags.DEFINE_bool('report', False, 'Only write the table from the records so far.')
  app.run(main)
