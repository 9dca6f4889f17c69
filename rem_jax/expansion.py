"""Expand a model with extra units (a tree merge) and drop them again (a tree pruning).

Every expandable layer stores its base units first and its extra units after them, on every
axis (input and output channels of a conv kernel, rows and columns of a Dense kernel, biases,
BatchNorm scale/shift/statistics). So:

- `expand` writes each base leaf into the leading corner of a freshly initialised leaf of the
  expanded model, and
- `drop` slices the leading corner back out.

`drop(expand(base, model, key), model)` therefore returns `base` bit for bit, and an expanded
model run with mask 0 computes its base network. The functions are pure and shape-static, so
they work under `jax.jit` (pass the model definitions as static arguments or via closure).
`merge_into` and `prune_to` are the model-free tree operations underneath; use them for any
tree laid out like the variables, e.g. an optimizer state's momentum.
"""

import functools
from collections.abc import Sequence

import jax

from rem_jax.models import common


def _plain_path(path) -> tuple[str, ...]:
  """A key path as plain names, equal whether a node is a dict, a namedtuple or a sequence:
  orbax gives a stored namedtuple (an optimizer state's `TraceState(trace=...)`) back as a dict
  and a tuple as a list, and their leaves must still match."""
  names = []
  for entry in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(entry, attr):
        names.append(str(getattr(entry, attr)))
        break
    else:
      names.append(str(entry))
  return tuple(names)


