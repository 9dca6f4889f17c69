"""The benchmark's metrics (SPEC §9), from drop-mode predictions.

Every metric of a model is measured in drop mode (mask 0: the extra units are off), eval mode,
without augmentation. Accuracies are (sum, count) pairs underneath so that batches, devices and
runs aggregate exactly; the functions here take whole-view predictions and return floats.

- Healed: accuracy on all of D_c (not only the discovered D_f) against the *clean* labels;
  for the poison task the D_c images carry the trigger.
- Utility: accuracy on the clean test set (all classes, no trigger).
- Healed x Utility: their product, per run (then aggregated over runs).
- Poison success (diagnostic): share of triggered images of classes != target predicted as the
  target class.
- Healed on test: poison: accuracy on triggered test images of classes != target vs clean
  labels; inter-class confusion: test accuracy on the two confused classes.
- Utility on untouched classes: inter-class confusion: test accuracy on the other classes.
- Corrupted-label accuracy (diagnostic): accuracy on D_c against the *corrupted* labels (poison:
  triggered), i.e. how much of the corruption the model has learned; the benchmark's
  precondition for the label-swap tasks.
"""

import math

import numpy as np


def accuracy_counts(predictions, labels, weights=None) -> tuple[float, float]:
  """(Σ w·[prediction == label], Σ w): an accuracy that adds up across batches and runs."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  if predictions.shape != labels.shape:
    raise ValueError(f'predictions {predictions.shape} and labels {labels.shape} must have the '
                     'same shape.')
  weights = np.ones(labels.shape, np.float64) if weights is None else np.asarray(weights)
  return float(np.sum(weights * (predictions == labels))), float(np.sum(weights))


def accuracy(predictions, labels, weights=None) -> float:
  """Weighted accuracy; NaN for an empty set (there is nothing to be accurate on)."""
  correct, count = accuracy_counts(predictions, labels, weights)
  return correct / count if count else float('nan')


def healed(corrupted_predictions, clean_labels) -> float:
  """Accuracy on D_c against the clean labels."""
  return accuracy(corrupted_predictions, clean_labels)


def utility(test_predictions, test_labels) -> float:
  """Accuracy on the clean test set."""
  return accuracy(test_predictions, test_labels)


def poison_success(triggered_predictions, clean_labels, target: int = 0) -> float:
  """Share of triggered images whose clean class is not `target` that are predicted `target`."""
  clean_labels = np.asarray(clean_labels)
  outside = clean_labels != target
  return accuracy(np.asarray(triggered_predictions)[outside],
                  np.full(int(outside.sum()), target))


def class_accuracy(predictions, labels, classes) -> float:
  """Accuracy restricted to examples whose label is in `classes`."""
  labels = np.asarray(labels)
  inside = np.isin(labels, np.asarray(classes))
  return accuracy(np.asarray(predictions)[inside], labels[inside])


def mean_sem(values) -> tuple[float, float]:
  """(mean, standard error of the mean with ddof 1); the SEM of one value is NaN."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    raise ValueError('mean_sem: no values.')
  sem = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else math.nan
  return float(values.mean()), sem
