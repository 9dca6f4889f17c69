"""Checkpoints of a run's train state.

This is the only module that talks to orbax. A checkpoint is one step folder under
`<workdir>/checkpoints/` holding two items:

- `state`: the train state, a plain pytree of arrays (`step`, `params`, `batch_stats`,
  `opt_state`, `rng`, ...), written with orbax's standard (tensorstore) format;
- `meta`: a JSON-able dict (config, mask config `{'mask_seed', 'p_mem'}`, model description,
  ...), so a checkpoint can be understood and rebuilt without the code that wrote it.

Why it looks the way it does:

- Restoring needs a *target*, an example tree of arrays or `jax.ShapeDtypeStruct`s. The target
  fixes the tree types (optax states are namedtuples; orbax stores them as lists and dicts and
  gives them back only when it is told the types), the dtypes (stored values are cast) and the
  layout: each leaf comes back with the target leaf's sharding, so a checkpoint written on one
  device restores onto an 8-device mesh, replicated, by passing `sharding=replicated(mesh)`.
- Before anything is read, the target's leaves and shapes are checked against the shapes orbax
  recorded at save time. A capacity-0.5 checkpoint restored into a capacity-1.0 config thus fails
  with a `ValueError` naming the first mismatching leaf and both shapes, instead of a deep
  tensorstore traceback (or worse, a silent partial restore).
- PRNG keys: the `rng` leaf (or any leaf) may be a typed key (`jax.random.key`, recommended) or
  raw `uint32` key data (`jax.random.PRNGKey`). Typed keys are stored as their key data, so the
  files hold plain arrays whatever orbax version reads them; on restore a leaf comes back typed
  exactly when the target's leaf is typed (with the target's key implementation), raw otherwise.
- Saves are crash-safe: orbax writes a step into `<step>.orbax-checkpoint-tmp` and renames it
  when complete, so a process killed mid-save leaves the previous step as the latest one. The
  leftover temporary folders are removed by the next `Checkpointer` on that directory.
- Saves are asynchronous: `save` copies the state to host memory before it returns (so the
  caller may donate or delete the arrays right away) and writes the files in the background;
  `latest_step`, `restore` and `close` wait for pending writes first.
- A run keeps its last good checkpoint: `save` refuses a state with a NaN or infinity in any
  floating leaf (a `ValueError` naming the step, the leaves and the last good step) unless
  `force=True`. Together with `max_to_keep` this means a diverged run never pushes its last
  finite checkpoint out of the directory. The training loop keeps its own finite flag on device
  and reads it at checkpoint intervals; this check is the backstop, and costs one small
  device-to-host transfer per save.
"""

import json
import operator
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

CHECKPOINT_DIR = 'checkpoints'
_STATE = 'state'
_META = 'meta'


# ----------------------------------------------------------------------------------------------
# Tree helpers.


