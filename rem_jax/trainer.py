"""The training loop: a recipe run for a fixed number of steps, checkpointed and resumable.

Python only decides between steps which batch of indices comes next; everything else (gather,
augmentation, forward, backward, metric sums, the finite flag) stays on the device, and the host
reads from the device only at checkpoint intervals. The data order of epoch e is a pure function
of (seed, e) and the augmentation of step t of (seed, t), so a run resumed from a checkpoint at
step s runs exactly steps s..end and ends with the same weights as an uninterrupted run.
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from rem_jax import checkpoints
from rem_jax import masks
from rem_jax import sharding
from rem_jax import training
from rem_jax.data import pipeline

# Raised on a NaN or infinite loss; the last good checkpoint is kept.
NonFiniteLossError = training.NonFiniteLossError


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to train an original model (SPEC §6).

  Attributes:
    optimizer: 'sgd' or 'adam' (coupled L2 weight decay).
    learning_rate: peak learning rate.
    schedule: 'warmup_linear_decay' (ResNet-9) or 'constant' (ViT).
    steps: total optimizer steps (epochs = steps / ceil(N / batch_size)).
    batch_size: examples per step; a multiple of the number of devices.
    momentum: SGD momentum.
    weight_decay: L2 coefficient.
    checkpoint_every: steps between checkpoints (and between reads of the finite flag).
  """
  optimizer: str = 'sgd'
  learning_rate: float = 0.025
  schedule: str = 'warmup_linear_decay'
  steps: int = 4000
  batch_size: int = 512
  momentum: float = 0.9
  weight_decay: float = 5e-4
  checkpoint_every: int = 500

  def __post_init__(self):
    for name in ('steps', 'batch_size', 'checkpoint_every'):
      if getattr(self, name) <= 0:
        raise ValueError(f'train.{name}={getattr(self, name)} must be positive.')
    try:
      self.optimizer_settings()  # Validates optimizer, schedule and learning rate.
    except ValueError as error:
      raise ValueError(f'train.{error}') from None

  @classmethod
  def from_config(cls, config) -> 'Recipe':
    """From a mapping (e.g. `config.train`); unknown fields are an error naming them."""
    fields = dict(config)
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f'train fields {unknown} are unknown; allowed: '
                       f'{sorted(f.name for f in dataclasses.fields(cls))}.')
    return cls(**fields)

  def optimizer_settings(self) -> training.OptimizerSettings:
    return training.OptimizerSettings(self.optimizer, self.learning_rate, self.momentum,
                                      self.weight_decay, self.schedule, self.steps)

  def make_optimizer(self):
    return self.optimizer_settings().build()


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


@functools.lru_cache(maxsize=32)
def _compiled_train_step(model, optimizer: training.OptimizerSettings, mask_config, mesh):
  """One jitted train step per (model, optimizer settings, masks, mesh): the schedule's length
  is an argument, so every seed and run length (Retrain, a resumed run, another `steps`) reuses
  the compile of the first training run, and the persistent cache serves other processes."""
  return training.jit_train_step(training.TrainStepConfig(model, optimizer, mask_config), mesh)


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
  optimizer = recipe.make_optimizer()
  # The mask seed travels in the state (a device value): every seed shares one compiled step.
  step_masks = (None if mask_config is None else
                dataclasses.replace(mask_config, mask_seed=0))
  step_fn = functools.partial(
      _compiled_train_step(model, dataclasses.replace(recipe.optimizer_settings(), total_steps=1),
                           step_masks, mesh),
      schedule=sharding.replicate(training.schedule_lengths(recipe.steps), mesh))
  root = jax.random.key(seed)
  state = training.create_train_state(variables, optimizer, jax.random.fold_in(root, 1))
  if mask_config is not None:
    state['mask_seed'] = jnp.asarray(mask_config.mask_seed, jnp.int32)
  state = sharding.replicate(state, mesh)
  data_key = jax.random.fold_in(root, 2)
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
          training.variables_of(state))
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
  return training.variables_of(state), record
