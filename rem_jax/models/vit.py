"""ViT for small datasets (Lee et al.: Shifted Patch Tokenization + Locality Self-Attention).

The REM paper's SVHN model (SPEC §4): 32x32 images, patch 8 (16 patches + CLS), dim 512, depth
4, 8 heads x 64, MLP 1536 with GELU, CLS pooling, no dropout, pre-norm blocks, head LayerNorm ->
Dense. 11,013,518 parameters.

Expansion and masks act on the MLP hidden units of every block (our choice, SPEC §12.2): the
first `floor(capacity * mlp_dim)` hidden units are base units, the extra hidden units after them
are multiplied by the block's slice of the per-example mask after the activation. A zero mask
is therefore an exact pruning of the extra units.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rem_jax.models import common
from rem_jax.models import masking

# PyTorch's LayerNorm default, which the reference's recipes were tuned with.
LAYER_NORM_EPS = 1e-5


def torch_dense(features: int, fan_in: int, *, use_bias: bool = True, dtype=jnp.float32,
                name: str | None = None) -> nn.Dense:
  """nn.Dense initialised like torch.nn.Linear (weights and bias U(+-1/sqrt(fan_in)))."""
  init = common.torch_uniform(fan_in)
  return nn.Dense(features, use_bias=use_bias, kernel_init=init, bias_init=init, dtype=dtype,
                  name=name)


def shifted_patches(images, patch_size: int):
  """Shifted Patch Tokenization's input: the image and its 4 one-pixel shifts, patchified.

  Args:
    images: (batch, H, W, C).
    patch_size: side of a square patch; must divide H and W.

  Returns:
    (batch, (H/p) * (W/p), p * p * 5C): each patch flattened in (row, column, channel) order,
    channels ordered [image, shifted right, left, down, up], zeros where a shift uncovers pixels.
  """
  pad = lambda x, rows, cols: jnp.pad(x, ((0, 0), rows, cols, (0, 0)))
  height, width = images.shape[1:3]
  right = pad(images, (0, 0), (1, 0))[:, :, :width]
  left = pad(images, (0, 0), (0, 1))[:, :, 1:]
  down = pad(images, (1, 0), (0, 0))[:, :height]
  up = pad(images, (0, 1), (0, 0))[:, 1:]
  x = jnp.concatenate([images, right, left, down, up], axis=-1)
  batch, channels = x.shape[0], x.shape[-1]
  rows, cols = height // patch_size, width // patch_size
  x = x.reshape(batch, rows, patch_size, cols, patch_size, channels)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(batch, rows * cols, patch_size * patch_size * channels)


class LocalitySelfAttention(nn.Module):
  """Multi-head self-attention with a learned temperature and the diagonal masked out."""
  num_heads: int
  head_dim: int
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, tokens, _ = x.shape
    inner = self.num_heads * self.head_dim
    qkv = torch_dense(3 * inner, self.dim, use_bias=False, dtype=self.dtype, name='qkv')(x)
    qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    # Stored as a log so that exp() keeps the scale positive while it is learned.
    log_scale = self.param('temperature', nn.initializers.constant(math.log(self.head_dim**-0.5)),
                           (), jnp.float32)
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) * jnp.exp(log_scale)
    # A token may not attend to itself: forces attention to look at its neighbours (LSA).
    logits = jnp.where(jnp.eye(tokens, dtype=bool), jnp.finfo(jnp.float32).min, logits)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(batch, tokens, inner)
    return torch_dense(self.dim, inner, dtype=self.dtype, name='out')(out)


class MaskedMLP(nn.Module):
  """Dense -> GELU -> mask on the extra hidden units -> Dense."""
  base_hidden: int
  extra_hidden: int
  full_hidden: int
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):
    h = torch_dense(self.base_hidden + self.extra_hidden, self.dim, dtype=self.dtype,
                    name='hidden')(x)
    h = masking.UnitMask(self.extra_hidden)(jax.nn.gelu(h, approximate=False), mask)
    return torch_dense(self.dim, self.full_hidden, dtype=self.dtype, name='output')(h)


class Block(nn.Module):
  """Pre-norm transformer block: x + LSA(LN(x)); x + MLP(LN(x))."""
  num_heads: int
  head_dim: int
  dim: int
  base_hidden: int
  extra_hidden: int
  full_hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, mask):
    norm = lambda name: nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name=name)
    x = x + LocalitySelfAttention(self.num_heads, self.head_dim, self.dim, dtype=self.dtype,
                                  name='attention')(norm('attention_norm')(x))
    return x + MaskedMLP(self.base_hidden, self.extra_hidden, self.full_hidden, self.dim,
                         dtype=self.dtype, name='mlp')(norm('mlp_norm')(x), mask)


class ViT(nn.Module):
  """Small-data ViT whose `apply(variables, images, mask, train=...)` takes a per-example mask.

  Attributes:
    num_classes: output classes.
    image_size: side of the square input images (the position embedding depends on it).
    patch_size: side of a square patch.
    dim, depth, num_heads, head_dim, mlp_dim: transformer sizes at width_multiplier 1.
    capacity: fraction of `mlp_dim` hidden units that are base units, in (0, 1].
    expansion: extra hidden units per block as a fraction of `mlp_dim` (>= 0).
    width_multiplier: scales dim, head_dim and mlp_dim (heads and depth stay); tests use small.
    dtype: computation dtype (bfloat16 on GPU); parameters are float32.

  `mask` is (batch, mask_size) with mask_size = depth * extra hidden units, block i reading
  columns [i * extra, (i + 1) * extra). `train` is accepted for a uniform model signature; the
  ViT has no dropout or BatchNorm, so it changes nothing. Logits are float32.
  """
  num_classes: int = 10
  image_size: int = 32
  patch_size: int = 8
  dim: int = 512
  depth: int = 4
  num_heads: int = 8
  head_dim: int = 64
  mlp_dim: int = 1536
  capacity: float = 1.0
  expansion: float = 0.0
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32

  def __post_init__(self):
    common.check_model_fields('ViT', capacity=self.capacity, expansion=self.expansion,
                              width_multiplier=self.width_multiplier)
    common.check_base_widths('ViT', (self.base_hidden,), self.capacity)
    if self.image_size % self.patch_size:
      raise ValueError(f'ViT: patch_size={self.patch_size} must divide '
                       f'image_size={self.image_size}.')
    super().__post_init__()

  @property
  def width(self) -> int:
    """Token dimension after width_multiplier."""
    return common.scale_width(self.dim, self.width_multiplier)

  @property
  def scaled_head_dim(self) -> int:
    return common.scale_width(self.head_dim, self.width_multiplier)

  @property
  def full_hidden(self) -> int:
    """MLP hidden units of the capacity-1.0 model after width_multiplier."""
    return common.scale_width(self.mlp_dim, self.width_multiplier)

  @property
  def base_hidden(self) -> int:
    return common.split_width(self.full_hidden, self.capacity, self.expansion)[0]

  @property
  def extra_hidden(self) -> int:
    return common.split_width(self.full_hidden, self.capacity, self.expansion)[1]

  @property
  def extra_widths(self) -> tuple[int, ...]:
    """Extra units of each mask bank (one bank per block)."""
    return (self.extra_hidden,) * self.depth

  @property
  def mask_size(self) -> int:
    return self.depth * self.extra_hidden

  def base_model(self) -> 'ViT':
    """The same network without extra units: what `drop` prunes to."""
    return self.clone(expansion=0.0)

  @nn.compact
  def __call__(self, images, mask, train: bool = False):
    del train  # No dropout, no BatchNorm: train and eval mode compute the same function.
    expected = (self.image_size, self.image_size)
    if images.ndim != 4 or tuple(images.shape[1:3]) != expected:
      raise ValueError(f'ViT: images must be (batch, {self.image_size}, {self.image_size}, C) '
                       f'for image_size={self.image_size}; got shape {images.shape}.')
    mask = masking.check_mask(mask, batch=images.shape[0], mask_size=self.mask_size,
                              owner='ViT')
    dim = self.width
    patches = shifted_patches(images.astype(self.dtype), self.patch_size)
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name='patch_norm')(patches)
    x = torch_dense(dim, patches.shape[-1], dtype=self.dtype, name='patch_embedding')(x)
    cls = self.param('cls_token', nn.initializers.normal(1.0), (1, 1, dim), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, dim)).astype(x.dtype), x], 1)
    position = self.param('position_embedding', nn.initializers.normal(1.0),
                          (1, x.shape[1], dim), jnp.float32)
    x = x + position.astype(x.dtype)
    extra = self.extra_hidden
    for i in range(self.depth):
      x = Block(self.num_heads, self.scaled_head_dim, dim, self.base_hidden, extra,
                self.full_hidden, dtype=self.dtype,
                name=f'block{i}')(x, mask[:, i * extra:(i + 1) * extra])
    x = nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype, name='head_norm')(x[:, 0])
    return torch_dense(self.num_classes, dim, dtype=self.dtype, name='head')(x).astype(
        jnp.float32)
