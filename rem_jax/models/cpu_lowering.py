"""The ResNet-9's operations that XLA's CPU backend lowers slowly, written as ones it runs fast.

Profiling the CPU map's train step (`benchmarks/profile_step.py`, jaxlib 0.10, YNN fusions off)
showed three lowerings that cost far more than the work they do:

- **BatchNorm's statistics.** XLA CPU splits a long reduction into a tree of `reduce-window`
  operations that run one channel's narrow column at a time. Viewing the (positions, channels)
  matrix as (positions / k, k · channels) makes each row at least 128 floats wide, so the sum
  vectorises across rows; the k partial sums are then folded (`channel_sum`). The backward
  pass's sums (the gradients of the broadcasts) stay XLA's: routing them through `channel_sum`
  with a custom gradient measured 1.6-3x slower per layer, since it keeps XLA from fusing
  them with the elementwise work around them.
- **The 2x2 max-pool's gradient**: `select_and_scatter`, which XLA CPU expands into a variadic
  `reduce-window` that carries an index array per dimension, then a scatter. `max_pool_2x2`
  reshapes the windows onto their own axes and takes a plain max, whose gradient is a
  comparison (an exact tie splits the gradient evenly among the tied inputs, where
  `select_and_scatter` gives it to the first; both are subgradients. Ties do occur: CELU
  saturates at exactly -0.075, where its own gradient, below 3e-8, leaves either choice
  without effect).
- **A 5x5 convolution with stride 2** (ResNet-9's conv2), 5-6x slower than PyTorch at the CPU
  widths. `space_to_depth_conv` computes it as a stride-1 3x3 convolution of the input's 2x2
  blocks stacked as channels, with the kernel zero-padded to 6x6 and rearranged to match: the
  same sums of products, in a different order.

Every rewrite computes the same function as the operation it replaces (tests compare both,
values and gradients, on every layer shape of ResNet-9). They help XLA's CPU backend only, so
`enabled` switches them on when JAX's default backend is the CPU at trace time; on GPUs and TPUs
XLA's own lowerings run. A model's `cpu_lowering` field (None: automatic, True, False) overrides
that, e.g. to compare both on one machine.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

# The narrowest row, in floats, that `channel_sum` reduces: wide enough for XLA CPU to vectorise
# the sum across rows (measured alone, rows of 128-256 floats summed 2.2-9x faster than XLA's
# own reduction of 8-64 channels; at 256 channels neither helps: benchmarks/xla_cpu_reduction.py).
_MIN_ROW_WIDTH = 128


def enabled(setting: bool | None) -> bool:
  """Whether to use this module's lowerings: `setting`, or None for "on the CPU backend"."""
  return jax.default_backend() == 'cpu' if setting is None else bool(setting)


