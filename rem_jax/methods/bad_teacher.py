"""Bad Teacher: distil from a random teacher on D_f and the trained model elsewhere (SPEC §8).

Source: Chundawat et al. 2023, "Can bad teaching induce forgetting? Unlearning in deep networks
using an incompetent teacher". Teachers (frozen, eval mode, drop mode): the trained model
(competent) and a freshly initialised model of the same architecture (incompetent). Loss, over
every example of D_tr: KL(teacher || student) at T = 1 with the incompetent teacher on D_f
examples and the competent one elsewhere, averaged over all elements (examples x classes), as
the reference's default reduction: the per-example `rem_jax.losses.kl_divergence` divided by the
number of classes. Labels are not used. Stop rule: none, `epochs` epochs of D_tr. Defaults: 10
epochs, CF's optimizer (SGD lr 0.005, momentum 0.9, weight decay 5e-4, warm-up then linear
decay); for the ViT use Adam 2e-5 constant.
"""

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import ml_collections

from rem_jax import losses
from rem_jax import seeds
from rem_jax.methods import base
from rem_jax.methods import common
from rem_jax.models import init_variables


def default_config() -> ml_collections.ConfigDict:
  return common.optimizer_config()


def incompetent_teacher(model, seed: int, image_shape) -> dict:
  """The random teacher: a fresh init from a stream of the seed no other model uses."""
  return init_variables(model, seeds.key(seed, seeds.Stream.BAD_TEACHER_INIT), image_shape)


@dataclasses.dataclass(frozen=True)
class Distillation(common.Objective):
  """KL(incompetent || student) / C on forget examples, KL(competent || student) / C elsewhere."""
  teachers: ClassVar[tuple[str, ...]] = ('competent', 'incompetent')

  def __call__(self, logits, batch, teacher_logits, extras):
    in_forget = extras['in_forget'][batch.ids]
    target = jnp.where(in_forget[:, None], teacher_logits['incompetent'],
                       teacher_logits['competent'])
    return losses.kl_divergence(target, logits) / logits.shape[-1]


def bad_teacher(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'bad_teacher')
  views = task.views
  image_shape = views.train.images.shape[1:]
  teachers = lambda start: {
      'competent': start,
      'incompetent': incompetent_teacher(original.model.base_model(), task.seed, image_shape)}
  phase = common.Phase(Distillation(), views.train, task.batch_size)
  return common.train_epochs(
      'bad_teacher', original, task, settings, lambda epoch: [phase], teachers=teachers,
      extras={'in_forget': common.membership(views.train.num_examples, task.forget_ids)})
