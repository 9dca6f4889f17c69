"""Training: the train state, the update, the train step and the loop, top to bottom.

The train state is a plain dict of pytrees:

  {'step': int32 scalar, 'params': ..., 'batch_stats': ... ({} for the ViT),
   'opt_state': optax state, 'rng': PRNG key, 'finite': bool scalar}

plus 'mask_seed' (ETD training) or 'schedule' (the unlearning methods' schedule lengths), device
values a compiled step reads, so one compile serves every seed and run length. `finite` turns
False at the first non-finite loss and stays on the device: the loop reads it at checkpoint
intervals, not per step.

Python only decides between steps which batch of indices comes next; everything else (gather,
augmentation, forward, backward, metric sums, the finite flag) stays on the device. The data
order of epoch e is a pure function of (seed, e) and the augmentation of step t of (seed, t), so
a run resumed from a checkpoint at step s runs exactly steps s..end and ends with the same
weights as an uninterrupted run. Steps are `jax.jit`-compiled over a `data`-axis mesh: the batch
is sharded, the state and the device-resident images are replicated, the state is donated.
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from rem_jax import checkpoints
from rem_jax import expansion
from rem_jax import losses
from rem_jax import masks
from rem_jax import optim
from rem_jax import sections
from rem_jax import seeds
from rem_jax import sharding
from rem_jax.data import pipeline


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to train an original model (SPEC §6).

  Attributes:
    optimizer: the optimizer and its schedule (the ResNet-9 recipe: SGD, peak lr 0.025, warm-up
      then linear decay; the ViT's: Adam, constant).
    steps: total optimizer steps (epochs = steps / ceil(N / batch_size)); the schedule's length.
    batch_size: examples per step; a multiple of the number of devices.
    checkpoint_every: steps between checkpoints (and between reads of the finite flag).
  """
  optimizer: optim.OptimizerSettings = optim.OptimizerSettings(
      learning_rate=0.025, schedule='warmup_linear_decay')
  steps: int = 4000
  batch_size: int = 512
  checkpoint_every: int = 500

  def __post_init__(self):
    for name in ('steps', 'batch_size', 'checkpoint_every'):
      if getattr(self, name) <= 0:
        raise ValueError(f'train.{name}={getattr(self, name)} must be positive.')

  @classmethod
  def from_config(cls, config: Mapping) -> 'Recipe':
    """From the flat `train` section: the optimizer's fields and the loop's."""
    given = dict(config)
    loop_fields = {field.name for field in dataclasses.fields(cls)} - {'optimizer'}
    optimizer_fields = {field.name for field in dataclasses.fields(optim.OptimizerSettings)}
    sections.check_fields(given, loop_fields | optimizer_fields, 'train')
    try:
      optimizer = dataclasses.replace(
          cls.optimizer, **{k: v for k, v in given.items() if k in optimizer_fields})
    except ValueError as error:
      raise ValueError(f'train.{error}') from None
    return cls(optimizer, **{k: v for k, v in given.items() if k in loop_fields})


# ---- The train state ---------------------------------------------------------------------------


def create_train_state(variables: dict, optimizer: optim.OptimizerSettings, key) -> dict:
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
  if state.get('batch_stats'):
    variables['batch_stats'] = state['batch_stats']
  return variables


# ---- The update: one path for training and every method ----------------------------------------


def augmented_inputs(model, state: dict, images, batch: pipeline.Batch):
  """The batch's training inputs; the augmentation key is a function of (state rng, step)."""
  key = jax.random.fold_in(state['rng'], state['step'])
  return pipeline.training_inputs(images, batch, key, model.dtype)


def apply_model(model, params, batch_stats, inputs, mask, train: bool):
  """Logits, and in train mode the updated batch statistics ({} for models without BN)."""
  variables = variables_of({'params': params, 'batch_stats': batch_stats})
  if not train:
    return model.apply(variables, inputs, mask, train=False), batch_stats
  logits, updates = model.apply(variables, inputs, mask, train=True, mutable=['batch_stats'])
  return logits, updates.get('batch_stats', {})


