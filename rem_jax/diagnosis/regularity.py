"""How much the found corrupted examples share structure (SPEC's "regularity").

Jiang et al.'s consistency score asks how well a model trained without an example predicts its
label. Here probe models trained with a fold of the training set held out predict the held-out
examples, and the score is how predictable the found set D_f's given labels are relative to
clean labels, on a scale from chance to clean:

    score = min(1, (A(D_f) − c) / (A(D_r) − c)),   c = (1 − A(D_r)) / (classes − 1),

A the probes' held-out agreement with the given labels and c the agreement a label unrelated to
the image gets (a held-out miss spread over the other classes). A poison (a shared trigger) is
taught by the other poisoned examples: 1. Random label swaps share nothing: near 0.
Inter-class confusion lies in between. The cap is the scale's meaning, not a tuned value: at 1
the found labels are as predictable as clean ones, a fully shared pattern; above it the ratio
measures how much easier the pattern is than the dataset's classes (a trigger on CIFAR-10
scored 1.1-1.9, on the easy `shapes` data 1.0), which made an uncapped ratio place a `shapes`
poison in the medium row of a map measured on CIFAR-10.

A found set of clean examples is as predictable as clean labels too: the score alone cannot tell
a shared corruption from no corruption. `placeable` adds the evidence that the found set
shares a pattern the model acts on: co-forgetting's calibration (a flush of half of D_f singles
out the other half among the candidates, `suspects.calibrate`). A score above the low row
without it is "cannot tell".
"""

import math

import numpy as np

# The map's rows: each benchmark task stands for one regularity.
ROWS = {'poison_trigger': 'high', 'inter_class_confusion': 'medium',
        'random_label_swap': 'low'}
# What `score` measures: a map summary's reference scores name the measure they were taken
# with, so a diagnosis never places a score among references of another measure.
MEASURE = 'capped_agreement_ratio'


def folds(num_examples: int, forget_ids, num_folds: int, rng: np.random.Generator
          ) -> np.ndarray:
  """The fold (0 … num_folds − 1) of every training example.

  D_f and D_r are each shuffled and dealt round-robin, so every fold holds its share of both:
  each probe then trains on the rest of D_f (which carries the pattern, if there is one) and
  is scored on found and retained examples it never saw.
  """
  if not 2 <= num_folds <= len(forget_ids):
    raise ValueError(f'folds={num_folds} must be between 2 and the number of forget ids '
                     f'({len(forget_ids)}).')
  in_forget = np.zeros(num_examples, bool)
  in_forget[np.asarray(forget_ids)] = True
  fold = np.empty(num_examples, np.int32)
  for members in (np.flatnonzero(in_forget), np.flatnonzero(~in_forget)):
    fold[rng.permutation(members)] = np.arange(len(members)) % num_folds
  return fold


def chance_agreement(retain_agreement: float, num_classes: int) -> float:
  """The held-out agreement a label unrelated to the image gets: the probes' misses on clean
  labels, spread over the other classes."""
  return (1.0 - retain_agreement) / (num_classes - 1)


def capped_ratio(forget_agreement: float, retain_agreement: float, num_classes: int) -> float:
  """min(1, (A(D_f) − c) / (A(D_r) − c)); NaN where clean labels are no more predictable than
  chance (the probes learnt nothing)."""
  chance = chance_agreement(retain_agreement, num_classes)
  if retain_agreement - chance <= 0:
    return math.nan
  return min(1.0, (forget_agreement - chance) / (retain_agreement - chance))


def score(forget_agrees: np.ndarray, retain_agrees: np.ndarray, *, num_classes: int,
          bootstrap: int, rng: np.random.Generator, level: float = 0.95) -> dict:
  """The regularity score (`MEASURE`) and its percentile bootstrap interval.

  Args:
    forget_agrees: bool per example of D_f: its held-out prediction equals its given label.
    retain_agrees: the same for the examples of D_r.
    num_classes: the dataset's classes (the chance level's denominator).
    bootstrap: resamples (each draws D_f and D_r examples with replacement).
    rng: the resampling generator.
    level: the interval's coverage.
  """
  forget_agrees = np.asarray(forget_agrees, np.float64)
  retain_agrees = np.asarray(retain_agrees, np.float64)
  ratio = lambda f, r: capped_ratio(float(np.mean(f)), float(np.mean(r)), num_classes)
  samples = np.array([ratio(rng.choice(forget_agrees, forget_agrees.size),
                            rng.choice(retain_agrees, retain_agrees.size))
                      for _ in range(bootstrap)])
  samples = samples[~np.isnan(samples)]
  value = ratio(forget_agrees, retain_agrees)
  tail = 100 * (1 - level) / 2
  low, high = (np.percentile(samples, [tail, 100 - tail]) if samples.size and value == value
               else (math.nan, math.nan))  # No score (probes at chance): no interval either.
  return {'score': value, 'low': float(low), 'high': float(high),
          'forget_agreement': float(forget_agrees.mean()),
          'retain_agreement': float(retain_agrees.mean()),
          'chance_agreement': chance_agreement(float(retain_agrees.mean()), num_classes),
          'bootstrap': bootstrap, 'level': level, 'measure': MEASURE}


def placeable(score_value: float, reference_scores: dict[str, float],
              co_forgetting_informative: bool) -> bool:
  """Whether a score may be placed on the map: not where it is NaN (the probes learnt
  nothing), always in the low row (it claims no pattern), and above it only where
  co-forgetting's calibration finds the hidden half of D_f (the pattern shows)."""
  return score_value == score_value and (
      nearest_task(score_value, reference_scores) == 'random_label_swap'
      or co_forgetting_informative)


def _check_references(reference_scores: dict[str, float]) -> None:
  unknown = sorted(set(reference_scores) - set(ROWS))
  if unknown or not reference_scores:
    raise ValueError(f'reference regularity scores must be given for tasks of {sorted(ROWS)}; '
                     f'got {sorted(reference_scores)}.')


def nearest_task(value: float, reference_scores: dict[str, float]) -> str:
  """The benchmark task whose measured score is nearest to `value` (its row: `ROWS[task]`)."""
  _check_references(reference_scores)
  return min(reference_scores, key=lambda task: abs(reference_scores[task] - value))


def tasks_within(low: float, high: float, reference_scores: dict[str, float]) -> list[str]:
  """The benchmark tasks an interval (low, high) of scores reaches, in order of their
  reference score: from the task nearest `low` to the one nearest `high`, and every task
  between (NaN ends: every task, the interval says nothing)."""
  _check_references(reference_scores)
  ordered = sorted(reference_scores, key=reference_scores.get)
  if low != low or high != high:
    return ordered
  first, last = (ordered.index(nearest_task(v, reference_scores)) for v in (low, high))
  return ordered[min(first, last):max(first, last) + 1]


def describe_rows(tasks) -> str:
  """'the high row' or 'between the medium and the high rows' for `tasks_within`'s list."""
  rows = [ROWS[t] for t in tasks]
  return (f'the {rows[0]} row' if len(rows) == 1 else
          f'between the {rows[0]} and the {rows[-1]} rows')
