"""Checkpoints of a run's train state: the project's only adapter to orbax.

A checkpoint is one step folder under `<workdir>/checkpoints/` holding two items: `state`, the
train state (a plain pytree of arrays, orbax's standard tensorstore format), and `meta`, a
JSON-able dict (config, mask config, model description), so a checkpoint can be understood
without the code that wrote it.

What the adapter adds to orbax, and why:

- Restoring reads into a *target*, an example tree of arrays or `jax.ShapeDtypeStruct`s: it fixes
  the tree types (optax states are namedtuples, which orbax stores as dicts and lists), the dtypes
  and each leaf's sharding, so a checkpoint written on one device restores onto an 8-device
  mesh. Without a target, the state comes back as stored (dicts and lists, on one device).
- The target is compared with the shapes orbax recorded before anything is read
  (`expansion.check_shapes`, the project's one tree comparer): another model's checkpoint fails
  with one line naming the first mismatching leaf, not a tensorstore traceback.
- Typed PRNG keys are stored as their key data; a leaf comes back typed exactly when the
  target's leaf is typed.
- Saves are asynchronous and crash-safe: orbax writes `<step>.orbax-checkpoint-tmp` and renames
  it when complete (leftovers are removed by the next `Checkpointer`); `save` copies the state to
  host memory before it returns; `latest_step`, `restore` and `close` wait for pending writes.
- A damaged or truncated checkpoint is one `ValueError` naming the step and folder.
"""

import json
import operator
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from rem_jax import expansion

CHECKPOINT_DIR = 'checkpoints'
_STATE = 'state'
_META = 'meta'


def _is_typed_key(leaf) -> bool:
  dtype = getattr(leaf, 'dtype', None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _key_impl(key_leaf):
  """The PRNG implementation of a typed key array or of an abstract one (tracing the leaf, which
  `jax.eval_shape` does without computing anything, turns a `ShapeDtypeStruct` into an array)."""
  found = []

  def record(key):
    found.append(jax.random.key_impl(key))
    return key

  jax.eval_shape(record, key_leaf)
  return found[0]


def _keys_to_data(tree):
  """`tree` with every typed PRNG key replaced by its raw `uint32` key data."""
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, tree)


def _abstract_leaf(leaf) -> jax.ShapeDtypeStruct:
  """What orbax should read for one target leaf: its shape, dtype and sharding (a typed key as
  its key data; a leaf without a sharding on the default device)."""
  sharding = getattr(leaf, 'sharding', None)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  if _is_typed_key(leaf):
    data = jax.eval_shape(jax.random.key_data, leaf)
    return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
  if hasattr(leaf, 'shape'):
    return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=sharding)
  # A Python scalar: the dtype JAX would give it.
  return jax.ShapeDtypeStruct((), jnp.asarray(leaf).dtype, sharding=sharding)


class Checkpointer:
  """Saves and restores a run's train state in `<workdir>/checkpoints`.

  Usage (it is a context manager that closes itself, waiting for the last write):

    with Checkpointer(workdir) as checkpointer:
      if checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
      ...
      checkpointer.save(step, state, {'config': config_dict})
  """

  def __init__(self, workdir, *, max_to_keep: int = 3):
    """Opens (creating if needed) `<workdir>/checkpoints`, keeping the newest `max_to_keep`
    checkpoints (orbax requires an absolute path)."""
    self._directory = pathlib.Path(workdir).expanduser().absolute() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        cleanup_tmp_directories=True)  # Leftovers of a save killed mid-write.
    self._manager = ocp.CheckpointManager(
        self._directory, options=options,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _META: ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    """The newest committed step, or None when there is none (waits for pending saves)."""
    self._manager.wait_until_finished()
    return self._manager.latest_step()

  def save(self, step: int, state, metadata: Any = None) -> bool:
    """Starts writing `state` (which may be donated as soon as this returns) and the JSON-able
    `metadata` as checkpoint `step`.

    Returns:
      False if orbax skipped it because checkpoint `step` already exists or is older than the
      latest one (nothing is overwritten), True otherwise.
    """
    try:
      step_int = operator.index(step)  # ints, numpy and JAX integer scalars.
    except TypeError:
      step_int = -1
    if isinstance(step, bool) or step_int < 0:
      raise ValueError(f'save: step={step!r} must be a non-negative int.')
    metadata = {} if metadata is None else metadata
    try:
      json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
      raise ValueError(f'save(step={step_int}): the metadata must be JSON-serialisable: '
                       f'{error}') from None
    return bool(self._manager.save(
        step_int,
        args=ocp.args.Composite(**{_STATE: ocp.args.StandardSave(_keys_to_data(state)),
                                   _META: ocp.args.JsonSave(metadata)})))

  def _reading(self, step: int, read):
    """`read()`, with whatever orbax or TensorStore raise on a damaged or truncated checkpoint
    (many exception types, tracebacks of a hundred lines) turned into one `ValueError`."""
    try:
      return read()
    except Exception as error:  # pylint: disable=broad-except
      message = ' '.join(str(error).split())[:300] or type(error).__name__
      raise ValueError(f'checkpoint step {step} in {self._directory} cannot be read: it is '
                       f'damaged or incomplete ({type(error).__name__}: {message}).') from error

  def _stored_tree(self, step: int):
    """The state's tree as orbax recorded it: leaves carry shape and dtype, no arrays read."""
    metadata = self._reading(step, lambda: self._manager.item_metadata(step)[_STATE])
    if metadata is None:
      raise ValueError(f'checkpoint step {step} in {self._directory} has no train state.')
    return getattr(metadata, 'tree', metadata)  # TreeMetadata in recent orbax, a tree before.

  def restore(self, target_state=None) -> tuple[Any, Any]:
    """Reads the latest checkpoint into the structure of `target_state`.

    Args:
      target_state: an example of the state, arrays or `jax.ShapeDtypeStruct`s (e.g. from
        `jax.eval_shape`). It fixes the tree types, the dtypes and each leaf's sharding (the
        default device for a leaf without one); typed-key leaves come back typed. None reads
        the state as stored: dicts and lists of arrays on the default device.

    Returns:
      `(state, metadata)`.

    Raises:
      FileNotFoundError: there is no checkpoint.
      ValueError: the target and the checkpoint differ in leaves or shapes (naming the first
        such leaf), or the checkpoint cannot be read.
    """
    step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f'there is no checkpoint in {self._directory}.')
    stored = self._stored_tree(step)
    if target_state is None:
      target_state = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype),
                                  stored)
    abstract = jax.tree.map(_abstract_leaf, target_state)
    expansion.check_shapes(stored, abstract, f'checkpoint step {step} in {self._directory} '
                           'does not match the train state', expected_in='the train state')
    restored = self._reading(step, lambda: self._manager.restore(
        step,
        args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract),
                                   _META: ocp.args.JsonRestore()})))

    def rewrap(target_leaf, leaf):
      if _is_typed_key(target_leaf):
        return jax.random.wrap_key_data(leaf, impl=_key_impl(target_leaf))
      return leaf

    return jax.tree.map(rewrap, target_state, restored[_STATE]), restored[_META]

  def close(self) -> None:
    """Waits for pending saves and releases orbax's resources."""
    self._manager.close()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
