"""REM's drop mode on θo1: each variant's steps equal the expanded model's with mask 0.

A module of its own so that pytest-xdist (`--dist loadfile`) can run it beside test_rem.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import expansion, masks, trainer
from rem_jax.methods import common
from rem_jax.methods import rem as rem_module
from rem_jax.models import init_variables
from tests import tiny
from tests.poisoned import RATE


@dataclasses.dataclass(frozen=True)
class _ExpandedDropSetup(rem_module.Setup):
  """Drop mode as REM ran it before it pruned: the expanded model with a zero mask, its base
  channels' new statistics kept. Another class, so the compiled steps are not shared."""

  def drop_pass(self, variables, inputs, train):
    logits, stats = trainer.apply_model(
        self.model, variables['params'], variables.get('batch_stats', {}), inputs,
        masks.drop_mask(inputs.shape[0], self.model.mask_size), train)
    return logits, (expansion.prune_to(stats, self.base_shapes['batch_stats']) if stats else {})


def _flush_then_repair(setup, variables, poisoned, forget, in_forget, flush: bool):
  """A flush step on D_f (if `flush`), then a repair step on a batch of D_f and D_r."""
  task = poisoned.task()
  ids = np.concatenate([forget[:4], np.setdiff1d(np.arange(40), forget)[:12]])
  batch = lambda some: task.views.train.batch(np.searchsorted(task.views.train.ids, some),
                                              poisoned.mesh)
  images = poisoned.images['train']
  state = rem_module.with_mask_seed(
      trainer.create_train_state(variables, setup.optimizer, jax.random.key(0)), 0,
      poisoned.mesh)
  reference = jax.tree.map(jnp.copy, variables)
  step_losses = []
  if flush:
    state, metrics = rem_module.flush_step(setup, state, images, batch(forget[:8]), reference)
    step_losses.append(metrics['loss'])
  state, metrics = rem_module.repair_step(setup, state, images, batch(ids), reference, in_forget,
                                          in_forget)
  return state, step_losses + [metrics['loss']]


# The variants whose drop passes differ: rem_etd and rem_ideal run REM's own steps (they differ
# in their base and their membership, D_c, which only the data carry), and rem_no_remove runs
# REM's drop pass with its removal term zeroed (the pass still feeds θo1's statistics, as in
# REM's case).
@pytest.mark.parametrize('variant, model_name', [
    ('rem', 'resnet9'), ('rem_no_redirect', 'resnet9'), ('rem', 'vit'),
])
def test_drop_mode_on_the_pruned_base_equals_the_expanded_model_with_mask_0(
    poisoned, variant, model_name):
  # Every drop-mode pass (flush, the removal term's live and reference passes) runs θo1 on the
  # base network; the steps must update params, statistics and momentum exactly as the
  # expanded model with a zero mask did: zero gradient into the extra units, weight decay on.
  # The ViT with one block: REM's steps see blocks only through the model (test_models checks
  # two), and a block less takes a quarter off the compiles.
  model = tiny.tiny_resnet() if model_name == 'resnet9' else tiny.tiny_vit(depth=1)
  variables = tiny.perturb(jax.device_get(init_variables(model, jax.random.key(1))), 2)
  resolved = common.resolve_settings({'learning_rate': 0.05},
                                     rem_module.default_config(), variant)
  setup = rem_module.make_setup(variant, resolved, model, 0.5, (16, 16, 3))
  expanded = _ExpandedDropSetup(**{f.name: getattr(setup, f.name)
                                   for f in dataclasses.fields(setup)})
  forget = poisoned.record.forget_ids_at(RATE)
  in_forget = common.membership(1024, rem_module.removal_ids(variant, forget, poisoned.record))
  # The flush runs the same drop pass as the repair step's removal term (compared in every
  # case); its own loss and update need one case.
  flush = variant == 'rem' and model_name == 'resnet9'
  new, new_losses = _flush_then_repair(setup, variables, poisoned, forget, in_forget, flush)
  old, old_losses = _flush_then_repair(expanded, variables, poisoned, forget, in_forget, flush)
  np.testing.assert_allclose(new_losses, old_losses, rtol=1e-5)
  # Float tolerance relative to each leaf's scale: the base network sums its convolutions in
  # another order (measured: at most 7e-5 of a leaf's largest value, in conv1's momentum, whose
  # gradient sums 4,096 terms per weight), plus 1e-6 for the convolution biases that precede a
  # BatchNorm, whose true gradient is 0 (theirs, ~1e-5, is rounding alone). A missing or
  # misrouted term would be O(1).
  # On the host: eager jnp compiled a program per leaf shape (3 s a case).
  new, old = jax.device_get((new, old))
  for part in ('params', 'batch_stats', 'opt_state'):
    leaves = jax.tree_util.tree_leaves_with_path(old[part])
    for (path, b), a in zip(leaves, jax.tree.leaves(new[part])):
      assert np.abs(a - b).max() <= 3e-4 * np.abs(b).max() + 1e-6, (part, path)
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), new['params'],
                       variables['params'])
  assert max(jax.tree.leaves(moved)) > 1e-3  # The steps did something.
