"""REM: Redirection for Erasing Memory, SPEC §7.

Source: Schoepf et al., ICLR 2026. Loss: redirect + removal terms (`rem_jax.losses.redirect`,
`rem_jax.losses.npo`), below. Stop rule: the flush of each iteration stops once Acc(D_f) <=
gamma; `epochs` iterations, the best by the proxy is returned. Defaults: at the end.

    expand -> [remove (flush, NPO on D_f) -> repair + redirect (one epoch of D_tr) -> select] x E
           -> drop

1. Expand: add extra units θo2 to the trained θo1 (`rem_jax.expansion.expand`; fresh
   PyTorch-default init). The new channels' BatchNorm running statistics are set from one pass
   over D_tr (no augmentation, no gradient, train-mode normalisation, REM's masks; the exact
   statistics come from `rem_jax.models.batch_stats`), the base channels keep θo1's. On an ETD
   base nothing is added: its extra units are θo2 and its examples keep their ETD masks.
2. The reference: a frozen copy of the expanded model in eval mode. The redirect term compares
   with it in mask mode (the live model's masks), the removal term in drop mode, i.e. with θo1
   alone (`remove_reference='mask'` reproduces the reference code, which used mask mode).
3. Each of `epochs` iterations:
   a. Flush: while Acc(D_f) > gamma (drop mode, eval, corrupted labels), one epoch of
      npo(ce_drop, ce_ref) over D_f; at most `max_flush_epochs` per iteration; these steps are
      not counted in the budget.
   b. Repair + redirect: one epoch of D_tr. Per example, redirect(ce_mask, ce_ref_mask) with the
      shared forget mask on D_f examples and own masks elsewhere, plus npo(ce_drop, ce_ref_drop)
      on D_f examples. BatchNorm statistics: base channels from the drop pass, extra channels
      from the mask pass.
   c. Select: keep the iteration with the best Acc(D_r) * (1 - max(Acc(D_f), gamma)). Each
      iteration's record also holds Fig. 5's dynamics (`dynamics_probe`), a diagnostic.
4. Drop θo2: the result has the original architecture.

Drop mode runs on θo1 alone: every pass with the extra units off (the flush, the removal term's
live and reference passes, every stop check and proxy evaluation) runs the base network on the
variables pruned to θo1 (`Setup.drop_mode`). That is exactly the function the expanded model
computes with mask 0, at the base's FLOPs (1/2.6 of the expanded model's at the paper's widths),
and the pruning's gradient gives the extra units the zero gradient a drop pass gives them.

Variants: `rem_etd` (REM on an ETD-trained base), `rem_ideal` (shared mask and removal term over
all of D_c; the flush still uses D_f), `rem_no_redirect` (ablation: the redirect term on D_r only,
live and reference models in drop mode) and `rem_no_remove` (ablation: no removal term in step
3). Defaults (the paper's ResNet-9 recipe): beta 1, gamma 0.2, SGD lr 0.005, momentum 0.9,
weight decay 5e-4, constant lr, 10 epochs, p_mem 0.2; use Adam lr 2e-5 for the ViT.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict
import numpy as np

from rem_jax import evaluation
from rem_jax import expansion
from rem_jax import losses
from rem_jax import masks
from rem_jax import sharding
from rem_jax import optim
from rem_jax import seeds
from rem_jax import trainer
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.methods import base
from rem_jax.methods import common
from rem_jax.models import batch_stats

VARIANTS = ('rem', 'rem_etd', 'rem_ideal', 'rem_no_redirect', 'rem_no_remove')
ABLATIONS = ('rem_no_redirect', 'rem_no_remove')  # Table 2: REM with one of its parts off.
ORACLES = ('rem_ideal',)  # Reads D_c, which no practitioner knows.
REMOVE_REFERENCES = ('drop', 'mask')
REMOVE_REDUCTIONS = ('batch', 'forget')
FORGET_MASKS = ('shared', 'own')
DEFAULT_P_MEM = 0.2


def default_config() -> ml_collections.ConfigDict:
  """REM's settings (`config.methods.rem` and its variants' sections)."""
  config = common.optimizer_config(schedule='constant')  # SGD lr 0.005, 10 epochs.
  config.beta = 1.0
  config.gamma = 0.2
  config.max_flush_epochs = 100
  # Extra units for a plain base, as a fraction of the full widths. Unset: 1 - capacity (fill up
  # to the full width), or 0.5 on a capacity-1.0 base. 0: no expansion (an ablation, and the
  # paper's Table 4 row): the redirect term then runs in drop mode, with nowhere to redirect to.
  config.expansion = config_dict.placeholder(float)
  # The masks' keep probability. Unset: 0.2 on a plain base; an ETD base's own masks (setting
  # another value there is an error: REM reuses the masks the base was trained with).
  config.p_mem = config_dict.placeholder(float)
  # 'shared': D_f examples share one forget mask (REM). 'own': they keep their own masks (an
  # ablation: without the shared mask, nothing gathers the corrupted behaviour in one place).
  config.forget_masks = 'shared'
  config.remove_reference = 'drop'
  config.remove_reduction = 'batch'
  return config


def check_settings(settings) -> None:
  for name, allowed in (('remove_reference', REMOVE_REFERENCES),
                        ('remove_reduction', REMOVE_REDUCTIONS),
                        ('forget_masks', FORGET_MASKS)):
    if settings[name] not in allowed:
      raise ValueError(f'{name}={settings[name]!r} is not supported; allowed: {list(allowed)}.')
  if settings.expansion is not None and settings.expansion < 0:
    raise ValueError(f'expansion={settings.expansion} must be >= 0 (or unset for the default).')
  if settings.max_flush_epochs < 0:
    raise ValueError(f'max_flush_epochs={settings.max_flush_epochs} must be >= 0.')
  if settings.p_mem is not None and not 0 < settings.p_mem <= 1:
    raise ValueError(f'p_mem={settings.p_mem!r} must lie in (0, 1]: the masks\' keep '
                     'probability.')


# ---- Pieces (pure functions; tests call them directly) -----------------------------------------


def default_expansion(capacity: float) -> float:
  """Fill a narrow base up to the full width; add +50 % to a full-width base."""
  return 1.0 - capacity if capacity < 1.0 else 0.5


def removal_ids(variant: str, forget_ids, record: corruptions.CorruptionRecord | None):
  """The ids that get the shared mask and the removal term: D_f, or all of D_c for IDEAL (an
  upper bound that uses knowledge a practitioner does not have)."""
  if variant != 'rem_ideal':
    return forget_ids
  if record is None:
    raise ValueError("method 'rem_ideal' needs the corrupted ids (D_c), which only the benchmark "
                     'knows; use rem.')
  return record.corrupted_ids


def per_example_terms(*, ce_mask, ce_ref_mask, ce_drop, ce_ref_drop, in_forget, beta,
                      redirect_into_extra: bool = True, remove: bool = True):
  """REM's Step-3 loss per example: (redirect term, removal term).

  redirect = redirect(ce_mask, ce_ref_mask) on every example (ablation `rem_no_redirect`:
  redirect(ce_drop, ce_ref_drop) on non-forget examples only); removal = npo(ce_drop,
  ce_ref_drop) on forget examples, 0 elsewhere (and everywhere for `rem_no_remove`).
  """
  in_forget = in_forget.astype(jnp.float32)
  if redirect_into_extra:
    redirect = losses.redirect(ce_mask, ce_ref_mask, beta=beta)
  else:
    redirect = losses.redirect(ce_drop, ce_ref_drop, beta=beta) * (1.0 - in_forget)
  removal = losses.npo(ce_drop, ce_ref_drop, beta=beta) * in_forget if remove else (
      jnp.zeros_like(ce_drop))
  return redirect, removal


def reduce_terms(redirect, removal, in_forget, reduction: str):
  """'batch': mean of (redirect + removal) over the batch (the reference code); 'forget':
  redirect averaged over the batch plus removal averaged over the batch's forget examples."""
  if reduction == 'batch':
    return jnp.mean(redirect + removal)
  forget_count = jnp.maximum(jnp.sum(in_forget.astype(jnp.float32)), 1.0)
  return jnp.mean(redirect) + jnp.sum(removal) / forget_count


