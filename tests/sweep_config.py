"""A tiny sweep for the runner's tests: 2 seeds x 2 rates x 2 methods on 16x16 shapes.

    python launch.py --config=tests/sweep_config.py --workdir=/tmp/tiny_sweep

`:cluster` is the cluster tests' grid (tests/test_cluster.py): 2 tasks x 3 methods at one rate,
so 2 original models and 6 cells, and reports that span tasks (claims.md among them).
"""

from rem_jax.experiments import config_lib


def get_config(arg: str = ''):
  config_lib.parse_arg(arg, ('cluster',), 'tests/sweep_config.py')
  if arg == 'cluster':
    axes = {'task': ('poison_trigger', 'random_label_swap'), 'discovery_rate': (1.0,),
            'method': ('no_ul', 'npo', 'ascent')}
  else:
    axes = {'seed': (0, 1), 'discovery_rate': (0.5, 1.0), 'method': ('no_ul', 'npo')}
  config = config_lib.runlocal(config_lib.sweep_config(config_lib.cell_config(), axes))
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
