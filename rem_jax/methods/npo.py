"""NPO, Negative Preference Optimisation on D_f until it is forgotten (SPEC §8).

Source: Zhang et al. 2024, "Negative preference optimization: from catastrophic collapse to
effective unlearning". Loss: `rem_jax.losses.npo(ce, ce_ref, beta)` on D_f, where ce_ref is the
frozen trained model's cross-entropy (eval mode, drop mode, same augmented inputs): it raises ce
with a weight that fades once ce is well above ce_ref. Stop rule: as gradient ascent
(`common.until_forgotten`: stop once Acc(D_f) <= gamma, at least 1 epoch, at most `epochs`,
return the best epoch by the proxy). Defaults: REM's optimizer (SGD lr 0.005, momentum 0.9,
weight decay 5e-4, constant lr), beta 1, gamma 0.2, 10 epochs; for the ViT use Adam 2e-5.
"""

import dataclasses
from typing import ClassVar

import ml_collections

from rem_jax import losses
from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  config = common.optimizer_config(schedule='constant')
  config.beta = 1.0
  config.gamma = 0.2
  return config


@dataclasses.dataclass(frozen=True)
class NPO(common.Objective):
  """npo(ce, ce_reference, beta) per example."""
  beta: float = 1.0
  teachers: ClassVar[tuple[str, ...]] = ('reference',)

  def __call__(self, logits, batch, teacher_logits, extras):
    del extras
    return losses.npo(losses.cross_entropy(logits, batch.labels),
                      losses.cross_entropy(teacher_logits['reference'], batch.labels),
                      beta=self.beta)


def npo(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'npo')
  return common.until_forgotten('npo', original, task, settings, NPO(settings.beta),
                                teachers=lambda start: {'reference': start})
