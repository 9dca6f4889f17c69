"""The device mesh and the two shardings every step uses.

rem_jax runs data-parallel: a 1-D mesh with a single `data` axis, the batch split along it and
everything else (params, batch statistics, optimizer state) replicated. Steps are `jax.jit`
functions whose inputs carry these shardings, so XLA inserts the gradient all-reduce itself;
there is no `pmap` anywhere.

The same code runs on one process and on many (`rem_jax.distributed`, one process per host):
the mesh spans `jax.devices()`, every device of every process, and host data becomes a global
array through `host_to_global`, where each process feeds only its own devices from a host value
that every process holds whole. That holds here because every host derives the data, the
corruption, each epoch's order and the initial parameters from the same seed. `to_host` reads a
global array back on every process.
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

DATA_AXIS = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `data` over `devices` (default: all devices JAX sees).

  In a multi-process run `jax.devices()` lists the devices of every process, in the same order
  on each, so every process builds the same global mesh.
  """
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


def host_to_global(tree, target: Sharding):
  """Every leaf of `tree` as a global `jax.Array` laid out as `target`.

  Every process must pass the same whole value (numpy, Python or a device array): each one
  copies from it only the shards of its own devices (`jax.make_array_from_callback`), so in a
  multi-process run no data crosses hosts and no process needs the others' shards. On a single
  process it places `tree` as `jax.device_put(tree, target)` would.
  """
  return jax.tree.map(lambda leaf: _global_array(leaf, target), tree)


def _global_array(value, target: Sharding) -> jax.Array:
  if isinstance(value, jax.Array):
    if jax.process_count() == 1 or not value.is_fully_addressable:
      # Already on devices: a device-to-device copy, or a reshard of a global array (a no-op
      # when it is laid out as `target` already).
      return jax.device_put(value, target)
    if not jax.dtypes.issubdtype(value.dtype, jax.dtypes.extended):
      # A process-local device array (e.g. freshly initialised parameters): slice it on the
      # host, where slicing compiles nothing. PRNG keys cannot leave the device; they are
      # sliced there (they are scalars or tiny).
      value = np.asarray(value)
  else:
    value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, target, lambda index: value[index])


def shard_batch(tree, mesh: Mesh):
  """Places every leaf of `tree` on the mesh, split along its leading axis.

  See `host_to_global`: in a multi-process run every process passes the whole batch and feeds
  its own devices their rows.
  """
  for leaf in jax.tree.leaves(tree):
    check_batch_size(np.shape(leaf)[0], mesh, name='leading (batch) dimension')
  return host_to_global(tree, batch_sharding(mesh))


def replicate(tree, mesh: Mesh):
  """Places a full copy of every leaf of `tree` on each device of the mesh (`host_to_global`)."""
  return host_to_global(tree, replicated(mesh))


def to_host(tree):
  """Every leaf as a host numpy array, on every process.

  A leaf split over devices of several processes is gathered from all of them (a collective:
  every process must call this); anything else is read from this process's own devices.
  """

  def one(leaf):
    if (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable
        and not leaf.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return jax.device_get(leaf)

  return jax.tree.map(one, tree)