def apply_gradients(optimizer: optax.GradientTransformation, state: dict, loss_fn: Callable):
  """Differentiates `loss_fn(params) -> (loss, aux)`, where aux is a dict holding the new
  'batch_stats' (and whatever else the caller wants back), and applies one optimizer update.

  Returns:
    (new state, {'loss': loss, **aux without 'batch_stats'}); the state's finite flag turns
    False at a non-finite loss.
  """
  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
  updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
  aux = dict(aux)
  new_state = {**state, 'step': state['step'] + 1, 'opt_state': opt_state,
               'params': optax.apply_updates(state['params'], updates),
               'batch_stats': aux.pop('batch_stats'),
               'finite': state['finite'] & jnp.isfinite(loss)}
  return new_state, {'loss': loss, **aux}


# ---- The train step ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainStepConfig:
  """What a training step needs besides the state and the batch.

  Attributes:
    model: the module being trained (its `mask_size` decides plain vs ETD training).
    optimizer: the optimizer; its schedule's length is a step argument (`optim.schedule_lengths`)
      so one compile serves every run length.
    mask_config: required when the model has extra units: ETD training, each example through
      all base units and its own Bernoulli(p_mem) mask on the extra units.
  """
  model: object
  optimizer: optim.OptimizerSettings
  mask_config: masks.MaskConfig | None = None

  def __post_init__(self):
    if self.model.mask_size and self.mask_config is None:
      raise ValueError('The model has extra units (mask_size '
                       f'{self.model.mask_size}): ETD training needs a mask_config.')


def training_masks(config: TrainStepConfig, ids, mask_seed=None):
  """Per-example own masks (ETD) for a model with extra units, drop masks for a plain model.

  `mask_seed` (a device value, e.g. the train state's 'mask_seed') overrides the config's, so
  one compiled step serves every seed.
  """
  if not config.model.mask_size:
    return masks.drop_mask(ids.shape[0], 0)
  seed = config.mask_config.mask_seed if mask_seed is None else mask_seed
  return masks.example_masks(ids, mask_seed=seed, p_mem=config.mask_config.p_mem,
                             mask_size=config.model.mask_size)


def train_step(config: TrainStepConfig, state: dict, images, batch: pipeline.Batch,
               schedule: dict | None = None):
  """One SGD/Adam step on the weighted mean cross-entropy of an augmented batch.

  `schedule` ({'total_steps', 'warmup'} device scalars, `optim.schedule_lengths`) is required
  for a warm-up schedule.

  Returns:
    (new state, metrics) with metrics {'loss', 'correct', 'count'} as on-device sums, so an
    epoch's metrics add up without reading anything back per step.
  """
  model = config.model
  inputs = augmented_inputs(model, state, images, batch)
  mask = training_masks(config, batch.ids, state.get('mask_seed'))

  def loss_fn(params):
    logits, stats = apply_model(model, params, state['batch_stats'], inputs, mask, train=True)
    ce = losses.cross_entropy(logits, batch.labels)
    return losses.weighted_mean(ce, batch.weights), {'batch_stats': stats, 'logits': logits}

  new_state, out = apply_gradients(config.optimizer.build(schedule), state, loss_fn)
  correct = (jnp.argmax(out['logits'], -1) == batch.labels).astype(jnp.float32)
  metrics = {'loss': out['loss'] * jnp.sum(batch.weights),
             'correct': jnp.sum(correct * batch.weights), 'count': jnp.sum(batch.weights)}
  return new_state, metrics


def jit_train_step(config: TrainStepConfig, mesh) -> Callable:
  """`train_step` compiled for `mesh`: state replicated and donated, batch sharded on `data`."""
  replicated = sharding.replicated(mesh)
  return jax.jit(lambda state, images, batch, schedule=None: train_step(config, state, images,
                                                                       batch, schedule),
                 out_shardings=(replicated, replicated), donate_argnums=0)


