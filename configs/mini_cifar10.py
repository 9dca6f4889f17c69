"""The CPU mini benchmark on the offline CIFAR-10 mirror: every method on the poison task.

    python launch.py --config=configs/mini_cifar10.py --workdir=workdirs/mini_cifar10
    python -m rem_jax.experiments.reports --results=workdirs/mini_cifar10/results.jsonl \
        --outdir=benchmarks/results/mini_cifar10 --utility_floor=0.5

Plain capacity-0.5 ResNet-9 at width/4 (trunk widths 8, 16, 32, 16) trained for
30 epochs (1170 steps, batch 256, SGD lr 0.05) on a seeded 10,000-image subset of the mirror,
2,000 test images; 200 poisoned training images; discovery rates 0.2, 0.5, 1.0; methods no_ul,
retrain, cf, ascent, npo, scrub, bad_teacher, potion, rem; seed 0. Measured: training 17 min
and about 40 min per rate while other jobs shared the 2 cores (REM 16 min, Retrain 10-12, SCRUB
4-9, Bad Teacher 5-6, CF 4, the rest under a minute): about 2 hours alone on 2 CPU cores.

Why only the poison task: measured on this CPU setting, width/4 reaches test accuracy 0.62 and
learns a 200-image poison trigger (success 0.76 on D_c) but memorises almost none of 200
swapped labels (0.05), so the label-swap tasks' preconditions fail; `:swaps` adds them on a
2,000-image subset trained for 100 epochs (unverified: the reports check and show whether
their preconditions hold). The reports leave out any task whose precondition fails.

Arguments (`--config=configs/mini_cifar10.py:ARG`, combinable): `swaps` (all three tasks at
the smaller size), `runlocal` (a smoke run on the built-in shapes data, a few minutes).
"""

import pathlib

from rem_jax.experiments import config_lib

MIRROR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
METHODS = ('no_ul', 'retrain', 'cf', 'ascent', 'npo', 'scrub', 'bad_teacher', 'potion', 'rem')


def get_config(arg: str = ''):
  parts = config_lib.parse_arg(arg, ('swaps', 'runlocal'), 'configs/mini_cifar10.py')
  cell = config_lib.cell_with(**{
      'dataset': 'cifar10', 'data.path': str(MIRROR), 'data.num_train': 10_000,
      'data.num_test': 2_000, 'num_corrupted': 200, 'model.width_multiplier': 0.25,
      'train.steps': 1170, 'train.batch_size': 256, 'train.learning_rate': 0.05,
      'train.checkpoint_every': 234, 'eval_batch_size': 500})
  tasks = ('poison_trigger',)
  if 'swaps' in parts:
    tasks = ('poison_trigger', 'inter_class_confusion', 'random_label_swap')
    cell.data.num_train = 2_000
    cell.num_corrupted = 100
    cell.train.steps = 800  # 100 epochs of 2,000 at batch 256.
    cell.train.checkpoint_every = 200
  config = config_lib.sweep_config(cell, {
      'seed': (0,), 'base': ('plain',), 'task': tasks, 'discovery_rate': (0.2, 0.5, 1.0),
      'method': METHODS})
  return config_lib.runlocal(config) if 'runlocal' in parts else config
