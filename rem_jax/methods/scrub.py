"""SCRUB: a student that stays close to the trained teacher on D_r and moves away on D_f (SPEC §8).

Source: Kurmanji et al. 2023, "Towards unbounded machine unlearning". The teacher is the frozen
trained model (eval mode, drop mode); the student starts as a copy of it. Losses, with
KL = `rem_jax.losses.kl_divergence(teacher, student, T)` scaled by T**2:
  - max epoch: one epoch over D_f minimising -T**2 * KL (it raises the divergence; only the KL,
    no cross-entropy term, SPEC §12.7), in each of the first `msteps` epochs;
  - min epoch: one epoch over D_r minimising ce + alpha * T**2 * KL, in every epoch.
Stop rule: none, `epochs` epochs (each a max epoch while epoch <= msteps, then a min epoch).
Defaults: alpha 0.01 (the paper's CIFAR-10 tables; `ALPHAS` is its sweep), T = 4, msteps 2,
10 epochs, CF's optimizer (SGD lr 0.005, momentum 0.9, weight decay 5e-4, warm-up then linear
decay over all the run's steps); for the ViT use Adam 2e-5 constant. alpha is a device value,
so a sweep over `ALPHAS` compiles the steps once.
"""

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import ml_collections

from rem_jax import losses
from rem_jax.methods import base
from rem_jax.methods import common

# The paper's sweep over alpha (Tables 5-7 take the best per cell by Healed x Utility).
ALPHAS = (0.001, 0.01, 0.1, 10.0)


def default_config() -> ml_collections.ConfigDict:
  config = common.optimizer_config()
  config.alpha = 0.01
  config.temperature = 4.0
  config.msteps = 2
  return config


def scaled_kl(teacher_logits, student_logits, temperature: float):
  """T**2 * KL(teacher || student) at temperature T, per example (Hinton-style scaling)."""
  return temperature ** 2 * losses.kl_divergence(teacher_logits, student_logits, temperature)


@dataclasses.dataclass(frozen=True)
class MaxObjective(common.Objective):
  """-T**2 * KL(teacher || student): minimised on D_f, it pushes the student away."""
  temperature: float = 4.0
  teachers: ClassVar[tuple[str, ...]] = ('teacher',)

  def __call__(self, logits, batch, teacher_logits, extras):
    del batch, extras
    return -scaled_kl(teacher_logits['teacher'], logits, self.temperature)


@dataclasses.dataclass(frozen=True)
class MinObjective(common.Objective):
  """ce + alpha * T**2 * KL(teacher || student): minimised on D_r, it keeps the student close."""
  temperature: float = 4.0
  teachers: ClassVar[tuple[str, ...]] = ('teacher',)

  def __call__(self, logits, batch, teacher_logits, extras):
    return (losses.cross_entropy(logits, batch.labels)
            + extras['alpha'] * scaled_kl(teacher_logits['teacher'], logits, self.temperature))


def check_settings(settings) -> None:
  common.check_positive('alpha', settings.alpha)
  common.check_positive('temperature', settings.temperature)
  if not (isinstance(settings.msteps, int) and 0 <= settings.msteps <= settings.epochs):
    raise ValueError(f'msteps={settings.msteps!r} must be an integer in '
                     f'[0, epochs={settings.epochs}]: the max epochs happen within the budget.')


def scrub(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'scrub', check_settings)
  views = task.views
  maximise = common.Phase(MaxObjective(settings.temperature), views.forget,
                          common.forget_batch_size(task))
  minimise = common.Phase(MinObjective(settings.temperature), views.retain, task.batch_size)
  result = common.train_epochs(
      'scrub', original, task, settings,
      lambda epoch: [maximise, minimise] if epoch <= settings.msteps else [minimise],
      teachers=lambda start: {'teacher': start},
      extras={'alpha': jnp.asarray(settings.alpha, jnp.float32)})
  result.record['max_epochs'] = settings.msteps
  return result
