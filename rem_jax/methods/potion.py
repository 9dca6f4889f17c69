"""Potion: dampen the parameters that matter far more to D_f than to D_r (SPEC §8).

Source: Schoepf et al. 2024, "Potion: towards poison unlearning" (built on Selective Synaptic
Dampening, Foster et al. 2024, in its label-free form). Loss: none, no training; the steps:

1. Importances (eval mode, drop mode, no augmentation), on D_r and on D_f: the mean over
   batches of |∂ L / ∂θ| with L the batch mean of the per-example L2 norm of the logits
   (label-free). Gradients are taken per batch and accumulated batch by batch (never per
   example), so memory is that of one training step: the ViT fits one GPU.
2. Selection: with frac = |D_f| / |D_tr|, alpha = the percentile of imp_f / imp_r over all
   parameters (every leaf, BatchNorm scale and bias included) at level
   100 - ln(1 + 100 * frac); the parameters with imp_f > alpha * imp_r are selected.
3. Dampening: each selected parameter is multiplied by min(1, imp_r / imp_f).
4. Stop rule: if Acc(D_f) (eval, drop mode, training labels) > gamma and > gamma * Acc(D_f) of
   the trained model, start again from the trained model with frac <- 1.1 * frac; after
   `max_tries` tries the last one is returned and the run is flagged `converged: False`.
   (Acc(D_f) > gamma implies the second condition, so this is the shared `common.forgotten`.)

Defaults: gamma 0.2, max_tries 50, growth 1.1, importance batches of the training batch size.
Ratios where imp_r = 0: imp_f > 0 counts as the largest float (always selected, dampened to 0:
a parameter only D_f uses), imp_f = 0 as 0 (never selected).
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from rem_jax import losses
from rem_jax import masks
from rem_jax import sharding
from rem_jax.data import pipeline
from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.gamma = 0.2
  config.max_tries = 50
  config.growth = 1.1
  config.batch_size = config_dict.placeholder(int)  # Importance batches; unset: training's.
  config.eval_batch_size = 512
  return config


def check_settings(settings) -> None:
  if not (isinstance(settings.max_tries, int) and settings.max_tries >= 1):
    raise ValueError(f'max_tries={settings.max_tries!r} must be an integer >= 1.')
  if not settings.growth > 1:
    raise ValueError(f'growth={settings.growth!r} must be > 1: each retry selects more.')
  if settings.batch_size is not None:
    common.check_positive('batch_size', settings.batch_size)


# ---- Importances -------------------------------------------------------------------------------


def logit_norm(logits):
  """Per-example L2 norm of the logits, with a zero (not NaN) gradient at all-zero logits."""
  squares = jnp.sum(jnp.square(jnp.asarray(logits, jnp.float32)), axis=-1)
  positive = squares > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def batch_importance(logits_fn, params, weights):
  """|∂ (weighted mean over the batch of ||logits_i||_2) / ∂params|, leaf by leaf.

  Args:
    logits_fn: params -> (batch, classes) logits.
    params: the parameters.
    weights: (batch,) 1 for real examples, 0 for padding.
  """
  loss = lambda p: losses.weighted_mean(logit_norm(logits_fn(p)), weights)
  return jax.tree.map(jnp.abs, jax.grad(loss)(params))


@functools.lru_cache(maxsize=16)
def _importance_step(model, mesh):
  """(variables, images, batch) -> batch importances, compiled once per (model, mesh)."""

  def step(variables, images, batch):
    inputs = pipeline.eval_inputs(images, batch, model.dtype)
    mask = masks.drop_mask(inputs.shape[0], model.mask_size)
    logits_fn = lambda params: model.apply({**variables, 'params': params}, inputs, mask,
                                           train=False)
    return batch_importance(logits_fn, variables['params'], batch.weights)

  return jax.jit(step, out_shardings=sharding.replicated(mesh))


@jax.jit
def _add(total, increment):
  return jax.tree.map(jnp.add, total, increment)


@jax.jit
def _mean(total, count):
  return jax.tree.map(lambda leaf: leaf / count, total)


def importances(model, variables: dict, view: pipeline.View, batch_size: int, mesh):
  """The mean over `view`'s batches (in order, the last one padded) of `batch_importance`."""
  step = _importance_step(model, mesh)
  total, count = None, 0
  for batch in view.evaluation_batches(batch_size, mesh):
    increment = step(variables, view.images, batch)
    total = increment if total is None else _add(total, increment)
    count += 1
  # One compiled division, dispatched once the sums are done. Written as one eager division per
  # leaf, it compiled ~30 programs while the steps' all-reduces were still in flight, and there
  # XLA's CPU runtime deadlocked, rarely, with 8 simulated devices on 2 busy cores (the test
  # suite: SIGABRT after XLA's 40 s collective timeout).
  jax.block_until_ready(total)
  return _mean(total, jnp.float32(count))


