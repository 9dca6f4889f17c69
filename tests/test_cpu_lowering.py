"""The CPU lowerings compute what XLA's own lowerings compute: values, gradients, statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax.models import ResNet9, cpu_lowering, init_variables
from rem_jax.models import resnet9 as resnet9_module
from tests import tiny

NHWC = ('NHWC', 'HWIO', 'NHWC')


def _close(actual, expected, rtol=2e-5, scale=None):
  """Within float32 rounding of the largest value (`scale`, default the largest of `expected`):
  elementwise relative error means nothing where values cancel."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  scale = max(np.max(np.abs(expected)) if scale is None else scale, 1e-30)
  np.testing.assert_allclose(actual / scale, expected / scale, atol=rtol, rtol=0)


def _close_gradients(actual, expected, rtol=2e-5):
  """Gradient trees, each leaf within rounding of the tree's largest gradient: a conv bias
  before BatchNorm has gradient 0 in exact arithmetic, so its float32 value is rounding noise
  of the size of the other gradients' rounding."""
  scale = max(float(np.max(np.abs(leaf))) for leaf in jax.tree.leaves(expected))
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    _close(got, want, rtol, scale)


def _normal(key, shape, shift=0.0):
  return jax.random.normal(jax.random.key(key), shape, jnp.float32) + shift


@pytest.mark.parametrize('shape', [(2, 5, 5, 3), (4, 8, 8, 16), (3, 7, 1, 200), (1, 1, 1, 8)])
def test_channel_sum_is_the_sum_over_every_axis_but_the_last(shape):
  x = _normal(0, shape, shift=3.0)
  _close(cpu_lowering.channel_sum(x), np.sum(np.asarray(x, np.float64), axis=(0, 1, 2)))


def test_batch_statistics_are_the_population_mean_and_variance():
  x = _normal(0, (4, 6, 6, 5), shift=2.0)
  mean, var = cpu_lowering.batch_statistics(x)
  reference = np.asarray(x, np.float64).reshape(-1, 5)
  _close(mean, reference.mean(0))
  _close(var, reference.var(0), rtol=1e-4)  # E[x²] - E[x]², as flax computes it.


@pytest.mark.parametrize('size, c_in, c_out, kernel, padding', [
    (32, 8, 16, 5, (2, 2)),   # ResNet-9's conv2 at width/8.
    (32, 64, 128, 5, (2, 2)),  # ... at full width.
    (33, 3, 4, 5, (2, 2)),    # Odd input size.
    (16, 4, 4, 3, (1, 1)),    # 3x3 kernel.
    (17, 4, 4, 3, (0, 0)),    # No padding, the last row read by no output.
    (16, 2, 3, 4, (1, 2)),    # Even kernel, uneven padding.
])
def test_space_to_depth_conv_equals_the_stride_2_convolution_and_its_gradients(
    size, c_in, c_out, kernel, padding):
  x = _normal(0, (2, size, size, c_in))
  w = _normal(1, (kernel, kernel, c_in, c_out)) * 0.1
  direct = lambda x, w: jax.lax.conv_general_dilated(x, w, (2, 2), [padding] * 2,
                                                     dimension_numbers=NHWC)
  rewritten = lambda x, w: cpu_lowering.space_to_depth_conv(x, w, [padding] * 2)
  expected = direct(x, w)
  assert rewritten(x, w).shape == expected.shape
  _close(rewritten(x, w), expected)
  cotangent = _normal(2, expected.shape)
  grads = lambda conv: jax.grad(lambda x, w: jnp.sum(conv(x, w) * cotangent), (0, 1))(x, w)
  for got, want in zip(grads(rewritten), grads(direct)):
    _close(got, want)


