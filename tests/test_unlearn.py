"""The practitioner's path: a trained checkpoint + a forget-ids file -> an unlearned model."""

import json

import flax.serialization
import jax
import numpy as np
import pytest

from configs import quickstart, unlearn as unlearn_config
from rem_jax import checkpoints, expansion, experiments
from rem_jax.experiments import unlearn


def _tiny(config):
  config.data.image_size = 16
  config.data.num_train = 256
  config.data.num_test = 64
  config.eval_batch_size = 64
  config.model.width_multiplier = 0.125
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny quickstart cell (no unlearning): its workdir and its forget ids at rate 0.5."""
  workdir = tmp_path_factory.mktemp('trained')
  config = _tiny(quickstart.get_config())
  config.method = 'no_ul'
  config.num_corrupted = 32
  config.train.steps = 24
  config.train.batch_size = 32
  config.train.checkpoint_every = 24
  experiments.run(config, workdir)
  ids = json.loads((workdir / 'corruption.json').read_text())['forget_ids']['50']
  return workdir, ids


def _config(trained, ids_path, **overrides):
  workdir, _ = trained
  config = _tiny(unlearn_config.get_config())
  config.checkpoint = str(workdir)
  config.forget_ids = str(ids_path)
  config.corruption = str(workdir / 'corruption.json')
  config.batch_size = 32
  config.methods.rem.epochs = 1
  config.methods.rem.eval_batch_size = 64
  for key, value in overrides.items():
    config[key] = value
  return config


def test_unlearning_a_checkpoint_writes_model_ids_and_metrics(trained, tmp_path):
  _, ids = trained
  ids_path = tmp_path / 'found.txt'
  ids_path.write_text('# the ones we found\n' + '\n'.join(map(str, ids)) + '\n\n')
  out = tmp_path / 'out'
  result = experiments.run(_config(trained, ids_path), out)
  assert set(result['before']) == {'utility', 'forget_accuracy', 'retain_accuracy'}
  assert result['after']['forget_accuracy'] <= 0.2  # REM's flush drove D_f down.
  assert json.loads((out / unlearn.IDS_FILE).read_text())['forget_ids'] == sorted(ids)
  # The unlearned variables have the original (base) widths.
  with checkpoints.Checkpointer(out) as checkpointer:
    assert checkpointer.latest_step() == 0
    stored = checkpointer.stored_shapes()
  shapes = expansion.variable_shapes(
      experiments.cell.original_model(_config(trained, ids_path))[0], (16, 16, 3))
  assert stored == {jax.tree_util.keystr(p): tuple(l.shape)
                    for p, l in jax.tree_util.tree_leaves_with_path(shapes)}


def test_msgpack_variables_and_json_or_npy_ids(trained, tmp_path):
  _, ids = trained
  config = _config(trained, tmp_path / 'ids.json')
  original = unlearn.load_trained(config, (16, 16, 3))
  path = tmp_path / 'model.msgpack'
  path.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(original.variables)))
  (tmp_path / 'ids.json').write_text(json.dumps({'forget_ids': ids}))
  np.save(tmp_path / 'ids.npy', np.asarray(ids))
  np.testing.assert_array_equal(unlearn.read_ids(tmp_path / 'ids.json'), ids)
  np.testing.assert_array_equal(unlearn.read_ids(tmp_path / 'ids.npy'), ids)
  loaded = unlearn.load_trained(_config(trained, tmp_path / 'ids.npy', checkpoint=str(path)),
                                (16, 16, 3))
  jax.tree.map(np.testing.assert_array_equal, loaded.variables,
               jax.device_get(original.variables))


def test_a_checkpoint_of_other_widths_is_refused_naming_the_leaf(trained, tmp_path):
  config = _config(trained, tmp_path / 'ids.txt')
  config.model.capacity = 1.0
  with pytest.raises(ValueError, match=r"leaf \['batch_stats'\]\['conv1'\]\['bn'\]\['mean'\] "
                     r'has shape \(4,\)'):
    unlearn.load_trained(config, (16, 16, 3))


@pytest.mark.parametrize('content, message', [
    ('1\n2\n2\n', 'must not repeat'),
    ('99999\n', r'must lie in \[0, 256\)'),
    ('', 'non-empty'),
    ('1\nseven\n', 'every line must be one integer id'),
])
def test_bad_forget_id_files(trained, tmp_path, content, message):
  ids_path = tmp_path / 'ids.txt'
  ids_path.write_text(content)
  with pytest.raises(ValueError, match=message):
    experiments.run(_config(trained, ids_path), tmp_path / 'out')


def test_missing_paths(trained, tmp_path):
  with pytest.raises(ValueError, match='checkpoint is required'):
    experiments.run(_config(trained, tmp_path / 'x', checkpoint=None), tmp_path / 'out')
  with pytest.raises(ValueError, match='is not a file'):
    experiments.run(_config(trained, tmp_path / 'missing.txt'), tmp_path / 'out2')


def test_retrain_takes_the_recipe_of_the_checkpoints_workdir(trained, tmp_path):
  _, ids = trained
  ids_path = tmp_path / 'ids.txt'
  ids_path.write_text('\n'.join(map(str, ids)))
  recipe = unlearn.training_recipe(_config(trained, ids_path))
  assert (recipe.steps, recipe.batch_size) == (24, 32)  # The trained cell's recipe.
  result = experiments.run(_config(trained, ids_path, method='retrain'), tmp_path / 'out')
  assert result['method']['steps'] == 24
  # A bare .msgpack carries no recipe: Retrain says what it needs.
  path = tmp_path / 'model.msgpack'
  original = unlearn.load_trained(_config(trained, ids_path), (16, 16, 3))
  path.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(original.variables)))
  assert unlearn.training_recipe(_config(trained, ids_path, checkpoint=str(path))) is None
  with pytest.raises(ValueError, match="'retrain' repeats the original training recipe"):
    experiments.run(_config(trained, ids_path, method='retrain', checkpoint=str(path)),
                    tmp_path / 'out2')
