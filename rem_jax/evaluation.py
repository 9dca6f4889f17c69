"""Every metric of SPEC §9 for one model on one corrupted task, in drop mode.

Predictions come from `training.predict` (mask 0, eval mode, no augmentation); the metric
definitions live in `rem_jax.metrics`.
"""

import dataclasses

import numpy as np

from rem_jax import metrics
from rem_jax import training
from rem_jax.data import corruptions
from rem_jax.data import pipeline


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """Evaluates models of one architecture on one task's views (one compile per model).

  Attributes:
    model: the architecture (its extra units are switched off: drop mode).
    views: the task's views.
    record: the corruption record (task, class pair, poison target); None where D_c is unknown
      (then only `predictions` is available).
    mesh: the device mesh.
    batch_size: evaluation batch size (a multiple of the mesh's data axis).
  """
  model: object
  views: pipeline.Views
  record: corruptions.CorruptionRecord | None
  mesh: object
  batch_size: int

  def __post_init__(self):
    object.__setattr__(self, '_predict', training.jit_predict_step(self.model, self.mesh))

  def predictions(self, variables: dict, view: pipeline.View) -> np.ndarray:
    return training.predict(self._predict, variables, view.images, view, self.batch_size,
                            self.mesh)

  def __call__(self, variables: dict) -> dict[str, float]:
    """Healed, Utility, Healed x Utility and the secondary metrics, as floats in [0, 1]."""
    views, record = self.views, self.record
    on = lambda view: (self.predictions(variables, view), view.labels)
    corrupted_predictions, clean_labels = on(views.corrupted)
    healed = metrics.healed(corrupted_predictions, clean_labels)
    test_predictions, test_labels = on(views.test)
    utility = metrics.utility(test_predictions, test_labels)
    result = {
        'healed': healed,
        'utility': utility,
        'healed_x_utility': healed * utility,
        'forget_accuracy': metrics.accuracy(*on(views.forget)),
        'retain_accuracy': metrics.accuracy(*on(views.retain)),
        # How much of the corruption the model learned (the benchmark's precondition).
        'corrupted_label_accuracy': metrics.accuracy(corrupted_predictions,
                                                     record.corrupted_labels),
    }
    if record.task == 'poison_trigger':
      triggered_predictions, triggered_labels = on(views.test_triggered)
      result['healed_test'] = metrics.accuracy(triggered_predictions, triggered_labels)
      result['poison_success_test'] = metrics.poison_success(
          triggered_predictions, triggered_labels, target=record.poison_target)
      result['poison_success_corrupted'] = metrics.poison_success(
          corrupted_predictions, clean_labels, target=record.poison_target)
    elif record.task == 'inter_class_confusion':
      pair = record.class_pair
      result['healed_test'] = metrics.class_accuracy(test_predictions, test_labels, pair)
      untouched = [c for c in range(record.num_classes) if c not in pair]
      result['utility_untouched'] = metrics.class_accuracy(test_predictions, test_labels,
                                                           untouched)
    return result
