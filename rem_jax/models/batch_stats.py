"""Exact BatchNorm running statistics: the mean and variance of each BatchNorm's input.

A BatchNorm's running statistics are an exponential average of batch statistics. When new
channels are added to a trained model (REM's expansion), their statistics can instead be set
exactly: the per-channel mean and (population) variance of the BatchNorm's input over a whole
dataset, in one pass, with train-mode normalisation upstream.

Nothing here knows a model's layer names: the inputs are read from every `nn.BatchNorm` the
forward pass calls (`nn.intercept_methods`), and the statistics are written under that
BatchNorm's own path in `batch_stats`. Any module with the models' signature,
`apply(variables, images, mask, train=...)`, works: ResNet-9, the ViT (no BatchNorm, so
nothing to do), or a user's model built with `UnitMask`.

    totals = (input_moments(model, variables, inputs, mask, weights) for each batch)
    batch_stats = exact_statistics(variables['batch_stats'], totals)

`input_moments` is pure and traceable (jit it with the batch's inputs and masks); the sums
over batches and the division happen on the host side in `exact_statistics`.
"""

from collections.abc import Iterable
from typing import NamedTuple

from flax.core import frozen_dict
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class Moments(NamedTuple):
  """Per-channel sums over the examples (weight w each) and positions of a BatchNorm input x."""
  first: jax.Array  # Σ w·x
  second: jax.Array  # Σ w·x²
  count: jax.Array  # Σ w · positions per example


def _feature_axes(module: nn.BatchNorm, ndim: int) -> tuple[int, ...]:
  axes = (module.axis,) if isinstance(module.axis, int) else tuple(module.axis)
  return tuple(sorted(axis % ndim for axis in axes))


def _uses_batch_statistics(module: nn.BatchNorm, args, kwargs) -> bool:
  """Whether this call normalises with batch statistics (and so would update the running ones)."""
  call_value = args[1] if len(args) > 1 else kwargs.get('use_running_average')
  return not nn.merge_param('use_running_average', module.use_running_average, call_value)


def _moments(x, weights, feature_axes) -> Moments:
  x = x.astype(jnp.float32)
  w = weights.reshape((-1,) + (1,) * (x.ndim - 1))
  axes = tuple(axis for axis in range(x.ndim) if axis not in feature_axes)
  # Every position of an example (pixels, tokens) is one sample of the channel.
  count = jnp.sum(weights) * np.prod([x.shape[axis] for axis in axes[1:]])
  return Moments(jnp.sum(w * x, axes), jnp.sum(w * x * x, axes), count)


def input_moments(model: nn.Module, variables, inputs, mask, weights,
                  ) -> dict[tuple[str, ...], Moments]:
  """The `Moments` of every BatchNorm's input in one train-mode pass, keyed by module path.

  Args:
    model: any module with `apply(variables, images, mask, train=...)`; its BatchNorms may sit
      anywhere, under any name, with any feature `axis`, but must read the batch on axis 0.
    variables: the model's variables ('params' and, if it has BatchNorms, 'batch_stats').
    inputs: one batch of model inputs.
    mask: the batch's per-example masks, as the model takes them.
    weights: (batch,) per-example weights; 0 drops an example (padding).

  Returns:
    {path: Moments}, path the BatchNorm's module path, i.e. where its running statistics live
    in `variables['batch_stats']`; {} for a model without BatchNorm. BatchNorms that normalise
    with their running averages in train mode are left out: training would not touch them.

  Raises:
    ValueError: a BatchNorm is called twice in one pass, with a `mask` of its own, or with
      axis 0 among its feature axes.
  """
  captured = {}

  def record(next_fun, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.BatchNorm) and context.method_name == '__call__'
        and _uses_batch_statistics(module, args, kwargs)):
      path = tuple(module.path)
      if path in captured:
        raise ValueError(f'BatchNorm {"/".join(path)} is called twice in one pass: its exact '
                         'statistics are ambiguous.')
      if kwargs.get('mask') is not None:
        raise ValueError(f'BatchNorm {"/".join(path)} is called with a mask; exact statistics '
                         'over masked positions are not supported.')
      x = args[0] if args else kwargs['x']
      feature_axes = _feature_axes(module, x.ndim)
      if 0 in feature_axes:  # The weights are per example, along axis 0.
        raise ValueError(f'BatchNorm {"/".join(path)} has axis {module.axis}: its features '
                         'include axis 0, which must be the batch.')
      captured[path] = (x, feature_axes)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    model.apply(variables, inputs, mask, train=True, mutable=['batch_stats'])
  return {path: _moments(x, weights, axes) for path, (x, axes) in captured.items()}


def exact_statistics(batch_stats, moments: Iterable[dict]) -> dict:
  """`batch_stats` with each measured BatchNorm's mean and var set from the summed moments.

  Args:
    batch_stats: the model's running statistics (left unchanged; new dicts are returned).
    moments: `input_moments` of each batch of the dataset.

  Returns:
    The running statistics with mean = Σ w·x / count and var = Σ w·x² / count - mean² (the
    population variance, clipped at 0 against rounding) for every BatchNorm in `moments`;
    other leaves are the same arrays as before.
  """
  totals = None
  for batch in moments:
    totals = batch if totals is None else jax.tree.map(jnp.add, totals, batch)
  stats = frozen_dict.unfreeze(batch_stats)  # New dicts, same leaves.
  for path, (first, second, count) in (totals or {}).items():
    node = stats
    for key in path:
      node = node[key]
    mean = first / count
    node['mean'] = mean
    node['var'] = jnp.maximum(second / count - mean * mean, 0.0)
  return stats
