"""What a slice of the grid costs: per method, wall time, compilations and memory, by rate.

    python benchmarks/grid_cost.py --config=configs/mini_cifar10.py:runlocal   # CPU, minutes
    python benchmarks/grid_cost.py --config=configs/paper_resnet9_cifar10.py:table1 \
        --rates=0.1,0.5,1.0 --output=benchmarks/results/grid_cost_gpu.json      # GPU
    python benchmarks/grid_cost.py --records=benchmarks/results/mini_cifar10/results.jsonl \
        --output=benchmarks/results/mini_cifar10/floors.json    # a finished sweep's cells

Takes the first task, seed and base of a sweep config, trains its original model once, then runs
every method of the grid at each of --rates in turn and reports per method: the wall time of each
run (device-synchronised) and relative to the training run, next to the paper's A.8 and to the
method's FLOP floor (`rem_jax.experiments.flop_floors`: the passes its algorithm cannot avoid, as a
share of the training run's work; `x floor` is the measured time over the floor's); the number
of XLA compilations (`rem_jax.compilation.CompileCounter`) of the first rate and of all later
ones together, which must be 0 (a compile per rate would multiply over a 3,000-cell grid); and
the peak device memory where the backend reports it (GPUs; CPUs do not). Prints a table and
writes JSON with the device string and the command.
"""

import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import ml_collections
from ml_collections import config_flags

from rem_jax import compilation, files, sharding
from rem_jax.experiments import cell, flop_floors, reports, store, sweep

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/mini_cifar10.py:runlocal',
                                          'A sweep config.')
_RATES = flags.DEFINE_list('rates', ['0.2', '0.5', '1.0'], 'Discovery rates, in run order.')
_RECORDS = flags.DEFINE_string(
    'records', '', "A sweep's results.jsonl: instead of running a slice, report its recorded "
    "cells' times against their floors.")
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/grid_cost_cpu.json', 'JSON path.')


def peak_memory_bytes() -> int | None:
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get('peak_bytes_in_use')


def from_records(path: pathlib.Path) -> None:
  """Each recorded cell's time against its floor, both as % of its original's training run."""
  records = [r for r in store.ResultStore(path).read() if 'after' in r]
  if not records:
    raise app.UsageError(f'--records: {path} holds no finished cell.')
  config = ml_collections.ConfigDict(records[0]['config'])
  size = config.data.image_size
  costs = flop_floors.rem_costs(config.methods.rem, cell.original_model(config)[0],
                                (size, size, 3))
  rows = []
  for record in sorted(records, key=lambda r: (r['variant'], r['discovery_rate'])):
    config = ml_collections.ConfigDict(record['config'])
    num_train = record.get('num_train') or config.data.num_train
    if not num_train:
      raise app.UsageError(f'--records: {record["cell"]} records no training-set size.')
    sizes = flop_floors.Sizes(num_train, record['num_forget'], config.train.batch_size,
                              config.train.steps, *costs)
    floor = flop_floors.floor_percent(record['method'], record['unlearn'], sizes)
    train_s = record['train']['wall_time_full_s'] or record['train']['wall_time_s']
    measured = 100 * record['unlearn']['wall_time_s'] / train_s
    rows.append({'cell': record['cell'], 'variant': record['variant'],
                 'discovery_rate': record['discovery_rate'],
                 'percent_of_training': measured, 'floor_percent_of_training': floor,
                 'times_floor': measured / floor if floor else None,
                 'paper_percent': reports.PAPER_COST_PERCENT.get(record['method'])})
  print(f'Forward FLOPs over the original\'s: REM\'s mask mode {costs[0]:.2f}x, drop mode '
        f'{costs[1]:.2f}x.')
  print(f'{"method":<14} {"rate":>5} {"% of training":>14} {"floor %":>8} {"x floor":>8} '
        f'{"paper %":>8}')
  for row in rows:
    ratio = '-' if row['times_floor'] is None else f'{row["times_floor"]:.2f}'
    paper = '' if row['paper_percent'] is None else f'{row["paper_percent"]:.1f}'
    print(f'{row["variant"]:<14} {row["discovery_rate"]:>5} {row["percent_of_training"]:>14.1f} '
          f'{row["floor_percent_of_training"]:>8.1f} {ratio:>8} {paper:>8}')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv), 'records': str(path),
      'device': records[0]['device'], 'rem_mask_cost': costs[0], 'rem_drop_cost': costs[1],
      'results': rows})


