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
- `calibrate_all`: "cannot tell" where calibration cannot tell a signal from chance. A signal
  whose calibration AUC's 95 % interval (`auc_interval`, Hanley & McNeil's standard error)
  holds 0.5 is *uninformative*: it gets no count, threshold or precision, and it neither
  bounds the corrupted count nor enters the combination. The estimates that are reported
  carry intervals from a stratified bootstrap of the calibration (`resample_weights`).
- `combine`: each informative signal's score is put on one scale, the estimated precision of a
  cut-off at its rank (from the signal's calibration), and the larger counts: an example
  ranked high by a signal that finds corrupted examples ranks high, one ranked high by a
  signal that finds nothing does not.

Every score is "higher = more suspect".
"""

import math
import statistics

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


def auc_interval(value: float, num_hidden: int, num_others: int, level: float = 0.95
                 ) -> tuple[float, float]:
  """A normal interval around a calibration AUC: Hanley & McNeil's (1982) standard error.

  Why this one: it is closed-form (no resampling, so the decision "cannot tell" has no Monte
  Carlo noise of its own and costs nothing), and for |hidden| << |others|, the diagnosis's
  case, it is governed by the term (Q2 - A^2) / |hidden|: the uncertainty is that of the few
  hidden examples, which is the calibration's real weak point (a half of D_f of 62 examples
  with AUC 0.57 gives 0.50-0.64: cannot tell). At AUC 0.5 it is the exact null variance of
  the Mann-Whitney statistic without ties; ties (a flush that moved nothing) lower the true
  variance, so there it errs towards "cannot tell". Clipped to [0, 1].
  """
  if value != value or num_hidden < 1 or num_others < 1:
    return math.nan, math.nan
  q1, q2 = value / (2 - value), 2 * value ** 2 / (1 + value)
  variance = (value * (1 - value) + (num_hidden - 1) * (q1 - value ** 2)
              + (num_others - 1) * (q2 - value ** 2)) / (num_hidden * num_others)
  half = statistics.NormalDist().inv_cdf(0.5 + level / 2) * math.sqrt(max(variance, 0.0))
  return max(value - half, 0.0), min(value + half, 1.0)


def resample_weights(hidden: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """One stratified bootstrap draw over the candidates, as a count per candidate: |hidden|
  draws with replacement from the hidden half and as many as the others from the others.

  Stratified, so every resample hides exactly as many examples as the calibration did: what
  varies is *which* found examples hid (the calibration's main uncertainty, the half of D_f
  that was drawn) and which other candidates were there.
  """
  hidden = np.asarray(hidden, bool)
  weights = np.zeros(hidden.size)
  for members in (np.flatnonzero(hidden), np.flatnonzero(~hidden)):
    weights[members] = np.bincount(rng.integers(0, members.size, members.size),
                                   minlength=members.size)
  return weights


def _curves(order: np.ndarray, hidden: np.ndarray, weights: np.ndarray | None):
  """(hits, cutoffs) at every cut-off of the ranking `order` (most suspect first): the hidden
  examples and the candidates above it, each counted `weights` times (None: once)."""
  hidden_ranked = hidden[order].astype(np.float64)
  if weights is None:
    return np.cumsum(hidden_ranked), np.arange(1.0, order.size + 1)
  ranked = weights[order]
  return np.cumsum(ranked * hidden_ranked), np.cumsum(ranked)


def _read_curves(hits, cutoffs, num_hidden: int, min_recall: float, corrupted) -> dict:
  """`calibrate`'s numbers from its curves (see there)."""
  recall = hits / num_hidden
  readable = recall >= min_recall
  own = float(np.min(cutoffs[readable] * num_hidden / hits[readable]))
  corrupted = own if corrupted is None else float(corrupted)
  f1 = 2 * recall * corrupted / (cutoffs + corrupted)
  best = int(np.argmax(f1))
  return {'corrupted_among_candidates': corrupted, 'own_estimate': own,
          'cutoff': int(round(cutoffs[best])), 'recall': float(recall[best]),
          'precision': float(recall[best] * corrupted / cutoffs[best]),
          'clean_above': float(cutoffs[best] - recall[best] * corrupted), 'recall_all': recall}


