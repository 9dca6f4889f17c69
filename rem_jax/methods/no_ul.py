"""No UL: the trained model as it is (the "no unlearning" reference point of every table).

Source: none (the reference point of every unlearning paper). Loss: none. Stop rule: none.
Defaults: no settings (an unknown setting is an error).
"""

import ml_collections

from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict()


def unchanged(original: base.TrainedModel) -> base.Unlearned:
  """The trained model, as the result of a method that does nothing (No UL, ETD)."""
  return base.Unlearned(original.model, original.variables,
                        {'steps': 0, 'epochs': 0, 'wall_time_s': 0.0,
                         'wall_time_without_evaluation_s': 0.0})


def no_ul(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  del task  # Nothing to do.
  common.resolve_settings(config, default_config(), 'no_ul')
  return unchanged(original)
