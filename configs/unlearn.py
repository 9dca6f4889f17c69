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
from ml_collections import config_dict

from rem_jax.experiments import config_lib


def get_config() -> ml_collections.ConfigDict:
  base = config_lib.cell_config()
  config = ml_collections.ConfigDict()
  config.experiment = 'unlearn'
  config.seed = base.seed
  config.checkpoint = config_dict.placeholder(str)  # launch.py workdir or .msgpack variables.
  config.forget_ids = config_dict.placeholder(str)  # .npy, .json or one id per line.
  # Data as you have it. `corruption` (a corruption.json) re-creates a benchmark's corrupted
  # training set from clean data; leave it unset when your data is corrupted on disk.
  config.dataset = base.dataset
  config.data = base.data
  config.corruption = config_dict.placeholder(str)
  config.method = base.method
  config.methods = base.methods
  config.base = base.base                  # plain | etd (an ETD checkpoint brings its masks).
  config.p_mem = base.p_mem
  config.model = base.model
  config.batch_size = base.train.batch_size
  config.eval_batch_size = base.eval_batch_size
  return config
