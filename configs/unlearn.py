"""The practitioner's path: unlearn the corrupted examples you found from a model you trained.

    python launch.py --config=configs/unlearn.py --workdir=/tmp/rem_unlearned \
      --config.checkpoint=/tmp/rem_quickstart --config.forget_ids=/path/to/ids.txt

`checkpoint` is a `launch.py` workdir (its latest training checkpoint) or a `.msgpack` file of
Flax variables ({'params', 'batch_stats'}); `model`, `base` and `p_mem` must describe it (a
width mismatch is an error naming the leaf). `forget_ids` lists the dataset ids of the corrupted
examples you found (.npy, .json or text with one id per line). The data fields name the training
data as you have it. The workdir receives the unlearned variables (`checkpoints/0`), the ids used
(`forget_ids.json`) and `results.json` with Utility and the accuracy on D_f and D_r before and
after (D_c is unknown here, so there is no Healed).

To replay a quickstart run: `--config.checkpoint=/tmp/rem_quickstart
--config.corruption=/tmp/rem_quickstart/corruption.json` and a forget-ids file of ids from it.
"""

import ml_collections

from rem_jax.experiments import config_lib


def get_config() -> ml_collections.ConfigDict:
  """Every field: `rem_jax.experiments.config_lib.unlearn_config`."""
  return config_lib.unlearn_config()
