"""FLOP floors: hand-counted values on small sizes, and bad input."""

import pytest

from rem_jax.experiments import flop_floors

# 100 training images of which 10 are forgotten; training ran 50 steps of 20 (3,000 F of work).
SIZES = flop_floors.Sizes(train=100, forget=10, batch_size=20, training_steps=50, mask_cost=2.0)
# An ETD base: the original is the expanded model; drop mode runs its base at half the cost.
ETD = flop_floors.Sizes(train=100, forget=10, batch_size=20, training_steps=50, drop_cost=0.5)
REM = {'epochs': 2, 'iterations': [{'flush_epochs': 2}, {'flush_epochs': 1}]}


@pytest.mark.parametrize('method, unlearn, forwards', [
    ('no_ul', {'epochs': 0}, 0),
    ('retrain', {'steps': 50}, 3000),  # The same recipe again: 100 % of training.
    ('cf', {'epochs': 2}, 2 * 90 * 3),
    ('ascent', {'epochs': 3}, 3 * (10 * 3 + 100)),
    ('npo', {'epochs': 1}, 10 * 4 + 100),
    ('scrub', {'epochs': 4, 'max_epochs': 2}, (2 * 10 + 4 * 90) * 4),
    ('bad_teacher', {'epochs': 2}, 2 * 100 * 4),
    ('potion', {'tries': [{}, {}]}, 2 * (100 * 3 + 10)),
    # Drop mode on the base network: flush 3 epochs x 10 x 4, its stop rule (3 + 2) x 10, the
    # removal term's train pass and reference forward 2 x 100 x 4, selection 2 x 100. Mask mode
    # on the expanded model, twice the cost: BatchNorm pass 100, the redirect term's train pass
    # and reference forward 2 x 100 x 4.
    ('rem', {**REM, 'expanded_here': True}, (120 + 50 + 800 + 200) + 2 * (100 + 800)),
    # The ablation runs the redirect term in drop mode: no mask-mode pass but the statistics'.
    ('rem_no_redirect', {**REM, 'expanded_here': True}, (120 + 50 + 800 + 200) + 2 * 100),
])
def test_floors_count_each_methods_passes(method, unlearn, forwards):
  assert flop_floors.floor_forwards(method, unlearn, SIZES) == forwards
  assert flop_floors.floor_percent(method, unlearn, SIZES) == pytest.approx(100 * forwards / 3000)


@pytest.mark.parametrize('method, unlearn, forwards', [
    ('cf', {'epochs': 2}, 0.5 * 2 * 90 * 3),  # Baselines start from the pruned model.
    ('retrain', {'steps': 50}, 3000),  # Retrain trains the ETD model again.
    # REM adds no units (no statistics pass) and runs mask mode on the ETD model itself.
    ('rem', {**REM, 'expanded_here': False}, 0.5 * (120 + 50 + 800 + 200) + 800),
])
def test_on_an_etd_base_drop_mode_runs_the_pruned_network(method, unlearn, forwards):
  assert flop_floors.floor_forwards(method, unlearn, ETD) == forwards


def test_an_unknown_method_is_named():
  with pytest.raises(ValueError, match="method='sgd' has no FLOP floor"):
    flop_floors.floor_forwards('sgd', {}, SIZES)
