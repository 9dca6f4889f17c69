"""The training loop: non-finite losses keep the last good checkpoint; recipes are validated."""

import dataclasses

import jax
import numpy as np
import pytest

from rem_jax import checkpoints, optim, sharding, trainer
from rem_jax.data import pipeline, sources
from rem_jax.models import init_variables
from tests import tiny

RECIPE = trainer.Recipe(
    optim.OptimizerSettings(learning_rate=0.05, schedule='warmup_linear_decay'),
    steps=8, batch_size=16, checkpoint_every=4)


@pytest.fixture(scope='module')
def setup():
  mesh = sharding.make_mesh()
  train = sources.load('shapes', image_size=16, num_train=64, num_test=16).train
  images = sharding.replicate(train.images, mesh)
  view = pipeline.View(images, train.ids, train.labels, np.zeros(train.num_examples, bool))
  model = tiny.tiny_resnet(expansion=0.0)
  return mesh, view, model, init_variables(model, jax.random.key(0), (16, 16, 3))


def test_a_loss_that_turns_nan_stops_and_keeps_the_last_good_checkpoint(setup, tmp_path):
  mesh, view, model, variables = setup
  trained, record = trainer.train(model, variables, view, RECIPE, mesh=mesh, seed=0,
                                  workdir=tmp_path)
  assert record == {**record, 'steps': 8, 'resumed_from': 0, 'steps_run': 8}
  # Continue the same run for 8 more steps on labels out of range: the loss becomes NaN.
  longer = dataclasses.replace(RECIPE, steps=16)
  broken = dataclasses.replace(view, labels=np.full(view.num_examples, 99, np.int32))
  with pytest.raises(trainer.NonFiniteLossError,
                     match=r'between steps 9 and 12 \(in the loss\); the checkpoint at step 8 is '
                           'kept'):
    trainer.train(model, variables, broken, longer, mesh=mesh, seed=0, workdir=tmp_path)
  with checkpoints.Checkpointer(tmp_path) as checkpointer:
    assert checkpointer.latest_step() == 8
  del trained


def test_nan_from_the_start_writes_no_checkpoint(setup, tmp_path):
  mesh, view, model, variables = setup
  broken = dataclasses.replace(view, labels=np.full(view.num_examples, 99, np.int32))
  with pytest.raises(trainer.NonFiniteLossError,
                     match=r'between steps 1 and 4 \(in the loss\); no checkpoint was written'):
    trainer.train(model, variables, broken, RECIPE, mesh=mesh, seed=0, workdir=tmp_path)
  with checkpoints.Checkpointer(tmp_path) as checkpointer:
    assert checkpointer.latest_step() is None


def test_a_non_finite_weight_with_a_finite_loss_stops_the_run_unsaved(setup, tmp_path):
  # A BatchNorm running mean that overflows leaves the train-mode loss finite: the loop checks
  # the weights too, so no checkpoint with an infinity is ever written.
  mesh, view, model, variables = setup
  poisoned = []

  def poison(path, leaf):
    if not poisoned and jax.tree_util.keystr(path).endswith("['mean']"):
      poisoned.append(jax.tree_util.keystr(path))
      return leaf.at[0].set(np.inf)
    return leaf

  broken = {'params': variables['params'],
            'batch_stats': jax.tree_util.tree_map_with_path(poison, variables['batch_stats'])}
  with pytest.raises(trainer.NonFiniteLossError) as error:
    trainer.train(model, broken, view, RECIPE, mesh=mesh, seed=0, workdir=tmp_path)
  named = "['batch_stats']" + poisoned[0]
  assert f'between steps 1 and 4 (in {named}); no checkpoint was written' in str(error.value)
  with checkpoints.Checkpointer(tmp_path) as checkpointer:
    assert checkpointer.latest_step() is None


def test_same_seed_same_weights_other_seed_other_weights(setup):
  mesh, view, model, variables = setup
  recipe = dataclasses.replace(RECIPE, steps=4)
  first, _ = trainer.train(model, variables, view, recipe, mesh=mesh, seed=0)
  again, _ = trainer.train(model, variables, view, recipe, mesh=mesh, seed=0)
  other, _ = trainer.train(model, variables, view, recipe, mesh=mesh, seed=1)
  np.testing.assert_array_equal(first['params']['head']['kernel'],
                                again['params']['head']['kernel'])
  assert not np.allclose(first['params']['head']['kernel'], other['params']['head']['kernel'])


def test_epoch_positions_cover_each_epoch_and_depend_on_the_epoch():
  key = jax.random.key(0)
  epoch0 = trainer.epoch_positions(50, 16, key, 0)
  assert epoch0.shape == (4, 16)  # ceil(50 / 16) steps, the last filled by wrapping around.
  assert set(epoch0.ravel()) == set(range(50))
  np.testing.assert_array_equal(epoch0, trainer.epoch_positions(50, 16, key, 0))
  assert not np.array_equal(epoch0, trainer.epoch_positions(50, 16, key, 1))


@pytest.mark.parametrize('fields, message', [
    ({'schedule': 'cosine'}, r"train.schedule='cosine' is not supported; allowed: "
                             r"\['warmup_linear_decay', 'constant'\]"),
    ({'steps': 0}, 'train.steps=0 must be positive'),
    ({'learning_rate': -1.0}, 'train.learning_rate=-1.0 must be > 0'),
    ({'optimizer': 'lamb'}, "optimizer='lamb' is not supported"),
    ({'epochs': 3}, r"train fields \['epochs'\] are unknown"),
])
def test_bad_recipes(fields, message):
  with pytest.raises(ValueError, match=message):
    trainer.Recipe.from_config(fields)


def test_batch_size_must_split_over_the_devices(setup):
  mesh, view, model, variables = setup
  with pytest.raises(ValueError, match=r'train.batch_size=10 must be a positive multiple'):
    trainer.train(model, variables, view, dataclasses.replace(RECIPE, batch_size=10),
                  mesh=mesh, seed=0)