@functools.lru_cache(maxsize=32)
def _compiled_train_step(model, optimizer: optim.OptimizerSettings, mask_config, mesh):
  """One jitted train step per (model, optimizer settings, masks, mesh): the schedule's length
  is an argument, so every seed and run length (Retrain, a resumed run, another `steps`) reuses
  the compile of the first training run, and the persistent cache serves other processes."""
  return jit_train_step(TrainStepConfig(model, optimizer, mask_config), mesh)


# ---- The loop ----------------------------------------------------------------------------------


@jax.jit
def _finite_leaves(tree):
  return jax.tree.map(lambda leaf: jnp.all(jnp.isfinite(leaf)), tree)


def _nonfinite_leaves(variables: dict) -> list[str]:
  """The leaves of `variables` (all on one mesh) holding a NaN or infinity: one compiled
  reduction per model and one small read-back."""
  flags = jax.device_get(_finite_leaves(variables))
  return [jax.tree_util.keystr(path) for path, ok in jax.tree_util.tree_leaves_with_path(flags)
          if not ok]


def epoch_positions(num_examples: int, batch_size: int, data_key, epoch: int) -> np.ndarray:
  """The (steps, batch) positions of epoch `epoch`: a pure function of (data_key, epoch)."""
  return pipeline.epoch_batches(num_examples, batch_size, jax.random.fold_in(data_key, epoch))


def train(model, variables: dict, view: pipeline.View, recipe: Recipe, *, mesh, seed: int,
          workdir=None, mask_config: masks.MaskConfig | None = None, metadata: dict | None = None,
          log_metrics: Callable[[dict], None] | None = None) -> tuple[dict, dict]:
  """Trains `model` from `variables` on `view` with `recipe`, resuming from `workdir` if it can.

  Args:
    model: the module; with extra units it is ETD training (needs `mask_config`).
    variables: the initial variables.
    view: the training view (D_tr with its labels and trigger flags).
    recipe: the training recipe.
    mesh: the device mesh; the batch is split over its `data` axis.
    seed: fixes data order and augmentation.
    workdir: where checkpoints go (`<workdir>/checkpoints`); None trains without them.
    mask_config: the ETD masks (saved in the checkpoints' metadata).
    metadata: extra JSON-able facts to store with each checkpoint.
    log_metrics: called at every checkpoint interval with {'step', 'loss', 'accuracy', ...}.

  Returns:
    (trained variables, record) where record = {'steps', 'resumed_from', 'steps_run',
    'wall_time_s'}.

  Raises:
    NonFiniteLossError: a non-finite loss; names the step range and the kept checkpoint.
  """
  sharding.check_batch_size(recipe.batch_size, mesh, 'train.batch_size')
  # The mask seed travels in the state (a device value): every seed shares one compiled step.
  step_masks = (None if mask_config is None else
                dataclasses.replace(mask_config, mask_seed=0))
  step_fn = functools.partial(
      _compiled_train_step(model, recipe.optimizer, step_masks, mesh),
      schedule=sharding.replicate(optim.schedule_lengths(recipe.steps), mesh))
  state = create_train_state(variables, recipe.optimizer,
                             seeds.key(seed, seeds.Stream.AUGMENTATION))
  if mask_config is not None:
    state['mask_seed'] = jnp.asarray(mask_config.mask_seed, jnp.int32)
  state = sharding.replicate(state, mesh)
  data_key = seeds.key(seed, seeds.Stream.DATA_ORDER)
  metadata = dict(metadata or {})
  if mask_config is not None:
    metadata['mask_config'] = mask_config.to_dict()

  checkpointer = checkpoints.Checkpointer(workdir) if workdir is not None else None
  try:
    return _train_loop(step_fn, state, view, recipe, mesh=mesh, data_key=data_key,
                       checkpointer=checkpointer, metadata=metadata, log_metrics=log_metrics)
  finally:
    # Every exit path, errors and interrupts included, waits for the pending asynchronous save:
    # the checkpoint a NaN message says is kept must exist once the process exits.
    if checkpointer is not None:
      checkpointer.close()


