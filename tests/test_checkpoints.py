"""Checkpoints: exact round trips, retention, resharding, clear refusals."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rem_jax import checkpoints, sharding
from rem_jax.models import ResNet9, init_variables

_REPO = pathlib.Path(__file__).resolve().parent.parent


def _state(seed=0, typed_key=True):
  """A small train state shaped like the real one, with non-trivial optimizer momentum."""
  rng = np.random.default_rng(seed)
  params = {'conv': {'kernel': jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)},
            'head': {'bias': jnp.asarray(rng.standard_normal(4), jnp.bfloat16)}}
  batch_stats = {'bn': {'mean': jnp.asarray(rng.standard_normal(4), jnp.float32)}}
  optimizer = optax.sgd(0.1, momentum=0.9)
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = optimizer.update(grads, optimizer.init(params), params)
  key = jax.random.key(seed)
  return {'step': jnp.asarray(7, jnp.int32), 'params': params, 'batch_stats': batch_stats,
          'opt_state': opt_state, 'rng': key if typed_key else jax.random.key_data(key)}


_META = {'config': {'lr': 0.1, 'widths': [8, 16]}, 'mask': {'mask_seed': 3, 'p_mem': 0.2},
         'model': 'ResNet9(capacity=0.5)'}


def _assert_bits_equal(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
      assert a.dtype == b.dtype, path
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, path
    assert a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)


def test_round_trip_is_bit_exact_and_keeps_optax_types_and_metadata(tmp_path):
  state = _state()
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() is None
    assert ckpt.save(7, state, _META)
  # A fresh Checkpointer, as after a restart.
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 7
    restored, meta = ckpt.restore(jax.eval_shape(lambda: state))
    as_stored, _ = ckpt.restore()
  assert meta == _META
  _assert_bits_equal(restored, state)
  # Without a target: the stored tree, namedtuples as dicts and typed keys as their key data.
  assert as_stored['opt_state'][0]['trace']['conv']['kernel'].shape == (3, 3, 2, 4)
  np.testing.assert_array_equal(as_stored['rng'], jax.random.key_data(state['rng']))
  assert isinstance(restored['opt_state'][0], optax.TraceState)
  assert isinstance(restored['opt_state'][1], optax.EmptyState)
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(restored))


@pytest.mark.parametrize('saved_typed,target_typed', [(True, False), (False, True), (False, False)])
def test_key_leaf_comes_back_in_the_targets_form(tmp_path, saved_typed, target_typed):
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, {'rng': _state(5, typed_key=saved_typed)['rng']})
    restored, meta = ckpt.restore({'rng': _state(0, typed_key=target_typed)['rng']})
  assert meta == {}
  want = jax.random.key(5)
  _assert_bits_equal(restored, {'rng': want if target_typed else jax.random.key_data(want)})


def test_latest_step_and_max_to_keep(tmp_path):
  with checkpoints.Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in range(5):
      assert ckpt.save(step, _state(step), {'at': step})
    assert ckpt.latest_step() == 4
    assert not ckpt.save(4, _state(9))  # An existing step is never overwritten.
    assert not ckpt.save(3, _state(9))  # Nor is an older one written.
    restored, meta = ckpt.restore(_state())
    assert meta == {'at': 4}
    _assert_bits_equal(restored, _state(4))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '4']


def test_one_device_save_restores_replicated_onto_the_whole_mesh(tmp_path):
  state = _state()
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    ckpt.save(7, state, _META)
    mesh = sharding.make_mesh()
    replicated = sharding.replicated(mesh)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          state)
    restored, _ = ckpt.restore(target)
  _assert_bits_equal(restored, state)
  for leaf in jax.tree.leaves(restored):
    assert leaf.sharding == replicated and len(leaf.sharding.device_set) == jax.device_count() > 1
    assert leaf.is_fully_replicated


@pytest.fixture(scope='module')
def half_width_variables():
  return init_variables(ResNet9(capacity=0.5, width_multiplier=1 / 8), jax.random.key(0),
                        (16, 16, 3))


def test_restore_into_other_widths_names_the_leaf_and_both_shapes(tmp_path,
                                                                  half_width_variables):
  full = ResNet9(capacity=1.0, width_multiplier=1 / 8)
  target = jax.eval_shape(lambda: init_variables(full, jax.random.key(0), (16, 16, 3)))
  first = next((jax.tree_util.keystr(path), tuple(a.shape), tuple(b.shape))
               for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(half_width_variables),
                                       jax.tree.leaves(target))
               if a.shape != b.shape)
  name, stored_shape, target_shape = first
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    ckpt.save(0, half_width_variables)
    with pytest.raises(ValueError) as error:
      ckpt.restore(target)
    message = str(error.value)
    assert f'leaf {name} has shape {stored_shape}, but {target_shape} in the train state' in message
    assert 'step 0' in message

    extra = {**half_width_variables, 'extra': jnp.zeros(3)}
    with pytest.raises(ValueError, match=r"it lacks leaves the train state has: \['extra'\]"):
      ckpt.restore(extra)
    fewer = {'params': half_width_variables['params']}
    with pytest.raises(ValueError, match=r"it has leaves the train state lacks: "
                       r"\['batch_stats'\]"):
      ckpt.restore(fewer)
    restored, _ = ckpt.restore(half_width_variables)  # The matching target still works.
  _assert_bits_equal(restored, half_width_variables)


def test_bad_step_and_metadata_are_refused(tmp_path):
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    with pytest.raises(ValueError, match='step=-1 must be a non-negative int'):
      ckpt.save(-1, {'x': jnp.zeros(2)})
    with pytest.raises(ValueError, match='JSON-serialisable'):
      ckpt.save(1, {'x': jnp.zeros(2)}, {'array': np.zeros(2)})
    assert ckpt.save(np.int64(2), {'x': jnp.zeros(2)})
    assert ckpt.latest_step() == 2


def test_a_step_left_half_written_is_not_the_latest(tmp_path):
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _state(1))
  # What a save killed mid-write leaves behind (seen after SIGKILL): a temporary step folder.
  shutil.copytree(tmp_path / 'checkpoints' / '1',
                  tmp_path / 'checkpoints' / '2.orbax-checkpoint-tmp')
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    assert ckpt.latest_step() == 1
    assert ckpt.save(2, _state(2))
    assert ckpt.latest_step() == 2
    _assert_bits_equal(ckpt.restore(_state())[0], _state(2))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['1', '2']


def test_a_process_killed_while_saving_leaves_a_restorable_latest(tmp_path):
  script = textwrap.dedent(f"""
      import os, signal, sys
      import jax.numpy as jnp
      sys.path.insert(0, {str(_REPO)!r})
      from rem_jax import checkpoints
      ckpt = checkpoints.Checkpointer({str(tmp_path)!r})
      ckpt.save(1, {{'w': jnp.full((500_000,), 1.0)}})
      assert ckpt.latest_step() == 1  # Waits for the write.
      ckpt.save(2, {{'w': jnp.full((500_000,), 2.0)}})
      os.kill(os.getpid(), signal.SIGKILL)  # No chance to finish the background write.
      """)
  result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'}, timeout=120)
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  with checkpoints.Checkpointer(tmp_path) as ckpt:
    latest = ckpt.latest_step()
    assert latest in (1, 2)  # Usually 1; 2 only if the write won the race, complete.
    restored, _ = ckpt.restore({'w': jnp.zeros((500_000,))})
  np.testing.assert_array_equal(restored['w'], np.full((500_000,), float(latest)))