def _leaf_shapes(tree) -> dict[tuple[str, ...], tuple[str, tuple[int, ...]]]:
  """Plain path -> (the leaf's `keystr`, its shape), in tree order."""
  return {_plain_path(path): (jax.tree_util.keystr(path), tuple(getattr(leaf, 'shape', ())))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _listed(names: list[str]) -> str:
  return ', '.join(names[:5]) + (f' (and {len(names) - 5} more)' if len(names) > 5 else '')


def _check_same_leaves(tree_shapes: dict, target_shapes: dict, what: str,
                       expected_in: str) -> None:
  missing = [name for path, (name, _) in target_shapes.items() if path not in tree_shapes]
  unexpected = [name for path, (name, _) in tree_shapes.items() if path not in target_shapes]
  if missing or unexpected:
    parts = ([f'it lacks leaves {expected_in} has: {_listed(missing)}'] if missing else []) + (
        [f'it has leaves {expected_in} lacks: {_listed(unexpected)}'] if unexpected else [])
    raise ValueError(f'{what}: {"; ".join(parts)}.')


def check_shapes(tree, target, what: str, expected_in: str = 'the model') -> None:
  """The project's one tree comparer: raises one ValueError unless `tree` has `target`'s leaves
  with `target`'s shapes, naming the leaves or the first leaf that differ.

  Args:
    tree: e.g. loaded variables, or the tree a checkpoint recorded (leaves with a `.shape`).
    target: the expected tree (arrays or `jax.ShapeDtypeStruct`s, e.g. `variable_shapes`).
    what: the start of the error message (what was being checked).
    expected_in: how the message names `target`.
  """
  tree_shapes, target_shapes = _leaf_shapes(tree), _leaf_shapes(target)
  _check_same_leaves(tree_shapes, target_shapes, what, expected_in)
  for path, (name, expected) in target_shapes.items():
    shape = tree_shapes[path][1]
    if shape != expected:
      raise ValueError(f'{what}: leaf {name} has shape {shape}, but {expected} in '
                       f'{expected_in}.')


def _check_fits(small_tree, large_tree, what: str) -> None:
  """Raises ValueError unless every leaf of `small_tree` fits inside the same leaf of the other."""
  small_shapes, large_shapes = _leaf_shapes(small_tree), _leaf_shapes(large_tree)
  _check_same_leaves(small_shapes, large_shapes, what, 'the larger tree')
  for path, (name, small) in small_shapes.items():
    large = large_shapes[path][1]
    if len(small) != len(large) or any(s > l for s, l in zip(small, large)):
      raise ValueError(f'{what}: leaf {name} of shape {small} does not fit into the larger '
                       f'tree\'s {large}.')


def _corner(shape: Sequence[int]) -> tuple[slice, ...]:
  return tuple(slice(0, size) for size in shape)


def merge_into(base_tree, fresh_tree):
  """Writes every leaf of `base_tree` into the leading corner of the same leaf of `fresh_tree`.

  Args:
    base_tree: the smaller tree (e.g. trained variables).
    fresh_tree: a tree with the same leaves, each at least as large on every axis.

  Returns:
    `fresh_tree` with base values in the leading positions and fresh values elsewhere, in
    `fresh_tree`'s dtypes.
  """
  _check_fits(base_tree, fresh_tree, 'merge_into')
  return _merge(base_tree, fresh_tree)


def prune_to(tree, target_shapes):
  """Slices every leaf of `tree` down to the shape of the same leaf of `target_shapes`.

  Args:
    tree: the larger tree.
    target_shapes: a tree with the same leaves whose `.shape`s (arrays or
      `jax.ShapeDtypeStruct`s) are at most the tree's on every axis.
  """
  _check_fits(target_shapes, tree, 'prune_to')
  leaves, treedef = jax.tree.flatten(tree)
  # Same leaf order: both trees have the same paths (checked above) and flatten sorts dict keys.
  shapes = tuple(tuple(t.shape) for t in jax.tree.leaves(target_shapes))
  return jax.tree.unflatten(treedef, _prune_leaves(leaves, shapes))


# Jitted so that eager callers pay one compile per tree instead of one per leaf shape; inside an
# outer jit they are simply inlined.
@jax.jit
def _merge(base_tree, fresh_tree):
  return jax.tree.map(lambda b, f: f.at[_corner(b.shape)].set(b.astype(f.dtype)),
                      base_tree, fresh_tree)


@functools.partial(jax.jit, static_argnums=1)
def _prune_leaves(leaves, shapes):
  return [leaf[_corner(shape)] for leaf, shape in zip(leaves, shapes)]


def variable_shapes(model, image_shape: Sequence[int] | None = None):
  """The model's {'params', 'batch_stats'} tree as `jax.ShapeDtypeStruct`s (no allocation)."""
  return jax.eval_shape(
      lambda: common.init_variables(model, jax.random.key(0), image_shape))


def _check_has_extra(model, what: str) -> None:
  if model.mask_size == 0:
    raise ValueError(f'{what}: the model has no extra units (mask_size 0); build it with '
                     'expansion > 0.')


def expand(base_variables, model, key, *, image_shape: Sequence[int] | None = None):
  """Adds freshly initialised extra units to trained base variables.

  Args:
    base_variables: {'params', 'batch_stats'} of `model.base_model()` (the trained θo1).
    model: the expanded model definition (expansion > 0).
    key: PRNG key for the new units (PyTorch-default init with the full-width fan-in;
      BatchNorm scale 1, shift 0, running mean 0, running variance 1).
    image_shape: (H, W, C) used to initialise; defaults to the model's own image size.

  Returns:
    Variables of `model`: the base values in the base positions of every leaf.

  Raises:
    ValueError: the model has no extra units, or a leaf of `base_variables` does not have the
      shape the base model expects (the error names the leaf and both shapes).
  """
  _check_has_extra(model, 'expand')
  check_shapes(base_variables, variable_shapes(model.base_model(), image_shape),
                      'expand: base_variables do not match model.base_model()')
  fresh = common.init_variables(model, key, image_shape)
  return merge_into(base_variables, fresh)


def drop(variables, model, *, image_shape: Sequence[int] | None = None):
  """Prunes the extra units: the result has the widths of `model.base_model()`.

  Args:
    variables: {'params', 'batch_stats'} of the expanded `model`.
    model: the expanded model definition the variables belong to.
    image_shape: (H, W, C) used for shape inference; defaults to the model's own image size.

  Raises:
    ValueError: the model has no extra units, the variables are already at base widths (not
      expanded), or a leaf does not match the expanded model (names the leaf and both shapes).
  """
  _check_has_extra(model, 'drop')
  base_shapes = variable_shapes(model.base_model(), image_shape)
  if _leaf_shapes(variables) == _leaf_shapes(base_shapes):
    raise ValueError('drop: the variables are not expanded: they already have the base '
                     "model's widths. Pass the variables of the expanded model.")
  check_shapes(variables, variable_shapes(model, image_shape),
                      'drop: variables do not match the expanded model')
  return prune_to(variables, base_shapes)