def calibrate(scores: np.ndarray, hidden: np.ndarray, *, min_recall: float = 0.25,
              corrupted: float | None = None, level: float = 0.95) -> dict:
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
    level: the AUC interval's coverage.

  Returns:
    auc: the ranking's AUC for the hidden half (0.5: it finds nothing); auc_low, auc_high:
      its interval (`auc_interval`); informative: auc_low > 0.5 (the ranking finds hidden
      examples better than chance; where not, `calibrate_all` reports nothing else of it);
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
  hits, cutoffs = _curves(top(scores, len(scores)), hidden, None)
  read = _read_curves(hits, cutoffs, num_hidden, min_recall, corrupted)
  value = auc(scores, hidden)
  low, high = auc_interval(value, num_hidden, len(scores) - num_hidden, level)
  recall = read.pop('recall_all')
  return {'auc': value, 'auc_low': low, 'auc_high': high, 'informative': bool(low > 0.5),
          'num_hidden': num_hidden, **read, 'recall_curve': recall.tolist()}


# What an uninformative signal's calibration keeps: how it ranked the hidden half, nothing more.
_CANNOT_TELL = ('auc', 'auc_low', 'auc_high', 'informative', 'num_hidden')


def _percentiles(values, level: float) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  if not values.size:
    return math.nan, math.nan
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def calibrate_all(signals: dict[str, np.ndarray], hidden: np.ndarray, *, resamples: int = 0,
                  rng: np.random.Generator | None = None, level: float = 0.95,
                  min_recall: float = 0.25) -> dict[str, dict]:
  """`calibrate` for each signal and for their combination (key 'combined'), with "cannot
  tell" where the calibration cannot tell a signal from chance.

  A signal whose AUC interval holds 0.5 (`calibrate`'s `informative` is False) keeps only its
  AUC and interval: no count, no threshold, no precision; it does not bound the corrupted
  count and does not enter the combination (a ranking that finds nothing must not pull the
  combined one). How many corrupted examples hide among the candidates is one number,
  whatever ranks them: each informative signal's own estimate is an upper bound, so the
  smallest is used for all. The combination of the informative signals is calibrated as a
  signal; with no informative signal, 'combined' is uninformative too and nothing is
  estimated.

  Intervals: `resamples` stratified bootstrap draws (`resample_weights`) re-read each
  informative signal's curves and the combined ranking's with the candidates counted as
  drawn (the rankings stay as computed): `own_estimate_low/high` per signal, and on
  'combined' a 'resampled' dict of per-draw arrays ('corrupted', 'recall', 'clean_above')
  from which `threshold` takes its intervals (percentile intervals at `level`). No draws
  (`resamples=0`): the intervals are NaN.
  """
  hidden = np.asarray(hidden, bool)
  point = {name: calibrate(score, hidden, level=level, min_recall=min_recall)
           for name, score in signals.items()}
  informative = [name for name, c in point.items() if c['informative']]
  calibrations = {name: {k: c[k] for k in _CANNOT_TELL} for name, c in point.items()
                  if name not in informative}
  if not informative:
    calibrations['combined'] = {'auc': math.nan, 'auc_low': math.nan, 'auc_high': math.nan,
                                'informative': False, 'num_hidden': int(hidden.sum())}
    return calibrations
  corrupted = min(point[name]['own_estimate'] for name in informative)
  for name in informative:
    calibrations[name] = calibrate(signals[name], hidden, corrupted=corrupted, level=level,
                                   min_recall=min_recall)
  combined = combine([signals[name] for name in informative],
                     [calibrations[name] for name in informative])
  calibrations['combined'] = calibrate(combined, hidden, corrupted=corrupted, level=level,
                                       min_recall=min_recall)
  # The bootstrap: the same draws for every ranking, so the count's bound (a minimum over the
  # informative signals) and the combined cut-off read one resampled population.
  rng = np.random.default_rng(0) if rng is None else rng
  num_hidden = int(hidden.sum())
  orders = {name: top(signals[name], hidden.size) for name in informative}
  combined_order = top(combined, hidden.size)
  own = {name: [] for name in informative}
  resampled = {'corrupted': [], 'recall': [], 'clean_above': []}
  for _ in range(resamples):
    weights = resample_weights(hidden, rng)
    draws = {name: _read_curves(*_curves(order, hidden, weights), num_hidden, min_recall,
                                None)['own_estimate'] for name, order in orders.items()}
    for name, value in draws.items():
      own[name].append(value)
    count = min(draws.values())
    read = _read_curves(*_curves(combined_order, hidden, weights), num_hidden, min_recall,
                        count)
    resampled['corrupted'].append(count)
    resampled['recall'].append(read['recall'])
    resampled['clean_above'].append(read['clean_above'])
  for name in informative:
    low, high = _percentiles(own[name], level)
    calibrations[name].update(own_estimate_low=low, own_estimate_high=high)
  calibrations['combined']['resampled'] = {k: np.asarray(v) for k, v in resampled.items()}
  calibrations['combined']['level'] = level
  return calibrations


