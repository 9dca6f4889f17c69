"""No UL: the trained model as it is (the "no unlearning" reference point of every table).

Source: none (the reference point of every unlearning paper). Loss: none. Stop rule: none.
Defaults: no settings (an unknown setting is an error).
"""

import ml_collections

from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict()


def unchanged(original: base.TrainedModel, task: base.Task | None) -> base.Unlearned:
  """The trained model in drop mode, as the result of a method that does nothing (No UL, ETD):
  an ETD base comes back pruned (`common.drop_mode_start`), the same function at its base's
  cost. `task` gives the image shape (None: the model's own)."""
  image_shape = None if task is None else task.views.train.images.shape[1:]
  model, variables = common.drop_mode_start(original, image_shape)
  return base.Unlearned(model, variables, {'steps': 0, 'epochs': 0, 'wall_time_s': 0.0,
                                           'wall_time_without_evaluation_s': 0.0})


def no_ul(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  common.resolve_settings(config, default_config(), 'no_ul')
  return unchanged(original, task)
