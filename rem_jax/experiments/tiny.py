"""`REM_JAX_TINY=1`: the README's quickstart, unlearning and diagnosis commands in seconds.

configs/quickstart.py, configs/unlearn.py and configs/diagnose.py pass their config through
`shrink_if_asked`. With the variable set to 1 all three shrink alike, so the unlearning and the
diagnosis name the data and batch sizes the tiny quickstart model was trained with, and
tests/test_commands.py can run the README's commands as written (as REM_JAX_NOTEBOOK_TINY does
for the notebooks). Unset, every config is unchanged.
"""

import os

import ml_collections

ENV = 'REM_JAX_TINY'
_EVAL_BATCH_SIZE = 64  # The config's and every method's.
# 16x16 shapes, 256 training images (32 poisoned), 8 steps of 32; REM (the commands' method)
# for one epoch after a flush of at most two, which also caps the diagnosis's co-forgetting
# flush. A field a config lacks is skipped (a cell has no `batch_size`, an unlearning config no
# `train`).
_FIELDS = {'data.image_size': 16, 'data.num_train': 256, 'data.num_test': 64,
           'num_corrupted': 32, 'train.steps': 8, 'train.batch_size': 32,
           'train.checkpoint_every': 8, 'batch_size': 32, 'eval_batch_size': _EVAL_BATCH_SIZE,
           'bootstrap': 20, 'methods.rem.epochs': 1, 'methods.rem.max_flush_epochs': 2}


def asked() -> bool:
  return os.environ.get(ENV) == '1'


def shrink_if_asked(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (a cell, unlearning or diagnosis config), shrunk in place when `REM_JAX_TINY=1`."""
  if not asked():
    return config
  for path, value in _FIELDS.items():
    *sections, name = path.split('.')
    parent = config
    for section in sections:
      parent = parent.get(section, {})
    if name in parent:
      parent[name] = value
  for settings in config.methods.values():
    if 'eval_batch_size' in settings:
      settings.eval_batch_size = _EVAL_BATCH_SIZE
  return config
