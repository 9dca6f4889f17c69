"""Optimizers and learning-rate schedules: the one spelling of "how a model is trained".

The recipes are SPEC §6 (training) and §7–8 (the methods). Weight decay is *coupled* L2, as
PyTorch's SGD and Adam apply it: the decay term is added to the gradient before momentum /
Adam's moments, so it is scaled by the adaptive step like any other gradient (this is not AdamW).

`OptimizerSettings` is what the training recipe (`trainer.Recipe.optimizer`) and every trained
method hold; `build` turns it into an optax optimizer. A schedule's length is not part of the
settings: it comes in at build time (`schedule_lengths`, possibly device values), so the
compiled step that builds the optimizer is shared by every run length.
"""

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import optax

OPTIMIZERS = ('sgd', 'adam')
SCHEDULES = ('warmup_linear_decay', 'constant')


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

  `total_steps` and `warmup` may be device values (`schedule_lengths`: a compiled step takes them
  as arguments, so every run length shares it); then `warmup` must be given.
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


def schedule_lengths(total_steps: int) -> dict:
  """{'total_steps', 'warmup'} as int32 device scalars, for `OptimizerSettings.build`."""
  return {'total_steps': jnp.asarray(total_steps, jnp.int32),
          'warmup': jnp.asarray(warmup_steps(total_steps), jnp.int32)}


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """An optimizer as plain values: hashable, so compiled steps that build the optimizer from it
  are shared by every run with the same settings (every discovery rate, every seed).

  `schedule='warmup_linear_decay'` is the §6 schedule (the ResNet-9 recipe, CF's); 'constant'
  keeps the learning rate fixed (the ViT recipe, REM's, NPO's).
  """
  optimizer: str = 'sgd'
  learning_rate: float = 0.005
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = 'constant'

  def __post_init__(self):
    if self.schedule not in SCHEDULES:
      raise ValueError(f'schedule={self.schedule!r} is not supported; allowed: '
                       f'{list(SCHEDULES)}.')
    if not self.learning_rate > 0:
      raise ValueError(f'learning_rate={self.learning_rate!r} must be > 0.')
    if not 0 <= self.momentum < 1:
      raise ValueError(f'momentum={self.momentum!r} must lie in [0, 1).')
    make_optimizer(self.optimizer, self.learning_rate, weight_decay=self.weight_decay)

  @classmethod
  def from_config(cls, config: Mapping) -> 'OptimizerSettings':
    """Its fields picked from a section that holds more (a method's settings, `train`)."""
    return cls(**{field.name: config[field.name] for field in dataclasses.fields(cls)})

  def init(self, params):
    """The optimizer state of `params` (its structure does not depend on the schedule's length)."""
    return self.build({'total_steps': 1, 'warmup': 1}).init(params)

  def build(self, lengths: dict | None = None) -> optax.GradientTransformation:
    """The optax optimizer; a warm-up schedule needs `lengths` ({'total_steps', 'warmup'},
    possibly device values, from `schedule_lengths`)."""
    learning_rate = self.learning_rate
    if self.schedule == 'warmup_linear_decay':
      if lengths is None:
        raise ValueError("schedule='warmup_linear_decay' needs the schedule's lengths.")
      learning_rate = warmup_linear_decay(learning_rate, **lengths)
    return make_optimizer(self.optimizer, learning_rate, momentum=self.momentum,
                          weight_decay=self.weight_decay)
