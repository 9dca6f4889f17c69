"""Machinery every unlearning method shares: settings, the optimizer, the compiled step, the epoch
loop, accuracy on a view, the stop check, proxy selection, the stopwatch and the progress bar.

A method's loop is Python between epochs and compiled code inside them: an epoch is a sequence
of calls to one jitted step (`run_epoch`), accuracies are summed on the device (`Accuracy`)
and read once per epoch, which is where the data-dependent decisions (stop when
Acc(D_f) <= gamma, keep the best iteration) are made. Shapes never depend on the forget set, so
every discovery rate reuses the same compiled steps: batch sizes over D_f derive from |D_c|, and
a learning-rate schedule's length lives in the train state, not in the compiled program.

The loss-based baselines are an `Objective` (a hashable dataclass: the per-example loss of the
live model's logits, given frozen models' logits) run by `objective_step` inside `EpochLoop`.
"""

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from rem_jax import evaluation
from rem_jax import expansion
from rem_jax import losses
from rem_jax import masks
from rem_jax import optim
from rem_jax import sections
from rem_jax import seeds
from rem_jax import sharding
from rem_jax import trainer
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.methods import base

# ---- Settings ----------------------------------------------------------------------------------


def check_gamma(gamma: float) -> float:
  if not 0.0 < gamma < 1.0:
    raise ValueError(f'gamma={gamma!r} must lie in (0, 1): it is the forget-set accuracy below '
                     'which the forget set counts as forgotten.')
  return gamma


def check_positive(name: str, value) -> None:
  if not value > 0:
    raise ValueError(f'{name}={value!r} must be > 0.')


def check_beta(beta: float) -> float:
  check_positive('beta', beta)
  return beta


def optimizer_config(*, optimizer: str = 'sgd', learning_rate: float = 0.005,
                     schedule: str = 'warmup_linear_decay',
                     epochs: int = 10) -> ml_collections.ConfigDict:
  """The settings every trained method has: its optimizer (coupled L2), schedule and epochs.

  The defaults are CF's (SPEC §8): SGD lr 0.005, momentum 0.9, weight decay 5e-4, warm-up over
  1 % of the steps then linear decay, 10 epochs. For the ViT use optimizer='adam',
  learning_rate=2e-5, schedule='constant'.
  """
  config = ml_collections.ConfigDict()
  config.optimizer = optimizer
  config.learning_rate = learning_rate
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = schedule
  config.epochs = epochs
  config.eval_batch_size = 512
  return config


def resolve_settings(config: Mapping | None, defaults: ml_collections.ConfigDict, method: str,
                     check: Callable[[ml_collections.ConfigDict], None] | None = None
                     ) -> ml_collections.ConfigDict:
  """`defaults` updated with `config`, checked: unknown fields are an error that lists the
  allowed ones, the settings every trained method shares are checked here and the method's own
  by `check`. Methods call it first, and `rem_jax.methods.check_settings` calls it before any
  model is trained, so a bad setting never costs a training run."""
  config = dict(config or {})
  sections.check_fields(config, defaults.keys(), method, kind='settings')
  settings = ml_collections.ConfigDict(defaults.to_dict())
  try:
    settings.update(config)
  except TypeError as error:  # ml_collections' type check, e.g. a float for an int field.
    raise ValueError(f'{method} settings: {error}') from None
  if 'epochs' in settings and settings.epochs <= 0:
    raise ValueError(f'{method}: epochs={settings.epochs} must be > 0.')
  if 'gamma' in settings:
    check_gamma(settings.gamma)
  if 'beta' in settings:
    check_beta(settings.beta)
  if 'optimizer' in settings:
    optim.OptimizerSettings.from_config(settings)
  if 'eval_batch_size' in settings and not settings.eval_batch_size >= 1:
    raise ValueError(f'eval_batch_size={settings.eval_batch_size!r} must be >= 1.')
  if check is not None:
    check(settings)
  return settings


# ---- Batch sizes ------------------------------------------------------------------------------


