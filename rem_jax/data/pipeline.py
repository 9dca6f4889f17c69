"""The device-resident input pipeline: views of the data, batches of indices, jitted preprocessing.

Each split's images are put on the device once, as uint8 (CIFAR-10's training set is 150 MB),
replicated over the mesh. A `View` (D_tr, D_f, D_r, D_c, test, ...) is a host-side list of
dataset ids with their labels and trigger flags into one of those image arrays; a `Batch` is a
slice of a view, sharded over the mesh's `data` axis. Inside a jitted step, `training_inputs`
gathers the batch's images by id, augments them (random crop with zero padding, horizontal flip),
stamps the poison trigger and normalises — so nothing but ids and labels crosses from the host.

Training epochs have ceil(N / batch) steps; the last batch is completed by wrapping around the
shuffled order, because zero padding would feed fake examples to train-mode BatchNorm.
Evaluation pads the last batch instead and gives each example a weight (1 real, 0 padding), so
every example counts exactly once and every batch has the same shape.
"""

import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rem_jax import sharding
from rem_jax.data import corruptions
from rem_jax.data.sources import Splits

# Per-channel statistics of CIFAR-10, used for every dataset (as the reference does, SPEC §2).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
CROP_PADDING = 4
TRIGGER_SIZE = 3
TRIGGER_VALUE = 255


# ---------------------------------------------------------------------------------------------
# Preprocessing (pure, jittable, per batch of uint8 NHWC images)


def augment(images: jax.Array, key: jax.Array, padding: int = CROP_PADDING) -> jax.Array:
  """Per example: a random crop of the zero-padded image back to its size, and a random flip."""
  images = jnp.asarray(images)
  num, height, width, channels = images.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (num, 2), 0, 2 * padding + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (num,))
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  crop = lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (height, width, channels))
  cropped = jax.vmap(crop)(padded, offsets)
  return jnp.where(flips[:, None, None, None], cropped[:, :, ::-1], cropped)


def stamp_trigger(images: jax.Array, triggered: jax.Array) -> jax.Array:
  """Sets the bottom-right 3×3 pixels of the flagged images to 255 in every channel.

  Applied after augmentation, so the trigger sits at a fixed position whatever the crop and flip.
  """
  images = jnp.asarray(images)
  corner = images[:, -TRIGGER_SIZE:, -TRIGGER_SIZE:, :]
  patch = jnp.where(triggered[:, None, None, None], jnp.asarray(TRIGGER_VALUE, images.dtype),
                    corner)
  return images.at[:, -TRIGGER_SIZE:, -TRIGGER_SIZE:, :].set(patch)


