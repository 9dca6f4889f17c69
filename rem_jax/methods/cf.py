"""CF, catastrophic forgetting by fine-tuning: cross-entropy on D_r alone (SPEC §8).

Source: the fine-tuning baseline of the unlearning literature (e.g. Goel et al. 2023, "Towards
adversarial evaluation of inexact machine unlearning"), which relies on the forget set being
overwritten by further training without it. Loss: per-example cross-entropy on D_r (augmented,
train mode, drop mode); D_f is never read. Stop rule: none, `epochs` epochs of D_r. Defaults:
SGD lr 0.005, momentum 0.9, weight decay 5e-4, warm-up over 1 % of the steps then linear decay
(SPEC §6's shape), 10 epochs; for the ViT use Adam 2e-5 constant.
"""

import dataclasses

import ml_collections

from rem_jax import losses
from rem_jax.methods import base
from rem_jax.methods import common


def default_config() -> ml_collections.ConfigDict:
  return common.optimizer_config()


@dataclasses.dataclass(frozen=True)
class CrossEntropy(common.Objective):
  """ce(logits, labels): the plain training loss."""

  def __call__(self, logits, batch, teacher_logits, extras):
    del teacher_logits, extras
    return losses.cross_entropy(logits, batch.labels)


def cf(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'cf')
  phase = common.Phase(CrossEntropy(), task.views.retain, task.batch_size)
  return common.train_epochs('cf', original, task, settings, lambda epoch: [phase])
