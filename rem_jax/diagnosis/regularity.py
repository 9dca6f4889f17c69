"""How much the found corrupted examples share structure (SPEC's "regularity").

Jiang et al.'s consistency score measures how well a model trained without an example predicts
its label. Here: probe models trained with a fold of the training set held out predict the held
out examples, and the score is their agreement with the *given* labels on the found set D_f
divided by their agreement on the retain set D_r. A poison (a shared trigger) is predicted from
the other poisoned examples: the score is near 1. Random label swaps share nothing: near 0.
Inter-class confusion lies in between.
"""

import numpy as np

# The map's rows: each benchmark task stands for one regularity.
ROWS = {'poison_trigger': 'high', 'inter_class_confusion': 'medium',
        'random_label_swap': 'low'}


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


def agreement_ratio(forget_agrees: np.ndarray, retain_agrees: np.ndarray) -> float:
  """Agreement on D_f ÷ agreement on D_r (NaN when nothing of D_r agrees)."""
  retain = float(np.mean(retain_agrees))
  return float(np.mean(forget_agrees)) / retain if retain > 0 else float('nan')


def score(forget_agrees: np.ndarray, retain_agrees: np.ndarray, *, bootstrap: int,
          rng: np.random.Generator, level: float = 0.95) -> dict:
  """The regularity score and its percentile bootstrap interval.

  Args:
    forget_agrees: bool per example of D_f: its held-out prediction equals its given label.
    retain_agrees: the same for the examples of D_r.
    bootstrap: resamples (each draws D_f and D_r examples with replacement).
    rng: the resampling generator.
    level: the interval's coverage.
  """
  forget_agrees = np.asarray(forget_agrees, np.float64)
  retain_agrees = np.asarray(retain_agrees, np.float64)
  samples = np.array([
      agreement_ratio(rng.choice(forget_agrees, forget_agrees.size),
                      rng.choice(retain_agrees, retain_agrees.size))
      for _ in range(bootstrap)])
  tail = 100 * (1 - level) / 2
  low, high = np.nanpercentile(samples, [tail, 100 - tail]) if bootstrap else (np.nan, np.nan)
  return {'score': agreement_ratio(forget_agrees, retain_agrees), 'low': float(low),
          'high': float(high), 'forget_agreement': float(forget_agrees.mean()),
          'retain_agreement': float(retain_agrees.mean()), 'bootstrap': bootstrap,
          'level': level}


def nearest_task(value: float, reference_scores: dict[str, float]) -> str:
  """The benchmark task whose measured score is nearest to `value` (its row: `ROWS[task]`)."""
  unknown = sorted(set(reference_scores) - set(ROWS))
  if unknown or not reference_scores:
    raise ValueError(f'reference regularity scores must be given for tasks of {sorted(ROWS)}; '
                     f'got {sorted(reference_scores)}.')
  return min(reference_scores, key=lambda task: abs(reference_scores[task] - value))