def normalise(images: jax.Array, dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """uint8 pixels → (x / 255 − mean) / std per channel, in `dtype`."""
  mean = jnp.asarray(MEAN, jnp.float32)
  std = jnp.asarray(STD, jnp.float32)
  return ((jnp.asarray(images, jnp.float32) / 255.0 - mean) / std).astype(dtype)


class Batch(NamedTuple):
  """A batch of examples of a view (leaves sharded over `data` along the last axis).

  Attributes:
    ids: int32, dataset ids: rows of the view's images, and what per-example masks derive from.
    labels: int32, the labels the view assigns.
    triggered: bool, whether to stamp the poison trigger.
    weights: float32, 1 for a real example, 0 for evaluation padding.
  """
  ids: jax.Array
  labels: jax.Array
  triggered: jax.Array
  weights: jax.Array


def training_inputs(images: jax.Array, batch: Batch, key: jax.Array,
                    dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """Gather by id → augment → trigger → normalise; `images` is a whole split (uint8, device)."""
  selected = augment(jnp.take(images, batch.ids, axis=0), key)
  return normalise(stamp_trigger(selected, batch.triggered), dtype)


def eval_inputs(images: jax.Array, batch: Batch, dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """Gather by id → trigger → normalise (no augmentation)."""
  return normalise(stamp_trigger(jnp.take(images, batch.ids, axis=0), batch.triggered), dtype)


# ---------------------------------------------------------------------------------------------
# Batches of positions


def epoch_batches(num_examples: int, batch_size: int, key: jax.Array) -> np.ndarray:
  """A shuffled epoch as int32 positions (ceil(N / batch), batch) into a view of N examples.

  The last batch is completed by wrapping around the permutation, so every example appears once
  and the first few twice (more often when batch > N). The permutation is a pure function of
  `key`, drawn on the host (numpy's PCG64 seeded with the key's data): no XLA program depends
  on N, so views of every size (D_r at every discovery rate) shuffle without a compile.
  """
  _check_sizes(num_examples, batch_size)
  steps = math.ceil(num_examples / batch_size)
  order = np.random.default_rng(_key_seed(key)).permutation(num_examples)
  wrapped = np.arange(steps * batch_size) % num_examples
  return order[wrapped].reshape(steps, batch_size).astype(np.int32)


def _key_seed(key: jax.Array) -> list[int]:
  """A numpy seed from a JAX key (typed or raw uint32 data)."""
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return [int(word) for word in np.asarray(key).ravel()]


def eval_batches(num_examples: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Positions (steps, batch) in order, the last batch padded; weights 1 real / 0 padding.

  Padding points at position 0 (a valid example) with weight 0, so shapes stay static and a
  metric accumulated as (Σ weight·value, Σ weight) counts every example exactly once.
  """
  _check_sizes(num_examples, batch_size)
  steps = math.ceil(num_examples / batch_size)
  flat = np.arange(steps * batch_size)
  positions = np.where(flat < num_examples, flat, 0).astype(np.int32)
  weights = (flat < num_examples).astype(np.float32)
  return positions.reshape(steps, batch_size), weights.reshape(steps, batch_size)


def _check_sizes(num_examples: int, batch_size: int) -> None:
  if num_examples <= 0:
    raise ValueError(f'num_examples={num_examples} must be positive (an empty view?).')
  if batch_size <= 0:
    raise ValueError(f'batch_size={batch_size} must be positive.')


# ---------------------------------------------------------------------------------------------
# Views


@dataclasses.dataclass(frozen=True, eq=False)
class View:
  """A subset of a split as the methods see it.

  Attributes:
    images: the whole split on the device, uint8 (N, H, W, C); shared by all views of the split.
    ids: int32 (M,), host: the view's dataset ids (rows of `images`).
    labels: int32 (M,), host: the labels this view assigns (corrupted or clean).
    triggered: bool (M,), host: which examples carry the poison trigger.
  """
  images: jax.Array
  ids: np.ndarray
  labels: np.ndarray
  triggered: np.ndarray

  @property
  def num_examples(self) -> int:
    return len(self.ids)

  def subset(self, which: np.ndarray) -> 'View':
    """The examples at positions `which` (an index array or a boolean mask over the view)."""
    return View(self.images, self.ids[which], self.labels[which], self.triggered[which])

  def batch(self, positions, mesh: Mesh, weights=None) -> Batch:
    """Takes `positions` (…, batch) of this view and shards them over `data` (last axis).

    `positions` may hold a whole epoch (steps, batch), e.g. for a `lax.scan` over its steps.
    """
    positions = np.asarray(positions)
    sharding.check_batch_size(positions.shape[-1], mesh)
    weights = np.ones(positions.shape, np.float32) if weights is None else weights
    batch = Batch(self.ids[positions], self.labels[positions], self.triggered[positions],
                  np.asarray(weights, np.float32))
    spec = PartitionSpec(*([None] * (positions.ndim - 1)), sharding.DATA_AXIS)
    # Every process holds the same positions (drawn from the shared seed), so each feeds its
    # own devices their slice of the batch.
    return sharding.host_to_global(batch, NamedSharding(mesh, spec))

  def training_epoch(self, batch_size: int, key: jax.Array, mesh: Mesh) -> Iterator[Batch]:
    """The batches of one shuffled epoch (see `epoch_batches`)."""
    for positions in epoch_batches(self.num_examples, batch_size, key):
      yield self.batch(positions, mesh)

  def evaluation_batches(self, batch_size: int, mesh: Mesh) -> Iterator[Batch]:
    """Every example once, in order, the last batch padded with weight 0 (see `eval_batches`)."""
    for positions, weights in zip(*eval_batches(self.num_examples, batch_size)):
      yield self.batch(positions, mesh, weights)


@dataclasses.dataclass(frozen=True, eq=False)
class Views:
  """The views a method and its metrics need (SPEC §1, §9).

  Attributes:
    train: D_tr with the corrupted labels (poison: D_c triggered).
    forget: D_f ⊆ D_c, corrupted labels, triggered for poison.
    retain: D_r = D_tr \\ D_f, corrupted labels (holds the undiscovered corrupted examples).
    corrupted: D_c with the clean labels, triggered for poison (what Healed measures); None
      for a practitioner, who does not know D_c (`make_practitioner_views`).
    test: the clean test set.
    test_triggered: poison only (else None): test examples outside the target class, triggered,
      with their clean labels.
  """
  train: View
  forget: View
  retain: View
  corrupted: View | None
  test: View
  test_triggered: View | None


def put_images(splits: Splits, mesh: Mesh) -> dict[str, jax.Array]:
  """Both splits' uint8 images, replicated on the mesh: 'train' and 'test'.

  In a multi-process run every process loads the same splits and fills its own devices.
  """
  return {'train': sharding.replicate(splits.train.images, mesh),
          'test': sharding.replicate(splits.test.images, mesh)}


def make_views(splits: Splits, record: corruptions.CorruptionRecord, forget_ids,
               images: Mapping[str, jax.Array], *, corrupted_only: bool = True) -> Views:
  """Builds every view of a corrupted benchmark for one forget set.

  Args:
    splits: the clean dataset the record was drawn for.
    record: the corruption (D_c, its labels, whether it carries the trigger).
    forget_ids: D_f, a subset of D_c (e.g. `record.forget_ids_at(rate)`).
    images: `put_images(splits, mesh)`, shared by every call (no copy per forget set).
    corrupted_only: False lets D_f hold clean examples too: a found set widened by a
      diagnosis's suspects, as a practitioner would unlearn it.
  """
  train, test = splits.train, splits.test
  forget_ids = corruptions.check_forget_ids(forget_ids, train.num_examples,
                                            record.corrupted_ids if corrupted_only else None)
  triggered = np.zeros(train.num_examples, bool)
  triggered[record.corrupted_ids] = record.triggered
  train_view = View(images['train'], train.ids, record.corrupt_labels(train.labels), triggered)
  forgotten = np.zeros(train.num_examples, bool)
  forgotten[forget_ids] = True
  test_view = View(images['test'], test.ids, test.labels,
                   np.zeros(test.num_examples, bool))
  test_triggered = None
  if record.triggered:
    outside_target = test.labels != record.poison_target
    test_triggered = dataclasses.replace(
        test_view.subset(outside_target), triggered=np.ones(outside_target.sum(), bool))
  return Views(
      train=train_view,
      forget=train_view.subset(forgotten),
      retain=train_view.subset(~forgotten),
      corrupted=View(images['train'], record.corrupted_ids, record.clean_labels,
                     triggered[record.corrupted_ids]),
      test=test_view,
      test_triggered=test_triggered)


def make_practitioner_views(splits: Splits, forget_ids, images: Mapping[str, jax.Array],
                            corruption: corruptions.CorruptionRecord | None = None) -> Views:
  """The views of a practitioner's unlearning run: D_c is unknown, D_f is what they found.

  The training data is taken as given: its labels are the (possibly corrupted) ones, and a
  poisoned image carries its trigger in the pixels. `corruption` re-creates a benchmark's
  corrupted training set from clean data (labels and triggers); the views still hide D_c.
  """
  train, test = splits.train, splits.test
  forget_ids = corruptions.check_forget_ids(forget_ids, train.num_examples)
  labels = train.labels.astype(np.int32)
  triggered = np.zeros(train.num_examples, bool)
  if corruption is not None:
    labels = corruption.corrupt_labels(labels)
    triggered[corruption.corrupted_ids] = corruption.triggered
  train_view = View(images['train'], train.ids, labels, triggered)
  forgotten = np.zeros(train.num_examples, bool)
  forgotten[forget_ids] = True
  return Views(
      train=train_view, forget=train_view.subset(forgotten), retain=train_view.subset(~forgotten),
      corrupted=None,
      test=View(images['test'], test.ids, test.labels.astype(np.int32),
                np.zeros(test.num_examples, bool)),
      test_triggered=None)