def test_conv_hook_sends_only_stride_2_nhwc_convolutions_to_space_to_depth(monkeypatch):
  calls = []
  original = cpu_lowering.space_to_depth_conv
  monkeypatch.setattr(cpu_lowering, 'space_to_depth_conv',
                      lambda *args: calls.append(1) or original(*args))
  x, w = _normal(0, (1, 8, 8, 2)), _normal(1, (3, 3, 2, 2))
  numbers = jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
  for strides, padding in (((1, 1), [(1, 1)] * 2), ((2, 2), 'SAME'), ((2, 1), [(1, 1)] * 2)):
    _close(cpu_lowering.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers),
           jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=numbers))
  assert not calls  # Stride 1, string padding, unequal strides: lax's own.
  cpu_lowering.conv_general_dilated(x, w, (2, 2), [(1, 1)] * 2, dimension_numbers=numbers)
  assert calls == [1]


def test_max_pool_2x2_equals_nn_max_pool_and_its_gradient():
  x = _normal(0, (2, 8, 6, 3))
  pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  _close(cpu_lowering.max_pool_2x2(x), pool(x))
  cotangent = _normal(1, (2, 4, 3, 3))
  grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * cotangent))(x)
  _close(grad(cpu_lowering.max_pool_2x2), grad(pool))  # No ties in continuous inputs.


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_batch_norm_matches_flax_in_both_modes(dtype):
  x = _normal(0, (8, 6, 6, 12), shift=1.5).astype(dtype)
  kwargs = dict(momentum=0.9, epsilon=1e-5, dtype=dtype)
  ours, theirs = cpu_lowering.BatchNorm(**kwargs), nn.BatchNorm(**kwargs)
  variables = theirs.init(jax.random.key(0), x, use_running_average=False)
  assert jax.tree.structure(ours.init(jax.random.key(0), x, use_running_average=False)) == (
      jax.tree.structure(variables))
  variables = tiny.perturb(variables, key=3)
  variables['batch_stats']['var'] = np.abs(variables['batch_stats']['var'])
  tolerance = 2e-5 if dtype == jnp.float32 else 1e-2
  for train in (True, False):
    def run(layer, params):
      y, updates = layer.apply({**variables, 'params': params}, x, use_running_average=not train,
                               mutable=['batch_stats'])
      return jnp.sum(jnp.sin(y.astype(jnp.float32))), (y, updates)
    (_, (y_ours, stats_ours)), g_ours = jax.value_and_grad(
        lambda p: run(ours, p), has_aux=True)(variables['params'])
    (_, (y_theirs, stats_theirs)), g_theirs = jax.value_and_grad(
        lambda p: run(theirs, p), has_aux=True)(variables['params'])
    assert y_ours.dtype == y_theirs.dtype == dtype
    _close(y_ours, y_theirs, tolerance)
    for got, want in zip(jax.tree.leaves(stats_ours), jax.tree.leaves(stats_theirs)):
      _close(got, want, tolerance)
    _close_gradients(g_ours, g_theirs, tolerance)


def test_batch_norm_refuses_settings_it_does_not_implement():
  x = jnp.ones((2, 4, 4, 3))
  with pytest.raises(ValueError, match='features on the last axis'):
    cpu_lowering.BatchNorm(use_running_average=False, axis=1).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='without mask'):
    cpu_lowering.BatchNorm(use_running_average=False).init(jax.random.key(0), x,
                                                          mask=jnp.ones(x.shape, bool))


def test_enabled_follows_the_default_backend_unless_set():
  assert cpu_lowering.enabled(None) == (jax.default_backend() == 'cpu')
  assert cpu_lowering.enabled(True) and not cpu_lowering.enabled(False)


def _layer_shapes(model):
  """Every ConvBN of `model`: (name, input size, input channels, ConvBN fields)."""
  t0, t1, t2, t3 = (b + e for b, e in zip(model.base_widths, model.extra_widths))
  i0, i1 = model.inner_widths
  f0, f1, f2, _ = model.full_widths
  same = dict(kernel_size=3, strides=1, padding='SAME')
  return (('conv1', 32, 3, dict(features=t0, fan_in_channels=3, **same)),
          ('conv2', 32, t0, dict(features=t1, kernel_size=5, fan_in_channels=f0, strides=2,
                                 padding=((2, 2), (2, 2)))),
          ('res1_a', 16, t1, dict(features=i0, fan_in_channels=f1, **same)),
          ('res1_b', 16, i0, dict(features=t1, fan_in_channels=i0, **same)),
          ('conv3', 16, t1, dict(features=t2, fan_in_channels=f1, **same)),
          ('res2_a', 8, t2, dict(features=i1, fan_in_channels=f2, **same)),
          ('res2_b', 8, i1, dict(features=t2, fan_in_channels=i1, **same)),
          ('conv4', 8, t2, dict(features=t3, fan_in_channels=f2, kernel_size=3, strides=1,
                                padding='VALID')))