def exact_batch_stats(setup: 'Setup', variables, view, in_shared_all, mask_seed, mesh,
                      batch_size):
  """Running statistics = the exact mean and (population) variance of each BatchNorm's input
  over `view` (`rem_jax.models.batch_stats`), in one pass with train-mode normalisation and
  REM's masks (the shared mask where `in_shared_all`, own masks elsewhere; `mask_seed` may be a
  device value).
  """
  return batch_stats.exact_statistics(variables['batch_stats'], (
      batch_moments_step(setup, variables, view.images, batch, in_shared_all, mask_seed)
      for batch in view.evaluation_batches(batch_size, mesh)))


# ---- The compiled steps -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything static about one REM run; hashable, so the module-level compiled steps are
  shared by every run with equal settings (one compile for all discovery rates and seeds: the
  mask seed is a device value, `state['mask_seed']`)."""
  model: object
  p_mem: float
  optimizer: optim.OptimizerSettings
  image_shape: tuple[int, ...]
  beta: float = 1.0
  remove_reference: str = 'drop'
  remove_reduction: str = 'batch'
  redirect_into_extra: bool = True
  remove: bool = True

  @functools.cached_property  # Not a field: equality and the compile cache ignore it.
  def base_shapes(self):
    """θo1's variable shapes: those of `self.model.base_model()`."""
    return expansion.variable_shapes(self.model.base_model(), self.image_shape)

  def drop_mode(self, variables):
    """`variables` ({'params', 'batch_stats'}) pruned to θo1.

    Every drop-mode pass runs the base network on these: a zero mask makes the expanded model
    compute exactly that function of θo1 (the extra units' outputs are multiplied by 0), at
    1/2.6 of the FLOPs at the paper's widths. Differentiating through the pruning gives the
    extra units the zero gradient a drop pass gives them, so the optimizer sees what it saw
    when the pass ran on the expanded model (weight decay and momentum included).
    """
    return expansion.prune_to(variables, self.base_shapes)

  def drop_pass(self, variables, inputs, train: bool):
    """Drop-mode logits (and in train mode θo1's new statistics) of expanded `variables`."""
    base = self.drop_mode(variables)
    return trainer.apply_model(self.model.base_model(), base['params'],
                               base.get('batch_stats', {}), inputs,
                               masks.drop_mask(inputs.shape[0], 0), train)

  def masks(self, ids, in_shared, mask_seed):
    return masks.assign_masks(ids, in_shared, mask_seed=mask_seed, p_mem=self.p_mem,
                              mask_size=self.model.mask_size)