# ---- Selection and dampening -------------------------------------------------------------------


def selection_level(fraction: float) -> float:
  """The percentile level 100 - ln(1 + 100 * frac), clipped to [0, 100]."""
  return min(100.0, max(0.0, 100.0 - math.log1p(100.0 * fraction)))


def importance_ratio(retain, forget):
  """imp_f / imp_r, with x / 0 = the largest float for x > 0 and 0 / 0 = 0."""
  safe = jnp.where(retain > 0, retain, 1.0)
  largest = jnp.finfo(jnp.float32).max
  return jnp.where(retain > 0, forget / safe, jnp.where(forget > 0, largest, 0.0))


@jax.jit
def dampen(params, retain_importance, forget_importance, level):
  """Selects by the global percentile at `level` and dampens; -> (params, alpha, selected).

  Selected: imp_f > alpha * imp_r, alpha = percentile(imp_f / imp_r over every parameter,
  level). Each selected parameter is multiplied by min(1, imp_r / imp_f); the others are kept.
  """
  ratios = jax.tree.map(importance_ratio, retain_importance, forget_importance)
  alpha = jnp.percentile(jnp.concatenate([r.ravel() for r in jax.tree.leaves(ratios)]), level)

  def one(param, retain, forget):
    selected = forget > alpha * retain
    factor = jnp.minimum(1.0, retain / jnp.where(selected, forget, 1.0))
    return jnp.where(selected, param * factor, param), jnp.sum(selected)

  pairs = jax.tree.map(one, params, retain_importance, forget_importance)
  is_pair = lambda x: isinstance(x, tuple)
  dampened = jax.tree.map(lambda pair: pair[0], pairs, is_leaf=is_pair)
  selected = sum(pair[1] for pair in jax.tree.leaves(pairs, is_leaf=is_pair))
  return dampened, alpha, selected


# ---- The method --------------------------------------------------------------------------------


def potion(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'potion', check_settings)
  watch = common.Stopwatch()
  views, mesh = task.views, task.mesh
  model, variables = common.drop_mode_start(original, views.train.images.shape[1:])
  variables = sharding.replicate(variables, mesh)
  batch_size = common.round_to_devices(settings.batch_size or task.batch_size, mesh)
  retain_importance = importances(model, variables, views.retain, batch_size, mesh)
  forget_importance = importances(model, variables, views.forget, batch_size, mesh)
  accuracy = common.Accuracy(model, mesh, common.round_to_devices(settings.eval_batch_size, mesh))
  original_accuracy = watch.evaluating(accuracy, variables, views.forget)
  fraction = views.forget.num_examples / views.train.num_examples
  tries, candidate = [], None
  with common.progress(settings.max_tries, 'potion', 'try') as bar:  # Stops at the first success.
    for attempt in range(1, settings.max_tries + 1):
      level = selection_level(fraction)
      params, alpha, selected = dampen(variables['params'], retain_importance, forget_importance,
                                       jnp.float32(level))
      candidate = {**variables, 'params': params}
      forget_accuracy = watch.evaluating(accuracy, candidate, views.forget)
      tries.append({'try': attempt, 'fraction': fraction, 'level': level, 'alpha': float(alpha),
                    'selected': int(selected), 'forget_accuracy': forget_accuracy})
      common.show(bar, f'Acc(D_f)={forget_accuracy:.3f}', advance=1)
      if common.forgotten(forget_accuracy, settings.gamma):
        break
      fraction *= settings.growth
  converged = common.forgotten(tries[-1]['forget_accuracy'], settings.gamma)
  return base.Unlearned(model, candidate, {
      'steps': 0, 'epochs': 0, 'tries': tries, 'converged': converged,
      'original_forget_accuracy': original_accuracy, **watch.record()})
