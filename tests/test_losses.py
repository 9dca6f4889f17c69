"""Losses against literal values, their direction, transformations and extremes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import losses


def test_npo_and_redirect_literal_values():
  np.testing.assert_allclose(losses.npo(2.0, 1.0, beta=1.0), 0.6265234, rtol=1e-6)
  np.testing.assert_allclose(losses.npo(ce=2.0, ce_ref=1.0, beta=2.0), 0.1269280, rtol=1e-6)
  np.testing.assert_allclose(losses.redirect(2.0, 1.0, beta=1.0), -0.6265234, rtol=1e-6)
  np.testing.assert_allclose(losses.redirect(ce=2.0, ce_ref=1.0, beta=2.0), -0.1269280,
                             rtol=1e-6)
  # At ce == ce_ref: -(2/beta) log(1/2).
  np.testing.assert_allclose(losses.npo(1.0, 1.0, beta=0.5), 4 * np.log(2), rtol=1e-6)


def test_cross_entropy_and_kl_literal_values():
  logits = jnp.array([[0.0, np.log(3.0)], [2.0, 2.0]])
  np.testing.assert_allclose(losses.cross_entropy(logits, jnp.array([0, 1])),
                             [np.log(4.0), np.log(2.0)], rtol=1e-6)
  # KL([.25, .75] || [.5, .5]) = .25 ln .5 + .75 ln 1.5
  np.testing.assert_allclose(losses.kl_divergence(logits[0], logits[1]),
                             0.25 * np.log(0.5) + 0.75 * np.log(1.5), rtol=1e-5)
  # Temperature 2 softens both: teacher probabilities become [1, sqrt 3] / (1 + sqrt 3).
  p = np.array([1.0, np.sqrt(3.0)]) / (1 + np.sqrt(3.0))
  np.testing.assert_allclose(losses.kl_divergence(logits[0], logits[1], temperature=2.0),
                             np.sum(p * np.log(p / 0.5)), rtol=1e-5)
  np.testing.assert_allclose(losses.kl_divergence(logits, logits), 0.0, atol=1e-7)


def _descend(loss_fn, ce0=1.0, steps=50, lr=0.5):
  ce = jnp.float32(ce0)
  grad = jax.grad(lambda c: loss_fn(c, jnp.float32(ce0)))
  for _ in range(steps):
    ce = ce - lr * grad(ce)
  return float(ce)


def test_minimising_npo_raises_ce_and_minimising_redirect_lowers_it():
  assert _descend(losses.npo) > 1.5
  assert _descend(losses.redirect) < 0.5
  # redirect's gradient is 2 sigmoid(beta (ce_ref - ce)): large where the model fits better.
  grad = jax.grad(losses.redirect)
  np.testing.assert_allclose(grad(0.0, 3.0), 2 * jax.nn.sigmoid(3.0), rtol=1e-6)


@pytest.mark.parametrize('loss', [losses.npo, losses.redirect])
def test_vmap_over_a_runs_axis_equals_a_python_loop(loss):
  key1, key2 = jax.random.split(jax.random.key(0))
  ce = jax.random.uniform(key1, (3, 5), maxval=5.0)  # (runs, examples)
  ce_ref = jax.random.uniform(key2, (3, 5), maxval=5.0)
  betas = jnp.array([0.5, 1.0, 2.0])
  vmapped = jax.jit(jax.vmap(lambda c, r, b: loss(c, r, beta=b)))(ce, ce_ref, betas)
  looped = jnp.stack([loss(ce[i], ce_ref[i], beta=float(betas[i])) for i in range(3)])
  np.testing.assert_allclose(vmapped, looped, rtol=1e-6)
  # And per example: vmap over examples equals the batched call.
  np.testing.assert_allclose(jax.vmap(loss)(ce[0], ce_ref[0]), loss(ce[0], ce_ref[0]),
                             rtol=1e-6)


def test_vmap_over_runs_for_cross_entropy_and_kl():
  logits = jax.random.normal(jax.random.key(1), (3, 4, 10))
  other = jax.random.normal(jax.random.key(2), (3, 4, 10))
  labels = jax.random.randint(jax.random.key(3), (3, 4), 0, 10)
  np.testing.assert_allclose(jax.vmap(losses.cross_entropy)(logits, labels),
                             jnp.stack([losses.cross_entropy(logits[i], labels[i])
                                        for i in range(3)]), rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(losses.kl_divergence)(logits, other),
                             losses.kl_divergence(logits, other), rtol=1e-6)


@pytest.mark.parametrize('loss', [losses.npo, losses.redirect])
def test_finite_values_and_gradients_at_the_extremes(loss):
  ce = jnp.array([0.0, 1e4, 0.0, 1e4, 5e3])
  ce_ref = jnp.array([1e4, 0.0, 0.0, 1e4, -5e3])
  for beta in (0.1, 1.0, 10.0):
    values = loss(ce, ce_ref, beta=beta)
    grads = jax.grad(lambda c: loss(c, ce_ref, beta=beta).sum())(ce)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
  # Far apart, npo is linear in the gap on one side and 0 on the other.
  np.testing.assert_allclose(losses.npo(0.0, 1e4), 2e4, rtol=1e-6)
  np.testing.assert_allclose(losses.npo(1e4, 0.0), 0.0, atol=1e-6)


def test_extreme_logits_stay_finite():
  logits = jnp.array([[1e4, -1e4, 0.0]])
  assert np.isfinite(losses.cross_entropy(logits, jnp.array([1]))).all()
  assert np.isfinite(losses.kl_divergence(logits, -logits)).all()
  grads = jax.grad(lambda l: losses.kl_divergence(l, -logits).sum())(logits)
  assert np.isfinite(grads).all()


def test_bfloat16_inputs_compute_in_float32():
  ce = jnp.array([2.0], jnp.bfloat16)
  assert losses.npo(ce, jnp.array([1.0], jnp.bfloat16)).dtype == jnp.float32
  assert losses.cross_entropy(jnp.ones((2, 3), jnp.bfloat16), jnp.array([0, 1])).dtype == (
      jnp.float32)


def test_bad_arguments():
  with pytest.raises(ValueError, match='beta=0 must be > 0'):
    losses.npo(1.0, 1.0, beta=0)
  with pytest.raises(ValueError, match='beta=-1.0 must be > 0'):
    losses.redirect(1.0, 1.0, beta=-1.0)
  with pytest.raises(ValueError, match='temperature=0.0 must be > 0'):
    losses.kl_divergence(jnp.zeros(3), jnp.zeros(3), temperature=0.0)
  with pytest.raises(ValueError, match='labels of shape logits.shape'):
    losses.cross_entropy(jnp.zeros((4, 10)), jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match='must have the same shape'):
    losses.kl_divergence(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
