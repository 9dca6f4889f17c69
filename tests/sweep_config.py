"""A tiny sweep for the runner's tests: 2 seeds x 2 rates x 2 methods on 16x16 shapes.

    python launch.py --config=tests/sweep_config.py --workdir=/tmp/tiny_sweep
"""

from rem_jax.experiments import config_lib


def get_config():
  config = config_lib.runlocal(config_lib.sweep_config(
      config_lib.cell_config(), {'seed': (0, 1), 'discovery_rate': (0.5, 1.0),
                             'method': ('no_ul', 'npo')}))
  cell = config.cell
  cell.data.num_train = 256
  cell.data.num_test = 64
  cell.num_corrupted = 16
  cell.train.steps = 16
  cell.train.batch_size = 32
  cell.train.checkpoint_every = 8
  cell.eval_batch_size = 64
  cell.methods.npo.eval_batch_size = 64
  return config
