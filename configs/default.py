"""Defaults every rem_jax config starts from: the paper's ResNet-9 at 50 % capacity.

    python launch.py --config=configs/default.py --workdir=/tmp/rem_default

Variants import `get_config()` and override a few fields; any field can also be overridden on
the command line, e.g. `--config.model.width_multiplier=0.125 --config.model.dtype=bfloat16`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # One seed fixes data order, corruption ids, forget subsets, masks and initialisation.
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'resnet9'          # 'resnet9' or 'vit'.
  config.model.num_classes = 10
  config.model.capacity = 0.5            # Base widths: fraction of the full widths, in (0, 1].
  config.model.expansion = 0.0           # Extra units as a fraction of the full widths, >= 0.
  config.model.width_multiplier = 1.0    # Scales every width; 1/8 for CPU-sized models.
  config.model.dtype = 'float32'         # Compute dtype: 'float32' or 'bfloat16' (GPU).
  config.image_size = 32
  return config
