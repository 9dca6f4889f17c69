"""REM: its pieces, its mechanism and its behaviour on a tiny poisoned `shapes` task."""

import dataclasses
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import compilation, expansion, losses, masks, optim, trainer
from rem_jax.data import pipeline
from rem_jax.experiments import claims
from rem_jax.methods import base, common, get_method
from rem_jax.methods import rem as rem_module
from tests.poisoned import BATCH, RATE


def _rem(poisoned, variant='rem', rate=RATE, **settings):
  config = {'epochs': 3, 'learning_rate': 0.01, 'eval_batch_size': 256, **settings}
  return get_method(variant)(base.TrainedModel(poisoned.model, poisoned.variables),
                             poisoned.task(rate), config)


@pytest.fixture(scope='module')
def rem_result(poisoned):
  return _rem(poisoned)


# The mechanism tests run 5 epochs: the shared mask gathers D_c gradually, and after 3 epochs
# where it stands depends on float rounding (measured on the same fixture: 0.66 under XLA's
# default LLVM -O3, 0.25 under the suite's -O2; after 5 epochs 0.89 and 0.70). The behaviour
# test and its mutants keep 3 epochs, where a REM without its flush does not yet heal.
MECHANISM_EPOCHS = 5


@pytest.fixture(scope='module')
def rem_mechanism(poisoned):
  return _rem(poisoned, epochs=MECHANISM_EPOCHS)


def _heals(poisoned, result) -> tuple[bool, dict, dict]:
  """The behaviour criterion: Healed far above No UL, Utility within 5 points of it."""
  before = poisoned.evaluate(poisoned.model, poisoned.variables)
  after = poisoned.evaluate(result.model, result.variables)
  ok = after['healed'] >= before['healed'] + 0.4 and after['utility'] >= before['utility'] - 0.05
  return ok, before, after


# ---- behaviour ---------------------------------------------------------------------------------


def test_precondition_the_trained_model_is_poisoned(poisoned):
  before = poisoned.evaluate(poisoned.model, poisoned.variables)
  assert before['poison_success_corrupted'] >= 0.8, before
  assert before['utility'] >= 0.8, before


def test_rem_heals_the_poison_and_keeps_utility(poisoned, rem_result):
  ok, before, after = _heals(poisoned, rem_result)
  assert ok, (before, after)


@pytest.fixture
def fresh_rem_traces():
  """REM's steps retrace (compiled programs come from the persistent cache where the traced
  program is unchanged), before and after: a patched loss then reaches the program, and no
  later test runs a mutant's trace. Without it every mutant with the same settings would run
  the first one's program."""
  steps = (rem_module.flush_step, rem_module.repair_step, rem_module.batch_moments_step)
  for step in steps:
    step.clear_cache()
  yield
  for step in steps:
    step.clear_cache()


@pytest.mark.parametrize('mutant', ['npo_sign', 'redirect_sign', 'no_flush'])
def test_mutants_of_rem_fail_the_behaviour_test(poisoned, monkeypatch, fresh_rem_traces, mutant):
  del fresh_rem_traces
  if mutant == 'npo_sign':
    npo = losses.npo
    monkeypatch.setattr(losses, 'npo', lambda *a, **k: -npo(*a, **k))
  elif mutant == 'redirect_sign':
    redirect = losses.redirect
    monkeypatch.setattr(losses, 'redirect', lambda *a, **k: -redirect(*a, **k))
  # (A sign-flipped flush never reaches gamma: 2 flush epochs an iteration are enough to fail.)
  settings = {'max_flush_epochs': 0 if mutant == 'no_flush' else 2}
  ok, before, after = _heals(poisoned, _rem(poisoned, **settings))
  assert not ok, (mutant, before, after)


def _last(result) -> dict:
  return result.record['iterations'][-1]