def round_to_devices(batch_size: int, mesh) -> int:
  """`batch_size` rounded up to a (positive) multiple of the device count."""
  devices = sharding.data_parallel_size(mesh)
  return max(devices, -(-batch_size // devices) * devices)


def shared_batch_size(requested: int, num_examples: int, mesh) -> int:
  """min(requested, num_examples) rounded up to a multiple of the device count.

  Used for loops over a small set (the forget set): a batch larger than the set would repeat
  examples within one step, and a size derived from |D_c| rather than |D_f| keeps one compiled
  step for every discovery rate.
  """
  return round_to_devices(min(requested, num_examples), mesh)


def forget_batch_size(task: base.Task) -> int:
  """The batch size of epochs over D_f: fixed by |D_c|, so every discovery rate shares a compile.

  A practitioner does not know D_c: there D_f sets the size. A forget set larger than D_c (D_f
  and a diagnosis's suspects) sets it too: it is the set being unlearned.
  """
  known = (max(task.record.num_corrupted, len(task.forget_ids)) if task.record is not None
           else len(task.forget_ids))
  return shared_batch_size(task.batch_size, known, task.mesh)


def membership(num_examples: int, ids) -> jax.Array:
  """(N,) bool, True at `ids` (checked: non-empty, unique, in range): forget membership as an
  array, so no shape depends on |D_f|. Built on the host: no XLA program sees |D_f| either."""
  ids = corruptions.check_forget_ids(ids, num_examples)
  member = np.zeros(num_examples, bool)
  member[ids] = True
  return jnp.asarray(member)


# ---- Measuring, stopping, selecting -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Accuracy:
  """Drop-mode accuracy of a model on views, summed on the device (one compile per model)."""
  model: object
  mesh: object
  batch_size: int

  def __post_init__(self):
    object.__setattr__(self, '_step', evaluation.jit_accuracy_step(self.model, self.mesh))

  def __call__(self, variables: dict, view: pipeline.View) -> float:
    """Reads the accuracy back (a host synchronisation: call it between epochs)."""
    correct, count = evaluation.view_accuracy(self._step, variables, view.images, view,
                                              self.batch_size, self.mesh)
    return float(correct) / float(count)


def forgotten(forget_accuracy: float, gamma: float) -> bool:
  """The one stop check: the forget set counts as forgotten once Acc(D_f) <= gamma."""
  return forget_accuracy <= gamma


def proxy(retain_accuracy: float, forget_accuracy: float, gamma: float) -> float:
  """The training-data selection proxy: Acc(D_r) * (1 - max(Acc(D_f), gamma))."""
  return retain_accuracy * (1.0 - max(forget_accuracy, gamma))


class BestIteration:
  """Keeps the variables of the iteration with the highest proxy (ties: the earlier one)."""

  def __init__(self):
    self.score, self.iteration, self.variables = -np.inf, None, None

  def offer(self, iteration: int, score: float, variables: dict) -> None:
    if score > self.score:
      # A host copy: the live state is donated by the next step.
      self.score, self.iteration, self.variables = score, iteration, jax.device_get(variables)


class Stopwatch:
  """Wall time of a method with and without its proxy evaluations (device-synchronised)."""

  def __init__(self):
    self.began = time.perf_counter()
    self.evaluation_s = 0.0

  def evaluating(self, fn: Callable, *args):
    began = time.perf_counter()
    result = fn(*args)
    self.evaluation_s += time.perf_counter() - began
    return result

  def record(self) -> dict:
    total = time.perf_counter() - self.began
    return {'wall_time_s': total, 'wall_time_without_evaluation_s': total - self.evaluation_s}


# ---- Progress ----------------------------------------------------------------------------------


def progress(total: int, desc: str, unit: str) -> tqdm.tqdm:
  """A progress bar with ETA on stderr, configured as training's (`rem_jax.trainer`).

  Use it as `with progress(...) as bar:` so that it closes on every exit path, an early stop
  included. Loops update it once per epoch, iteration or try, where they already read values
  back, so it adds no host synchronisation. miniters=0 turns off tqdm's learnt minimum of
  updates between redraws, so that `show` can redraw a postfix between two updates.
  """
  return tqdm.tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, mininterval=2.0,
                   miniters=0)


def show(bar: tqdm.tqdm, postfix: str, advance: int = 0) -> None:
  """Sets `bar`'s postfix and advances it by `advance`; redraws at most every mininterval
  (`set_postfix_str` alone would redraw every time: a log file would get a line per call)."""
  bar.set_postfix_str(postfix, refresh=False)
  bar.update(advance)


# ---- Models and train states --------------------------------------------------------------------


def drop_mode_start(original: base.TrainedModel, image_shape=None) -> tuple[object, dict]:
  """(model, variables) a baseline starts from: the trained model in drop mode.

  An ETD base's extra units are pruned (`expansion.drop`, exactly its drop-mode function), so a
  baseline trains and returns the original architecture, and every pass costs the base's
  FLOPs. `image_shape` (H, W, C): the data's (None: the model's own image size).
  """
  if not original.model.mask_size:
    return original.model, original.variables
  return original.model.base_model(), expansion.drop(original.variables, original.model,
                                                     image_shape=image_shape)


def start_state(variables: dict, optimizer: optim.OptimizerSettings, key, mesh,
                total_steps: int) -> dict:
  """A replicated train state whose learning-rate schedule spans `total_steps`.

  The schedule's length is part of the state ('schedule'), so a method whose step count depends
  on |D_f| still compiles its step once.
  """
  state = trainer.create_train_state(variables, optimizer, key)
  state['schedule'] = optim.schedule_lengths(total_steps)
  return sharding.replicate(state, mesh)


def check_finite(state: dict, method: str, where: str) -> None:
  """Reads the state's finite flag (a host synchronisation) and raises on a NaN/inf loss."""
  if not bool(state['finite']):
    raise trainer.NonFiniteLossError(
        f'{method}: non-finite loss in {where}; lower its learning_rate.')


# ---- The loss-based baselines: objective, compiled step, epoch loop ----------------------------


class Objective:
  """A per-example training loss of the live model's train-mode, drop-mode logits.

  Subclasses are frozen dataclasses (hashable: the compiled step is keyed by them) holding the
  loss's static settings. `teachers` names the frozen models whose eval-mode, drop-mode logits
  on the same augmented inputs the loss reads; values that may change between runs without a
  recompile (SCRUB's alpha, forget membership) come in `extras`.
  """
  teachers: ClassVar[tuple[str, ...]] = ()

  def __call__(self, logits, batch: pipeline.Batch, teacher_logits: dict, extras: dict):
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class StepSetup:
  """The static part of a baseline's step: architecture, optimizer and objective."""
  model: object
  optimizer: optim.OptimizerSettings
  objective: Objective


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def objective_step(setup: StepSetup, state, images, batch, frozen):
  """One optimizer step on the weighted mean of `setup.objective` over an augmented batch.

  Args:
    setup: static; one compile per (model, optimizer, objective), whatever the forget set.
    state: the train state (donated).
    images: the device-resident split.
    batch: sharded over `data`.
    frozen: {'teachers': {name: variables}, 'extras': {...}}; replicated, never updated.
  """
  model = setup.model
  inputs = trainer.augmented_inputs(model, state, images, batch)
  zeros = masks.drop_mask(inputs.shape[0], model.mask_size)
  teacher_logits = {}
  for name in setup.objective.teachers:
    teacher = frozen['teachers'][name]
    teacher_logits[name] = trainer.apply_model(model, teacher['params'],
                                               teacher.get('batch_stats', {}), inputs, zeros,
                                               False)[0]

  def loss_fn(params):
    logits, stats = trainer.apply_model(model, params, state['batch_stats'], inputs, zeros, True)
    per_example = setup.objective(logits, batch, teacher_logits, frozen['extras'])
    return losses.weighted_mean(per_example, batch.weights), {'batch_stats': stats}

  return trainer.apply_gradients(setup.optimizer.build(state.get('schedule')), state, loss_fn)


def run_epoch(step_fn: Callable, state: dict, images, view: pipeline.View, batch_size: int,
              key, mesh):
  """One shuffled epoch over `view` (ceil(N / batch) steps); nothing is read back per step.

  Returns:
    (state, metrics) with metrics the on-device sums of the steps' metrics over the epoch.
  """
  totals = None
  for batch in view.training_epoch(batch_size, key, mesh):
    state, metrics = step_fn(state, images, batch)
    totals = metrics if totals is None else jax.tree.map(jnp.add, totals, metrics)
  return state, totals


@dataclasses.dataclass(frozen=True)
class Phase:
  """One epoch of `objective` over `view` in batches of `batch_size`."""
  objective: Objective
  view: pipeline.View
  batch_size: int

  @property
  def steps(self) -> int:
    return math.ceil(self.view.num_examples / self.batch_size)


class EpochLoop:
  """The one epoch loop of the loss-based baselines: whole epochs of an objective over a view.

  Counts the optimizer steps it runs. `frozen` holds the teachers and extras every objective of
  the method may read (replicated once).
  """

  def __init__(self, model, optimizer: optim.OptimizerSettings, mesh, *,
               teachers: Mapping[str, dict] | None = None, extras: Mapping | None = None):
    self.model, self.optimizer, self.mesh = model, optimizer, mesh
    self.frozen = sharding.replicate({'teachers': dict(teachers or {}),
                                      'extras': dict(extras or {})}, mesh)
    self.steps = 0

  def run(self, state, phase: Phase, key):
    """One shuffled epoch of `phase` (`phase.steps` optimizer steps)."""
    setup = StepSetup(self.model, self.optimizer, phase.objective)
    step = lambda state, images, batch: objective_step(setup, state, images, batch, self.frozen)
    state, _ = run_epoch(step, state, phase.view.images, phase.view, phase.batch_size,
                                  key, self.mesh)
    self.steps += phase.steps
    return state


Teachers = Callable[[dict], Mapping[str, dict]]


def _start(original: base.TrainedModel, task: base.Task, settings, total_steps: int,
           teachers: Teachers | None, extras: Mapping | None):
  """(model, train state, epoch loop, data key) of a baseline starting from `original`.

  `teachers(start)` names the frozen models the objectives read, given the starting variables.
  """
  model, variables = drop_mode_start(original, task.views.train.images.shape[1:])
  optimizer = optim.OptimizerSettings.from_config(settings)
  state = start_state(variables, optimizer, seeds.key(task.seed, seeds.Stream.AUGMENTATION),
                      task.mesh, total_steps)
  loop = EpochLoop(model, optimizer, task.mesh,
                teachers=teachers(variables) if teachers else None, extras=extras)
  return model, state, loop, seeds.key(task.seed, seeds.Stream.DATA_ORDER)


def train_epochs(method: str, original: base.TrainedModel, task: base.Task, settings,
                 phases: Callable[[int], Sequence[Phase]], *, teachers: Teachers | None = None,
                 extras: Mapping | None = None) -> base.Unlearned:
  """`settings.epochs` epochs, epoch e (from 1) running the phases `phases(e)` in order; the
  final weights are the result (CF, SCRUB, Bad Teacher). The schedule spans every step."""
  watch = Stopwatch()
  plan = [phases(epoch) for epoch in range(1, settings.epochs + 1)]
  model, state, loop, data_key = _start(
      original, task, settings, sum(phase.steps for epoch in plan for phase in epoch), teachers,
      extras)
  with progress(settings.epochs, method, 'epoch') as bar:
    for epoch, epoch_phases in enumerate(plan, start=1):
      for index, phase in enumerate(epoch_phases):
        state = loop.run(state, phase, jax.random.fold_in(jax.random.fold_in(data_key, epoch),
                                                          index))
      check_finite(state, method, f'epoch {epoch}')  # A read-back: the epoch has finished.
      bar.update()
  return base.Unlearned(model, trainer.variables_of(state),
                        {'steps': loop.steps, 'epochs': settings.epochs, **watch.record()})


def until_forgotten(method: str, original: base.TrainedModel, task: base.Task, settings,
                    objective: Objective, *, teachers: Teachers | None = None
                    ) -> base.Unlearned:
  """EpochLoop of `objective` over D_f until Acc(D_f) <= gamma, then the best epoch by the proxy.

  The procedure of gradient ascent and NPO (SPEC §8): at least one epoch, at most
  `settings.epochs`; after each epoch Acc(D_f) and Acc(D_r) (drop mode, eval mode, training
  labels, no augmentation) give the proxy Acc(D_r) * (1 - max(Acc(D_f), gamma)), and the
  epoch with the best proxy is returned (the starting model is not a candidate). The schedule
  spans the full `epochs` budget whether or not the loop stops early.
  """
  watch = Stopwatch()
  views, mesh = task.views, task.mesh
  phase = Phase(objective, views.forget, forget_batch_size(task))
  model, state, loop, data_key = _start(original, task, settings, settings.epochs * phase.steps,
                                        teachers, None)
  accuracy = Accuracy(model, mesh, round_to_devices(settings.eval_batch_size, mesh))
  best, iterations, stop_epoch = BestIteration(), [], None
  with progress(settings.epochs, method, 'epoch') as bar:  # Stops early: the bar says where.
    for epoch in range(1, settings.epochs + 1):
      state = loop.run(state, phase, jax.random.fold_in(jax.random.fold_in(data_key, epoch), 0))
      check_finite(state, method, f'epoch {epoch}')
      current = trainer.variables_of(state)
      forget_accuracy = watch.evaluating(accuracy, current, views.forget)
      retain_accuracy = watch.evaluating(accuracy, current, views.retain)
      score = proxy(retain_accuracy, forget_accuracy, settings.gamma)
      iterations.append({'iteration': epoch, 'forget_accuracy': forget_accuracy,
                         'retain_accuracy': retain_accuracy, 'proxy': score})
      best.offer(epoch, score, current)
      show(bar, f'Acc(D_f)={forget_accuracy:.3f}, proxy={score:.3f}', advance=1)
      if forgotten(forget_accuracy, settings.gamma):
        stop_epoch = epoch
        break
  record = {'steps': loop.steps, 'epochs': len(iterations), 'stop_epoch': stop_epoch,
            'best_iteration': best.iteration, 'iterations': iterations, **watch.record()}
  return base.Unlearned(model, best.variables, record)
