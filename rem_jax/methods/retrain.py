"""Retrain: a fresh model trained on D_r alone with the original recipe (SPEC §8).

Source: the standard exact-unlearning baseline ("retrain from scratch" without the forget set).
Loss: cross-entropy on D_r (ETD training on an ETD base), the original model's recipe
(`Task.recipe`: optimizer, schedule, steps, batch size); exempt from the 10-epoch budget. D_f is
never read. Stop rule: none, the recipe's step count. Defaults: `retrain_lr='original'` (the
recipe's learning rate); `retrain_lr='unlearn'` uses `unlearn_learning_rate` (0.005, the
unlearning methods' rate: what the reference code did) instead. The initialisation key differs
from the original model's, so Retrain is not a replay of the original's start.
"""

import dataclasses

import ml_collections

from rem_jax import seeds
from rem_jax import trainer
from rem_jax.methods import base
from rem_jax.methods import common
from rem_jax.models import init_variables

RETRAIN_LRS = ('original', 'unlearn')


def default_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.retrain_lr = 'original'
  config.unlearn_learning_rate = 0.005
  return config


def check_settings(settings) -> None:
  if settings.retrain_lr not in RETRAIN_LRS:
    raise ValueError(f'retrain_lr={settings.retrain_lr!r} is not supported; allowed: '
                     f'{list(RETRAIN_LRS)}.')
  common.check_positive('unlearn_learning_rate', settings.unlearn_learning_rate)


def fresh_variables(model, seed: int, image_shape) -> dict:
  """Retrain's initialisation: a stream of the seed that the original model's init never uses."""
  return init_variables(model, seeds.key(seed, seeds.Stream.RETRAIN_INIT), image_shape)


def retrain(original: base.TrainedModel, task: base.Task, config) -> base.Unlearned:
  settings = common.resolve_settings(config, default_config(), 'retrain', check_settings)
  if task.recipe is None:
    raise ValueError("method 'retrain' repeats the original training recipe on D_r, and this "
                     'task has none: pass Task(recipe=...) (the practitioner path knows it only '
                     'for a launch.py workdir checkpoint).')
  recipe = task.recipe
  if settings.retrain_lr == 'unlearn':
    recipe = dataclasses.replace(recipe, optimizer=dataclasses.replace(
        recipe.optimizer, learning_rate=settings.unlearn_learning_rate))
  watch = common.Stopwatch()
  views = task.views
  variables = fresh_variables(original.model, task.seed, views.train.images.shape[1:])
  retrained, record = trainer.train(original.model, variables, views.retain, recipe,
                                    mesh=task.mesh, seed=task.seed,
                                    mask_config=original.mask_config)
  return base.Unlearned(original.model, retrained,
                        {'steps': record['steps'],
                         'epochs': record['steps'] * recipe.batch_size / views.retain.num_examples,
                         **watch.record()})
