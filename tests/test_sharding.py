"""The data-parallel mesh: a jitted step over 8 (fake CPU) devices equals one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import sharding
from rem_jax.models import init_variables
from tests import tiny


def test_mesh_spans_all_devices_on_a_data_axis():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ('data',)
  assert sharding.data_parallel_size(mesh) == len(jax.devices()) == 8  # conftest's XLA_FLAGS


def test_sharded_forward_equals_single_device_forward():
  mesh = sharding.make_mesh()
  model = tiny.tiny_resnet()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images(batch=16)
  mask = jax.random.bernoulli(jax.random.key(1), 0.2, (16, model.mask_size))
  batch = sharding.shard_batch((x, mask), mesh)
  assert batch[0].sharding.spec == sharding.batch_sharding(mesh).spec
  assert len(batch[0].addressable_shards) == 8 and batch[0].addressable_shards[0].data.shape[0] == 2
  replicated = sharding.replicate(variables, mesh)
  forward = jax.jit(lambda v, x, m: model.apply(v, x, m),
                    out_shardings=sharding.batch_sharding(mesh))
  np.testing.assert_allclose(forward(replicated, *batch), model.apply(variables, x, mask),
                             atol=1e-5)


def test_batch_size_must_divide_over_the_data_axis():
  mesh = sharding.make_mesh()
  with pytest.raises(ValueError, match=r"batch_size=12 must be a positive multiple of the "
                     r"number of devices on the 'data' axis \(8\)"):
    sharding.check_batch_size(12, mesh)
  with pytest.raises(ValueError, match='leading'):
    sharding.shard_batch(jnp.zeros((6, 2)), mesh)


def test_a_mesh_over_a_subset_of_devices():
  mesh = sharding.make_mesh(jax.devices()[:2])
  assert sharding.data_parallel_size(mesh) == 2
  with pytest.raises(ValueError, match='empty'):
    sharding.make_mesh([])