def _is_typed_key(leaf) -> bool:
  dtype = getattr(leaf, 'dtype', None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _is_floating(leaf) -> bool:
  dtype = getattr(leaf, 'dtype', None)
  return (dtype is not None and not _is_typed_key(leaf)
          and jnp.issubdtype(dtype, jnp.inexact))


def _key_impl(key_leaf):
  """The PRNG implementation of a typed key array or of an abstract one.

  `jax.random.key_impl` accepts only arrays; tracing the leaf (which `jax.eval_shape` does
  without computing anything) turns a `ShapeDtypeStruct` into one.
  """
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
  """What orbax should read for one target leaf: its shape, dtype and sharding.

  Typed keys are read as their key data (see the module docstring). A leaf without a sharding
  (a numpy array, a `ShapeDtypeStruct` without one) is placed on the default device.
  """
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


def _path_names(path) -> tuple[str, ...]:
  """A key path as plain names, so that one tree's paths compare with the stored tree's.

  Orbax stores a namedtuple (`TraceState(trace=...)`) as a dict and a tuple as a list, so the
  target's `GetAttrKey('trace')` must match the stored `DictKey('trace')`, and index keys of
  either kind must match each other.
  """
  names = []
  for entry in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(entry, attr):
        names.append(str(getattr(entry, attr)))
        break
    else:
      names.append(str(entry))
  return tuple(names)


def _shapes_by_path(tree) -> dict[tuple[str, ...], tuple[str, tuple[int, ...]]]:
  """Maps each leaf's plain path to (its `keystr`, its shape), in tree order."""
  return {_path_names(path): (jax.tree_util.keystr(path), tuple(getattr(leaf, 'shape', ())))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _check_compatible(stored_tree, abstract_target, what: str = 'restore') -> None:
  """Raises ValueError unless both trees have the same leaves with the same shapes.

  Args:
    stored_tree: the tree orbax recorded at save time (leaves with a `.shape`).
    abstract_target: the tree to restore into, typed keys already replaced by their data.
    what: names the operation (and checkpoint) in the error.
  """
  stored, target = _shapes_by_path(stored_tree), _shapes_by_path(abstract_target)
  missing = [name for path, (name, _) in target.items() if path not in stored]
  extra = [name for path, (name, _) in stored.items() if path not in target]
  if missing or extra:
    parts = []
    if missing:
      parts.append(f'the target has leaves the checkpoint lacks: {", ".join(missing[:5])}'
                   + (f' (and {len(missing) - 5} more)' if len(missing) > 5 else ''))
    if extra:
      parts.append(f'the checkpoint has leaves the target lacks: {", ".join(extra[:5])}'
                   + (f' (and {len(extra) - 5} more)' if len(extra) > 5 else ''))
    raise ValueError(f'{what}: the train state does not match the checkpoint; '
                     + '; '.join(parts) + '.')
  for path, (name, shape) in target.items():
    stored_shape = stored[path][1]
    if stored_shape != shape:
      raise ValueError(
          f'{what}: leaf {name} has shape {stored_shape} in the checkpoint but {shape} in the '
          'target (was the checkpoint written with another model config, e.g. another '
          'capacity or width?).')


def _nonfinite_leaf_names(tree) -> list[str]:
  """`keystr`s of the floating leaves holding a NaN or infinity (one host transfer)."""
  # One small reduction per leaf rather than one jitted function over all of them: the leaves
  # may live on different devices (a step counter on one, params on the mesh).
  named = [(jax.tree_util.keystr(path), jnp.all(jnp.isfinite(leaf)))
           for path, leaf in jax.tree_util.tree_leaves_with_path(tree) if _is_floating(leaf)]
  flags = jax.device_get([flag for _, flag in named])
  return [name for (name, _), ok in zip(named, flags) if not ok]


def _check_json(metadata, step: int) -> None:
  try:
    json.dumps(metadata, allow_nan=False)
  except (TypeError, ValueError) as e:
    raise ValueError(f'save(step={step}): `metadata` must be JSON-serialisable (dicts, lists, '
                     f'str, finite numbers, bool, None): {e}') from e


# ----------------------------------------------------------------------------------------------
# The checkpointer.


class Checkpointer:
  """Saves and restores a run's train state in `<workdir>/checkpoints`.

  Usage:

    ckpt = Checkpointer(workdir, max_to_keep=3)
    if (step := ckpt.latest_step()) is not None:
      state, meta = ckpt.restore(abstract_state)   # e.g. ShapeDtypeStructs with shardings
    ...
    ckpt.save(step, state, {'config': config_dict})
    ...
    ckpt.close()                                    # waits for the last write

  It is also a context manager that closes itself.
  """

  def __init__(self, workdir, *, max_to_keep: int | None = 3, async_save: bool = True):
    """Opens (creating if needed) `<workdir>/checkpoints`.

    Args:
      workdir: the run's folder; made absolute here because orbax requires absolute paths.
      max_to_keep: how many of the newest checkpoints to keep (None: all). Older ones are
        deleted after each successful save.
      async_save: write files in a background thread (`save` returns once the state is copied
        to host memory). False makes every `save` block until the step is committed.
    """
    if max_to_keep is not None and (not isinstance(max_to_keep, int) or max_to_keep < 1):
      raise ValueError(f'max_to_keep={max_to_keep!r} must be a positive int or None.')
    self._directory = pathlib.Path(workdir).expanduser().absolute() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        cleanup_tmp_directories=True,  # Leftovers of a save killed mid-write.
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self._directory,
        options=options,
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _META: ocp.JsonCheckpointHandler()})

  @property
  def directory(self) -> pathlib.Path:
    """The absolute folder holding the step folders."""
    return self._directory

  def all_steps(self) -> list[int]:
    """The committed steps, ascending (waits for pending saves)."""
    self.wait_until_finished()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    """The newest committed step, or None when there is no checkpoint (waits for saves)."""
    self.wait_until_finished()
    return self._manager.latest_step()

  def wait_until_finished(self) -> None:
    """Blocks until every pending save is committed; re-raises a failed background write."""
    self._manager.wait_until_finished()

  def save(self, step: int, state, metadata: Any = None, *, force: bool = False) -> bool:
    """Starts writing `state` and `metadata` as checkpoint `step`.

    Args:
      step: the number of training steps `state` has taken (a non-negative int).
      state: the train state pytree. It may be donated or deleted as soon as this returns.
      metadata: a JSON-serialisable value (normally a dict) stored next to the state and
        returned by `restore` / `restore_metadata`. None stores `{}`.
      force: save even if a floating leaf of `state` is NaN or infinite.

    Returns:
      True if a save was started; False if orbax skipped it because checkpoint `step` already
      exists or is older than the latest one (a resumed run that saves the step it resumed
      from, for instance). Nothing is overwritten either way.

    Raises:
      ValueError: `step` is not a non-negative int, `metadata` is not JSON-serialisable, or
        the state is not finite and `force` is False (the message names the step, the leaves
        and the last good checkpoint, which is kept).
    """
    try:
      step_int = operator.index(step)  # ints, numpy and JAX integer scalars.
    except TypeError:
      step_int = -1
    if isinstance(step, bool) or step_int < 0:
      raise ValueError(f'save: step={step!r} must be a non-negative int.')
    step = step_int
    metadata = {} if metadata is None else metadata
    _check_json(metadata, step)
    if not force:
      bad = _nonfinite_leaf_names(state)
      if bad:
        last = self.latest_step()
        kept = (f'the last good checkpoint, step {last}, is kept' if last is not None
                else 'there is no earlier checkpoint')
        raise ValueError(
            f'save(step={step}): refusing to save a non-finite train state (NaN or inf in '
            f'{", ".join(bad[:5])}' + (f' and {len(bad) - 5} more leaves' if len(bad) > 5 else '')
            + f'); {kept}. Pass force=True to save it anyway.')
    return bool(self._manager.save(
        step,
        args=ocp.args.Composite(**{_STATE: ocp.args.StandardSave(_keys_to_data(state)),
                                   _META: ocp.args.JsonSave(metadata)})))

  def _resolve_step(self, step: int | None, what: str) -> int:
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise FileNotFoundError(f'{what}: there is no checkpoint in {self._directory}.')
      return steps[-1]
    if step not in steps:
      raise FileNotFoundError(f'{what}: there is no checkpoint of step {step} in '
                              f'{self._directory}; the steps there are {steps}.')
    return step

  def stored_shapes(self, step: int | None = None) -> dict[str, tuple[int, ...]]:
    """Leaf path (`keystr` of the stored tree) → shape, as recorded in checkpoint `step`.

    Typed PRNG keys appear as their key data. Reads only metadata, no arrays.
    """
    step = self._resolve_step(step, 'stored_shapes')
    return {name: shape for name, shape in _shapes_by_path(self._stored_tree(step)).values()}

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
    metadata = self._reading(step, lambda: self._manager.item_metadata(step)[_STATE])
    if metadata is None:
      raise ValueError(f'checkpoint step {step} in {self._directory} has no train state.')
    return getattr(metadata, 'tree', metadata)  # TreeMetadata in recent orbax, a tree before.

  def restore(self, target_state, step: int | None = None) -> tuple[Any, Any]:
    """Reads checkpoint `step` (default: the latest) into the structure of `target_state`.

    Args:
      target_state: an example of the state: a pytree of arrays or `jax.ShapeDtypeStruct`s
        (e.g. `jax.eval_shape` of the init function, with `sharding=` set). It fixes the tree
        types, the dtypes and where each leaf goes: a leaf's `sharding` (an array's own, or the
        struct's) is used, the default device when it has none. Typed-key leaves come back as
        typed keys of the target's implementation.
      step: which checkpoint; None for the latest.

    Returns:
      `(state, metadata)`: the state with `target_state`'s structure, all leaves `jax.Array`s,
      and the metadata saved with it.

    Raises:
      FileNotFoundError: no checkpoint, or none of that step.
      ValueError: the target and the checkpoint differ in leaves or shapes (the message names
        the first such leaf and both shapes).
    """
    step = self._resolve_step(step, 'restore')
    abstract = jax.tree.map(_abstract_leaf, target_state)
    _check_compatible(self._stored_tree(step), abstract,
                     what=f'restore of checkpoint step {step} from {self._directory}')
    restored = self._reading(step, lambda: self._manager.restore(
        step,
        args=ocp.args.Composite(**{_STATE: ocp.args.StandardRestore(abstract),
                                   _META: ocp.args.JsonRestore()})))

    def rewrap(target_leaf, leaf):
      if _is_typed_key(target_leaf):
        return jax.random.wrap_key_data(leaf, impl=_key_impl(target_leaf))
      return leaf

    state = jax.tree.map(rewrap, target_state, restored[_STATE])
    return state, restored[_META]

  def restore_metadata(self, step: int | None = None) -> Any:
    """The metadata saved with checkpoint `step` (default: the latest), without the state."""
    step = self._resolve_step(step, 'restore_metadata')
    restored = self._reading(step, lambda: self._manager.restore(step, args=ocp.args.Composite(
        **{_META: ocp.args.JsonRestore()})))
    return restored[_META]

  def close(self) -> None:
    """Waits for pending saves and releases orbax's resources."""
    self._manager.close()

  def __enter__(self) -> 'Checkpointer':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
