"""ResNet-9 (Goel et al.'s variant, as in the REM paper) with per-example masks on extra channels.

Layout on 32x32 inputs (SPEC §4), trunk widths (64, 128, 256, 128), inner widths (128, 256):

  conv1  conv_bn 3x3 -> 64                          [mask bank 0]
  conv2  conv_bn 5x5 stride 2 pad 2 -> 128  (16x16)  [mask bank 1]
  res1   x + conv_bn(128) -> conv_bn(128)           [mask bank 1]
  conv3  conv_bn 3x3 -> 256, max-pool 2    (8x8)    [mask bank 2]
  res2   x + conv_bn(256) -> conv_bn(256)           [mask bank 2]
  conv4  conv_bn 3x3 valid -> 128          (6x6)    [mask bank 3]
  global max-pool -> Dense(num_classes, no bias)

conv_bn = Conv (bias, zero init) -> BatchNorm (momentum 0.9, eps 1e-5) -> CELU(0.075).

Each trunk width is split into base channels (first) and extra channels (after them). The mask
multiplies extra channels only, so with mask 0 no extra channel reaches any base channel and the
network computes exactly its base-width sub-network, BatchNorm included (statistics are per
channel). The first inner conv of each residual block keeps the full inner width and is shared;
it is never masked.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from rem_jax.models import common
from rem_jax.models import cpu_lowering
from rem_jax.models import masking

FULL_TRUNK_WIDTHS = (64, 128, 256, 128)
FULL_INNER_WIDTHS = (128, 256)
CELU_ALPHA = 0.075


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> CELU, initialised as PyTorch would with `fan_in_channels` inputs."""
  features: int
  kernel_size: int
  fan_in_channels: int
  strides: int = 1
  padding: Any = 'SAME'
  dtype: Any = jnp.float32
  cpu_lowering: bool | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    lowered = cpu_lowering.enabled(self.cpu_lowering)
    x = nn.Conv(
        self.features, (self.kernel_size, self.kernel_size), strides=self.strides,
        padding=self.padding,
        kernel_init=common.torch_uniform(self.kernel_size**2 * self.fan_in_channels),
        bias_init=nn.initializers.zeros, dtype=self.dtype,
        conv_general_dilated=cpu_lowering.conv_general_dilated if lowered else None,
        name='conv')(x)
    # Flax momentum = 1 - PyTorch momentum (0.1).
    norm = cpu_lowering.BatchNorm if lowered else nn.BatchNorm
    x = norm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
             name='bn')(x)
    return jax.nn.celu(x, alpha=CELU_ALPHA)