def main(argv):
  del argv
  if _RECORDS.value:
    return from_records(pathlib.Path(_RECORDS.value))
  grid = sweep.expand_grid(_CONFIG.value)
  rates = [float(rate) for rate in _RATES.value]
  first = grid[0]
  methods = list(dict.fromkeys(c.variant for c in grid))
  cells = {c.variant: c for c in grid if c.original_key == first.original_key}
  mesh = sharding.make_mesh()
  config = first.config
  prepared = cell.prepare(config, mesh, rates=rates)
  train_s = prepared.train_record['wall_time_s']
  costs = flop_floors.rem_costs(config.methods.rem, prepared.original.model,
                                prepared.splits.train.images.shape[1:])

  def sizes(rate):
    views = prepared.views(rate)
    return flop_floors.Sizes(views.train.num_examples, views.forget.num_examples,
                             prepared.recipe.batch_size, prepared.recipe.steps, *costs)

  rows = {}
  for variant in methods:
    if variant not in cells:
      continue
    times, compiles, floor_percents = [], [], []
    for rate in rates:
      cell_config = cells[variant].config
      cell_config.discovery_rate = rate
      print(f'{variant} at rate {rate} ...', file=sys.stderr, flush=True)
      with compilation.CompileCounter() as counter:
        began = time.perf_counter()
        _, _, unlearned = cell.unlearn_and_evaluate(cell_config, prepared, mesh)
        times.append(time.perf_counter() - began)
      compiles.append(counter.count)
      floor_percents.append(flop_floors.floor_percent(cells[variant].method, unlearned.record,
                                                 sizes(rate)))
      del unlearned
    method = cells[variant].method
    rows[variant] = {
        'wall_time_s': times, 'compiles_first_rate': compiles[0],
        'compiles_later_rates': sum(compiles[1:]),
        'percent_of_training': [100 * t / train_s for t in times],
        'floor_percent_of_training': floor_percents,
        'times_floor': [100 * t / train_s / f if f else None
                        for t, f in zip(times, floor_percents)],
        'paper_percent': reports.PAPER_COST_PERCENT.get(method),
        'peak_memory_bytes': peak_memory_bytes()}
  print(f'training: {train_s:.1f} s ({prepared.recipe.steps} steps)')
  print(f'Forward FLOPs over the original\'s: REM\'s mask mode {costs[0]:.2f}x, drop mode '
        f'{costs[1]:.2f}x.')
  print(f'{"method":<14} {"compiles (1st / later)":>22} {"% of training per rate":>24} '
        f'{"floor %":>24} {"x floor":>20} {"paper %":>8}')
  numbers = lambda values, form: ' '.join('     -' if v is None else format(v, form)
                                          for v in values)
  for variant, row in rows.items():
    paper = '' if row['paper_percent'] is None else f'{row["paper_percent"]:.1f}'
    print(f'{variant:<14} {row["compiles_first_rate"]:>12} / {row["compiles_later_rates"]:<7} '
          f'{numbers(row["percent_of_training"], "6.1f"):>24} '
          f'{numbers(row["floor_percent_of_training"], "6.1f"):>24} '
          f'{numbers(row["times_floor"], "6.1f"):>20} {paper:>8}')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv), 'rates': rates, 'cell': first.key,
      'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count(),
      'train': prepared.train_record, 'rem_mask_cost': costs[0], 'rem_drop_cost': costs[1],
      'results': rows})


if __name__ == '__main__':
  app.run(main)
