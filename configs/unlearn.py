"""The practitioner's path: unlearn the corrupted examples you found from a model you trained.

    python launch.py --config=configs/unlearn.py --workdir=/tmp/rem_unlearned \
      --config.checkpoint=/tmp/rem_quickstart \
      --config.forget_ids=/tmp/rem_quickstart/found_ids.txt \
      --config.corruption=/tmp/rem_quickstart/corruption.json

`checkpoint` is a `launch.py` workdir (its latest training checkpoint) or a `.msgpack` file of
Flax variables ({'params', 'batch_stats'}); `model`, `base` and `p_mem` must describe it (a
width mismatch is an error naming the leaf). `forget_ids` lists the dataset ids of the corrupted
examples you found (.npy, .json or text with one id per line). The data fields name the training
data as you have it. The workdir receives the unlearned variables (`checkpoints/0`), the ids used
(`forget_ids.json`) and `results.json` with Utility and the accuracy on D_f and D_r before and
after (D_c is unknown here, so there is no Healed).

That command unlearns the quickstart's D_f from its model: `corruption` re-creates the poisoned
training images it was trained on from the generated clean ones (leave it unset when your data
is corrupted on disk), `found_ids.txt` is the quickstart's D_f.
"""

import ml_collections

from rem_jax.experiments import config_lib
from rem_jax.experiments import tiny


def get_config() -> ml_collections.ConfigDict:
  """Every field: `rem_jax.experiments.config_lib.unlearn_config`."""
  return tiny.shrink_if_asked(config_lib.unlearn_config())
