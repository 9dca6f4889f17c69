"""Training the original models: schedules, optimizers, the train state and jitted steps.

The recipes are SPEC §6. Weight decay is *coupled* L2, as PyTorch's SGD and Adam apply it: the
decay term is added to the gradient before momentum / Adam's moments, so it is scaled by the
adaptive step like any other gradient (this is not AdamW).

The train state is a plain dict of pytrees:

  {'step': int32 scalar, 'params': ..., 'batch_stats': ... ({} for the ViT),
   'opt_state': optax state, 'rng': PRNG key, 'finite': bool scalar}

`finite` stays on the device and turns False at the first non-finite loss, so a training loop
can check it at checkpoint intervals without a host synchronisation per step.

Steps are `jax.jit`-compiled over a `data`-axis mesh: the batch is sharded, the state and the
device-resident images are replicated, and the state is donated (updated in place).
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from rem_jax import losses
from rem_jax import masks
from rem_jax import sharding
from rem_jax.data import pipeline

OPTIMIZERS = ('sgd', 'adam')
SCHEDULES = ('warmup_linear_decay', 'constant')


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss."""


def warmup_steps(total_steps: int, warmup_fraction: float = 0.01) -> int:
  """W = max(1, round(warmup_fraction * total_steps)), computed on the host (Python's round)."""
  if total_steps <= 0:
    raise ValueError(f'total_steps={total_steps} must be positive.')
  return max(1, round(warmup_fraction * total_steps))


def warmup_linear_decay(peak_lr: float, total_steps, *, warmup: int | None = None,
                        start_divisor: float = 41.0, decay_horizon: float = 1.25):
  """The ResNet-9 schedule of SPEC §6, as an optax schedule of the 0-based step t.

  With W = `warmup` (default `warmup_steps(total_steps)`, 1 % of the steps):

    lr(t) = peak/d + (peak - peak/d) * t / W           for t < W   (d = start_divisor)
    lr(t) = peak * (1 - (t - W) / (h * total_steps))   for t >= W  (h = decay_horizon)

  For peak 0.025 over 4000 steps: lr(0) = 0.025/41, lr(40) = 0.025, lr(3999) ≈ 0.0052 (21 % of
  the peak; the decay is stretched over 1.25x the run so it never reaches 0).

  `total_steps` and `warmup` may be device values (a method whose step count depends on the
  forget set keeps them in its train state, so every discovery rate shares one compiled step);
  then `warmup` must be given.
  """
  if warmup is None:
    warmup = warmup_steps(total_steps)
  start = peak_lr / start_divisor

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    width = jnp.asarray(warmup, jnp.float32)
    rising = start + (peak_lr - start) * t / width
    falling = peak_lr * (1.0 - (t - width) / (decay_horizon * total))
    return jnp.where(t < width, rising, falling)

  return schedule


