"""Exact BatchNorm statistics: any model's BatchNorms, found by type, measured over batches."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax.models import UnitMask, batch_stats, init_variables
from tests import tiny

# Traced once per model, as REM runs it (under jit, the model static).
_input_moments = jax.jit(batch_stats.input_moments, static_argnums=0)


def _masks_and_weights(model, batch, key=0):
  rng = np.random.default_rng(key)
  mask = jnp.asarray(rng.integers(0, 2, (batch, model.mask_size)), jnp.float32)
  weights = np.ones(batch, np.float32)
  weights[[1, batch - 1]] = 0.0  # Padding: in the pass, out of the statistics.
  return mask, jnp.asarray(weights)


def _captured(model, variables, images, mask, layer_type):
  """{path of each `layer_type` module: its output}, from flax's capture_intermediates."""
  _, state = model.apply(variables, images, mask, train=True,
                         mutable=['batch_stats', 'intermediates'],
                         capture_intermediates=lambda module, _: isinstance(module, layer_type))
  flat = jax.tree_util.tree_flatten_with_path(state['intermediates'],
                                              is_leaf=lambda x: isinstance(x, tuple))[0]
  return {tuple(p.key for p in path[:-1]): np.asarray(outputs[0]) for path, outputs in flat}


def _check(stats, path, inputs):
  """stats[path] holds the mean and population variance over every axis but the last."""
  node = stats
  for key in path:
    node = node[key]
  axes = tuple(range(inputs.ndim - 1))
  np.testing.assert_allclose(node['mean'], inputs.mean(axes), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(node['var'], inputs.var(axes), rtol=1e-3, atol=1e-4)


def test_resnet9_statistics_are_the_moments_of_each_batchnorm_input():
  model = tiny.tiny_resnet()
  variables = tiny.perturb(init_variables(model, jax.random.key(1), (16, 16, 3)), key=2)
  images = tiny.images(batch=8)
  mask, weights = _masks_and_weights(model, 8)
  halves = [slice(0, 4), slice(4, 8)]  # Two batches: the moments add up across them.
  stats = batch_stats.exact_statistics(variables['batch_stats'], (
      _input_moments(model, variables, images[s], mask[s], weights[s]) for s in halves))
  # Another way: each ConvBN's conv output (its BatchNorm's input), batch by batch (train-mode
  # normalisation upstream sees the whole batch, padding included), padding left out.
  kept = np.asarray(weights) > 0
  conv_outputs = [_captured(model, variables, images[s], mask[s], nn.Conv) for s in halves]
  for conv_path in conv_outputs[0]:
    inputs = np.concatenate([c[conv_path][kept[s]] for c, s in zip(conv_outputs, halves)])
    _check(stats, conv_path[:-1] + ('bn',), inputs.astype(np.float64))
  assert len(conv_outputs[0]) == len(jax.tree.leaves(variables['batch_stats'])) // 2


class _Encoder(nn.Module):
  @nn.compact
  def __call__(self, tokens, train: bool):
    tokens = nn.Dense(3, name='embed')(tokens)
    tokens = nn.BatchNorm(use_running_average=not train, name='tokens_norm')(tokens)
    # Always in running-average mode: training never updates it, so neither may we.
    return nn.BatchNorm(use_running_average=True, name='frozen')(tokens)


class _UserModel(nn.Module):
  """A user's REM-ready model: BatchNorms after Dense layers, under their own names, nested."""
  extra: int = 2

  @property
  def mask_size(self) -> int:
    return self.extra

  @nn.compact
  def __call__(self, images, mask, train: bool = False):
    x = images.reshape((images.shape[0], -1))
    h = nn.Dense(6 + self.extra, name='hidden')(x)
    h = nn.BatchNorm(use_running_average=not train, name='norm')(h)
    h = UnitMask(self.extra)(nn.relu(h), mask)
    tokens = _Encoder(name='encoder')(h.reshape((h.shape[0], 4, 2)), train)
    return nn.Dense(3, name='head')(tokens.mean(1))


def test_any_batchnorm_under_any_name_gets_its_statistics():
  model = _UserModel()
  variables = tiny.perturb(init_variables(model, jax.random.key(0), (4, 4, 3)), key=1)
  images = tiny.images(batch=6, size=4)
  mask, weights = _masks_and_weights(model, 6)
  stats = batch_stats.exact_statistics(
      variables['batch_stats'], [_input_moments(model, variables, images, mask, weights)])
  kept = np.asarray(weights) > 0
  # 'norm' reads a Dense of the flat images: by hand.
  hidden = variables['params']['hidden']
  x = np.asarray(images, np.float64).reshape(6, -1)[kept]
  _check(stats, ('norm',), x @ np.asarray(hidden['kernel']) + np.asarray(hidden['bias']))
  # 'encoder/tokens_norm' reads (batch, tokens, 3): statistics over examples and tokens.
  embedded = _captured(model, variables, images, mask, nn.Dense)[('encoder', 'embed')]
  _check(stats, ('encoder', 'tokens_norm'), embedded[kept].astype(np.float64))
  frozen = variables['batch_stats']['encoder']['frozen']
  assert all(stats['encoder']['frozen'][k] is frozen[k] for k in ('mean', 'var'))  # Untouched.
  assert variables['batch_stats']['norm']['mean'] is not stats['norm']['mean']  # Not mutated.


def test_a_model_without_batchnorm_gets_nothing():
  model = tiny.tiny_vit()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  assert 'batch_stats' not in variables
  mask, weights = _masks_and_weights(model, 4)
  moments = _input_moments(model, variables, tiny.images(batch=4), mask, weights)
  assert moments == {}
  assert batch_stats.exact_statistics({}, [moments]) == {}


class _Twice(nn.Module):
  mask_size = 0

  @nn.compact
  def __call__(self, images, mask, train: bool = False):
    del mask
    norm = nn.BatchNorm(use_running_average=not train, name='norm')
    return norm(norm(images))


def test_a_batchnorm_called_twice_in_one_pass_is_an_error():
  model = _Twice()
  variables = init_variables(model, jax.random.key(0), (4, 4, 3))
  with pytest.raises(ValueError, match='BatchNorm norm is called twice in one pass'):
    batch_stats.input_moments(model, variables, tiny.images(batch=2, size=4), None,
                              jnp.ones(2))