def make_setup(variant: str, settings, model, p_mem: float, image_shape) -> Setup:
  """The static part of `variant`'s run with its resolved `settings` on `model`."""
  return Setup(
      model=model, p_mem=p_mem, image_shape=tuple(image_shape), beta=settings.beta,
      optimizer=optim.OptimizerSettings.from_config(settings),
      remove_reference=settings.remove_reference, remove_reduction=settings.remove_reduction,
      redirect_into_extra=variant != 'rem_no_redirect', remove=variant != 'rem_no_remove')


@functools.partial(jax.jit, static_argnums=0)
def batch_moments_step(setup: Setup, variables, images, batch, in_shared_all, mask_seed):
  """The moments of every BatchNorm's input over one batch, with REM's masks (Step 1)."""
  batch_masks = setup.masks(batch.ids, in_shared_all[batch.ids], mask_seed)
  inputs = pipeline.eval_inputs(images, batch, setup.model.dtype)
  return batch_stats.input_moments(setup.model, variables, inputs, batch_masks, batch.weights)


def with_mask_seed(state: dict, mask_seed: int, mesh) -> dict:
  """The train state carrying the run's mask seed (a device value: no recompile per seed).

  A fresh array of its own, replicated on `mesh` as the steps' outputs are: the steps donate
  the state, so it must not be shared, and a seed placed anywhere else (an uncommitted array)
  makes the first step's input type differ from every later one's, so each step compiled twice.
  """
  return {**state, 'mask_seed': sharding.replicate(jnp.asarray(int(mask_seed), jnp.int32), mesh)}


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def flush_step(setup: Setup, state, images, batch, reference):
  """One NPO step on a batch of D_f in drop mode (REM Step 2)."""
  model = setup.model
  inputs = trainer.augmented_inputs(model, state, images, batch)
  if setup.remove_reference == 'drop':
    ref_logits, _ = setup.drop_pass(reference, inputs, False)
  else:
    mask = setup.masks(batch.ids, jnp.ones(batch.ids.shape, bool), state['mask_seed'])
    ref_logits, _ = trainer.apply_model(model, reference['params'],
                                        reference.get('batch_stats', {}), inputs, mask, False)
  ce_ref = losses.cross_entropy(ref_logits, batch.labels)

  def loss_fn(params):
    logits, stats = setup.drop_pass({'params': params, 'batch_stats': state['batch_stats']},
                                    inputs, True)
    ce = losses.cross_entropy(logits, batch.labels)
    if stats:  # Only base channels served this drop pass; extra channels keep theirs.
      stats = expansion.merge_into(stats, state['batch_stats'])
    loss = losses.weighted_mean(losses.npo(ce, ce_ref, beta=setup.beta), batch.weights)
    return loss, {'batch_stats': stats}

  return trainer.apply_gradients(setup.optimizer.build(state.get('schedule')), state, loss_fn)


