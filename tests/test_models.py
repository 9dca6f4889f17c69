"""ResNet-9 and ViT: architecture (parameter counts), drop mode, masks, dtypes, bad input."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import expansion
from rem_jax.models import ResNet9, UnitMask, ViT, init_variables, mask_extra_units
from tests import tiny

MODELS = {'resnet9': tiny.tiny_resnet, 'vit': tiny.tiny_vit}


def _param_count(model) -> int:
  shapes = expansion.variable_shapes(model)
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes['params']))


@pytest.mark.parametrize('model, expected', [
    (ResNet9(), 2_276_224),
    (ResNet9(capacity=0.5), 940_032),
    # The ETD / expanded model has the full-width architecture.
    (ResNet9(capacity=0.5, expansion=0.5), 2_276_224),
    (ViT(), 11_013_518),
])
def test_parameter_counts_match_the_paper(model, expected):
  assert _param_count(model) == expected


def test_widths_and_mask_size():
  model = ResNet9(capacity=0.5, expansion=0.5)
  assert model.base_widths == (32, 64, 128, 64)
  assert model.extra_widths == (32, 64, 128, 64)
  assert model.inner_widths == (128, 256)
  assert model.mask_size == 288
  assert ResNet9().mask_size == 0
  # Expansion on top of a full model: +50 % of the full widths.
  assert ResNet9(capacity=1.0, expansion=0.5).extra_widths == (32, 64, 128, 64)
  # Floating point must not lose a unit: 0.7 + 0.3 is the full width again.
  assert sum(ResNet9(capacity=0.7, expansion=0.3).extra_widths) + sum(
      ResNet9(capacity=0.7).base_widths) == sum(ResNet9().full_widths)
  vit = ViT(capacity=0.5, expansion=0.5)
  assert (vit.base_hidden, vit.extra_hidden, vit.mask_size) == (768, 768, 4 * 768)


@pytest.mark.parametrize('name', MODELS)
@pytest.mark.parametrize('train', [False, True])
def test_mask_zero_equals_dropped_model_for_perturbed_variables(name, train):
  model = MODELS[name]()
  full = tiny.perturb(init_variables(model, jax.random.key(1), (16, 16, 3)), key=2)
  dropped = expansion.drop(full, model, image_shape=(16, 16, 3))
  base = model.base_model()
  x = tiny.images()
  zeros = jnp.zeros((x.shape[0], model.mask_size))
  mutable = ['batch_stats'] if train and 'batch_stats' in full else False
  full_out = model.apply(full, x, zeros, train=train, mutable=mutable)
  base_out = base.apply(dropped, x, None, train=train, mutable=mutable)
  if mutable:
    (full_logits, full_updates), (base_logits, base_updates) = full_out, base_out
    updated_full = {'params': full['params'], **full_updates}
    chex.assert_trees_all_close(
        expansion.drop(updated_full, model, image_shape=(16, 16, 3))['batch_stats'],
        base_updates['batch_stats'], atol=1e-5)
    # The update really happened (the comparison above is not between two untouched trees).
    assert not np.allclose(base_updates['batch_stats']['conv1']['bn']['mean'],
                           dropped['batch_stats']['conv1']['bn']['mean'])
  else:
    full_logits, base_logits = full_out, base_out
  np.testing.assert_allclose(full_logits, base_logits, atol=1e-5)
  # Drop mode is not trivially "the same network": the extra units do matter when on.
  ones_logits = model.apply(full, x, jnp.ones_like(zeros), train=False)
  assert not np.allclose(ones_logits, model.apply(full, x, zeros, train=False), atol=1e-3)


@pytest.mark.parametrize('name', MODELS)
def test_every_bank_of_extra_units_changes_the_output(name):
  model = MODELS[name]()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images()
  zeros = jnp.zeros((x.shape[0], model.mask_size))
  reference = model.apply(variables, x, zeros)
  start = 0
  assert len(model.extra_widths) == (4 if name == 'resnet9' else model.depth)
  for bank, width in enumerate(model.extra_widths):
    assert width > 0
    mask = zeros.at[:, start:start + width].set(1.0)
    out = model.apply(variables, x, mask)
    assert not np.allclose(out, reference, atol=1e-4), f'bank {bank} has no effect'
    start += width
  assert start == model.mask_size


@pytest.mark.parametrize('name', MODELS)
def test_mask_is_per_example(name):
  model = MODELS[name]()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images()
  mask = jnp.zeros((x.shape[0], model.mask_size)).at[0].set(1.0)
  out = model.apply(variables, x, mask)
  drop_out = model.apply(variables, x, jnp.zeros_like(mask))
  assert not np.allclose(out[0], drop_out[0], atol=1e-4)
  np.testing.assert_allclose(out[1:], drop_out[1:], atol=1e-5)


def test_bool_and_float_masks_agree():
  model = tiny.tiny_resnet()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images()
  mask = jax.random.bernoulli(jax.random.key(3), 0.2, (x.shape[0], model.mask_size))
  np.testing.assert_allclose(model.apply(variables, x, mask),
                             model.apply(variables, x, mask.astype(jnp.float32)), atol=1e-6)


@pytest.mark.parametrize('name', MODELS)
def test_models_without_extra_units_accept_none_or_empty_mask(name):
  model = MODELS[name](capacity=1.0, expansion=0.0)
  assert model.mask_size == 0
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images()
  np.testing.assert_array_equal(model.apply(variables, x, None),
                                model.apply(variables, x, jnp.zeros((x.shape[0], 0))))


def test_vit_train_flag_changes_nothing_and_resnet_train_uses_batch_statistics():
  vit = tiny.tiny_vit()
  variables = init_variables(vit, jax.random.key(0))
  x, mask = tiny.images(), jnp.zeros((tiny.BATCH, vit.mask_size))
  np.testing.assert_array_equal(vit.apply(variables, x, mask, train=True),
                                vit.apply(variables, x, mask, train=False))
  resnet = tiny.tiny_resnet()
  variables = tiny.perturb(init_variables(resnet, jax.random.key(0), (16, 16, 3)), key=1)
  mask = jnp.zeros((tiny.BATCH, resnet.mask_size))
  train_logits, _ = resnet.apply(variables, x, mask, train=True, mutable=['batch_stats'])
  assert not np.allclose(train_logits, resnet.apply(variables, x, mask, train=False))


@pytest.mark.parametrize('name', MODELS)
def test_bfloat16_compute_keeps_float32_params_and_close_logits(name):
  model32 = MODELS[name]()
  model16 = MODELS[name](dtype=jnp.bfloat16)
  variables = init_variables(model16, jax.random.key(0), (16, 16, 3))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  x = tiny.images()
  mask = jax.random.bernoulli(jax.random.key(1), 0.5, (x.shape[0], model32.mask_size))
  logits16 = model16.apply(variables, x, mask)
  logits32 = model32.apply(variables, x, mask)
  assert logits16.dtype == jnp.float32
  # bfloat16 has ~3 significant digits; close to float32, but not identical.
  np.testing.assert_allclose(logits16, logits32, atol=0.1 * float(jnp.abs(logits32).max()))
  assert not np.array_equal(logits16, logits32)


def test_jitted_apply_does_not_retrace_across_batches_of_one_shape():
  model = tiny.tiny_resnet()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(variables, images, mask):
    return model.apply(variables, images, mask)

  for step in range(3):
    x = tiny.images(key=step)
    mask = jax.random.bernoulli(jax.random.key(step), 0.2, (x.shape[0], model.mask_size))
    forward(variables, x, mask)


def test_unit_mask_layer_in_a_user_model():

  class UserMLP(nn.Module):
    """What the README shows: a hidden layer of 6 base + 2 extra units made REM-ready."""

    @nn.compact
    def __call__(self, x, mask):
      h = UnitMask(num_extra=2)(nn.relu(nn.Dense(8)(x)), mask)
      return nn.Dense(3)(h)

  x = jax.random.normal(jax.random.key(0), (4, 5))
  model = UserMLP()
  variables = model.init(jax.random.key(1), x, jnp.zeros((4, 2)))
  out = model.apply(variables, x, jnp.zeros((4, 2)))
  # With mask 0, the extra rows of the output layer contribute nothing.
  hidden = jax.nn.relu(x @ variables['params']['Dense_0']['kernel']
                       + variables['params']['Dense_0']['bias'])
  by_hand = hidden[:, :6] @ variables['params']['Dense_1']['kernel'][:6] + variables['params'][
      'Dense_1']['bias']
  np.testing.assert_allclose(out, by_hand, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r'\(batch, num_extra\) = \(4, 2\)'):
    model.apply(variables, x, jnp.zeros((4, 3)))


def test_mask_extra_units_known_values():
  x = jnp.arange(2 * 2 * 5, dtype=jnp.float32).reshape(2, 2, 5)  # (batch, tokens, features)
  mask = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  out = mask_extra_units(x, mask)
  expected = np.array(x)
  expected[0, :, 4] = 0.0
  expected[1, :, 3] = 0.0
  np.testing.assert_array_equal(out, expected)


# ---- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize('name', MODELS)
def test_wrong_mask_shape_names_the_expected_shape(name):
  model = MODELS[name]()
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  x = tiny.images()
  expected = rf'\(batch, mask_size\) = \({tiny.BATCH}, {model.mask_size}\)'
  with pytest.raises(ValueError, match=expected):
    model.apply(variables, x, jnp.zeros((tiny.BATCH, model.mask_size + 1)))
  with pytest.raises(ValueError, match=expected):
    model.apply(variables, x, jnp.zeros((tiny.BATCH - 1, model.mask_size)))
  with pytest.raises(ValueError, match='`mask` is required'):
    model.apply(variables, x, None)


@pytest.mark.parametrize('capacity', [0.0, -0.5, 1.5])
@pytest.mark.parametrize('cls', [ResNet9, ViT])
def test_capacity_outside_unit_interval_is_rejected(cls, capacity):
  with pytest.raises(ValueError, match=r'capacity=.* is outside \(0, 1\]'):
    cls(capacity=capacity)


def test_other_bad_model_fields():
  with pytest.raises(ValueError, match='expansion=-0.1 must be >= 0'):
    ResNet9(expansion=-0.1)
  with pytest.raises(ValueError, match='width_multiplier=0 must be > 0'):
    ResNet9(width_multiplier=0)
  with pytest.raises(ValueError, match='no base units'):
    ResNet9(capacity=0.01, width_multiplier=1 / 8)
  with pytest.raises(ValueError, match='patch_size=5 must divide image_size=32'):
    ViT(patch_size=5)
  vit = tiny.tiny_vit()
  variables = init_variables(vit, jax.random.key(0))
  with pytest.raises(ValueError, match=r'images must be \(batch, 16, 16, C\)'):
    vit.apply(variables, tiny.images(size=32), jnp.zeros((tiny.BATCH, vit.mask_size)))
