"""Quickstart: one complete cell on CPU in a few minutes, on the built-in `shapes` dataset.

    python launch.py --config=configs/quickstart.py --workdir=/tmp/rem_quickstart

Trains a width/8 ResNet-9 (capacity 0.5) on `shapes` with 250 poisoned training images, then
unlearns with `method` (discovery rate 0.5) and prints Healed / Utility before and after.
Switch data with e.g. `--config.dataset=cifar10 --config.data.path=/path/cifar10-jpeg.tar.gz`
(an offline folder or archive) or `--config.dataset=cifar10` (TFDS, prepared). Any field can be
overridden: `--config.seed=1 --config.task=random_label_swap --config.method=no_ul`.
"""

import ml_collections

from rem_jax.experiments import config_lib


def get_config() -> ml_collections.ConfigDict:
  """Every field, commented: `rem_jax.experiments.config_lib.cell_config`."""
  return config_lib.cell_config()
