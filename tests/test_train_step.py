"""The train step (sharded as on one device, ETD masks, the finite flag), prediction, metrics."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import evaluation, expansion, masks, metrics, optim, sharding, trainer
from rem_jax.data import pipeline, sources
from rem_jax.methods import common
from rem_jax.models import init_variables
from tests import tiny

SHAPE = (16, 16, 3)
BATCH = 16


@pytest.fixture(scope='module')
def shapes_data():
  splits = sources.load('shapes', image_size=16, num_train=96, num_test=32, seed=0)
  return splits.train


def _view(dataset, mesh):
  images = sharding.replicate(dataset.images, mesh)
  return images, pipeline.View(images, dataset.ids, dataset.labels.astype(np.int32),
                               np.zeros(dataset.num_examples, bool))


def _train(model, variables, dataset, mesh, *, epochs=1, mask_config=None, lr=0.05,
           steps=None):
  """`epochs` epochs, or only the first `steps` steps of the first epoch."""
  optimizer = optim.OptimizerSettings('sgd', lr)
  config = trainer.TrainStepConfig(model, optimizer, mask_config)
  state = sharding.replicate(
      trainer.create_train_state(variables, optimizer, jax.random.key(1)), mesh)
  images, view = _view(dataset, mesh)
  step = trainer.jit_train_step(config, mesh)
  if steps is not None:
    batches = view.training_epoch(BATCH, jax.random.key(100), mesh)
    for _, batch in zip(range(steps), batches):
      state, totals = step(state, images, batch)
    return state, totals
  for epoch in range(epochs):
    state, totals = common.run_epoch(step, state, images, view, BATCH,
                                     jax.random.key(100 + epoch), mesh)
  return state, totals


def test_every_device_matches_one_device_and_the_batch_is_sharded(shapes_data):
  model = tiny.tiny_resnet(capacity=0.5, expansion=0.0)
  variables = init_variables(model, jax.random.key(0), SHAPE)
  mesh_all = sharding.make_mesh()
  mesh1 = sharding.make_mesh(jax.devices()[:1])
  # Two steps: the second reads the state the first wrote. Only the order of the sums differs:
  # 4e-7 apart after two steps, then a jump to 2e-4 at the third (2026-12-01), as when a value
  # near a ReLU's or a max-pool's decision falls the other way in one program only. Both are
  # right; six steps compared nothing but that luck.
  state_all, totals_all = _train(model, variables, shapes_data, mesh_all, steps=2)
  state1, totals1 = _train(model, variables, shapes_data, mesh1, steps=2)
  chex.assert_trees_all_close(state_all['params'], state1['params'], atol=2e-6, rtol=1e-5)
  chex.assert_trees_all_close(state_all['batch_stats'], state1['batch_stats'], atol=2e-6,
                              rtol=1e-5)
  np.testing.assert_allclose(totals_all['loss'], totals1['loss'], rtol=1e-5)
  state_all, totals_all = _train(model, variables, shapes_data, mesh_all)
  assert int(state_all['step']) == 96 // BATCH and float(totals_all['count']) == 96
  # The compiled step really takes its batch split over every device, its state replicated.
  images, view = _view(shapes_data, mesh_all)
  batch = next(view.training_epoch(BATCH, jax.random.key(0), mesh_all))
  devices = jax.device_count()  # tests/conftest.py: 4.
  assert devices > 1 and len(batch.ids.addressable_shards) == devices
  assert {s.data.shape for s in batch.ids.addressable_shards} == {(BATCH // devices,)}
  optimizer = optim.OptimizerSettings('sgd', 0.05)
  state = sharding.replicate(
      trainer.create_train_state(variables, optimizer, jax.random.key(1)), mesh_all)
  compiled = trainer.jit_train_step(trainer.TrainStepConfig(model, optimizer), mesh_all).lower(
      state, images, batch).compile()
  batch_sharding = compiled.input_shardings[0][2].ids
  assert batch_sharding.spec == sharding.batch_sharding(mesh_all).spec
  assert compiled.input_shardings[0][0]['params']['head']['kernel'].is_fully_replicated


def test_training_lowers_the_loss_and_keeps_base_widths(shapes_data):
  model = tiny.tiny_resnet(capacity=0.5, expansion=0.0)
  variables = init_variables(model, jax.random.key(0), SHAPE)
  mesh = sharding.make_mesh()
  _, first = _train(model, variables, shapes_data, mesh, epochs=1)
  state, last = _train(model, variables, shapes_data, mesh, epochs=4)
  assert float(last['loss']) < float(first['loss'])
  assert bool(state['finite'])
  # The capacity-0.5 model's trained tree has exactly the base widths.
  chex.assert_trees_all_equal_shapes(trainer.variables_of(state),
                                     expansion.variable_shapes(model, SHAPE))
  assert state['params']['conv1']['conv']['kernel'].shape[-1] == 4


def test_etd_masks_are_per_example_and_fixed():
  model = tiny.tiny_resnet()
  config = trainer.TrainStepConfig(model, optim.OptimizerSettings('sgd', 0.1),
                                   masks.MaskConfig(mask_seed=3, p_mem=0.2))
  ids = jnp.array([4, 7, 4])
  drawn = trainer.training_masks(config, ids)
  np.testing.assert_array_equal(drawn, masks.example_masks(ids, mask_seed=3, p_mem=0.2,
                                                           mask_size=model.mask_size))
  np.testing.assert_array_equal(drawn[0], drawn[2])
  assert not np.array_equal(drawn[0], drawn[1])
  with pytest.raises(ValueError, match='ETD training needs a mask_config'):
    trainer.TrainStepConfig(model, optim.OptimizerSettings('sgd', 0.1))


def test_etd_with_p_mem_zero_trains_exactly_the_base_network(shapes_data):
  """With every extra unit off, the base units must evolve as in plain training of the base."""
  model = tiny.tiny_resnet()
  mesh = sharding.make_mesh()
  full = init_variables(model, jax.random.key(0), SHAPE)
  base_init = expansion.drop(full, model, image_shape=SHAPE)
  # Three steps: equal up to float summation order (the convolutions also sum the extra
  # channels' zeros). Longer runs can amplify that rounding: a near-tie in the global max-pool
  # flips which position gets the gradient (seen: 1e-6 after 3 steps, 2e-4 after 4).
  etd, _ = _train(model, full, shapes_data, mesh, mask_config=masks.MaskConfig(0, p_mem=0.0),
                  steps=3)
  plain, _ = _train(model.base_model(), base_init, shapes_data, mesh, steps=3)
  chex.assert_trees_all_close(
      expansion.drop(trainer.variables_of(etd), model, image_shape=SHAPE),
      trainer.variables_of(plain), atol=1e-5, rtol=1e-4)
  # With masks on (p_mem 0.2), the extra units take part and the base units train differently.
  etd_on, _ = _train(model, full, shapes_data, mesh, mask_config=masks.MaskConfig(0, p_mem=0.2),
                     steps=3)
  dropped_on = expansion.drop(trainer.variables_of(etd_on), model, image_shape=SHAPE)
  assert not np.allclose(dropped_on['params']['head']['kernel'],
                         plain['params']['head']['kernel'], atol=1e-4)


def test_non_finite_loss_clears_the_finite_flag(shapes_data):
  model = tiny.tiny_resnet(capacity=0.5, expansion=0.0)
  variables = init_variables(model, jax.random.key(0), SHAPE)
  variables['params']['head']['kernel'] = variables['params']['head']['kernel'] * jnp.nan
  state, _ = _train(model, variables, shapes_data, sharding.make_mesh())
  assert not bool(state['finite'])


def test_predict_covers_every_example_once(shapes_data):
  model = tiny.tiny_resnet(capacity=0.5, expansion=0.0)
  variables = init_variables(model, jax.random.key(0), SHAPE)
  mesh = sharding.make_mesh()
  images, view = _view(shapes_data, mesh)
  subset = view.subset(np.arange(37))  # Not a multiple of the batch: the last batch is padded.
  predict_fn = evaluation.jit_predict_step(model, mesh)
  predictions = evaluation.predict(predict_fn, variables, images, subset, BATCH, mesh)
  assert predictions.shape == (37,)
  inputs = pipeline.normalise(jnp.asarray(shapes_data.images[:37]))
  direct = jnp.argmax(model.apply(variables, inputs, None), -1)
  np.testing.assert_array_equal(predictions, direct)
  # The on-device (correct, count) pair agrees, padding excluded.
  correct, count = evaluation.view_accuracy(evaluation.jit_accuracy_step(model, mesh), variables,
                                            images, subset, BATCH, mesh)
  assert float(count) == 37
  assert float(correct) == float(np.sum(predictions == subset.labels))


def test_metrics_on_hand_made_predictions():
  predictions = np.array([0, 1, 2, 0, 0, 5])
  labels = np.array([0, 1, 1, 3, 0, 5])
  assert metrics.accuracy_counts(predictions, labels) == (4.0, 6.0)
  assert metrics.accuracy(predictions, labels, weights=[1, 1, 1, 1, 0, 0]) == 0.5
  assert metrics.healed(predictions, labels) == pytest.approx(4 / 6)
  assert metrics.utility(predictions[:2], labels[:2]) == 1.0
  # Triggered images of classes 1, 1, 3, 5 (class 0 excluded): one of four predicted 0.
  assert metrics.poison_success(predictions, labels, target=0) == 0.25
  assert metrics.class_accuracy(predictions, labels, classes=(1, 3)) == pytest.approx(1 / 3)
  assert np.isnan(metrics.accuracy([], []))
  with pytest.raises(ValueError, match='same shape'):
    metrics.accuracy([1, 2], [1])