def repair_loss_fn(setup: Setup, state, inputs, batch, reference, in_forget_all, in_shared_all):
  """REM Step 3's loss as a function of the live parameters: -> (loss, {'batch_stats'})."""
  model = setup.model
  in_forget = in_forget_all[batch.ids]
  batch_masks = setup.masks(batch.ids, in_shared_all[batch.ids], state['mask_seed'])
  ce = lambda logits: losses.cross_entropy(logits, batch.labels)
  ce_ref_mask = ce(trainer.apply_model(model, reference['params'],
                                       reference.get('batch_stats', {}), inputs, batch_masks,
                                       False)[0])
  ce_ref_drop = (ce(setup.drop_pass(reference, inputs, False)[0])
                 if setup.remove_reference == 'drop' else ce_ref_mask)

  def loss_fn(params):
    drop_logits, drop_stats = setup.drop_pass(
        {'params': params, 'batch_stats': state['batch_stats']}, inputs, True)
    ce_drop = ce(drop_logits)
    if setup.redirect_into_extra:
      mask_logits, mask_stats = trainer.apply_model(model, params, state['batch_stats'], inputs,
                                                   batch_masks, True)
      ce_mask = ce(mask_logits)
    else:  # No pass in mask mode: the extra channels keep their statistics.
      mask_stats, ce_mask = state['batch_stats'], ce_drop
    redirect, removal = per_example_terms(
        ce_mask=ce_mask, ce_ref_mask=ce_ref_mask, ce_drop=ce_drop, ce_ref_drop=ce_ref_drop,
        in_forget=in_forget, beta=setup.beta, redirect_into_extra=setup.redirect_into_extra,
        remove=setup.remove)
    loss = reduce_terms(redirect, removal, in_forget, setup.remove_reduction)
    # θo1's statistics from the drop pass, the extra channels' from the mask pass.
    stats = expansion.merge_into(drop_stats, mask_stats) if drop_stats else {}
    return loss, {'batch_stats': stats}

  return loss_fn


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def repair_step(setup: Setup, state, images, batch, reference, in_forget_all, in_shared_all):
  """One repair + redirect step on a batch of D_tr (REM Step 3)."""
  inputs = trainer.augmented_inputs(setup.model, state, images, batch)
  loss_fn = repair_loss_fn(setup, state, inputs, batch, reference, in_forget_all, in_shared_all)
  return trainer.apply_gradients(setup.optimizer.build(state.get('schedule')), state, loss_fn)


@functools.partial(jax.jit, static_argnums=(0, 1))
def shared_mask_accuracy_step(model, p_mem, mask_seed, variables, images, batch):
  """(correct, count) with the shared forget mask on every example (REM's dynamics)."""
  inputs = pipeline.eval_inputs(images, batch, model.dtype)
  shared = masks.shared_forget_mask(mask_seed=mask_seed, p_mem=p_mem, mask_size=model.mask_size)
  mask = jnp.broadcast_to(shared, (inputs.shape[0], model.mask_size))
  correct = jnp.argmax(model.apply(variables, inputs, mask, train=False), -1) == batch.labels
  return jnp.sum(correct * batch.weights), jnp.sum(batch.weights)


# ---- Fig. 5's dynamics (a diagnostic: no part of the algorithm) --------------------------------


