"""Evaluation in drop mode (mask 0, eval mode, no augmentation): the compiled prediction and
accuracy steps, their loops over a view, and every metric of SPEC §9 for one model on one
corrupted task (`Evaluator`; the metric definitions live in `rem_jax.metrics`).

Nothing is read back inside a loop: accuracies are summed on the device, and the caller decides
when to look (e.g. once per epoch for a stop rule).
"""

from collections.abc import Callable
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rem_jax import masks
from rem_jax import metrics
from rem_jax import sharding
from rem_jax.data import corruptions
from rem_jax.data import pipeline


def logits_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode (mask 0), eval-mode logits of a batch, without augmentation."""
  inputs = pipeline.eval_inputs(images, batch, model.dtype)
  mask = masks.drop_mask(inputs.shape[0], model.mask_size)
  return model.apply(variables, inputs, mask, train=False)


def predict_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode, eval-mode predictions of a batch."""
  return jnp.argmax(logits_step(model, variables, images, batch), -1).astype(jnp.int32)


def probabilities_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode, eval-mode class probabilities (softmax, float32) of a batch."""
  return jax.nn.softmax(logits_step(model, variables, images, batch).astype(jnp.float32), -1)


def accuracy_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode (Σ weight·correct, Σ weight) of a batch against its labels, on the device."""
  correct = (predict_step(model, variables, images, batch) == batch.labels).astype(jnp.float32)
  return jnp.sum(correct * batch.weights), jnp.sum(batch.weights)


@functools.lru_cache(maxsize=64)  # One compiled step per (model, mesh), however many callers.
def jit_accuracy_step(model, mesh) -> Callable:
  """`accuracy_step` compiled for `mesh`; the (sum, count) pair comes back replicated."""
  return jax.jit(lambda variables, images, batch: accuracy_step(model, variables, images, batch),
                 out_shardings=sharding.replicated(mesh))


@functools.lru_cache(maxsize=64)
def jit_predict_step(model, mesh) -> Callable:
  """`predict_step` compiled for `mesh`; predictions stay sharded along the batch."""
  return jax.jit(lambda variables, images, batch: predict_step(model, variables, images, batch),
                 out_shardings=sharding.batch_sharding(mesh))


@functools.lru_cache(maxsize=64)
def jit_probabilities_step(model, mesh) -> Callable:
  """`probabilities_step` compiled for `mesh`; the rows stay sharded along the batch."""
  return jax.jit(
      lambda variables, images, batch: probabilities_step(model, variables, images, batch),
      out_shardings=sharding.batch_sharding(mesh))


def view_accuracy(accuracy_fn: Callable, variables: dict, images, view: pipeline.View,
                  batch_size: int, mesh):
  """Drop-mode (correct, count) over every example of `view`, summed on the device.

  Nothing is read back: the caller decides when to look (e.g. once per epoch for a stop rule).
  """
  pairs = [accuracy_fn(variables, images, batch)
           for batch in view.evaluation_batches(batch_size, mesh)]
  return jax.tree.map(lambda *xs: jnp.sum(jnp.stack(xs)), *pairs)


def predict(predict_fn: Callable, variables: dict, images, view: pipeline.View,
            batch_size: int, mesh):
  """`predict_fn`'s per-example output for every example of `view`, in view order, on the host
  (predictions, int32 (M,); or probabilities, (M, classes))."""
  outputs = [(predict_fn(variables, images, batch), batch.weights)
             for batch in view.evaluation_batches(batch_size, mesh)]
  predictions = jnp.concatenate([p for p, _ in outputs])
  real = jnp.concatenate([w for _, w in outputs]) > 0
  # Padding sits only at the end of the last batch, so the real examples come first, in order.
  # `to_host` gathers the batch-sharded predictions from every process in a multi-process run.
  predictions, real = sharding.to_host((predictions, real))
  return predictions[real]


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
    object.__setattr__(self, '_predict', jit_predict_step(self.model, self.mesh))

  def predictions(self, variables: dict, view: pipeline.View) -> np.ndarray:
    return predict(self._predict, variables, view.images, view, self.batch_size, self.mesh)

  def probabilities(self, variables: dict, view: pipeline.View) -> np.ndarray:
    """Drop-mode class probabilities, float32 (M, classes), in view order."""
    return predict(jit_probabilities_step(self.model, self.mesh), variables, view.images, view,
                   self.batch_size, self.mesh)

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
