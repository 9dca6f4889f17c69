"""Optimizers and schedules: literals of the §6 schedule, coupled weight decay, the settings."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rem_jax import optim


def test_warmup_linear_decay_literals():
  schedule = optim.warmup_linear_decay(0.025, 4000)
  for step, expected in [(0, 0.025 / 41), (20, 0.025 / 41 + (0.025 - 0.025 / 41) / 2),
                         (40, 0.025), (2040, 0.015), (4000, 0.0052)]:
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-5)
  # Short runs still warm up for one step.
  np.testing.assert_allclose(optim.warmup_linear_decay(1.0, 10)(1), 1.0, rtol=1e-6)


def test_schedule_lengths_on_the_device_match_the_static_schedule():
  # Methods keep (total_steps, warmup) in their state: one compiled step for any length.
  @jax.jit
  def learning_rates(lengths):
    return jax.vmap(optim.warmup_linear_decay(0.025, **lengths))(jnp.arange(4001))

  for total in (4000, 350, 10):
    static = jax.vmap(optim.warmup_linear_decay(0.025, total))(jnp.arange(4001))
    np.testing.assert_allclose(learning_rates(optim.schedule_lengths(total)), static,
                               rtol=1e-5, atol=1e-8)
  assert learning_rates._cache_size() == 1
  assert optim.warmup_steps(350) == 4 and optim.warmup_steps(250) == 2  # Python's round.


def test_sgd_and_adam_use_coupled_weight_decay():
  params = {'w': jnp.array([1.0, -2.0])}
  grads = {'w': jnp.array([0.5, 0.5])}
  decayed = grads['w'] + 0.1 * params['w']  # L2 enters the gradient, before momentum.
  sgd = optim.make_optimizer('sgd', 0.1, momentum=0.9, weight_decay=0.1)
  updates, state = sgd.update(grads, sgd.init(params), params)
  np.testing.assert_allclose(updates['w'], -0.1 * decayed, rtol=1e-6)
  updates, _ = sgd.update(grads, state, params)  # Momentum: buffer = 0.9 buffer + gradient.
  np.testing.assert_allclose(updates['w'], -0.1 * (0.9 * decayed + decayed), rtol=1e-6)
  adam = optim.make_optimizer('adam', 0.1, weight_decay=0.1)
  plain = optax.adam(0.1)
  updates, _ = adam.update(grads, adam.init(params), params)
  expected, _ = plain.update({'w': decayed}, plain.init(params))
  np.testing.assert_allclose(updates['w'], expected['w'], rtol=1e-6)
  with pytest.raises(ValueError, match=r"optimizer='rmsprop' is not supported; allowed: "
                     r"\['sgd', 'adam'\]"):
    optim.make_optimizer('rmsprop', 0.1)


def test_settings_build_the_optimizer_they_name_and_check_their_fields():
  params = {'w': jnp.array([1.0, -2.0])}
  grads = {'w': jnp.array([0.5, 0.5])}
  settings = optim.OptimizerSettings.from_config(
      {'optimizer': 'sgd', 'learning_rate': 0.1, 'momentum': 0.9, 'weight_decay': 0.1,
       'schedule': 'warmup_linear_decay', 'epochs': 3})  # Fields of other parts are ignored.
  assert settings == optim.OptimizerSettings('sgd', 0.1, 0.9, 0.1, 'warmup_linear_decay')
  lengths = optim.schedule_lengths(100)
  built = settings.build(lengths)
  expected = optim.make_optimizer('sgd', optim.warmup_linear_decay(0.1, 100), momentum=0.9,
                                  weight_decay=0.1)
  got, _ = built.update(grads, settings.init(params), params)
  want, _ = expected.update(grads, expected.init(params), params)
  np.testing.assert_allclose(got['w'], want['w'], rtol=1e-6)
  # The state's structure does not depend on the schedule's length.
  assert (jax.tree.structure(settings.init(params))
          == jax.tree.structure(built.init(params)))
  with pytest.raises(ValueError, match='needs the schedule'):
    settings.build()
  for bad, message in [({'learning_rate': 0.0}, 'learning_rate=0.0 must be > 0'),
                       ({'momentum': 1.0}, r'momentum=1.0 must lie in \[0, 1\)'),
                       ({'schedule': 'cosine'}, "schedule='cosine' is not supported"),
                       ({'weight_decay': -1.0}, 'weight_decay=-1.0 must be >= 0'),
                       ({'optimizer': 'rmsprop'}, "optimizer='rmsprop' is not supported")]:
    with pytest.raises(ValueError, match=message):
      optim.OptimizerSettings(**bad)
