"""Every method compiles its steps once: a second discovery rate (and a second seed) reuses them.

The count is of XLA lowerings (`rem_jax.compilation.CompileCounter`), so it would catch a step
rebuilt per call, a shape that depends on |D_f|, or a constant baked into a compiled program.
"""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from rem_jax import compilation, masks, trainer
from rem_jax.methods import base, get_method
from rem_jax.models import init_variables
from tests import tiny
from tests.poisoned import RECIPE

SETTINGS = {
    'no_ul': {},
    'retrain': {},
    'cf': {'epochs': 1},
    'ascent': {'epochs': 2, 'eval_batch_size': 256},
    'npo': {'epochs': 2, 'eval_batch_size': 256},
    'scrub': {'epochs': 2, 'msteps': 1, 'eval_batch_size': 256},
    'bad_teacher': {'epochs': 1},
    'potion': {'eval_batch_size': 256, 'max_tries': 3},
    # test_rem.py's settings: on one worker, REM's compiled steps serve both files.
    'rem': {'epochs': 1, 'learning_rate': 0.01, 'eval_batch_size': 256},
}


def test_compile_counter_counts_cache_misses_only():
  double = jax.jit(lambda x: 2 * x)
  three, five = jnp.ones(3), jnp.ones(5)  # Eager ops compile too: outside the counters.
  with compilation.CompileCounter() as compiles:
    double(three)
    double(three)
  assert compiles.count == 1 and compiles.names == {'jit(<lambda>)': 1}
  with compilation.CompileCounter() as compiles:
    double(three)
    double(five)  # A new shape: one more.
  assert compiles.count == 1


@pytest.mark.parametrize('name', sorted(SETTINGS))
def test_a_second_discovery_rate_and_seed_compile_nothing(poisoned, name):
  original = base.TrainedModel(poisoned.model, poisoned.variables)
  recipe = dataclasses.replace(RECIPE, steps=4, checkpoint_every=4)
  method = get_method(name)
  method(original, poisoned.task(0.5, recipe=recipe), SETTINGS[name])  # Compiles.
  with compilation.CompileCounter() as compiles:  # Another rate and another seed at once.
    method(original, poisoned.task(0.2, seed=1, recipe=recipe), SETTINGS[name])
  assert compiles.count == 0, f'{name} compiled {compiles.count} more programs'


def test_etd_training_compiles_once_for_every_mask_seed(poisoned):
  model = tiny.tiny_resnet()
  recipe = dataclasses.replace(RECIPE, steps=2, checkpoint_every=2)
  view = poisoned.task().views.train
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  runs, results = [], []
  for mask_seed in (0, 1, 2):
    with compilation.CompileCounter() as compiles:
      trained, _ = trainer.train(model, variables, view, recipe, mesh=poisoned.mesh, seed=0,
                                 mask_config=masks.MaskConfig(mask_seed=mask_seed))
    runs.append(compiles.count)
    results.append(trained['params']['head']['kernel'])
  assert runs[1] == runs[2] == 0, runs
  # The seed in the state does choose the masks: same data, other masks, other weights.
  assert not jnp.allclose(results[0], results[1])
