"""expand / drop: exact round trips, drop-mode equivalence, use under jit, clear errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rem_jax import expansion
from rem_jax.models import init_variables
from tests import tiny

SHAPE = (16, 16, 3)
MODELS = {'resnet9': tiny.tiny_resnet, 'vit': tiny.tiny_vit}


def _trained_base(model, key=0):
  """A base tree with non-default values, standing in for a trained θo1."""
  return tiny.perturb(init_variables(model.base_model(), jax.random.key(key), SHAPE), key + 1)


@pytest.mark.parametrize('name', MODELS)
def test_drop_of_expand_is_the_base_bit_for_bit(name):
  model = MODELS[name]()
  base = _trained_base(model)
  expanded = expansion.expand(base, model, jax.random.key(7), image_shape=SHAPE)
  chex.assert_trees_all_equal_shapes(expanded, expansion.variable_shapes(model, SHAPE))
  back = expansion.drop(expanded, model, image_shape=SHAPE)
  chex.assert_trees_all_equal(back, base)  # Exact equality, not closeness.


@pytest.mark.parametrize('name', MODELS)
def test_expanded_model_in_drop_mode_computes_the_base_model(name):
  model = MODELS[name]()
  base = _trained_base(model)
  expanded = expansion.expand(base, model, jax.random.key(7), image_shape=SHAPE)
  x = tiny.images()
  np.testing.assert_allclose(
      model.apply(expanded, x, jnp.zeros((x.shape[0], model.mask_size))),
      model.base_model().apply(base, x, None), atol=1e-5)


def test_new_units_are_fresh_and_batchnorm_is_reset():
  model = tiny.tiny_resnet()
  base = _trained_base(model)
  expanded = expansion.expand(base, model, jax.random.key(7), image_shape=SHAPE)
  kernel = expanded['params']['conv1']['conv']['kernel']  # (3, 3, 3, base 4 + extra 4)
  base_out = base['params']['conv1']['conv']['kernel'].shape[-1]
  np.testing.assert_array_equal(kernel[..., :base_out], base['params']['conv1']['conv']['kernel'])
  new = kernel[..., base_out:]
  bound = 1 / np.sqrt(3 * 3 * 3)  # PyTorch-default init, fan-in of the full-width conv1.
  assert float(jnp.abs(new).max()) <= bound and float(jnp.std(new)) > 0.3 * bound
  bn_stats = expanded['batch_stats']['conv1']['bn']
  np.testing.assert_array_equal(bn_stats['mean'][base_out:], 0.0)
  np.testing.assert_array_equal(bn_stats['var'][base_out:], 1.0)
  np.testing.assert_array_equal(expanded['params']['conv1']['bn']['scale'][base_out:], 1.0)
  # Another key gives other new units, the same base units.
  other = expansion.expand(base, model, jax.random.key(8), image_shape=SHAPE)
  assert not np.array_equal(other['params']['conv1']['conv']['kernel'], kernel)
  chex.assert_trees_all_equal(expansion.drop(other, model, image_shape=SHAPE), base)


def test_expand_and_drop_under_jit():
  model = tiny.tiny_resnet()
  base = _trained_base(model)
  expand = jax.jit(functools.partial(expansion.expand, model=model, image_shape=SHAPE))
  drop = jax.jit(functools.partial(expansion.drop, model=model, image_shape=SHAPE))
  expanded = expand(base, key=jax.random.key(7))
  chex.assert_trees_all_equal(
      expanded, expansion.expand(base, model, jax.random.key(7), image_shape=SHAPE))
  chex.assert_trees_all_equal(drop(expanded), base)


def test_merge_and_prune_work_on_optimizer_states():
  model = tiny.tiny_resnet()
  base = _trained_base(model)
  expanded = expansion.expand(base, model, jax.random.key(7), image_shape=SHAPE)
  optimizer = optax.sgd(0.1, momentum=0.9)
  base_state = jax.tree.map(jnp.ones_like, optimizer.init(base['params']))  # Momentum of ones.
  merged = expansion.merge_into(base_state, optimizer.init(expanded['params']))
  trace = merged[0].trace['conv2']['conv']['kernel']
  base_shape = base['params']['conv2']['conv']['kernel'].shape
  assert trace.shape == expanded['params']['conv2']['conv']['kernel'].shape != base_shape
  np.testing.assert_array_equal(trace[tuple(slice(0, n) for n in base_shape)], 1.0)
  assert float(trace.sum()) == float(np.prod(base_shape))  # New units' momentum is zero.
  chex.assert_trees_all_equal(expansion.prune_to(merged, base_state), base_state)


# ---- bad input --------------------------------------------------------------------------------


def test_expand_rejects_a_tree_of_other_widths_naming_leaf_and_shapes():
  model = tiny.tiny_resnet()  # capacity 0.5 base: conv1 has 4 output channels.
  wrong_base = init_variables(tiny.tiny_resnet(capacity=0.75, expansion=0.0), jax.random.key(0),
                              SHAPE)
  with pytest.raises(ValueError, match=r"leaf \['batch_stats'\]\['conv1'\]\['bn'\]\['mean'\] "
                     r'has shape \(6,\), but \(4,\) in the model'):
    expansion.expand(wrong_base, model, jax.random.key(0), image_shape=SHAPE)


def test_expand_rejects_a_tree_with_other_leaves():
  model = tiny.tiny_resnet()
  base = _trained_base(model)
  del base['params']['head']
  with pytest.raises(ValueError, match=r"it lacks leaves the model has: \['params'\]\['head'\]"):
    expansion.expand(base, model, jax.random.key(0), image_shape=SHAPE)


def test_drop_rejects_a_tree_that_is_not_expanded():
  model = tiny.tiny_resnet()
  with pytest.raises(ValueError, match='not expanded'):
    expansion.drop(_trained_base(model), model, image_shape=SHAPE)


def test_drop_rejects_an_expansion_of_other_widths():
  model = tiny.tiny_resnet()
  other = tiny.tiny_resnet(expansion=0.25)
  variables = init_variables(other, jax.random.key(0), SHAPE)
  with pytest.raises(ValueError, match=r"leaf \['batch_stats'\]\['conv1'\]\['bn'\]\['mean'\] "
                     r'has shape \(6,\), but \(8,\) in the model'):
    expansion.drop(variables, model, image_shape=SHAPE)


def test_models_without_extra_units_cannot_be_expanded_or_dropped():
  model = tiny.tiny_resnet(expansion=0.0)
  variables = init_variables(model, jax.random.key(0), SHAPE)
  with pytest.raises(ValueError, match='no extra units'):
    expansion.expand(variables, model, jax.random.key(0), image_shape=SHAPE)
  with pytest.raises(ValueError, match='no extra units'):
    expansion.drop(variables, model, image_shape=SHAPE)


def test_merge_and_prune_reject_leaves_that_do_not_fit():
  small = {'w': jnp.zeros((2, 3))}
  with pytest.raises(ValueError, match=r"merge_into: leaf \['w'\] of shape \(2, 3\) does not "
                     r"fit into the larger tree's \(2, 2\)"):
    expansion.merge_into(small, {'w': jnp.zeros((2, 2))})
  with pytest.raises(ValueError, match=r"prune_to: leaf \['w'\] of shape \(2, 3\) does not fit "
                     r"into the larger tree's \(2, 2\)"):
    expansion.prune_to({'w': jnp.zeros((2, 2))}, small)
