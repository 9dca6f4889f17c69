"""REM's wall time and results on one cell, from whichever `rem_jax` is imported: a change to
REM measured before and after, interleaved in one session on the same trained model.

    git worktree add ../before <the commit before the change>
    for i in 1 2; do
      PYTHONPATH=../before python benchmarks/rem_wall_time.py --label=before
      python benchmarks/rem_wall_time.py --label=after
    done
    python benchmarks/rem_wall_time.py --report

Each run takes the sweep config's REM cell at --rate (default: the mini benchmark's poison cell
at discovery rate 0.5, seed 0), trains its original model into --workdir once (later runs and
the other checkout reuse it), runs REM and appends one entry to --output: the label, which
`rem_jax` ran (its path and git commit), REM's device-synchronised wall time and its record, and
the cell's metrics before and after. `--report` prints, per label, the wall times and their
mean, the largest metric difference from the first label, and REM's FLOP floor from each label's
recorded passes (`rem_jax.experiments.flop_floors`; "expanded %": the same passes with drop mode
on the expanded model), all as % of the training run, and writes the summary into the JSON.
"""

import dataclasses
import json
import pathlib
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

import rem_jax
from rem_jax import files, sharding
from rem_jax.experiments import cell, flop_floors, sweep

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/mini_cifar10.py', 'A sweep config.')
_RATE = flags.DEFINE_float('rate', 0.5, 'The discovery rate of the REM cell.')
_METHOD = flags.DEFINE_string('method', 'rem', 'The REM variant of the sweep to time.')
_LABEL = flags.DEFINE_string('label', 'after', 'What this run measures (e.g. before, after).')
_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/rem_wall_time',
                               'Where the original model is trained once and reused.')
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/rem_wall_time_cpu.json',
                              'The JSON the runs append to.')
_REPORT = flags.DEFINE_bool('report', False,
                            'Print and store the summary of --output; run nothing.')

METRICS = ('healed', 'utility', 'healed_x_utility', 'forget_accuracy', 'retain_accuracy')


def _commit(path: pathlib.Path) -> str:
  """The checkout's commit, '+changes' when the package differs from it."""
  git = lambda *args: subprocess.run(['git', '-C', str(path), *args], capture_output=True,
                                     text=True, check=True).stdout.strip()
  try:
    return git('rev-parse', '--short', 'HEAD') + ('+changes' if git('status', '--porcelain', '.')
                                                  else '')
  except (OSError, subprocess.CalledProcessError):
    return 'unknown'


def _cell():
  """The sweep's `--method` cell at `--rate` (its first task, seed and base)."""
  cells = [c for c in sweep.expand_grid(_CONFIG.value)
           if c.config.method == _METHOD.value and c.config.discovery_rate == _RATE.value]
  if not cells:
    raise app.UsageError(f'--config has no {_METHOD.value} cell at rate {_RATE.value}.')
  return cells[0]


def run_once(output: pathlib.Path) -> dict:
  chosen = _cell()
  config = chosen.config
  mesh = sharding.make_mesh()
  workdir = pathlib.Path(_WORKDIR.value)
  prepared = cell.prepare(config, mesh, workdir=workdir)
  train = cell.train_record(workdir, prepared)
  began = time.perf_counter()
  before, after, unlearned = cell.unlearn_and_evaluate(config, prepared, mesh)
  wall = time.perf_counter() - began
  package = pathlib.Path(rem_jax.__file__).resolve().parent
  entry = {'label': _LABEL.value, 'rem_jax': str(package), 'commit': _commit(package),
           'cell': chosen.key, 'wall_time_s': unlearned.record['wall_time_s'],
           'wall_time_with_evaluation_s': wall, 'train': train,
           'num_train': prepared.views(config.discovery_rate).train.num_examples,
           'num_forget': prepared.views(config.discovery_rate).forget.num_examples,
           'batch_size': prepared.recipe.batch_size, 'training_steps': prepared.recipe.steps,
           'before': before, 'after': after, 'unlearn': unlearned.record,
           'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count()}
  runs = json.loads(output.read_text())['runs'] if output.exists() else []
  files.write_json_atomic(output, {'command': ' '.join(['python'] + sys.argv),
                                   'runs': runs + [entry]})
  print(f'{entry["label"]} ({entry["commit"]}): REM {entry["wall_time_s"]:.1f} s, '
        f'H×U {after["healed_x_utility"]:.4f}')
  return entry


def report(output: pathlib.Path) -> dict:
  """Per label: wall times, mean, metric differences from the first label, and REM's floor."""
  results = json.loads(output.read_text())
  runs = results['runs']
  labels = list(dict.fromkeys(run['label'] for run in runs))
  first = [run for run in runs if run['label'] == labels[0]]
  config = _cell().config
  model = cell.original_model(config)[0]
  size = config.data.image_size
  costs = flop_floors.rem_costs(config.methods[_METHOD.value], model, (size, size, 3))
  summary = {}
  print(f'{"label":<8} {"commit":<9} {"REM wall time per run (s)":<28} {"mean":>7} '
        f'{"vs first":>9} {"max |Δ metric|":>15} {"floor %":>8} {"expanded %":>11} '
        f'{"measured %":>11}')
  for label in labels:
    mine = [run for run in runs if run['label'] == label]
    times = [run['wall_time_s'] for run in mine]
    difference = max(abs(run['after'][m] - other['after'][m])
                     for run in mine for other in first for m in METRICS)
    sizes = flop_floors.Sizes(mine[0]['num_train'], mine[0]['num_forget'],
                              mine[0]['batch_size'], mine[0]['training_steps'], *costs)
    floor = flop_floors.floor_percent(_METHOD.value, mine[0]['unlearn'], sizes)
    # The same passes with drop mode on the expanded model, as REM ran them before.
    expanded = flop_floors.floor_percent(_METHOD.value, mine[0]['unlearn'], dataclasses.replace(
        sizes, drop_cost=sizes.mask_cost))
    train_s = mine[0]['train']['wall_time_full_s'] or mine[0]['train']['wall_time_s']
    measured = 100 * float(np.mean(times)) / train_s
    summary[label] = {'commits': sorted({run['commit'] for run in mine}),
                      'wall_time_s': times, 'mean_wall_time_s': float(np.mean(times)),
                      'max_metric_difference_from_first': difference,
                      'floor_percent_of_training': floor,
                      'drop_mode_on_expanded_percent_of_training': expanded,
                      'percent_of_training': measured}
    ratio = summary[label]['mean_wall_time_s'] / summary[labels[0]]['mean_wall_time_s']
    summary[label]['mean_over_first'] = ratio
    print(f'{label:<8} {",".join(summary[label]["commits"]):<9} '
          f'{" ".join(f"{t:.1f}" for t in times):<28} {np.mean(times):>7.1f} {ratio:>9.3f} '
          f'{difference:>15.2e} {floor:>8.1f} {expanded:>11.1f} {measured:>11.1f}')
  files.write_json_atomic(output, {**results, 'summary': summary,
                                   'report_command': ' '.join(['python'] + sys.argv)})
  return summary


def main(argv):
  del argv
  output = pathlib.Path(_OUTPUT.value)
  if _REPORT.value:
    if not output.exists():
      raise app.UsageError(f'--output: {output} does not exist; run without --report first.')
    report(output)
  else:
    run_once(output)


if __name__ == '__main__':
  app.run(main)
