"""The FLOP floor of each method: the work its algorithm cannot avoid, as a share of training.

Unit: one forward pass of the original model over one image (F). A training pass (forward and
backward) costs `TRAIN` = 3 F: the backward pass computes two products per forward one (input
and weight gradients). A method's floor counts, over the examples its algorithm must visit, its
training passes, its frozen models' forward passes (reference, teacher) and the evaluations its
stop rule and selection read (Acc(D_f) each epoch, the proxy's Acc(D_r)); diagnostics such as
REM's dynamics are left out. Dividing by the original training run's work (steps x batch x 3 F)
gives a percentage of training, the unit of the paper's A.8, so a method's measured percentage
over its floor's is its overhead: host synchronisation, padding, evaluation batches, compiles.

Two model sizes enter: a drop-mode pass runs the base network θo1 (`Sizes.drop_cost`, its
forward FLOPs over the original's: 1 on a plain base, below 1 on an ETD base, whose original
model is the expanded one and whose baselines start pruned); REM's mask-mode passes run the
expanded model (`Sizes.mask_cost`: above 1 on a plain base, 1 on an ETD base). `rem_costs` reads
both from XLA's cost analysis.
"""

import dataclasses

import jax
import jax.numpy as jnp

from rem_jax.methods import rem
from rem_jax.models import init_variables

TRAIN = 3.0


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What a floor depends on besides the method's own record.

  Attributes:
    train: |D_tr|, the training set.
    forget: |D_f|, the forget set at the cell's discovery rate.
    batch_size: the training recipe's batch size.
    training_steps: the original training run's steps.
    mask_cost: forward FLOPs of REM's expanded model over the original model's.
    drop_cost: forward FLOPs of the base network (drop mode) over the original model's.
  """
  train: int
  forget: int
  batch_size: int
  training_steps: int
  mask_cost: float = 1.0
  drop_cost: float = 1.0

  @property
  def retain(self) -> int:
    return self.train - self.forget

  @property
  def training_forwards(self) -> float:
    return self.training_steps * self.batch_size * TRAIN


def floor_forwards(method: str, unlearn: dict, sizes: Sizes) -> float:
  """A method's floor in F, from its record's `unlearn` part (epochs, steps, tries, ...).

  Every method but Retrain (the training recipe again) and REM's mask-mode passes works in drop
  mode, at `sizes.drop_cost` per pass. REM's floor is that of its default
  remove_reference='drop'.
  """
  if method == 'retrain':
    return unlearn['steps'] * sizes.batch_size * TRAIN
  if method.startswith('rem'):
    return _rem_forwards(method, unlearn, sizes)
  return _drop_mode_forwards(method, unlearn, sizes) * sizes.drop_cost


def _drop_mode_forwards(method: str, unlearn: dict, sizes: Sizes) -> float:
  """A baseline's passes, all in drop mode."""
  n_train, n_forget, n_retain = sizes.train, sizes.forget, sizes.retain
  epochs = unlearn.get('epochs', 0)
  selection = n_forget + n_retain  # Acc(D_f) for the stop rule, Acc(D_r) for the proxy.
  if method == 'no_ul':
    return 0.0
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
  raise ValueError(f'method={method!r} has no FLOP floor; allowed: no_ul, retrain, cf, ascent, '
                   'npo, scrub, bad_teacher, potion, rem*.')


def _rem_forwards(method: str, unlearn: dict, sizes: Sizes) -> float:
  """REM: mask-mode passes on the expanded model, every drop-mode pass on the base network."""
  n_train, n_forget = sizes.train, sizes.forget
  epochs = unlearn['epochs']
  flush_epochs = sum(entry['flush_epochs'] for entry in unlearn['iterations'])
  # Repair, per example: the live model's train pass in drop mode and the reference's forward
  # in drop mode (the removal term's), and unless redirection is ablated (which runs the
  # redirect term in drop mode too) a train pass and the reference's forward in mask mode.
  repair_drop = TRAIN + 1
  repair_mask = 0 if method == 'rem_no_redirect' else TRAIN + 1
  drop = (flush_epochs * n_forget * (TRAIN + 1)  # Flush: NPO against the drop-mode reference.
          + (flush_epochs + epochs) * n_forget  # The flush's stop rule.
          + epochs * n_train * repair_drop
          + epochs * (n_forget + sizes.retain))  # Selection: Acc(D_f), Acc(D_r).
  # The new units' BatchNorm statistics, on a base REM expanded (records from before the key
  # existed: any expanded model, as a plain base's was).
  statistics = unlearn.get('expanded_here', bool(unlearn.get('mask_size')))
  mask = (n_train if statistics else 0) + epochs * n_train * repair_mask
  return drop * sizes.drop_cost + mask * sizes.mask_cost


def floor_percent(method: str, unlearn: dict, sizes: Sizes) -> float:
  """The floor as a percentage of the original training run's work."""
  return 100 * floor_forwards(method, unlearn, sizes) / sizes.training_forwards


def forward_flops(model, image_shape, batch: int = 8) -> float:
  """XLA's count of one eval-mode forward pass of `model` per image."""
  variables = init_variables(model, jax.random.key(0), image_shape)
  images = jnp.zeros((batch, *image_shape))
  mask = jnp.zeros((batch, model.mask_size))
  forward = jax.jit(lambda v, x, m: model.apply(v, x, m, train=False))
  cost = forward.lower(variables, images, mask).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost  # Older JAX: one dict per device.
  return cost['flops'] / batch


def rem_costs(rem_settings, model, image_shape) -> tuple[float, float]:
  """(mask_cost, drop_cost) of REM on the original `model` with `rem_settings` (its expansion).

  A plain base is expanded for REM's mask mode and is itself the drop-mode network; an ETD base
  is itself the mask-mode network and its base the drop-mode one.
  """
  if model.mask_size:
    return 1.0, forward_flops(model.base_model(), image_shape) / forward_flops(model, image_shape)
  amount = rem_settings.get('expansion')
  amount = rem.default_expansion(model.capacity) if amount is None else amount
  if not amount:
    return 1.0, 1.0
  expanded = model.clone(expansion=amount)
  return forward_flops(expanded, image_shape) / forward_flops(model, image_shape), 1.0
