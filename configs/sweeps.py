"""Pieces the sweep configs share: the sweep layout and the `runlocal` shrink.

A sweep config is `{experiment: 'sweep', cell, axes, method_axes}` (see
`rem_jax.experiments.sweep`). `runlocal` turns any of them into a smoke run of a few minutes on a
CPU: the built-in `shapes` data at 16x16, a width/8 model trained for 60 steps, the first two
values of each axis but `method`, one epoch per method (two for REM).
"""

import ml_collections

from configs import quickstart


def parse_arg(arg: str, allowed, config_file: str) -> set[str]:
  """The comma-separated arguments of `--config=FILE:ARG`; an unknown one is an error."""
  parts = {part for part in arg.split(',') if part}
  unknown = sorted(parts - set(allowed))
  if unknown:
    raise ValueError(f'{config_file}: arguments {unknown} are unknown; allowed: '
                     f'{sorted(allowed)}.')
  return parts


def cell_config(**overrides) -> ml_collections.ConfigDict:
  """The quickstart cell with dotted-field `overrides` (`{'model.capacity': 1.0}`)."""
  config = quickstart.get_config()
  for path, value in overrides.items():
    *parents, leaf = path.split('.')
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def sweep_config(cell: ml_collections.ConfigDict, axes: dict,
                 method_axes: dict | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = 'sweep'
  config.cell = cell
  config.axes = ml_collections.ConfigDict(axes)
  config.method_axes = ml_collections.ConfigDict(method_axes or {})
  return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few-minute CPU smoke version of a sweep config."""
  cell = config.cell
  cell.dataset = 'shapes'
  cell.data.path = None
  cell.data.data_dir = None
  cell.data.image_size = 16
  cell.data.num_train = 512
  cell.data.num_test = 128
  cell.num_corrupted = 32
  cell.model.name = 'resnet9'
  cell.model.width_multiplier = 0.125
  cell.model.dtype = 'float32'
  cell.train.steps = 60
  cell.train.batch_size = 64
  cell.train.checkpoint_every = 30
  cell.eval_batch_size = 128
  for name in cell.methods:
    settings = cell.methods[name]
    if 'epochs' in settings:
      settings.epochs = 2 if name.startswith('rem') else 1
    if 'eval_batch_size' in settings:
      settings.eval_batch_size = 128
    if name == 'scrub':
      settings.msteps = 1
  for name in list(config.axes):
    if name != 'method' and not isinstance(config.axes[name], ml_collections.ConfigDict):
      config.axes[name] = tuple(config.axes[name])[:2]
  return config