def threshold(calibration: dict, num_found: int) -> dict | None:
  """How many suspects to take from the real ranking, and what they should hold; None where
  the calibration cannot tell (`informative` False): then nothing is estimated.

  The calibration ran with half of the found set; the remaining corrupted examples there are
  `corrupted_among_candidates`, of which the hidden half is known. With the whole found set
  the unknown part is what remains: `remaining` = corrupted − hidden. Taking the same share
  of them (`recall`) plus the same number of clean examples the cut-off let through gives the
  number of suspects; none when nothing is estimated to remain.

  Each estimate (`remaining`, `expected_corrupted_among_suspects`, `expected_precision`,
  `estimated_discovery_rate`) has `_low` and `_high`: the same arithmetic on each bootstrap
  draw of `calibrate_all` (its 'resampled'), percentile interval (NaN without draws).
  """
  if not calibration.get('informative'):
    return None

  def estimate(corrupted, recall, clean_above):
    remaining = np.maximum(np.asarray(corrupted, np.float64) - calibration['num_hidden'], 0.0)
    expected = recall * remaining
    count = np.where(remaining >= 1, np.round(expected + clean_above), 0)
    with np.errstate(invalid='ignore', divide='ignore'):
      precision = np.where(count > 0, expected / np.maximum(count, 1), np.nan)
    return {'remaining': remaining, 'num_suspects': count.astype(int),
            'expected_corrupted_among_suspects': expected, 'expected_precision': precision,
            'estimated_discovery_rate': num_found / (num_found + remaining)}

  point = {k: v.item() for k, v in estimate(calibration['corrupted_among_candidates'],
                                            calibration['recall'],
                                            calibration['clean_above']).items()}
  resampled = calibration.get('resampled') or {'corrupted': [], 'recall': [],
                                               'clean_above': []}
  draws = estimate(resampled['corrupted'], np.asarray(resampled['recall']),
                   np.asarray(resampled['clean_above']))
  level = calibration.get('level', 0.95)
  for key in ('remaining', 'expected_corrupted_among_suspects', 'expected_precision',
              'estimated_discovery_rate'):
    values = draws[key][~np.isnan(draws[key])]
    point[f'{key}_low'], point[f'{key}_high'] = _percentiles(values, level)
  point['level'] = level
  return point


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
  the curves, broken by the mean percentile rank). Give it informative signals only
  (`calibrate_all` does): an uninformative one has no calibrated precision."""
  scaled = np.max([on_precision_scale(s, c) for s, c in zip(scores, calibrations)], axis=0)
  tie_break = np.mean([percentile_ranks(s) for s in scores], axis=0)
  return scaled + 1e-6 * tie_break