class ResNet9(nn.Module):
  """ResNet-9 whose `apply(variables, images, mask, train=...)` takes a per-example mask.

  Attributes:
    num_classes: output classes.
    capacity: fraction of the full trunk widths that are base channels, in (0, 1].
      0.5 is the paper's "50 % capacity" model; 1.0 the vanilla ResNet-9.
    expansion: extra channels per trunk layer as a fraction of the full widths (>= 0). The
      paper's ETD / expanded model is capacity 0.5 + expansion 0.5.
    width_multiplier: scales every width (trunk and inner) before the split; tests use 1/8.
    dtype: computation dtype (bfloat16 on GPU); parameters are always float32.
    cpu_lowering: whether to compute BatchNorm, the max-pool and the stride-2 convolution with
      `cpu_lowering`'s rewrites (the same function, lowered faster by XLA CPU); None (default):
      when JAX's default backend is the CPU. Parameters and statistics are the same either way.

  Inputs: images (batch, H, W, 3), normalised floats, H = W >= 12 (32 in the paper); mask
  (batch, mask_size), 0/1, float or bool, or None when mask_size is 0. Logits are float32.
  """
  num_classes: int = 10
  capacity: float = 1.0
  expansion: float = 0.0
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  cpu_lowering: bool | None = None

  def __post_init__(self):
    common.check_model_fields('ResNet9', capacity=self.capacity, expansion=self.expansion,
                              width_multiplier=self.width_multiplier)
    common.check_base_widths('ResNet9', self.base_widths, self.capacity)
    super().__post_init__()

  @property
  def full_widths(self) -> tuple[int, ...]:
    """Trunk widths of the capacity-1.0 model after `width_multiplier`."""
    return tuple(common.scale_width(w, self.width_multiplier) for w in FULL_TRUNK_WIDTHS)

  @property
  def inner_widths(self) -> tuple[int, ...]:
    """Widths of the first inner conv of res1 and res2 (never split, never masked)."""
    return tuple(common.scale_width(w, self.width_multiplier) for w in FULL_INNER_WIDTHS)

  @property
  def base_widths(self) -> tuple[int, ...]:
    return tuple(common.split_width(w, self.capacity, self.expansion)[0]
                 for w in self.full_widths)

  @property
  def extra_widths(self) -> tuple[int, ...]:
    """Extra channels of each mask bank (conv1, conv2/res1, conv3/res2, conv4)."""
    return tuple(common.split_width(w, self.capacity, self.expansion)[1]
                 for w in self.full_widths)

  @property
  def mask_size(self) -> int:
    return sum(self.extra_widths)

  def base_model(self) -> 'ResNet9':
    """The same network without extra channels: what `drop` prunes to."""
    return self.clone(expansion=0.0)

  @nn.compact
  def __call__(self, images, mask, train: bool = False):
    if images.ndim != 4:
      raise ValueError(f'ResNet9: images must be (batch, H, W, C); got shape {images.shape}.')
    mask = masking.check_mask(mask, batch=images.shape[0], mask_size=self.mask_size,
                              owner='ResNet9')
    bounds = [0]
    for width in self.extra_widths:
      bounds.append(bounds[-1] + width)
    banks = [mask[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
    trunk = tuple(b + e for b, e in zip(self.base_widths, self.extra_widths))
    full = self.full_widths
    inner = self.inner_widths

    def conv_bn(features, kernel, fan_in, name, **kwargs):
      return ConvBN(features, kernel, fan_in, dtype=self.dtype, cpu_lowering=self.cpu_lowering,
                    name=name, **kwargs)

    def max_pool(x):
      if cpu_lowering.enabled(self.cpu_lowering):
        return cpu_lowering.max_pool_2x2(x)
      return nn.max_pool(x, (2, 2), strides=(2, 2))

    x = conv_bn(trunk[0], 3, 3, 'conv1')(images, train)
    x = masking.mask_extra_units(x, banks[0])
    x = conv_bn(trunk[1], 5, full[0], 'conv2', strides=2, padding=((2, 2), (2, 2)))(x, train)
    x = masking.mask_extra_units(x, banks[1])
    h = conv_bn(inner[0], 3, full[1], 'res1_a')(x, train)
    h = conv_bn(trunk[1], 3, inner[0], 'res1_b')(h, train)
    x = masking.mask_extra_units(x + h, banks[1])
    x = conv_bn(trunk[2], 3, full[1], 'conv3')(x, train)
    x = max_pool(x)
    x = masking.mask_extra_units(x, banks[2])
    h = conv_bn(inner[1], 3, full[2], 'res2_a')(x, train)
    h = conv_bn(trunk[2], 3, inner[1], 'res2_b')(h, train)
    x = masking.mask_extra_units(x + h, banks[2])
    x = conv_bn(trunk[3], 3, full[2], 'conv4', padding='VALID')(x, train)
    x = masking.mask_extra_units(x, banks[3])
    x = jnp.max(x, axis=(1, 2))
    logits = nn.Dense(self.num_classes, use_bias=False, kernel_init=common.torch_uniform(full[3]),
                      dtype=self.dtype, name='head')(x)
    return logits.astype(jnp.float32)
