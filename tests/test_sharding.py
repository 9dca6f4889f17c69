"""The data-parallel mesh: a jitted step over 4 (fake CPU) devices equals one device; host data
becomes global arrays, each device fed its own shard (tests/test_distributed.py: 2 processes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import compilation, sharding
from rem_jax.models import init_variables
from tests import tiny

DEVICES = 4  # tests/conftest.py's XLA_FLAGS.


def test_mesh_spans_all_devices_on_a_data_axis():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ('data',)
  assert sharding.data_parallel_size(mesh) == len(jax.devices()) == DEVICES


def test_sharded_forward_equals_single_device_forward():
  mesh = sharding.make_mesh()
  model = tiny.tiny_resnet()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images(batch=16)
  mask = jax.random.bernoulli(jax.random.key(1), 0.2, (16, model.mask_size))
  batch = sharding.shard_batch((x, mask), mesh)
  assert batch[0].sharding.spec == sharding.batch_sharding(mesh).spec
  assert len(batch[0].addressable_shards) == DEVICES
  assert batch[0].addressable_shards[0].data.shape[0] == 16 // DEVICES
  replicated = sharding.replicate(variables, mesh)
  forward = jax.jit(lambda v, x, m: model.apply(v, x, m),
                    out_shardings=sharding.batch_sharding(mesh))
  np.testing.assert_allclose(forward(replicated, *batch), model.apply(variables, x, mask),
                             atol=1e-5)


def test_batch_size_must_divide_over_the_data_axis():
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match=r"batch_size=10 must be a positive multiple of the "
                     r"number of devices on the 'data' axis \(4\)"):
    sharding.check_batch_size(10, mesh)
  with pytest.raises(ValueError, match='leading'):
    sharding.shard_batch(jnp.zeros((6, 2)), mesh)


def test_a_mesh_over_a_subset_of_devices():
  mesh = sharding.make_mesh(jax.devices()[:2])
  assert sharding.data_parallel_size(mesh) == 2
  with pytest.raises(ValueError, match='empty'):
    sharding.make_mesh([])


def test_host_data_becomes_a_global_array_each_device_holding_its_rows():
  mesh = sharding.make_mesh()
  rows = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  labels = np.arange(16, dtype=np.int32)
  batch = sharding.shard_batch({'rows': rows, 'labels': labels}, mesh)
  for name, host in (('rows', rows), ('labels', labels)):
    array = batch[name]
    assert array.dtype == host.dtype and array.shape == host.shape
    assert array.sharding.is_equivalent_to(sharding.batch_sharding(mesh), host.ndim)
    # Device i holds rows 4i to 4i + 3, and only those: each device is fed its own shard.
    for shard in array.addressable_shards:
      assert shard.data.shape[0] == 16 // DEVICES
      np.testing.assert_array_equal(np.asarray(shard.data), host[shard.index])
    np.testing.assert_array_equal(sharding.to_host(array), host)
  # Host data is sliced on the host: placing a batch of a new size compiles nothing.
  with compilation.CompileCounter() as compiles:
    sharding.shard_batch(np.zeros((24, 5), np.float32), mesh)
    sharding.replicate(np.zeros((7, 3), np.uint8), mesh)
  assert compiles.count == 0
  # Python and float64 host values take JAX's default dtypes, as device_put gives them.
  assert sharding.replicate(np.zeros(3), mesh).dtype == jnp.float32
  assert sharding.replicate(1.5, mesh).dtype == jnp.float32


def test_replicate_copies_host_values_device_arrays_and_prng_keys_to_every_device():
  mesh = sharding.make_mesh()
  tree = {'host': np.arange(6, dtype=np.int32).reshape(2, 3), 'device': jnp.ones((4,)),
          'key': jax.random.key(7), 'scalar': np.int32(3)}
  placed = sharding.replicate(tree, mesh)
  for name, leaf in placed.items():
    assert leaf.sharding.is_fully_replicated and len(leaf.addressable_shards) == DEVICES, name
  np.testing.assert_array_equal(placed['host'], tree['host'])
  assert jax.random.key_data(placed['key']).tolist() == jax.random.key_data(tree['key']).tolist()
  assert sharding.replicate(placed, mesh)['device'] is placed['device']  # Already in place.
  host = sharding.to_host(placed)
  assert isinstance(host['host'], np.ndarray) and int(host['scalar']) == 3


def test_a_view_batch_is_split_along_its_last_axis():
  from rem_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()
  view = pipeline.View(jnp.zeros((40, 4, 4, 3), jnp.uint8), np.arange(40, dtype=np.int32) * 3,
                       np.arange(40, dtype=np.int32) % 10, np.zeros(40, bool))
  positions = np.arange(32).reshape(2, 16)  # A whole epoch of 2 steps, as `lax.scan` takes it.
  batch = view.batch(positions, mesh)
  assert batch.ids.sharding.spec == jax.sharding.PartitionSpec(None, 'data')
  for shard in batch.ids.addressable_shards:
    assert shard.data.shape == (2, 16 // DEVICES)
    np.testing.assert_array_equal(np.asarray(shard.data), view.ids[positions][shard.index])
  np.testing.assert_array_equal(sharding.to_host(batch.weights), np.ones((2, 16)))
