"""The device mesh and the two shardings every step uses.

rem_jax runs data-parallel: a 1-D mesh with a single `data` axis, the batch split along it and
everything else (params, batch statistics, optimizer state) replicated. Steps are `jax.jit`
functions whose inputs carry these shardings, so XLA inserts the gradient all-reduce itself;
there is no `pmap` anywhere.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `data` over `devices` (default: all devices JAX sees)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError('make_mesh: `devices` is empty; pass at least one device.')
  # Auto axis types: classic automatic sharding propagation (jax.make_mesh defaults to Explicit).
  return Mesh(np.asarray(devices), (DATA_AXIS,),
              axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`; other axes whole on each device."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
  """How many shards the batch axis is split into."""
  return mesh.shape[DATA_AXIS]


def check_batch_size(batch_size: int, mesh: Mesh, name: str = 'batch_size') -> None:
  """Raises a readable error if `batch_size` cannot be split evenly over the mesh."""
  shards = data_parallel_size(mesh)
  if batch_size <= 0 or batch_size % shards:
    raise ValueError(
        f'{name}={batch_size} must be a positive multiple of the number of devices on the '
        f"'{DATA_AXIS}' axis ({shards}).")


def shard_batch(tree, mesh: Mesh):
  """Places every leaf of `tree` on the mesh, split along its leading axis."""
  for leaf in jax.tree.leaves(tree):
    check_batch_size(np.shape(leaf)[0], mesh, name='leading (batch) dimension')
  return jax.device_put(tree, batch_sharding(mesh))


def replicate(tree, mesh: Mesh):
  """Places a full copy of every leaf of `tree` on each device of the mesh."""
  return jax.device_put(tree, replicated(mesh))
