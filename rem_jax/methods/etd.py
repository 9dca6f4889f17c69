"""ETD: the model trained with Extra units and per-example masks (SPEC §6), evaluated as it is.

Source: the REM paper (Schoepf et al., ICLR 2026): training each example through all base units
and its own Bernoulli(p_mem) mask over the extra units spreads memorisation into units that
inference drops. As an unlearning method it does nothing after training: the ETD base in drop
mode. Loss: none (ETD is a training recipe, `base='etd'`). Stop rule: none. Defaults: no
settings.
"""

import ml_collections

from rem_jax.methods import base
from rem_jax.methods import common
from rem_jax.methods import no_ul


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict()


def etd(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  common.resolve_settings(config, default_config(), 'etd')
  if original.mask_config is None:
    raise ValueError("method 'etd' is an ETD-trained model as it is, and this model was trained "
                     "without masks; set base='etd' (with model.expansion > 0).")
  return no_ul.unchanged(original, task)