def _returned(result) -> dict:
  """The dynamics of the iteration whose model REM returned (its best proxy), read as the
  claims read them."""
  return claims.returned_iteration({'unlearn': result.record})


def test_redirection_the_shared_mask_gathers_the_corruption_and_own_masks_do_not(
    poisoned, rem_mechanism):
  # The mechanism, from REM's dynamics on D_c against the poisoned labels: with the shared forget
  # mask on, the model predicts the poison (θo2 holds it); with the extra units off it does not.
  # Measured (5 iterations, -O2, the fixture trained with the CPU lowerings): shared mask 0.05 ->
  # 0.19 -> 0.80 -> 0.92 -> 0.97, drop mode 0.02 -> 0.06 -> 0.03 -> 0.11 -> 0.19; REM returns
  # iteration 4. (Under XLA's own lowerings the fixture's model differed by rounding: shared
  # mask up to 0.70, drop mode <= 0.09.)
  assert _returned(rem_mechanism)['corrupted_accuracy_shared_mask'] >= 0.5, rem_mechanism.record
  assert _returned(rem_mechanism)['corrupted_accuracy_drop'] <= 0.15, rem_mechanism.record
  # Each forget example with a mask of its own: nothing gathers in one place (measured <= 0.13;
  # 0.23 when the fixture trains on 2 devices instead of 8, hence the margin).
  own = _rem(poisoned, forget_masks='own', epochs=MECHANISM_EPOCHS)
  assert _returned(own)['corrupted_accuracy_shared_mask'] <= 0.35, own.record


def test_each_variant_runs_end_to_end_and_its_switch_shows(poisoned, rem_mechanism):
  rem = _last(rem_mechanism)
  # Last iterations, measured with the CPU lowerings (XLA's own, before: 0.03, 0.23 and 1.0
  # against 0.70 and 0.09). Without redirection into θo2 the shared mask gathers nothing
  # (measured 0.03 against 0.97).
  no_redirect = _rem(poisoned, variant='rem_no_redirect', epochs=MECHANISM_EPOCHS)
  assert _last(no_redirect)['corrupted_accuracy_shared_mask'] <= 0.35, no_redirect.record
  # Without the removal term part of the poison leaks back into drop mode (measured 0.45
  # of D_c against 0.19: 29 examples against 12).
  no_remove = _rem(poisoned, variant='rem_no_remove', epochs=MECHANISM_EPOCHS)
  assert _last(no_remove)['corrupted_accuracy_drop'] > rem['corrupted_accuracy_drop']
  # The ideal variant redirects all of D_c, not only D_f (measured 1.0 against 0.97).
  ideal = _rem(poisoned, variant='rem_ideal', epochs=MECHANISM_EPOCHS)
  assert _last(ideal)['corrupted_accuracy_shared_mask'] >= max(
      0.9, rem['corrupted_accuracy_shared_mask'])
  for result in (no_redirect, no_remove, ideal):
    assert result.model == poisoned.model
    assert _heals(poisoned, result)[0]


# ---- the method's contract ---------------------------------------------------------------------