def dynamics_probe(task: base.Task, forget_ids, setup: Setup, mask_seed, accuracy,
                   eval_batch: int):
  """-> probe(variables): an iteration's dynamics entries for its record (Fig. 5).

  Both read D_c against its corrupted labels: 'corrupted_accuracy_drop' with the extra units
  off (`accuracy`, the run's drop-mode accuracy), 'corrupted_accuracy_shared_mask' with the
  shared forget mask on every example.
  """
  views = task.views
  # The dynamics watch D_c; a practitioner does not know it, and D_f stands in.
  known = task.record.corrupted_ids if task.record is not None else forget_ids
  corrupted_view = views.train.subset(np.searchsorted(views.train.ids, known))
  shared_accuracy = functools.partial(shared_mask_accuracy_step, setup.model, setup.p_mem,
                                      mask_seed)

  def probe(variables) -> dict:
    correct, count = evaluation.view_accuracy(shared_accuracy, variables, views.train.images,
                                              corrupted_view, eval_batch, task.mesh)
    return {'corrupted_accuracy_drop': accuracy(variables, corrupted_view),
            'corrupted_accuracy_shared_mask': float(correct) / float(count)}

  return probe


# ---- The method --------------------------------------------------------------------------------


def _expanded_start(original: base.TrainedModel, settings, task: base.Task, variant: str):
  """(model, variables, mask config): expanded θo1 ∪ θo2, or the ETD base as it is."""
  if original.mask_config is not None:
    if settings.expansion is not None:
      raise ValueError(f'expansion={settings.expansion!r}: an ETD base brings its own extra '
                       'units; leave expansion unset.')
    if settings.p_mem not in (None, original.mask_config.p_mem):
      raise ValueError(f'p_mem={settings.p_mem!r}: this ETD base was trained with p_mem='
                       f'{original.mask_config.p_mem}, and REM reuses its masks.')
    return original.model, original.variables, original.mask_config
  if variant == 'rem_etd':
    raise ValueError("method 'rem_etd' runs REM on an ETD-trained base; set base='etd'.")
  mask_config = masks.MaskConfig(mask_seed=task.seed, p_mem=(
      DEFAULT_P_MEM if settings.p_mem is None else settings.p_mem))
  if settings.expansion == 0:
    return original.model, original.variables, mask_config
  amount = (default_expansion(original.model.capacity) if settings.expansion is None else
            settings.expansion)
  model = original.model.clone(expansion=amount)
  if model.mask_size == 0:
    raise ValueError(f'REM needs extra units: the base has none and expansion={amount} adds '
                     'none at these widths; raise expansion (or set 0 to run without).')
  variables = expansion.expand(original.variables, model,
                               seeds.key(task.seed, seeds.Stream.EXPANSION_INIT),
                               image_shape=task.views.train.images.shape[1:])
  return model, variables, mask_config