def _train_loop(step_fn, state, view, recipe, *, mesh, data_key, checkpointer, metadata,
                log_metrics):
  """`train`'s loop: resumes from `checkpointer`'s latest step, checkpoints every interval."""
  start = 0
  if checkpointer is not None and checkpointer.latest_step() is not None:
    state, _ = checkpointer.restore(state)
    start = int(state['step'])
    logging.info('Resuming training from the checkpoint at step %d of %d.', start, recipe.steps)

  steps_per_epoch = math.ceil(view.num_examples / recipe.batch_size)
  images = view.images
  positions, positions_epoch = None, None
  totals, last_good = None, start
  began = time.perf_counter()
  with tqdm.tqdm(total=recipe.steps, initial=start, desc='train', unit='step',
                 dynamic_ncols=True, mininterval=2.0) as progress:
    for step in range(start, recipe.steps):
      epoch, offset = divmod(step, steps_per_epoch)
      if epoch != positions_epoch:
        positions = epoch_positions(view.num_examples, recipe.batch_size, data_key, epoch)
        positions_epoch = epoch
      state, step_metrics = step_fn(state, images, view.batch(positions[offset], mesh))
      totals = step_metrics if totals is None else jax.tree.map(jnp.add, totals, step_metrics)
      progress.update(1)
      done = step + 1
      if done % recipe.checkpoint_every and done != recipe.steps:
        continue
      # The only host synchronisation: once per checkpoint interval. The loss can stay finite
      # while a BatchNorm variance overflows, so the state's leaves are checked too.
      broken = ([] if bool(state['finite']) else ['the loss']) + _nonfinite_leaves(
          variables_of(state))
      if broken:
        kept = (f'the checkpoint at step {last_good} is kept' if checkpointer and last_good
                else 'no checkpoint was written')
        raise NonFiniteLossError(
            f'non-finite training loss between steps {last_good + 1} and {done} (in '
            f'{", ".join(broken[:3])}); {kept}. Lower train.learning_rate or check the data.')
      totals = jax.device_get(totals)
      interval = {'step': done, 'epoch': done / steps_per_epoch,
                  'loss': float(totals['loss'] / totals['count']),
                  'accuracy': float(totals['correct'] / totals['count'])}
      progress.set_postfix(loss=f'{interval["loss"]:.3f}', acc=f'{interval["accuracy"]:.3f}')
      logging.info('Training step %d/%d: loss %.4f, accuracy %.4f.', done, recipe.steps,
                   interval['loss'], interval['accuracy'])
      if log_metrics is not None:
        log_metrics(interval)
      totals = None
      if checkpointer is not None:
        checkpointer.save(done, state, metadata)
      last_good = done
  wall_time = time.perf_counter() - began
  record = {'steps': recipe.steps, 'resumed_from': start, 'steps_run': recipe.steps - start,
            'wall_time_s': wall_time}
  return variables_of(state), record


def load_variables(workdir, model, image_shape=None) -> tuple[dict, dict]:
  """The model variables of the newest checkpoint `train` wrote in `workdir`, checked against
  `model`'s shapes, and the checkpoint's metadata (e.g. an ETD base's 'mask_config').

  The train state is read as stored, so the caller needs neither the recipe that built its
  optimizer state nor the mask seed it carried.
  """
  with checkpoints.Checkpointer(workdir) as checkpointer:
    state, metadata = checkpointer.restore()
  variables = variables_of(state)
  expansion.check_shapes(variables, expansion.variable_shapes(model, image_shape),
                         f'the checkpoint in {workdir} does not match config.model')
  return variables, metadata
