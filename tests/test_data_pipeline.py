"""The device pipeline: augmentation, trigger, normalisation, batches, views, and learnability."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from rem_jax import sharding
from rem_jax.data import corruptions, pipeline, sources

MESH_DEVICES = 4  # tests/conftest.py: 4 fake CPU devices.


@pytest.fixture(scope='module')
def mesh():
  return sharding.make_mesh()


@pytest.fixture(scope='module')
def splits():
  return sources.load('shapes', image_size=16, num_train=400, num_test=150, seed=0)


def _random_images(num, size=8, seed=0):
  return np.random.default_rng(seed).integers(1, 256, (num, size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Preprocessing


def test_augment_is_a_crop_of_the_zero_padded_image_or_its_flip():
  images = _random_images(64)
  out = np.asarray(jax.jit(pipeline.augment)(images, jax.random.key(0)))
  assert out.shape == images.shape and out.dtype == np.uint8
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  seen = set()
  for image, result in zip(padded, out):
    matches = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)
               if np.array_equal(result, (lambda c: c[:, ::-1] if flip else c)(
                   image[dy:dy + 8, dx:dx + 8]))]
    assert matches, 'not a crop (or flipped crop) of the zero-padded image'
    seen.add(matches[0])
  # Per-example randomness: many different crops and both flips occur in one batch.
  assert len(seen) > 20 and {m[2] for m in seen} == {False, True}
  other = np.asarray(pipeline.augment(images, jax.random.key(1)))
  assert not np.array_equal(out, other)


def test_trigger_is_stamped_after_augmentation_and_changes_nothing_else():
  images = _random_images(16)
  triggered = np.arange(16) % 3 == 0
  for seed in range(3):
    augmented = np.asarray(pipeline.augment(images, jax.random.key(seed)))
    stamped = np.asarray(pipeline.stamp_trigger(augmented, triggered))
    assert (stamped[triggered, -3:, -3:, :] == 255).all()
    untouched = np.ones(stamped.shape, bool)
    untouched[triggered, -3:, -3:, :] = False
    np.testing.assert_array_equal(stamped[untouched], augmented[untouched])
  # In the composed training step the patch survives any crop or flip, at full white.
  view = pipeline.View(jnp.asarray(images), np.arange(16, dtype=np.int32), np.zeros(16, np.int32),
                       triggered)
  batch = pipeline.Batch(jnp.arange(16), jnp.zeros(16, jnp.int32), jnp.asarray(triggered),
                         jnp.ones(16))
  white = (1.0 - np.asarray(pipeline.MEAN)) / np.asarray(pipeline.STD)
  for seed in range(3):
    x = np.asarray(pipeline.training_inputs(view.images, batch, jax.random.key(seed)))
    np.testing.assert_allclose(x[triggered, -3:, -3:, :],
                               np.broadcast_to(white, (triggered.sum(), 3, 3, 3)), rtol=1e-6)
    expected = pipeline.normalise(pipeline.augment(images, jax.random.key(seed)))
    np.testing.assert_array_equal(x[~triggered], np.asarray(expected)[~triggered])


def test_normalise_uses_the_cifar_statistics():
  pixels = np.array([[[[0, 128, 255]]]], np.uint8)
  mean, std = np.array(pipeline.MEAN), np.array(pipeline.STD)
  expected = (np.array([0, 128, 255]) / 255 - mean) / std
  np.testing.assert_allclose(np.asarray(pipeline.normalise(pixels))[0, 0, 0], expected, rtol=1e-5)
  assert pipeline.normalise(pixels, jnp.bfloat16).dtype == jnp.bfloat16
  np.testing.assert_allclose(pipeline.MEAN, (0.4914, 0.4822, 0.4465))
  np.testing.assert_allclose(pipeline.STD, (0.2470, 0.2435, 0.2616))


# ---------------------------------------------------------------------------------------------
# Batches


@pytest.mark.parametrize('num_examples, batch_size', [(100, 32), (96, 32), (5, 16)])
def test_epoch_batches_wrap_the_permutation(num_examples, batch_size):
  batches = np.asarray(pipeline.epoch_batches(num_examples, batch_size, jax.random.key(0)))
  steps = -(-num_examples // batch_size)
  assert batches.shape == (steps, batch_size) and batches.dtype == np.int32
  flat = batches.reshape(-1)
  # The first N entries are a permutation; the rest repeat it from its start.
  np.testing.assert_array_equal(np.sort(flat[:num_examples]), np.arange(num_examples))
  np.testing.assert_array_equal(flat, flat[np.arange(flat.size) % num_examples])
  counts = np.bincount(flat, minlength=num_examples)
  assert counts.max() - counts.min() <= 1
  again = pipeline.epoch_batches(num_examples, batch_size, jax.random.key(0))
  np.testing.assert_array_equal(batches, again)
  if num_examples > 5:
    other = pipeline.epoch_batches(num_examples, batch_size, jax.random.key(1))
    assert not np.array_equal(batches, other)


def test_epoch_batches_take_typed_or_raw_keys_and_compile_nothing_per_size():
  from rem_jax import compilation  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(pipeline.epoch_batches(50, 16, jax.random.key(3)),
                                pipeline.epoch_batches(50, 16, jax.random.PRNGKey(3)))
  key = jax.random.key(4)
  pipeline.epoch_batches(50, 16, key)
  with compilation.CompileCounter() as compiles:
    for size in (51, 77, 1000):  # D_r sizes of other discovery rates.
      pipeline.epoch_batches(size, 16, key)
  assert compiles.count == 0


def test_eval_batches_count_every_example_once():
  positions, weights = pipeline.eval_batches(100, 32)
  assert positions.shape == weights.shape == (4, 32)
  counts = np.zeros(100)
  np.add.at(counts, positions.reshape(-1), weights.reshape(-1))
  np.testing.assert_array_equal(counts, np.ones(100))
  assert weights.sum() == 100 and (weights[-1, 4:] == 0).all()


def test_sharded_evaluation_sums_every_example_once(mesh, splits):
  """A jitted (sum, count) metric over a padded, sharded view equals the plain numpy value."""
  view = pipeline.View(sharding.replicate(splits.test.images, mesh), splits.test.ids,
                       splits.test.labels, np.zeros(150, bool))

  @jax.jit
  def sums(images, batch):
    brightness = pipeline.eval_inputs(images, batch).mean(axis=(1, 2, 3))
    return jnp.sum(batch.weights * brightness), jnp.sum(batch.weights)

  total = count = 0.0
  for batch in view.evaluation_batches(64, mesh):  # 150 = 64 + 64 + 22 (+42 padding).
    assert batch.ids.sharding.spec == PartitionSpec(sharding.DATA_AXIS)
    value, weight = sums(view.images, batch)
    total, count = total + value, count + weight
  expected = np.asarray(pipeline.normalise(splits.test.images)).mean(axis=(1, 2, 3))
  assert count == 150
  np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)


def test_batches_are_sharded_over_the_data_axis(mesh, splits):
  view = pipeline.View(sharding.replicate(splits.train.images, mesh), splits.train.ids,
                       splits.train.labels, np.zeros(400, bool))
  batches = list(view.training_epoch(64, jax.random.key(0), mesh))
  assert len(batches) == 7  # ceil(400 / 64)
  for leaf in batches[0]:
    assert leaf.shape == (64,) and leaf.sharding.spec == PartitionSpec(sharding.DATA_AXIS)
    assert len(leaf.sharding.device_set) == MESH_DEVICES
  inputs = jax.jit(pipeline.training_inputs)(view.images, batches[0], jax.random.key(1))
  assert inputs.shape == (64, 16, 16, 3)
  assert inputs.sharding.spec[0] == sharding.DATA_AXIS
  # A whole epoch at once (for a lax.scan): the batch axis is the last one.
  epoch = view.batch(pipeline.epoch_batches(400, 64, jax.random.key(0)), mesh)
  assert epoch.ids.shape == (7, 64)
  assert epoch.ids.sharding.spec == PartitionSpec(None, sharding.DATA_AXIS)
  np.testing.assert_array_equal(epoch.ids[0], batches[0].ids)
  with pytest.raises(ValueError, match='multiple of the number of devices'):
    view.batch(np.arange(10), mesh)
  with pytest.raises(ValueError, match='batch_size=0'):
    pipeline.epoch_batches(10, 0, jax.random.key(0))
  with pytest.raises(ValueError, match='num_examples=0'):
    pipeline.eval_batches(0, 8)


# ---------------------------------------------------------------------------------------------
# Views


def _views(splits, mesh, task, rate=0.5):
  record = corruptions.corrupt(splits.train.labels, task=task, seed=0, num_classes=10,
                               num_corrupted=40)
  images = pipeline.put_images(splits, mesh)
  return record, pipeline.make_views(splits, record, record.forget_ids_at(rate), images)


def test_views_of_a_poisoned_benchmark(mesh, splits):
  record, views = _views(splits, mesh, 'poison_trigger', rate=0.3)
  n = splits.train.num_examples
  assert (views.train.num_examples, views.forget.num_examples, views.retain.num_examples,
          views.corrupted.num_examples) == (n, 12, n - 12, 40)
  np.testing.assert_array_equal(views.forget.ids, record.forget_ids_at(0.3))
  assert np.intersect1d(views.forget.ids, views.retain.ids).size == 0
  np.testing.assert_array_equal(np.union1d(views.forget.ids, views.retain.ids), np.arange(n))
  # D_tr: corrupted labels, the trigger exactly on D_c (also inside D_r: undiscovered ones).
  np.testing.assert_array_equal(views.train.labels, record.corrupt_labels(splits.train.labels))
  np.testing.assert_array_equal(np.flatnonzero(views.train.triggered), record.corrupted_ids)
  assert (views.forget.labels == 0).all() and views.forget.triggered.all()
  assert views.retain.triggered.sum() == 40 - 12
  # D_c: clean labels, triggered.
  np.testing.assert_array_equal(views.corrupted.labels, record.clean_labels)
  assert views.corrupted.triggered.all() and (views.corrupted.labels != 0).all()
  # Test: clean; triggered test = classes ≠ 0 with the trigger and their clean labels.
  assert views.test.num_examples == 150 and not views.test.triggered.any()
  np.testing.assert_array_equal(views.test.labels, splits.test.labels)
  outside = splits.test.labels != 0
  np.testing.assert_array_equal(views.test_triggered.ids, np.flatnonzero(outside))
  np.testing.assert_array_equal(views.test_triggered.labels, splits.test.labels[outside])
  assert views.test_triggered.triggered.all()
  # One copy of each split on the device, shared by every view.
  assert views.forget.images is views.train.images is views.corrupted.images
  assert views.test_triggered.images is views.test.images
  assert views.train.images.sharding.spec == PartitionSpec()


@pytest.mark.parametrize('task', ['random_label_swap', 'inter_class_confusion'])
def test_views_without_trigger(mesh, splits, task):
  record, views = _views(splits, mesh, task)
  assert views.test_triggered is None
  for view in (views.train, views.forget, views.retain, views.corrupted, views.test):
    assert not view.triggered.any()
  np.testing.assert_array_equal(views.forget.labels, record.corrupt_labels(
      splits.train.labels)[views.forget.ids])
  assert (views.forget.labels != splits.train.labels[views.forget.ids]).all()


def test_views_reject_forget_ids_outside_the_corrupted_set(mesh, splits):
  record = corruptions.corrupt(splits.train.labels, task='poison_trigger', seed=0,
                               num_classes=10, num_corrupted=40)
  images = pipeline.put_images(splits, mesh)
  clean_id = np.setdiff1d(np.arange(400), record.corrupted_ids)[0]
  with pytest.raises(ValueError, match='subset of D_c'):
    pipeline.make_views(splits, record, [record.corrupted_ids[0], clean_id], images)
  with pytest.raises(ValueError, match='duplicated'):
    pipeline.make_views(splits, record, record.corrupted_ids[[0, 0]], images)
  # A found set widened by a diagnosis's suspects may hold clean examples; D_c stays the record's.
  widened = pipeline.make_views(splits, record, [record.corrupted_ids[0], clean_id], images,
                                corrupted_only=False)
  np.testing.assert_array_equal(widened.forget.ids, sorted([record.corrupted_ids[0], clean_id]))
  np.testing.assert_array_equal(widened.corrupted.ids, record.corrupted_ids)
  forget = widened.forget
  assert forget.triggered[forget.ids == clean_id].tolist() == [False]
  assert forget.triggered[forget.ids == record.corrupted_ids[0]].tolist() == [True]