def channel_sum(x: jax.Array) -> jax.Array:
  """Σ of `x` over every axis but the last: (..., C) -> (C,), in `x`'s dtype.

  The (M, C) matrix is summed as (M / k, k · C) rows, k the smallest power of two with
  k · C >= 128 (or the largest that divides M, if smaller); then each channel's k partial sums
  are added.
  """
  channels = x.shape[-1]
  rows = x.size // channels
  fold = 1
  while fold * channels < _MIN_ROW_WIDTH and rows % (2 * fold) == 0:
    fold *= 2
  partial = jnp.sum(x.reshape(rows // fold, fold * channels), axis=0)
  return jnp.sum(partial.reshape(fold, channels), axis=0)


def batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean, variance) per channel over every other axis, in float32: flax's BatchNorm's
  fast-variance form, E[x²] - E[x]² clipped at 0."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  count = x.size // x.shape[-1]
  mean = channel_sum(x) / count
  mean_of_squares = channel_sum(x * x) / count
  return mean, jnp.maximum(0.0, mean_of_squares - mean * mean)


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool with stride 2 of (batch, H, W, C), H and W even: `nn.max_pool(x, (2, 2),
  strides=(2, 2))` as a reshape and a max."""
  batch, height, width, channels = x.shape
  windows = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
  return jnp.max(windows, axis=(2, 4))


def space_to_depth_conv(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """An NHWC x HWIO stride-2 convolution as a stride-1 one on 2x2 blocks stacked as channels.

  A stride-2 convolution with a k x k kernel reads input 2·i + t for output i, kernel tap t.
  With the kernel zero-padded to an even size 2m (m = ceil(k / 2)) and t = 2a + b, that is input
  block i + a, position b in the block: a stride-1 m x m convolution of the blocks (4 · C_in
  channels) with the kernel rearranged the same way. The input is padded so its padded size is
  even and the output size matches lax's.

  Args:
    x: (batch, H, W, C_in).
    kernel: (k, k, C_in, C_out).
    padding: ((top, bottom), (left, right)), explicit.

  Returns:
    What `lax.conv_general_dilated(x, kernel, (2, 2), padding, NHWC/HWIO/NHWC)` returns.
  """
  size = kernel.shape[0]
  blocks = -(-size // 2)  # The block kernel's size m.
  padded_kernel = jnp.pad(kernel, ((0, 2 * blocks - size), (0, 2 * blocks - size), (0, 0),
                                   (0, 0)))
  c_in, c_out = kernel.shape[2:]
  block_kernel = padded_kernel.reshape(blocks, 2, blocks, 2, c_in, c_out)
  block_kernel = block_kernel.transpose(0, 2, 1, 3, 4, 5).reshape(blocks, blocks, 4 * c_in, c_out)
  pads = []
  for axis, (low, high) in zip((1, 2), padding):
    out = (x.shape[axis] + low + high - size) // 2 + 1
    # The blocks this output needs: out + blocks - 1, i.e. 2 · that many padded inputs.
    pads.append((low, 2 * (out + blocks - 1) - x.shape[axis] - low))
  # lax.pad: the high side may be negative (the last rows are read by no output).
  x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads),
                                          (0, 0, 0)))
  batch, height, width, _ = x.shape
  # Channels ordered (row in block, column in block, input channel), as the kernel above. Rows
  # of each parity are a strided slice, and a row's column pairs are already adjacent to their
  # channels: cheaper than a 6-d transpose (measured 11-26 % on conv2 with its gradients).
  rows = [x[:, parity::2].reshape(batch, height // 2, width // 2, 2 * c_in) for parity in (0, 1)]
  x = jnp.concatenate(rows, axis=-1)
  return lax.conv_general_dilated(x, block_kernel, (1, 1), 'VALID',
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def conv_general_dilated(lhs, rhs, window_strides, padding, *, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         precision=None):
  """`lax.conv_general_dilated` (nn.Conv's `conv_general_dilated` hook), with the stride-2
  NHWC convolutions of square kernels sent to `space_to_depth_conv`; the rest go to lax."""
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ('NHWC', 'HWIO', 'NHWC'))
  if (tuple(window_strides) == (2, 2) and lhs.ndim == 4 and rhs.shape[0] == rhs.shape[1]
      and not isinstance(padding, str) and feature_group_count == 1 and precision is None
      and all(d in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
      and dimension_numbers == nhwc):
    return space_to_depth_conv(lhs, rhs, padding)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      precision=precision)


class BatchNorm(nn.BatchNorm):
  """`nn.BatchNorm` (same variables, same function) with `batch_statistics`.

  Supports what ResNet-9 uses: features on the last axis, scale and bias, the fast variance,
  float32 statistics, no `mask` and no `axis_name` (under `jax.jit` over a mesh the sums are
  global without one); other settings raise.
  """

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
    if (mask is not None or self.axis_name is not None or not self.use_scale
        or not self.use_bias or not self.use_fast_variance
        or not self.force_float32_reductions
        or tuple(a % x.ndim for a in np.atleast_1d(self.axis)) != (x.ndim - 1,)):
      raise ValueError('cpu_lowering.BatchNorm supports features on the last axis with scale, '
                       'bias, fast variance and float32 statistics, without mask or axis_name; '
                       'use nn.BatchNorm otherwise.')
    use_running_average = nn.merge_param('use_running_average', self.use_running_average,
                                         use_running_average)
    features = (x.shape[-1],)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    if use_running_average:
      mean, var = running_mean.value, running_var.value
    else:
      mean, var = batch_statistics(x)
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    scale = self.param('scale', self.scale_init, features, self.param_dtype)
    bias = self.param('bias', self.bias_init, features, self.param_dtype)
    # flax's order of operations, so both give the same floats from the same statistics.
    y = (x - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.astype(self.dtype or jnp.result_type(x, scale, bias))
