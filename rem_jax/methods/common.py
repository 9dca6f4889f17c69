"""Machinery every unlearning method shares: optimizers, accuracy on a view, stop rule, selection.

A method's loop is Python between epochs and compiled code inside them: an epoch is a sequence
of calls to one jitted step (`rem_jax.training.run_epoch`), accuracies are summed on the device
(`Accuracy`) and read once per epoch, which is where the data-dependent decisions (stop when
Acc(D_f) <= gamma, keep the best iteration) are made. Shapes never depend on the forget set, so
every discovery rate reuses the same compiled steps.
"""

import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np

from rem_jax import sharding
from rem_jax import training
from rem_jax.data import pipeline

def check_gamma(gamma: float) -> float:
  if not 0.0 < gamma < 1.0:
    raise ValueError(f'gamma={gamma!r} must lie in (0, 1): it is the forget-set accuracy below '
                     'which the forget set counts as forgotten.')
  return gamma


def check_beta(beta: float) -> float:
  if not beta > 0:
    raise ValueError(f'beta={beta!r} must be > 0.')
  return beta


def round_to_devices(batch_size: int, mesh) -> int:
  """`batch_size` rounded up to a (positive) multiple of the device count."""
  devices = sharding.data_parallel_size(mesh)
  return max(devices, -(-batch_size // devices) * devices)


def shared_batch_size(requested: int, num_examples: int, mesh) -> int:
  """min(requested, num_examples) rounded up to a multiple of the device count.

  Used for loops over a small set (the forget set): a batch larger than the set would repeat
  examples within one step, and a size derived from |D_c| rather than |D_f| keeps one compiled
  step for every discovery rate.
  """
  return round_to_devices(min(requested, num_examples), mesh)


@dataclasses.dataclass(frozen=True)
class Accuracy:
  """Drop-mode accuracy of a model on views, summed on the device (one compile per model)."""
  model: object
  mesh: object
  batch_size: int

  def __post_init__(self):
    object.__setattr__(self, '_step', training.jit_accuracy_step(self.model, self.mesh))

  def __call__(self, variables: dict, view: pipeline.View) -> float:
    """Reads the accuracy back (a host synchronisation: call it between epochs)."""
    correct, count = training.view_accuracy(self._step, variables, view.images, view,
                                            self.batch_size, self.mesh)
    return float(correct) / float(count)


def proxy(retain_accuracy: float, forget_accuracy: float, gamma: float) -> float:
  """The training-data selection proxy: Acc(D_r) * (1 - max(Acc(D_f), gamma))."""
  return retain_accuracy * (1.0 - max(forget_accuracy, gamma))


class BestIteration:
  """Keeps the variables of the iteration with the highest proxy (ties: the earlier one)."""

  def __init__(self):
    self.score, self.iteration, self.variables = -np.inf, None, None

  def offer(self, iteration: int, score: float, variables: dict) -> None:
    if score > self.score:
      # A host copy: the live state is donated by the next step.
      self.score, self.iteration, self.variables = score, iteration, jax.device_get(variables)


class Stopwatch:
  """Wall time of a method with and without its proxy evaluations (device-synchronised)."""

  def __init__(self):
    self.began = time.perf_counter()
    self.evaluation_s = 0.0

  def evaluating(self, fn: Callable, *args):
    began = time.perf_counter()
    result = fn(*args)
    self.evaluation_s += time.perf_counter() - began
    return result

  def record(self) -> dict:
    total = time.perf_counter() - self.began
    return {'wall_time_s': total, 'wall_time_without_evaluation_s': total - self.evaluation_s}