def make_optimizer(name: str, learning_rate, *, momentum: float = 0.9,
                   weight_decay: float = 5e-4) -> optax.GradientTransformation:
  """SGD (with momentum) or Adam with coupled L2 weight decay, as PyTorch applies it.

  Args:
    name: 'sgd' or 'adam'.
    learning_rate: a float or an optax schedule.
    momentum: SGD's momentum (PyTorch's: buffer = momentum * buffer + gradient, no dampening).
    weight_decay: L2 coefficient, added to the gradient as weight_decay * params.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f'optimizer={name!r} is not supported; allowed: {list(OPTIMIZERS)}.')
  if weight_decay < 0:
    raise ValueError(f'weight_decay={weight_decay} must be >= 0.')
  if name == 'sgd':
    update = optax.sgd(learning_rate, momentum=momentum or None)
  else:
    update = optax.adam(learning_rate)
  return optax.chain(optax.add_decayed_weights(weight_decay), update)


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """A method's optimizer as plain values: hashable, so compiled steps that build the optimizer
  from it are shared by every run with the same settings (every discovery rate, every seed).

  `schedule='warmup_linear_decay'` is the §6 schedule over `total_steps` (the ResNet-9 recipe,
  CF's); 'constant' keeps the learning rate fixed (the ViT recipe, REM's, NPO's). The unlearning
  methods pass the schedule's length at build time instead (`schedule_lengths`), from their
  train state: a method's step count depends on |D_f|, its compiled step must not.
  """
  optimizer: str
  learning_rate: float
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = 'constant'
  total_steps: int = 1

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ValueError(f'schedule={self.schedule!r} is not supported; allowed: '
                       f'{list(SCHEDULES)}.')
    if not self.learning_rate > 0:
      raise ValueError(f'learning_rate={self.learning_rate!r} must be > 0.')
    if not 0 <= self.momentum < 1:
      raise ValueError(f'momentum={self.momentum!r} must lie in [0, 1).')
    self.build()  # Validates the optimizer's name.

  def build(self, schedule_lengths: dict | None = None):
    """The optax optimizer; `schedule_lengths` ({'total_steps', 'warmup'}, possibly device
    values, see `schedule_lengths`) overrides `total_steps`."""
    learning_rate = self.learning_rate
    if self.schedule == 'warmup_linear_decay':
      lengths = schedule_lengths or {'total_steps': max(self.total_steps, 1)}
      learning_rate = warmup_linear_decay(learning_rate, **lengths)
    return make_optimizer(self.optimizer, learning_rate, momentum=self.momentum,
                          weight_decay=self.weight_decay)


def schedule_lengths(total_steps: int) -> dict:
  """{'total_steps', 'warmup'} as int32 device scalars, for `OptimizerSettings.build`."""
  return {'total_steps': jnp.asarray(total_steps, jnp.int32),
          'warmup': jnp.asarray(warmup_steps(total_steps), jnp.int32)}


def create_train_state(variables: dict, optimizer: optax.GradientTransformation, key) -> dict:
  """A fresh train state around initialised (or trained) `variables`.

  The state owns copies of the variables: steps donate the state, and donation must never
  delete arrays the caller still holds (e.g. the trained model a method starts from).
  """
  variables = _copy(variables)
  params = variables['params']
  return {
      'step': jnp.zeros((), jnp.int32),
      'params': params,
      'batch_stats': variables.get('batch_stats', {}),
      'opt_state': optimizer.init(params),
      'rng': key,
      'finite': jnp.ones((), bool),
  }


@jax.jit
def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def variables_of(state: dict) -> dict:
  """The model variables ({'params'} plus 'batch_stats' when the model has any) of a state."""
  variables = {'params': state['params']}
  if state['batch_stats']:
    variables['batch_stats'] = state['batch_stats']
  return variables


def weighted_mean(values, weights):
  """Σ w·v / Σ w; weights are 1 for real examples and 0 for padding."""
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
  """What a training step needs besides the state and the batch.

  Attributes:
    model: the module being trained (its `mask_size` decides plain vs ETD training).
    optimizer: from `make_optimizer`, or `OptimizerSettings`, whose schedule's length the step
      then takes as an argument (`schedule_lengths`): one compile serves every run length.
    mask_config: required when the model has extra units: ETD training, each example through
      all base units and its own Bernoulli(p_mem) mask on the extra units.
  """
  model: object
  optimizer: 'optax.GradientTransformation | OptimizerSettings'
  mask_config: masks.MaskConfig | None = None

  def __post_init__(self):
    if self.model.mask_size and self.mask_config is None:
      raise ValueError('The model has extra units (mask_size '
                       f'{self.model.mask_size}): ETD training needs a mask_config.')


def training_masks(config: TrainStepConfig, ids, mask_seed=None):
  """Per-example own masks (ETD) for a model with extra units; None for a plain model.

  `mask_seed` (a device value, e.g. the train state's 'mask_seed') overrides the config's, so
  one compiled step serves every seed.
  """
  if not config.model.mask_size:
    return None
  seed = config.mask_config.mask_seed if mask_seed is None else mask_seed
  return masks.example_masks(ids, mask_seed=seed, p_mem=config.mask_config.p_mem,
                             mask_size=config.model.mask_size)


def train_step(config: TrainStepConfig, state: dict, images, batch: pipeline.Batch,
               schedule: dict | None = None):
  """One SGD/Adam step on the weighted mean cross-entropy of an augmented batch.

  `schedule` ({'total_steps', 'warmup'} device scalars, `schedule_lengths`) is required when
  `config.optimizer` is an `OptimizerSettings`.

  Returns:
    (new state, metrics) with metrics {'loss', 'correct', 'count'} as on-device sums, so an
    epoch's metrics add up without reading anything back per step.
  """
  model = config.model
  key = jax.random.fold_in(state['rng'], state['step'])
  inputs = pipeline.training_inputs(images, batch, key, model.dtype)
  mask = training_masks(config, batch.ids, state.get('mask_seed'))

  def loss_fn(params):
    variables = variables_of({**state, 'params': params})
    logits, updates = model.apply(variables, inputs, mask, train=True, mutable=['batch_stats'])
    ce = losses.cross_entropy(logits, batch.labels)
    return weighted_mean(ce, batch.weights), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  optimizer = (config.optimizer.build(schedule) if isinstance(config.optimizer, OptimizerSettings)
               else config.optimizer)
  step_updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
  correct = (jnp.argmax(logits, -1) == batch.labels).astype(jnp.float32)
  new_state = {
      **state,
      'step': state['step'] + 1,
      'params': optax.apply_updates(state['params'], step_updates),
      'batch_stats': updates.get('batch_stats', state['batch_stats']),
      'opt_state': opt_state,
      'finite': state['finite'] & jnp.isfinite(loss),
  }
  metrics = {'loss': loss * jnp.sum(batch.weights), 'correct': jnp.sum(correct * batch.weights),
             'count': jnp.sum(batch.weights)}
  return new_state, metrics


def jit_train_step(config: TrainStepConfig, mesh) -> Callable:
  """`train_step` compiled for `mesh`: state replicated and donated, batch sharded on `data`."""
  replicated = sharding.replicated(mesh)
  return jax.jit(lambda state, images, batch, schedule=None: train_step(config, state, images,
                                                                       batch, schedule),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def predict_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode (mask 0), eval-mode predictions of a batch, without augmentation."""
  inputs = pipeline.eval_inputs(images, batch, model.dtype)
  mask = jnp.zeros((inputs.shape[0], model.mask_size), model.dtype)
  return jnp.argmax(model.apply(variables, inputs, mask, train=False), -1).astype(jnp.int32)


def accuracy_step(model, variables: dict, images, batch: pipeline.Batch):
  """Drop-mode (Σ weight·correct, Σ weight) of a batch against its labels, on the device."""
  correct = (predict_step(model, variables, images, batch) == batch.labels).astype(jnp.float32)
  return jnp.sum(correct * batch.weights), jnp.sum(batch.weights)


@functools.lru_cache(maxsize=64)  # One compiled step per (model, mesh), however many callers.
def jit_accuracy_step(model, mesh) -> Callable:
  """`accuracy_step` compiled for `mesh`; the (sum, count) pair comes back replicated."""
  return jax.jit(lambda variables, images, batch: accuracy_step(model, variables, images, batch),
                 out_shardings=sharding.replicated(mesh))


@functools.lru_cache(maxsize=64)
def jit_predict_step(model, mesh) -> Callable:
  """`predict_step` compiled for `mesh`; predictions stay sharded along the batch."""
  return jax.jit(lambda variables, images, batch: predict_step(model, variables, images, batch),
                 out_shardings=sharding.batch_sharding(mesh))


def run_epoch(step_fn: Callable, state: dict, images, view: pipeline.View, batch_size: int,
              key, mesh):
  """One shuffled epoch over `view` (ceil(N / batch) steps); nothing is read back per step.

  Returns:
    (state, metrics) with metrics the on-device sums {'loss', 'correct', 'count'} of the epoch.
  """
  totals = None
  for batch in view.training_epoch(batch_size, key, mesh):
    state, metrics = step_fn(state, images, batch)
    totals = metrics if totals is None else jax.tree.map(jnp.add, totals, metrics)
  return state, totals


def view_accuracy(accuracy_fn: Callable, variables: dict, images, view: pipeline.View,
                  batch_size: int, mesh):
  """Drop-mode (correct, count) over every example of `view`, summed on the device.

  Nothing is read back: the caller decides when to look (e.g. once per epoch for a stop rule).
  """
  pairs = [accuracy_fn(variables, images, batch)
           for batch in view.evaluation_batches(batch_size, mesh)]
  return jax.tree.map(lambda *xs: jnp.sum(jnp.stack(xs)), *pairs)


def predict(predict_fn: Callable, variables: dict, images, view: pipeline.View,
            batch_size: int, mesh):
  """Drop-mode predictions for every example of `view`, in view order (host int32 array)."""
  outputs = [(predict_fn(variables, images, batch), batch.weights)
             for batch in view.evaluation_batches(batch_size, mesh)]
  predictions = jnp.concatenate([p for p, _ in outputs])
  real = jnp.concatenate([w for _, w in outputs]) > 0
  # Padding sits only at the end of the last batch, so the real examples come first, in order.
  # `to_host` gathers the batch-sharded predictions from every process in a multi-process run.
  predictions, real = sharding.to_host((predictions, real))
  return predictions[real]
