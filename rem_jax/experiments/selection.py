"""Choosing one hyperparameter variant per cell: by the test set (an oracle) or by training data.

A cell is (base, method, task, discovery rate). `best_per_cell` keeps, per cell, the variant
with the best mean score over the cell's seeds; `tuned` is a benchmark's table (b), the choice
a practitioner could make: on the tuning grid's seeds, by the training-data `proxy`.
"""

import collections
from collections.abc import Callable, Sequence

import numpy as np

from rem_jax.methods import common

# The gamma of the selection proxy: every method's default (SPEC §7).
PROXY_GAMMA = 0.2


def healed_x_utility(record: dict) -> float:
  return record['after']['healed_x_utility']


def proxy(record: dict) -> float:
  """The training-data proxy of a record's unlearned model, Acc(D_r) * (1 - max(Acc(D_f),
  gamma)) with the methods' default gamma: what REM, NPO and ascent select their iteration
  with, computable for any method's output, blind to the test set and to D_c."""
  after = record['after']
  return common.proxy(after['retain_accuracy'], after['forget_accuracy'], PROXY_GAMMA)


def best_per_cell(records: Sequence[dict],
                  score: Callable[[dict], float] = healed_x_utility) -> list[dict]:
  """For each (base, method, task, rate) cell, the records of the variant with the best mean
  `score` over the cell's seeds (ties: the first seen), relabelled with the method's name. One
  choice per cell, pooled over seeds (SPEC §8), not one per seed: a per-seed choice would pick
  each seed's luckiest variant. The default score, H×U, reads the test set and D_c (an
  oracle); `proxy` reads training data only."""
  cells = collections.defaultdict(lambda: collections.defaultdict(list))
  for record in records:
    key = (record['base'], record['method'], record['task'], record['discovery_rate'])
    cells[key][record['variant']].append(record)
  chosen = []
  for variants in cells.values():
    best = max(variants.values(), key=lambda group: np.mean([score(r) for r in group])
               ) if len(variants) > 1 else next(iter(variants.values()))
    chosen.extend({**record, 'variant': record['method'], 'chosen': record['variant']}
                  for record in best)
  return chosen


def tuned_seeds(records: Sequence[dict]) -> list:
  """The seeds on which some method ran hyperparameter variants (a tuning grid's seeds)."""
  return sorted({r['seed'] for r in records if r['variant'] != r['method']})


def tuned(records: Sequence[dict], score: Callable[[dict], float] = proxy) -> list[dict]:
  """Table (b): on the tuning grid's seeds only, each cell's variant chosen by `score`. Only
  those seeds: elsewhere a cell holds just its default, and a choice between a variant's one
  seed and the default's three would compare different draws."""
  seeds = tuned_seeds(records)
  return best_per_cell([r for r in records if r['seed'] in seeds], score=score)
