"""The FLOP floor of each method: the work its algorithm cannot avoid, as a share of training.

Unit: one forward pass of the original model over one image (F). A training pass (forward and
backward) costs `TRAIN` = 3 F: the backward pass computes two products per forward one (input
and weight gradients). A method's floor counts, over the examples its algorithm must visit, its
training passes, its frozen models' forward passes (reference, teacher) and the evaluations its
stop rule and selection read (Acc(D_f) each epoch, the proxy's Acc(D_r)); diagnostics such as
REM's dynamics are left out. Dividing by the original training run's work (steps x batch x 3 F)
gives a percentage of training, the unit of the paper's A.8, so a method's measured percentage
over its floor's is its overhead: host synchronisation, padding, evaluation batches, compiles.

REM trains its expanded model: `Sizes.expanded_cost` is that model's forward FLOPs over the
original's (from XLA's cost analysis, `benchmarks/grid_cost.py`); 1 on an ETD base, whose
original model is already expanded.
"""

import dataclasses

TRAIN = 3.0


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What a floor depends on besides the method's own record.

  Attributes:
    train: |D_tr|, the training set.
    forget: |D_f|, the forget set at the cell's discovery rate.
    batch_size: the training recipe's batch size.
    training_steps: the original training run's steps.
    expanded_cost: forward FLOPs of REM's expanded model over the original model's.
  """
  train: int
  forget: int
  batch_size: int
  training_steps: int
  expanded_cost: float = 1.0

  @property
  def retain(self) -> int:
    return self.train - self.forget

  @property
  def training_forwards(self) -> float:
    return self.training_steps * self.batch_size * TRAIN


def floor_forwards(method: str, unlearn: dict, sizes: Sizes) -> float:
  """A method's floor in F, from its record's `unlearn` part (epochs, steps, tries, ...)."""
  n_train, n_forget, n_retain = sizes.train, sizes.forget, sizes.retain
  epochs = unlearn.get('epochs', 0)
  selection = n_forget + n_retain  # Acc(D_f) for the stop rule, Acc(D_r) for the proxy.
  if method == 'no_ul':
    return 0.0
  if method == 'retrain':
    return unlearn['steps'] * sizes.batch_size * TRAIN
  if method == 'cf':
    return epochs * n_retain * TRAIN
  if method == 'ascent':
    return epochs * (n_forget * TRAIN + selection)
  if method == 'npo':
    return epochs * (n_forget * (TRAIN + 1) + selection)
  if method == 'scrub':  # Student passes and teacher forwards: max epochs on D_f, min on D_r.
    return (unlearn['max_epochs'] * n_forget + epochs * n_retain) * (TRAIN + 1)
  if method == 'bad_teacher':  # One teacher's forward per example: the one its set calls for.
    return epochs * n_train * (TRAIN + 1)
  if method == 'potion':  # Per try: importances on D_r and D_f, then Acc(D_f).
    return len(unlearn['tries']) * ((n_retain + n_forget) * TRAIN + n_forget)
  if method.startswith('rem'):
    flush_epochs = sum(entry['flush_epochs'] for entry in unlearn['iterations'])
    per_expanded = (
        n_train  # The new units' BatchNorm statistics.
        + flush_epochs * n_forget * (TRAIN + 1)  # Flush: NPO against the reference.
        + (flush_epochs + epochs) * n_forget  # The flush's stop rule.
        + epochs * n_train * (2 * TRAIN + 1)  # Repair: mask and drop passes, the reference.
        + epochs * selection)
    return per_expanded * sizes.expanded_cost
  raise ValueError(f'method={method!r} has no FLOP floor; allowed: no_ul, retrain, cf, ascent, '
                   'npo, scrub, bad_teacher, potion, rem*.')


def floor_percent(method: str, unlearn: dict, sizes: Sizes) -> float:
  """The floor as a percentage of the original training run's work."""
  return 100 * floor_forwards(method, unlearn, sizes) / sizes.training_forwards
