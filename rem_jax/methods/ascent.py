"""Gradient ascent: maximise the cross-entropy of D_f until it is forgotten (SPEC §8).

Source: the gradient-ascent baseline of the unlearning literature (e.g. Thudi et al. 2022,
"Unrolling SGD"; Graves et al. 2021, "Amnesiac machine learning"). Loss: -ce(logits, labels) on
D_f (augmented, train mode, drop mode). Stop rule: after each epoch, stop once Acc(D_f) <= gamma
(at least 1 epoch, at most `epochs`), then return the epoch with the best proxy
Acc(D_r) * (1 - max(Acc(D_f), gamma)) (`common.until_forgotten`). Defaults: CF's optimizer (SGD
lr 0.005, momentum 0.9, weight decay 5e-4, warm-up then linear decay over the 10-epoch cap),
gamma 0.2; for the ViT use Adam 2e-5 constant.
"""

import dataclasses

import ml_collections

from rem_jax import losses
from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  config = common.optimizer_config()
  config.gamma = 0.2
  return config


@dataclasses.dataclass(frozen=True)
class NegatedCrossEntropy(common.Objective):
  """-ce(logits, labels): minimised, it raises the forget set's cross-entropy without bound."""

  def __call__(self, logits, batch, teacher_logits, extras):
    del teacher_logits, extras
    return -losses.cross_entropy(logits, batch.labels)


def ascent(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'ascent')
  return common.until_forgotten('ascent', original, task, settings, NegatedCrossEntropy())