@pytest.mark.parametrize('layer', [name for name, *_ in _layer_shapes(ResNet9())])
def test_every_full_width_layer_is_the_same_function_either_way(layer):
  """Each ConvBN of the paper's expanded ResNet-9 (capacity 0.5 + 0.5: full width), both
  lowerings, on perturbed variables: outputs, running statistics and every gradient."""
  model = ResNet9(capacity=0.5, expansion=0.5)
  (_, size, channels, fields), = [s for s in _layer_shapes(model) if s[0] == layer]
  x = _normal(0, (2, size, size, channels))
  make = lambda lowering: resnet9_module.ConvBN(cpu_lowering=lowering, **fields)
  variables = tiny.perturb(make(False).init(jax.random.key(0), x, train=False), key=1)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])
  for train in (True, False):
    results = []
    for lowering in (False, True):
      def run(params, x, lowering=lowering):
        y, updates = make(lowering).apply({**variables, 'params': params}, x, train=train,
                                          mutable=['batch_stats'])
        return jnp.sum(jnp.sin(y)), (y, updates)
      (_, aux), grads = jax.jit(jax.value_and_grad(run, (0, 1), has_aux=True))(
          variables['params'], x)
      results.append((aux, grads))
    (aux_ours, grads_ours), (aux_xla, grads_xla) = results[1], results[0]
    for got, want in zip(jax.tree.leaves(aux_ours), jax.tree.leaves(aux_xla)):
      _close(got, want)  # Outputs and new running statistics.
    _close_gradients(grads_ours, grads_xla)


@pytest.mark.parametrize('capacity, expansion', [(0.5, 0.5), (1.0, 0.0)])
def test_whole_model_with_masks_and_extra_units_is_the_same_function_either_way(capacity,
                                                                               expansion):
  """The whole width/8 ResNet-9 with per-example masks (mixed 0/1) and extra units, on 16x16
  images (the layers at 32x32 are tested one by one above): logits, new statistics and
  parameter gradients in train mode, logits in eval mode."""
  fields = dict(capacity=capacity, expansion=expansion, width_multiplier=1 / 8)
  xla, lowered = ResNet9(cpu_lowering=False, **fields), ResNet9(cpu_lowering=True, **fields)
  variables = init_variables(xla, jax.random.key(0), (tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3))
  lowered_init = init_variables(lowered, jax.random.key(0), (tiny.IMAGE_SIZE, tiny.IMAGE_SIZE, 3))
  assert jax.tree.structure(lowered_init) == jax.tree.structure(variables)
  assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(lowered_init),
                                                   jax.tree.leaves(variables)))  # Same init.
  variables = tiny.perturb(variables, key=2)
  variables['batch_stats'] = jax.tree.map(np.abs, variables['batch_stats'])
  x = tiny.images(batch=6)
  mask = jax.random.bernoulli(jax.random.key(3), 0.5, (6, xla.mask_size)).astype(jnp.float32)

  def loss(model, params):
    logits, updates = model.apply({**variables, 'params': params}, x, mask, train=True,
                                  mutable=['batch_stats'])
    return jnp.sum(jax.nn.log_softmax(logits)[:, 0]), (logits, updates)

  ((_, aux_xla), grads_xla), ((_, aux_ours), grads_ours) = [
      jax.jit(jax.value_and_grad(lambda p, m=m: loss(m, p), has_aux=True))(variables['params'])
      for m in (xla, lowered)]
  for got, want in zip(jax.tree.leaves(aux_ours), jax.tree.leaves(aux_xla)):
    _close(got, want, 5e-5)  # Logits and new running statistics.
  _close_gradients(grads_ours, grads_xla, 5e-5)
  _close(lowered.apply(variables, x, mask), xla.apply(variables, x, mask))
