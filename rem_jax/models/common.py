"""Pieces both models share: width arithmetic, PyTorch-style init, argument checks, init."""

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from rem_jax import masks

# floor(capacity * width) must not lose a unit to floating point (0.7 * 10 = 6.999...).
_FLOOR_TOLERANCE = 1e-6


def torch_uniform(fan_in: int):
  """PyTorch's default init for conv/linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  This is variance_scaling(1/3, 'fan_in', 'uniform'). `fan_in` is passed explicitly so narrow
  and expanded models draw from the distribution of the full-width model, as the reference
  builds every model at full width; recipes tuned for that scale then transfer.
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def scale_width(width: int, multiplier: float) -> int:
  """`width` scaled by `multiplier`, rounded, at least 1."""
  return max(1, round(width * multiplier))


def split_width(full: int, capacity: float, expansion: float) -> tuple[int, int]:
  """(base, extra) units of a layer whose full width is `full`.

  base = floor(capacity * full); extra = floor((capacity + expansion) * full) - base, so a
  capacity-c model expanded by 1 - c gets exactly the full width back.
  """
  base = math.floor(capacity * full + _FLOOR_TOLERANCE)
  total = math.floor((capacity + expansion) * full + _FLOOR_TOLERANCE)
  return base, total - base


def check_model_fields(owner: str, *, capacity: float, expansion: float,
                       width_multiplier: float) -> None:
  """Raises ValueError for capacity outside (0, 1], negative expansion or multiplier <= 0."""
  if not 0.0 < capacity <= 1.0:
    raise ValueError(f'{owner}: capacity={capacity!r} is outside (0, 1]; it is the fraction '
                     'of the full widths the base model keeps.')
  if expansion < 0.0:
    raise ValueError(f'{owner}: expansion={expansion!r} must be >= 0 (a fraction of the full '
                     'widths added as extra units).')
  if width_multiplier <= 0.0:
    raise ValueError(f'{owner}: width_multiplier={width_multiplier!r} must be > 0.')


def check_base_widths(owner: str, base_widths: Sequence[int], capacity: float) -> None:
  if min(base_widths) < 1:
    raise ValueError(f'{owner}: capacity={capacity!r} leaves a layer with no base units '
                     f'(base widths {tuple(base_widths)}); raise capacity or width_multiplier.')


def default_image_shape(model) -> tuple[int, int, int]:
  """The (H, W, C) a model is initialised with: its `image_size` if it has one, else 32."""
  size = getattr(model, 'image_size', 32)
  return (size, size, 3)


def init_variables(model, key, image_shape: Sequence[int] | None = None) -> dict:
  """Initialises `model`: {'params': ..., 'batch_stats': ...} (batch_stats only if it has BN).

  Args:
    model: a ResNet9 or ViT (or any module with the same `apply` signature and `mask_size`).
    key: a JAX PRNG key.
    image_shape: (H, W, C) of one input image; defaults to the model's own image size.
  """
  return _jitted_init(model, key, tuple(image_shape or default_image_shape(model)))


# One compiled program per (model, image shape): eager `init` would compile every op separately,
# which costs seconds on CPU. Models are frozen, hashable dataclasses, so they can be static.
@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_init(model, key, image_shape):
  images = jnp.zeros((1,) + image_shape, jnp.float32)
  return dict(model.init(key, images, masks.drop_mask(1, model.mask_size), train=False))
