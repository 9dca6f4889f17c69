"""Per-example masks over a model's extra units, computed from (mask_seed, example id).

Nothing is stored: an example's mask is a pure function of the seed and its dataset id, so ETD
training, REM's repair step and any later run all see the same mask for the same example. That
is why `mask_seed` and `p_mem` belong to a model's saved metadata (`MaskConfig`): REM on an
ETD-trained base must reuse the masks the base was trained with.

Two independent key streams are derived from the seed, one for examples' own masks and one for
REM's shared forget mask, so the shared mask's key can never be some example's key (domain
separation by `fold_in`, rather than reserving an id that a dataset might use).
"""

import dataclasses
import numbers

import jax
import jax.numpy as jnp

from rem_jax import sections

_OWN_STREAM = 0
_SHARED_STREAM = 1


@dataclasses.dataclass(frozen=True)
class MaskConfig:
  """What determines every mask of a model; saved with the model.

  Attributes:
    mask_seed: seeds all masks.
    p_mem: probability that an extra unit is on in an example's own mask (the paper: 0.2).
  """
  mask_seed: int
  p_mem: float = 0.2

  def __post_init__(self):
    if not isinstance(self.mask_seed, numbers.Integral):
      raise ValueError(f'MaskConfig: mask_seed={self.mask_seed!r} must be an integer.')
    _check_p_mem(self.p_mem)

  def to_dict(self) -> dict:
    return {'mask_seed': int(self.mask_seed), 'p_mem': float(self.p_mem)}

  @classmethod
  def from_dict(cls, values: dict) -> 'MaskConfig':
    sections.check_fields(values, ('mask_seed', 'p_mem'), 'MaskConfig')
    return cls(**values)


def _check_p_mem(p_mem) -> None:
  if isinstance(p_mem, numbers.Real) and not 0.0 <= p_mem <= 1.0:
    raise ValueError(f'p_mem={p_mem!r} must be a probability in [0, 1].')


def _check_mask_size(mask_size) -> None:
  if not isinstance(mask_size, numbers.Integral) or mask_size < 0:
    raise ValueError(f'mask_size={mask_size!r} must be a non-negative integer (static).')


def _stream(mask_seed, stream: int):
  return jax.random.fold_in(jax.random.key(mask_seed), stream)


def example_masks(ids, *, mask_seed, p_mem, mask_size: int):
  """Each example's own Bernoulli(p_mem) mask.

  Args:
    ids: (n,) integer dataset ids.
    mask_seed: integer seed (may be traced).
    p_mem: keep probability per unit (may be traced).
    mask_size: number of extra units (static).

  Returns:
    (n, mask_size) float32 array of 0/1; row i depends only on (mask_seed, ids[i]).
  """
  _check_mask_size(mask_size)
  _check_p_mem(p_mem)
  own = _stream(mask_seed, _OWN_STREAM)
  draw = lambda i: jax.random.bernoulli(jax.random.fold_in(own, i), p_mem, (mask_size,))
  return jax.vmap(draw)(jnp.asarray(ids)).astype(jnp.float32)


def shared_forget_mask(*, mask_seed, p_mem, mask_size: int):
  """REM's shared forget mask: one Bernoulli(p_mem) draw that belongs to no example.

  Returns:
    (mask_size,) float32 array of 0/1.
  """
  _check_mask_size(mask_size)
  _check_p_mem(p_mem)
  key = _stream(mask_seed, _SHARED_STREAM)
  return jax.random.bernoulli(key, p_mem, (mask_size,)).astype(jnp.float32)


def assign_masks(ids, in_forget, *, mask_seed, p_mem, mask_size: int):
  """Masks for a batch: the shared forget mask where `in_forget`, own masks elsewhere.

  Args:
    ids: (n,) integer dataset ids.
    in_forget: (n,) bool, which examples get the shared forget mask (D_f in REM's repair step,
      all of D_c in REM (IDEAL)). An array, not a Python branch, so one compile serves any
      forget set.
    mask_seed, p_mem, mask_size: as in `example_masks`.

  Returns:
    (n, mask_size) float32 array of 0/1.
  """
  ids, in_forget = jnp.asarray(ids), jnp.asarray(in_forget)
  if in_forget.shape != ids.shape:
    raise ValueError(f'assign_masks: in_forget has shape {in_forget.shape}, expected the shape '
                     f'of ids {ids.shape}.')
  own = example_masks(ids, mask_seed=mask_seed, p_mem=p_mem, mask_size=mask_size)
  shared = shared_forget_mask(mask_seed=mask_seed, p_mem=p_mem, mask_size=mask_size)
  return jnp.where(in_forget[:, None], shared[None, :], own)


def drop_mask(batch_size: int, mask_size: int):
  """The all-zero mask of a batch: drop mode, every extra unit off (a model then computes
  exactly its base network)."""
  return jnp.zeros((batch_size, mask_size), jnp.float32)
