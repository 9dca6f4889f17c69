"""The per-example unit mask: base units pass, extra units are multiplied by a mask.

This is the only thing a model needs to become REM-ready. Put a `UnitMask` after any layer whose
last `num_extra` features are extra (expansion) units; with a mask of zeros ("drop mode") the
layer behaves exactly like the same layer without those units, provided nothing downstream
reads the extra units unmasked.
"""

import flax.linen as nn
import jax.numpy as jnp


def check_mask(mask, *, batch: int, mask_size: int, owner: str):
  """Returns `mask` as an array of shape (batch, mask_size), or raises a readable ValueError.

  Args:
    mask: 0/1 values of any float or bool dtype, or None (allowed only when mask_size is 0).
    batch: the batch size of the images the mask goes with.
    mask_size: how many extra units the model has.
    owner: the model's name, for the error message.
  """
  expected = f'(batch, mask_size) = ({batch}, {mask_size})'
  if mask is None:
    if mask_size:
      raise ValueError(
          f'{owner}: `mask` is required: the model has {mask_size} extra units, so pass an '
          f'array of shape {expected} (zeros for drop mode).')
    return jnp.zeros((batch, 0), jnp.float32)
  if getattr(mask, 'ndim', None) != 2 or tuple(mask.shape) != (batch, mask_size):
    raise ValueError(
        f'{owner}: `mask` has shape {getattr(mask, "shape", type(mask).__name__)}, expected '
        f'{expected}.')
  return mask


def mask_extra_units(x, mask):
  """Multiplies the last `mask.shape[1]` features of `x` by a per-example mask.

  Args:
    x: activations, batch first, features last: (batch, ..., base + extra).
    mask: (batch, extra), 0/1 in any float or bool dtype.

  Returns:
    `x` with base features unchanged and extra feature j of example b scaled by mask[b, j].
  """
  num_extra = mask.shape[1]
  if num_extra == 0:
    return x
  num_base = x.shape[-1] - num_extra
  gate = jnp.concatenate(
      [jnp.ones((x.shape[0], num_base), x.dtype), mask.astype(x.dtype)], axis=-1)
  # Broadcast over every axis between batch and features (H, W for conv maps; tokens for ViT).
  gate = gate.reshape((x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],))
  return x * gate


class UnitMask(nn.Module):
  """Linen layer form of `mask_extra_units` (no parameters).

  Example, making an MLP's hidden layer expandable:

    h = nn.Dense(num_base + num_extra)(x)
    h = UnitMask(num_extra)(nn.gelu(h), mask)  # mask: (batch, num_extra)

  Attributes:
    num_extra: how many trailing features are extra units; mask must be (batch, num_extra).
  """
  num_extra: int

  @nn.compact
  def __call__(self, x, mask):
    if x.shape[-1] < self.num_extra:
      raise ValueError(f'UnitMask: the input has {x.shape[-1]} features, fewer than '
                       f'num_extra={self.num_extra}.')
    if tuple(mask.shape) != (x.shape[0], self.num_extra):
      raise ValueError(f'UnitMask: `mask` has shape {tuple(mask.shape)}, expected '
                       f'(batch, num_extra) = ({x.shape[0]}, {self.num_extra}).')
    return mask_extra_units(x, mask)
