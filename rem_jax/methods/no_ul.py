"""No UL: the trained model as it is (the "no unlearning" reference point of every table)."""

from rem_jax.methods import base


def no_ul(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  del task, config  # Nothing to do.
  return base.Unlearned(original.model, original.variables,
                        {'steps': 0, 'epochs': 0, 'wall_time_s': 0.0})
