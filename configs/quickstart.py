"""Quickstart: one complete cell on CPU in a few minutes, on the built-in `shapes` dataset.

    python launch.py --config=configs/quickstart.py --workdir=/tmp/rem_quickstart

Trains a width/8 ResNet-9 (capacity 0.5) on `shapes` with 250 poisoned training images, then
unlearns with `method` (discovery rate 0.5) and prints Healed / Utility before and after.
Switch data with e.g. `--config.dataset=cifar10 --config.data.path=/path/cifar10-jpeg.tar.gz`
(an offline folder or archive) or `--config.dataset=cifar10` (TFDS, prepared). Any field can be
overridden: `--config.seed=1 --config.task=random_label_swap --config.method=no_ul`.
"""

import ml_collections
from ml_collections import config_dict

from rem_jax import methods


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0                          # Fixes corruption, forget ids, init, data order, masks.
  config.dataset = 'shapes'                # shapes | cifar10 | svhn_cropped | imagenette | folder
  config.data = ml_collections.ConfigDict()
  config.data.path = config_dict.placeholder(str)      # Offline folder or .tar.gz.
  config.data.data_dir = config_dict.placeholder(str)  # TFDS data directory.
  config.data.image_size = 32
  config.data.num_train = 5000             # shapes: generated; others: a seeded subset (0: all).
  config.data.num_test = 1000              # Likewise.

  config.task = 'poison_trigger'           # random_label_swap | inter_class_confusion | poison_trigger
  config.num_corrupted = 250               # |D_c| (the paper: 1000 of CIFAR-10's 50,000).
  config.class_pair = (3, 5)               # inter_class_confusion only.
  config.discovery_rate = 0.5              # |D_f| / |D_c|, in (0, 1].
  config.method = 'rem'                    # Any of rem_jax.methods.METHODS (listed below).
  config.methods = ml_collections.ConfigDict()  # One section per method, by name: its defaults.
  for name in sorted(methods.METHODS):     # no_ul etd retrain cf ascent npo scrub bad_teacher
    config.methods[name] = methods.default_config(name)  # potion rem (+ its variants)
    if 'eval_batch_size' in config.methods[name]:
      config.methods[name].eval_batch_size = 256
    if name.startswith('rem'):
      config.methods[name].learning_rate = 0.01  # This small model heals faster at 2x REM's.

  config.base = 'plain'                    # plain | etd (extra units + per-example masks).
  config.p_mem = 0.2                       # ETD / REM mask keep probability.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'resnet9'            # resnet9 | vit
  config.model.num_classes = 10
  config.model.capacity = 0.5
  config.model.expansion = 0.5             # Extra units for ETD (and REM's expansion).
  config.model.width_multiplier = 0.125
  config.model.dtype = 'float32'           # float32 | bfloat16

  config.train = ml_collections.ConfigDict()
  config.train.optimizer = 'sgd'
  config.train.learning_rate = 0.05
  config.train.schedule = 'warmup_linear_decay'
  config.train.steps = 600                 # ~15 epochs of 5000 at batch 128 (400 can miss the poison).
  config.train.batch_size = 128
  config.train.momentum = 0.9
  config.train.weight_decay = 5e-4
  config.train.checkpoint_every = 100
  config.eval_batch_size = 256
  return config
