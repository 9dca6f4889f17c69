"""Corrupted examples not yet found: two signals, their combination and a calibrated threshold.

- *Co-forgetting* (`co_forgetting`): flushing D_f from a copy of the trained model (NPO epochs
  until Acc(D_f) <= gamma, as REM's step 2 without expansion) also forgets the examples that
  share D_f's pattern (a trigger, a systematic swap); the score is how much an example's given
  label loses in log-probability.
- *Out-of-sample disagreement* (`disagreement`): probes' held-out probabilities fed to confident
  learning (cleanlab), for corruption with no shared pattern (random swaps).
- `calibrate`: without D_c, how a ranking would find corrupted examples is measured on the found
  set itself: half of D_f plays the found set and the other half hides among the candidates.
  Its recall curve gives the threshold and an estimate of how many corrupted examples remain.
- `combine`: each signal's score is put on one scale, the estimated precision of a cut-off at
  its rank (from the signal's calibration), and the larger counts: an example ranked high by
  a signal that finds corrupted examples ranks high, one ranked high by a signal that finds
  nothing does not.

Every score is "higher = more suspect".
"""

import math

import numpy as np

# A probability is clipped here before its logarithm (a probe may give exactly 0).
_TINY = 1e-12


def given_label_log_prob(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """log p(given label) of every row."""
  rows = np.arange(len(labels))
  return np.log(np.clip(probabilities[rows, labels], _TINY, None))


def co_forgetting(log_prob_before: np.ndarray, log_prob_after: np.ndarray) -> np.ndarray:
  """How much the given label's log-probability dropped in the flush."""
  return np.asarray(log_prob_before, np.float64) - np.asarray(log_prob_after, np.float64)


def own_loss(log_prob: np.ndarray) -> np.ndarray:
  """The trained model's own cross-entropy on the given label (a baseline ranking)."""
  return -np.asarray(log_prob, np.float64)


def class_probabilities(probabilities: np.ndarray, num_classes: int) -> np.ndarray:
  """The first `num_classes` columns, renormalised (a model may have more outputs than the
  dataset has classes; confident learning needs one column per class)."""
  kept = np.asarray(probabilities[:, :num_classes], np.float64)
  return kept / np.clip(kept.sum(1, keepdims=True), _TINY, None)


def disagreement(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(score, flagged) by confident learning on held-out probabilities.

  score: 1 − cleanlab's self-confidence label quality (the held-out probability of the given
  label); flagged: `cleanlab.filter.find_label_issues`, its own estimate of the mislabelled.
  """
  # cleanlab imports scikit-learn and pandas: only a diagnosis pays for them.
  from cleanlab import filter as cleanlab_filter  # pylint: disable=g-import-not-at-top
  from cleanlab import rank as cleanlab_rank  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels, np.int64)
  quality = cleanlab_rank.get_label_quality_scores(labels, probabilities,
                                                   method='self_confidence')
  # One process: cleanlab's default forks workers, which deadlocks with JAX's threads.
  flagged = cleanlab_filter.find_label_issues(labels, probabilities, n_jobs=1)
  return 1.0 - np.asarray(quality, np.float64), np.asarray(flagged, bool)


def percentile_ranks(scores: np.ndarray) -> np.ndarray:
  """Each score's rank among `scores`, in [0, 1] (ties share the average rank)."""
  scores = np.asarray(scores, np.float64)
  if scores.size < 2:
    return np.ones_like(scores)
  order = np.argsort(scores, kind='stable')
  ranks = np.empty(scores.size)
  ranks[order] = np.arange(scores.size)
  # Ties: the mean rank of their group, so no tied example outranks another by position.
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  ranks = np.bincount(inverse, ranks)[inverse] / counts[inverse]
  return ranks / (scores.size - 1)


def top(scores: np.ndarray, k: int) -> np.ndarray:
  """Positions of the `k` highest scores, highest first (ties: the lower position first)."""
  return np.argsort(-np.asarray(scores, np.float64), kind='stable')[:k]


def precision_recall_at(scores: np.ndarray, corrupted: np.ndarray, k: int) -> tuple[float, float]:
  """Precision and recall of the top `k` against a known corrupted mask (benchmarks only)."""
  hits = int(np.asarray(corrupted, bool)[top(scores, k)].sum())
  total = int(np.sum(corrupted))
  return (hits / k if k else math.nan), (hits / total if total else math.nan)


def auc(scores: np.ndarray, hidden: np.ndarray) -> float:
  """P(a hidden example outscores a candidate that is not hidden), ties counting half."""
  hidden = np.asarray(hidden, bool)
  ranks = percentile_ranks(scores) * (len(scores) - 1)  # 0-based average ranks.
  positives, negatives = hidden.sum(), (~hidden).sum()
  if not positives or not negatives:
    return math.nan
  return float((ranks[hidden].sum() - positives * (positives - 1) / 2) / (positives * negatives))


def calibrate(scores: np.ndarray, hidden: np.ndarray, *, min_recall: float = 0.25,
              corrupted: float | None = None) -> dict:
  """What a ranking finds, measured with a known part of the corrupted set hidden among the
  candidates.

  Args:
    scores: one score per candidate (every training example outside the half of D_f that
      played the found set).
    hidden: which candidates are the other half of D_f.
    min_recall: the estimate below only reads cut-offs that find at least this share of the
      hidden half (fewer hits are too noisy to extrapolate from).
    corrupted: the number of corrupted candidates to use for precision, where a better
      estimate than this ranking's own is known (`calibrate_all`: the tightest over signals).

  Returns:
    auc: the ranking's AUC for the hidden half (0.5: it finds nothing);
    corrupted_among_candidates: `corrupted`, or else `own_estimate`;
    own_estimate: this ranking's estimate of the corrupted examples among the candidates,
      hidden ones included: the smallest k · |hidden| / hits(k) over the cut-offs k. At each
      cut-off the top k hold hits(k) of the hidden half, so if the unknown corrupted rank like
      the hidden ones, the top k hold recall(k) of all of them plus clean examples: each ratio
      is an upper bound, tight where the top k are nearly all corrupted;
    cutoff, recall, precision: the cut-off with the best estimated F1 (precision there is
      recall · corrupted / k), its recall and its estimated precision;
    clean_above: the estimated clean candidates above that cut-off;
    recall_curve: recall at every cut-off k = 1 … (a list, for the report's figure).
  """
  scores = np.asarray(scores, np.float64)
  hidden = np.asarray(hidden, bool)
  num_hidden = int(hidden.sum())
  if num_hidden == 0:
    raise ValueError('calibrate: no hidden examples among the candidates.')
  hits = np.cumsum(hidden[top(scores, len(scores))])
  cutoffs = np.arange(1, len(scores) + 1)
  recall = hits / num_hidden
  readable = recall >= min_recall
  own = float(np.min(cutoffs[readable] * num_hidden / hits[readable]))
  corrupted = own if corrupted is None else float(corrupted)
  f1 = 2 * recall * corrupted / (cutoffs + corrupted)
  best = int(np.argmax(f1))
  return {'auc': auc(scores, hidden), 'num_hidden': num_hidden,
          'corrupted_among_candidates': corrupted, 'own_estimate': own,
          'cutoff': int(cutoffs[best]), 'recall': float(recall[best]),
          'precision': float(recall[best] * corrupted / cutoffs[best]),
          'clean_above': float(cutoffs[best] - recall[best] * corrupted),
          'recall_curve': recall.tolist()}


def calibrate_all(signals: dict[str, np.ndarray], hidden: np.ndarray) -> dict[str, dict]:
  """`calibrate` for each signal and for their combination (key 'combined').

  How many corrupted examples hide among the candidates is one number, whatever ranks them:
  each signal's own estimate is an upper bound, so the smallest is used for all (a signal
  that finds little gives a loose bound, which would overstate its precision).
  """
  own = {name: calibrate(score, hidden) for name, score in signals.items()}
  corrupted = min(c['own_estimate'] for c in own.values())
  calibrations = {name: calibrate(score, hidden, corrupted=corrupted)
                  for name, score in signals.items()}
  combined = combine(list(signals.values()), list(calibrations.values()))
  calibrations['combined'] = calibrate(combined, hidden, corrupted=corrupted)
  return calibrations


def threshold(calibration: dict, num_found: int) -> dict:
  """How many suspects to take from the real ranking, and what they should hold.

  The calibration ran with half of the found set; the remaining corrupted examples there are
  `corrupted_among_candidates`, of which the hidden half is known. With the whole found set
  the unknown part is what remains: `remaining` = corrupted − hidden. Taking the same share
  of them (`recall`) plus the same number of clean examples the cut-off let through gives the
  number of suspects; none when nothing is estimated to remain.
  """
  remaining = max(calibration['corrupted_among_candidates'] - calibration['num_hidden'], 0.0)
  expected = calibration['recall'] * remaining
  count = round(expected + calibration['clean_above']) if remaining >= 1 else 0
  return {'remaining': remaining, 'num_suspects': int(count),
          'expected_corrupted_among_suspects': expected,
          'expected_precision': expected / count if count else math.nan,
          'estimated_discovery_rate': num_found / (num_found + remaining)}


def precision_curve(calibration: dict) -> np.ndarray:
  """Estimated precision of the top k, k = 1 … (from `calibrate`), made non-increasing in k:
  an example ranked higher never gets a lower value than one ranked below it."""
  recall = np.asarray(calibration['recall_curve'])
  cutoffs = np.arange(1, recall.size + 1)
  precision = np.minimum(recall * calibration['corrupted_among_candidates'] / cutoffs, 1.0)
  return np.maximum.accumulate(precision[::-1])[::-1]


def on_precision_scale(scores: np.ndarray, calibration: dict) -> np.ndarray:
  """Each score as the calibrated precision of a cut-off at its percentile rank."""
  curve = precision_curve(calibration)
  above = 1.0 - percentile_ranks(scores)  # The share of examples ranked above (0: the top).
  return curve[np.clip(np.round(above * (curve.size - 1)).astype(int), 0, curve.size - 1)]


def combine(scores, calibrations) -> np.ndarray:
  """The larger calibrated precision over the signals, per example (ties, as on a plateau of
  the curves, broken by the mean percentile rank)."""
  scaled = np.max([on_precision_scale(s, c) for s, c in zip(scores, calibrations)], axis=0)
  tie_break = np.mean([percentile_ranks(s) for s in scores], axis=0)
  return scaled + 1e-6 * tie_break