def rem(original: base.TrainedModel, task: base.Task, config,
        variant: str = 'rem') -> base.Unlearned:
  """Runs REM (or one of `VARIANTS`) and returns the model with θo2 dropped."""
  if variant not in VARIANTS:
    raise ValueError(f'variant={variant!r} is unknown; allowed: {list(VARIANTS)}.')
  settings = common.resolve_settings(config, default_config(), variant, check_settings)
  views, mesh = task.views, task.mesh
  num_examples = views.train.num_examples
  forget_ids = corruptions.check_forget_ids(task.forget_ids, num_examples)
  watch = common.Stopwatch()
  image_shape = tuple(views.train.images.shape[1:])
  steps_per_epoch = math.ceil(num_examples / task.batch_size)

  # 1. Expand.
  model, variables, mask_config = _expanded_start(original, settings, task, variant)
  setup = make_setup(variant, settings, model, mask_config.p_mem, image_shape)
  # Who gets the removal term and the shared mask: D_f, or D_c for IDEAL.
  in_forget = sharding.replicate(common.membership(
      num_examples, removal_ids(variant, forget_ids, task.record)), mesh)
  in_shared = (in_forget if settings.forget_masks == 'shared' else
               sharding.replicate(jnp.zeros(num_examples, bool), mesh))
  eval_batch = common.round_to_devices(settings.eval_batch_size, mesh)
  mask_seed = sharding.replicate(jnp.int32(mask_config.mask_seed), mesh)
  expanded_here = original.mask_config is None and model.mask_size > 0
  if expanded_here and variables.get('batch_stats'):
    exact = exact_batch_stats(setup, variables, views.train, in_shared, mask_seed, mesh,
                              eval_batch)
    # θo1's channels keep the trained statistics; the new ones get the exact ones.
    variables = {**variables, 'batch_stats': expansion.merge_into(
        original.variables['batch_stats'], exact)}

  # 2. The frozen reference; the live state owns copies (steps donate it).
  reference = sharding.replicate(variables, mesh)
  state = with_mask_seed(common.start_state(variables, setup.optimizer,
                                            seeds.key(task.seed, seeds.Stream.AUGMENTATION),
                                            mesh, settings.epochs * steps_per_epoch),
                         mask_config.mask_seed, mesh)
  flush = lambda state, images, batch: flush_step(setup, state, images, batch, reference)
  repair = lambda state, images, batch: repair_step(setup, state, images, batch, reference,
                                                    in_forget, in_shared)
  base_accuracy = common.Accuracy(model.base_model(), mesh, eval_batch)
  # Every stop check and proxy reads drop mode: θo1 alone, on the base network.
  accuracy = lambda variables, view: base_accuracy(setup.drop_mode(variables), view)
  dynamics = dynamics_probe(task, forget_ids, setup, mask_seed, accuracy, eval_batch)
  flush_batch = common.forget_batch_size(task)

  images = views.train.images
  best = common.BestIteration()
  iterations = []
  flush_steps = repair_steps = 0
  data_key = seeds.key(task.seed, seeds.Stream.DATA_ORDER)
  # One bar over the iterations: their count is fixed, so its ETA is real. A flush stops early
  # (at most max_flush_epochs, usually a few), so it gets no ETA of its own: the postfix shows its
  # epochs so far and Acc(D_f) on the way down to gamma, then each iteration's outcome.
  with common.progress(settings.epochs, variant, 'iteration') as bar:
    for iteration in range(1, settings.epochs + 1):
      epoch_key = jax.random.fold_in(data_key, iteration)
      # 3a. Remove: flush until the forget set is forgotten (uncounted steps).
      flush_trace = [watch.evaluating(accuracy, trainer.variables_of(state), views.forget)]
      while (not common.forgotten(flush_trace[-1], settings.gamma)
             and len(flush_trace) <= settings.max_flush_epochs):
        state, _ = common.run_epoch(flush, state, images, views.forget, flush_batch,
                                    jax.random.fold_in(epoch_key, len(flush_trace)), mesh)
        flush_steps += math.ceil(views.forget.num_examples / flush_batch)
        flush_trace.append(watch.evaluating(accuracy, trainer.variables_of(state),
                                            views.forget))
        common.show(bar, f'flush={len(flush_trace) - 1}/{settings.max_flush_epochs}, '
                    f'Acc(D_f)={flush_trace[-1]:.3f}')
      # 3b. Repair + redirect: one epoch of D_tr.
      state, _ = common.run_epoch(repair, state, images, views.train, task.batch_size,
                                  epoch_key, mesh)
      repair_steps += steps_per_epoch
      common.check_finite(state, 'REM', f'iteration {iteration}')
      # 3c. Select on the training-data proxy.
      current = trainer.variables_of(state)
      retain_accuracy = watch.evaluating(accuracy, current, views.retain)
      forget_accuracy = watch.evaluating(accuracy, current, views.forget)
      score = common.proxy(retain_accuracy, forget_accuracy, settings.gamma)
      iterations.append({
          'iteration': iteration, 'flush_epochs': len(flush_trace) - 1,
          'flush_forget_accuracy': flush_trace, 'proxy': score,
          'retain_accuracy': retain_accuracy, 'forget_accuracy': forget_accuracy,
          **watch.evaluating(dynamics, current)})
      best.offer(iteration, score, current)
      common.show(bar, f'flush={len(flush_trace) - 1}, Acc(D_f)={forget_accuracy:.3f}, '
                  f'proxy={score:.3f}', advance=1)

  # 4. Drop θo2 from the selected iteration's variables.
  final = setup.drop_mode(best.variables)
  record = {'steps': repair_steps, 'flush_steps': flush_steps, 'epochs': settings.epochs,
            'best_iteration': best.iteration, 'iterations': iterations,
            'mask_size': model.mask_size, 'expanded_here': expanded_here, **watch.record()}
  return base.Unlearned(model.base_model(), final, record)