def test_budget_flush_and_selection_records(poisoned, rem_result):
  record = rem_result.record
  steps_per_epoch = -(-1024 // BATCH)
  assert record['steps'] == 3 * steps_per_epoch  # Flush steps are not counted.
  assert record['flush_steps'] > 0
  gamma = rem_module.default_config().gamma
  for entry in record['iterations']:
    trace = entry['flush_forget_accuracy']
    # The flush stops as soon as Acc(D_f) <= gamma, and not before.
    assert all(a > gamma for a in trace[:-1]) and trace[-1] <= gamma
    assert entry['flush_epochs'] == len(trace) - 1
  proxies = [e['proxy'] for e in record['iterations']]
  assert record['best_iteration'] == 1 + int(np.argmax(proxies))


def test_result_has_the_original_architecture(poisoned, rem_result):
  assert rem_result.model == poisoned.model
  chex.assert_trees_all_equal_shapes(rem_result.variables, poisoned.variables)


def test_a_run_compiles_each_step_once(poisoned, fresh_rem_traces):
  # Every step's inputs keep one type from the first call on (a mask seed placed off the mesh
  # once made the first flush step's state differ from its output's: two compiles a run).
  del fresh_rem_traces
  with compilation.CompileCounter() as compiles:
    # Flush from the start state and from a flush's output; repair from a flush's output and
    # (iteration 2 needs no flush) from a repair's.
    _rem(poisoned, epochs=2)
  steps = ('jit(flush_step)', 'jit(repair_step)', 'jit(batch_moments_step)')
  assert [compiles.names[step] for step in steps] == [1, 1, 1], compiles.names


def test_best_iteration_keeps_the_best_variables():
  best = common.BestIteration()
  for iteration, score in [(1, 0.3), (2, 0.7), (3, 0.7), (4, 0.5)]:
    best.offer(iteration, score, {'w': jnp.full(2, float(iteration))})
  assert best.iteration == 2
  np.testing.assert_array_equal(best.variables['w'], [2.0, 2.0])


# ---- pieces ------------------------------------------------------------------------------------


def test_removal_term_is_zero_outside_the_forget_set():
  ce = jnp.array([1.0, 2.0, 3.0, 4.0])
  in_forget = jnp.array([True, False, True, False])
  redirect, removal = rem_module.per_example_terms(
      ce_mask=ce, ce_ref_mask=ce + 1, ce_drop=ce + 0.5, ce_ref_drop=ce, in_forget=in_forget,
      beta=1.0)
  np.testing.assert_array_equal(removal[~in_forget], 0.0)
  np.testing.assert_allclose(removal[in_forget], losses.npo(ce + 0.5, ce)[in_forget])
  np.testing.assert_allclose(redirect, losses.redirect(ce, ce + 1))
  np.testing.assert_allclose(rem_module.reduce_terms(redirect, removal, in_forget, 'batch'),
                             jnp.mean(redirect + removal))
  np.testing.assert_allclose(rem_module.reduce_terms(redirect, removal, in_forget, 'forget'),
                             jnp.mean(redirect) + jnp.sum(removal) / 2)
  # Ablations: no redirection into θo2 (drop mode, D_r only); no removal term.
  redirect, _ = rem_module.per_example_terms(
      ce_mask=ce, ce_ref_mask=ce + 1, ce_drop=ce + 0.5, ce_ref_drop=ce, in_forget=in_forget,
      beta=1.0, redirect_into_extra=False)
  np.testing.assert_allclose(redirect, losses.redirect(ce + 0.5, ce) * ~in_forget)
  _, removal = rem_module.per_example_terms(
      ce_mask=ce, ce_ref_mask=ce, ce_drop=ce, ce_ref_drop=ce, in_forget=in_forget, beta=1.0,
      remove=False)
  np.testing.assert_array_equal(removal, 0.0)


def test_ideal_covers_all_corrupted_examples(poisoned):
  forget = poisoned.record.forget_ids_at(RATE)
  assert set(rem_module.removal_ids('rem_ideal', forget, poisoned.record)) == set(
      poisoned.record.corrupted_ids)
  assert set(rem_module.removal_ids('rem', forget, poisoned.record)) == set(forget)


def test_exact_batch_statistics_of_new_channels(poisoned):
  # REM's pass over a view (padding, masks); `tests/test_batch_stats.py` checks the statistics.
  task = poisoned.task()
  model = poisoned.model.clone(expansion=0.5)
  variables = expansion.expand(poisoned.variables, model, jax.random.key(3),
                               image_shape=(16, 16, 3))
  view = task.views.train.subset(np.arange(40))  # Not a multiple of the batch: padding.
  view = dataclasses.replace(view, triggered=np.zeros(40, bool))  # Plain images, as below.
  setup = rem_module.Setup(model=model, p_mem=0.2, image_shape=(16, 16, 3),
                           optimizer=optim.OptimizerSettings('sgd', 0.1))
  # conv1's output (the statistic checked below) comes before any mask: any masks will do.
  stats = rem_module.exact_batch_stats(setup, variables, view, jnp.zeros(1024, bool),
                                       jnp.int32(0), poisoned.mesh, 16)
  # By hand: conv1's input statistics over the 40 images.
  x = pipeline.normalise(jnp.asarray(poisoned.splits.train.images[:40]))
  conv = variables['params']['conv1']['conv']
  y = jax.lax.conv_general_dilated(x, conv['kernel'], (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + conv['bias']
  np.testing.assert_allclose(stats['conv1']['bn']['mean'], y.mean((0, 1, 2)), atol=1e-4)
  np.testing.assert_allclose(stats['conv1']['bn']['var'], y.var((0, 1, 2)), rtol=1e-3,
                             atol=1e-4)


def _one_repair_step(poisoned, setup, ids):
  task = poisoned.task()
  variables = expansion.expand(poisoned.variables, setup.model, jax.random.key(5),
                               image_shape=(16, 16, 3))
  state = rem_module.with_mask_seed(
      trainer.create_train_state(variables, setup.optimizer, jax.random.key(0)), 0,
      poisoned.mesh)
  in_forget = common.membership(1024, task.forget_ids)
  batch = task.views.train.batch(np.searchsorted(task.views.train.ids, ids), poisoned.mesh)
  return variables, state, batch, in_forget


def test_mechanism_only_the_shared_masks_active_extra_units_learn(poisoned):
  model = poisoned.model.clone(expansion=0.5)
  setup = rem_module.Setup(
      model=model, p_mem=0.2, image_shape=(16, 16, 3),
      optimizer=optim.OptimizerSettings('sgd', 0.1, momentum=0.0, weight_decay=0.0))
  forget = poisoned.record.forget_ids_at(RATE)[:8]
  variables, state, batch, in_forget = _one_repair_step(poisoned, setup, forget)
  reference = jax.tree.map(jnp.copy, variables)
  new_state, _ = jax.jit(rem_module.repair_step.__wrapped__, static_argnums=0)(
      setup, state, poisoned.images['train'], batch, reference, in_forget, in_forget)
  shared = np.asarray(masks.shared_forget_mask(mask_seed=0, p_mem=0.2,
                                               mask_size=model.mask_size))
  base_width, extra_width = model.base_widths[0], model.extra_widths[0]
  active = shared[:extra_width] > 0  # Bank 0: conv1's extra channels.
  assert active.any() and (~active).any()
  before = variables['params']['conv1']['conv']['kernel'][..., base_width:]
  after = new_state['params']['conv1']['conv']['kernel'][..., base_width:]
  changed = np.asarray(jnp.abs(after - before).max(axis=(0, 1, 2)) > 0)
  np.testing.assert_array_equal(changed, active)


def test_mechanism_the_removal_term_reaches_only_theta_o1(poisoned):
  model = poisoned.model.clone(expansion=0.5)
  # Redirect restricted to D_r and every example in D_f: the loss is the removal term alone.
  setup = rem_module.Setup(
      model=model, p_mem=0.2, image_shape=(16, 16, 3),
      optimizer=optim.OptimizerSettings('sgd', 0.1, momentum=0.0, weight_decay=0.0),
      redirect_into_extra=False)
  forget = poisoned.record.forget_ids_at(RATE)[:8]
  variables, state, batch, in_forget = _one_repair_step(poisoned, setup, forget)
  inputs = pipeline.eval_inputs(poisoned.images['train'], batch)
  loss_fn = rem_module.repair_loss_fn(setup, state, inputs, batch, variables, in_forget,
                                      in_forget)
  grads = jax.jit(jax.grad(lambda p: loss_fn(p)[0]))(state['params'])
  base_grads = expansion.drop({'params': grads, 'batch_stats': variables['batch_stats']}, model,
                              image_shape=(16, 16, 3))['params']
  # Sums on the host: eager jnp would compile one program per op and leaf shape.
  grads, base_grads = jax.device_get((grads, base_grads))
  assert max(np.abs(g).max() for g in jax.tree.leaves(base_grads)) > 0
  total = sum(np.abs(g).sum(dtype=np.float64) for g in jax.tree.leaves(grads))
  base_total = sum(np.abs(g).sum(dtype=np.float64) for g in jax.tree.leaves(base_grads))
  np.testing.assert_allclose(total, base_total, rtol=1e-6)  # Nothing outside θo1.


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize('settings, message', [
    ({'gamma': 1.0}, r'gamma=1.0 must lie in \(0, 1\)'),
    ({'gamma': 0.0}, r'gamma=0.0 must lie in \(0, 1\)'),
    ({'beta': 0.0}, 'beta=0.0 must be > 0'),
    ({'remove_reference': 'live'}, "remove_reference='live' is not supported"),
    ({'expansion': 0.001}, 'REM needs extra units'),
    ({'gama': 0.2}, r"rem settings \['gama'\] are unknown"),
    ({'p_mem': 1.5}, r"p_mem=1.5 must lie in \(0, 1\]: the masks' keep probability"),
])
def test_bad_settings(poisoned, settings, message):
  with pytest.raises(ValueError, match=message):
    _rem(poisoned, **settings)


@pytest.mark.parametrize('forget_ids, message', [
    (np.array([], np.int32), 'non-empty'),
    (np.array([3, 3]), 'must not repeat'),
    (np.array([5000]), r'must lie in \[0, 1024\)'),
])
def test_bad_forget_sets(poisoned, forget_ids, message):
  task = dataclasses.replace(poisoned.task(), forget_ids=forget_ids)
  with pytest.raises(ValueError, match=message):
    get_method('rem')(base.TrainedModel(poisoned.model, poisoned.variables), task, {})


@pytest.mark.parametrize('settings, message', [
    ({'p_mem': 0.3}, r'p_mem=0.3: this ETD base was trained with p_mem=0.2, and REM reuses'),
    ({'expansion': 0.5}, 'expansion=0.5: an ETD base brings its own extra units'),
])
def test_on_an_etd_base_rem_takes_its_units_and_masks_as_they_are(settings, message):
  etd = base.TrainedModel(model=None, variables={}, mask_config=masks.MaskConfig(0, p_mem=0.2))
  resolved = common.resolve_settings(settings, rem_module.default_config(), 'rem')
  with pytest.raises(ValueError, match=message):
    rem_module._expanded_start(etd, resolved, None, 'rem')  # pylint: disable=protected-access
  same = common.resolve_settings({'p_mem': 0.2}, rem_module.default_config(), 'rem')
  assert rem_module._expanded_start(etd, same, None, 'rem')[2] is etd.mask_config


def test_rem_etd_needs_an_etd_base(poisoned):
  with pytest.raises(ValueError, match="set base='etd'"):
    _rem(poisoned, variant='rem_etd')


def test_rem_without_expansion_runs_and_returns_the_original_architecture(poisoned, capsys):
  result = _rem(poisoned, epochs=1, expansion=0.0)  # Table 4's REM on the 100 % model.
  # The progress bar's last redraw: `rem: 100%|...| 1/1 [time, rate, postfix]`.
  assert re.search(r'(^|\r)rem: 100%\|.*\| 1/1 \[.*flush=\d+, Acc\(D_f\)=[\d.]+, proxy=',
                   capsys.readouterr().err)
  assert result.model == poisoned.model
  chex.assert_trees_all_equal_shapes(result.variables, poisoned.variables)
  assert result.record['mask_size'] == 0
