"""Quickstart: one complete cell on CPU in a few minutes, on the built-in `shapes` dataset.

    python launch.py --config=configs/quickstart.py --workdir=/tmp/rem_quickstart
    python launch.py --config=configs/quickstart.py:sweep --workdir=/tmp/rem_quickstart_sweep

The first trains a width/8 ResNet-9 (capacity 0.5) on `shapes` with 250 poisoned training
images, then unlearns with `method` (discovery rate 0.5) and prints Healed / Utility before and
after; the ids it knew of (D_f) go to the workdir's `found_ids.txt`, the `forget_ids` of
configs/unlearn.py and configs/diagnose.py. The second (`:sweep`) trains the same model once and
runs REM, gradient ascent and NPO at discovery rates 0.2, 0.5 and 1.0: nine cells, a table and
`reports/heatmaps.png`.

Switch data with e.g. `--config.dataset=cifar10 --config.data.path=/path/cifar10-jpeg.tar.gz`
(an offline folder or archive) or `--config.dataset=cifar10` (TFDS, prepared). Any field can be
overridden: `--config.seed=1 --config.task=random_label_swap --config.method=no_ul` (in the
sweep: `--config.cell.seed=1`). `REM_JAX_TINY=1` in the environment shrinks this config,
configs/unlearn.py and configs/diagnose.py alike to seconds (`rem_jax.experiments.tiny`).
"""

import ml_collections

from rem_jax.experiments import config_lib
from rem_jax.experiments import tiny

SWEEP_METHODS = ('rem', 'ascent', 'npo')
SWEEP_RATES = (0.2, 0.5, 1.0)


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Every field, commented: `rem_jax.experiments.config_lib.cell_config`."""
  cell = tiny.shrink_if_asked(config_lib.cell_config())
  if 'sweep' in config_lib.parse_arg(arg, ('sweep',), 'configs/quickstart.py'):
    return config_lib.sweep_config(cell, {'discovery_rate': SWEEP_RATES, 'method': SWEEP_METHODS})
  return cell
