"""The practitioner's path: a trained checkpoint + a forget-ids file -> an unlearned model."""

import json
import os
import pathlib
import shutil

import flax.serialization
import jax
import numpy as np
import pytest

from configs import quickstart, unlearn as unlearn_config
from rem_jax import checkpoints, expansion, experiments
from rem_jax.experiments import practitioner
from tests import cli

TRAINED_STEPS = 24  # The `trained` fixture's run: one checkpoint, at its last step.


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
  config.train.steps = TRAINED_STEPS
  config.train.batch_size = 32
  config.train.checkpoint_every = TRAINED_STEPS
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
  assert json.loads((out / practitioner.IDS_FILE).read_text())['forget_ids'] == sorted(ids)
  # The unlearned variables have the original (base) widths.
  with checkpoints.Checkpointer(out) as checkpointer:
    assert checkpointer.latest_step() == 0
    stored, _ = checkpointer.restore()
  shapes = expansion.variable_shapes(
      experiments.cell.original_model(_config(trained, ids_path))[0], (16, 16, 3))
  expansion.check_shapes(stored, shapes, 'the unlearned checkpoint')
  # What came in as a file can go out as one: the .msgpack holds the same variables and is a
  # checkpoint for a further run.
  assert result['msgpack_file'] == practitioner.MSGPACK_FILE
  again = _config(trained, ids_path, checkpoint=str(out / practitioner.MSGPACK_FILE))
  reloaded = practitioner.load_trained(again, (16, 16, 3))
  assert jax.tree.map(np.shape, reloaded.variables) == jax.tree.map(np.shape, shapes)


def test_msgpack_variables_and_json_or_npy_ids(trained, tmp_path):
  _, ids = trained
  config = _config(trained, tmp_path / 'ids.json')
  original = practitioner.load_trained(config, (16, 16, 3))
  path = tmp_path / 'model.msgpack'
  path.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(original.variables)))
  (tmp_path / 'ids.json').write_text(json.dumps({'forget_ids': ids}))
  np.save(tmp_path / 'ids.npy', np.asarray(ids))
  np.testing.assert_array_equal(practitioner.read_ids(tmp_path / 'ids.json'), ids)
  np.testing.assert_array_equal(practitioner.read_ids(tmp_path / 'ids.npy'), ids)
  loaded = practitioner.load_trained(_config(trained, tmp_path / 'ids.npy', checkpoint=str(path)),
                                (16, 16, 3))
  jax.tree.map(np.testing.assert_array_equal, loaded.variables,
               jax.device_get(original.variables))


def test_a_checkpoint_of_other_widths_is_refused_naming_the_leaf(trained, tmp_path):
  config = _config(trained, tmp_path / 'ids.txt')
  config.model.capacity = 1.0
  with pytest.raises(ValueError, match=r"leaf \['batch_stats'\]\['conv1'\]\['bn'\]\['mean'\] "
                     r'has shape \(4,\)'):
    practitioner.load_trained(config, (16, 16, 3))


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
  recipe = practitioner.training_recipe(_config(trained, ids_path))
  assert (recipe.steps, recipe.batch_size) == (24, 32)  # The trained cell's recipe.
  result = experiments.run(_config(trained, ids_path, method='retrain'), tmp_path / 'out')
  assert result['unlearn']['steps'] == TRAINED_STEPS
  # A bare .msgpack carries no recipe: Retrain says what it needs.
  path = tmp_path / 'model.msgpack'
  original = practitioner.load_trained(_config(trained, ids_path), (16, 16, 3))
  path.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(original.variables)))
  assert practitioner.training_recipe(_config(trained, ids_path, checkpoint=str(path))) is None
  with pytest.raises(ValueError, match="'retrain' repeats the original training recipe"):
    experiments.run(_config(trained, ids_path, method='retrain', checkpoint=str(path)),
                    tmp_path / 'out2')


# ---- Bad input, through the command line (tests/cli.py) -----------------------------------------

UNLEARN_CONFIG = 'configs/unlearn.py'
# The unlearning run's data and batch sizes, as the `trained` fixture's model was trained.
UNLEARN_DATA = ['--config.data.image_size=16', '--config.data.num_train=256',
                '--config.data.num_test=64', '--config.batch_size=32',
                '--config.eval_batch_size=64', '--config.method=no_ul']


@pytest.fixture
def trained_workdir(trained):
  return trained[0]


def _unlearn_args(checkpoint, ids, *extra):
  return [f'--config.checkpoint={checkpoint}', f'--config.forget_ids={ids}', *UNLEARN_DATA,
          *extra]


def _ids_file(tmp_path, name: str, content) -> pathlib.Path:
  path = tmp_path / name
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content)
  return path


@pytest.mark.parametrize('name, content, message', [
    ('ids.json', '{"ids": [1, 2]}', 'holds a JSON object without the key "forget_ids"'),
    ('ids.json', '[1, 2', 'is not valid JSON'),
    ('ids.txt', bytes(range(256)) * 4, 'is binary, not text'),
    ('ids.npy', None, 'is not a numpy array of ids (Object arrays cannot be loaded'),
    ('ids.txt', '\n'.join(map(str, range(256))), 'lists all 256 training examples: nothing '
                                                 'would be left to retain'),
])
def test_bad_forget_id_files_are_named(capsys, tmp_path, trained_workdir, name, content, message):
  if content is None:  # A pickled object array: loading it could run code.
    path = tmp_path / name
    np.save(path, np.array([{'id': 1}], dtype=object), allow_pickle=True)
  else:
    path = _ids_file(tmp_path, name, content)
  line = cli.error_line(capsys, tmp_path / 'out', *_unlearn_args(trained_workdir, path),
                        config=UNLEARN_CONFIG)
  assert 'forget_ids' in line and message in line, line


def _damaged_copy(workdir, tmp_path, damage) -> pathlib.Path:
  copy = tmp_path / 'damaged'
  shutil.copytree(workdir, copy)
  damage(copy / checkpoints.CHECKPOINT_DIR / str(TRAINED_STEPS))
  return copy


def _truncate_arrays(step: pathlib.Path) -> None:
  for path in (step / 'state').rglob('*'):
    if path.is_file() and path.parent.name == 'd':  # TensorStore's data files.
      path.write_bytes(path.read_bytes()[:10])


def _garble_metadata(step: pathlib.Path) -> None:
  (step / 'state' / '_METADATA').write_bytes(os.urandom(64))


def _random_bytes(step: pathlib.Path) -> None:
  for path in step.rglob('*'):
    if path.is_file():
      path.write_bytes(os.urandom(max(path.stat().st_size, 16)))


@pytest.mark.parametrize('damage', [_truncate_arrays, _garble_metadata, _random_bytes])
def test_a_damaged_checkpoint_is_one_line(capsys, tmp_path, trained_workdir, damage):
  ids = _ids_file(tmp_path, 'ids.txt', '1\n2\n')
  copy = _damaged_copy(trained_workdir, tmp_path, damage)
  line = cli.error_line(capsys, tmp_path / 'out', *_unlearn_args(copy, ids), config=UNLEARN_CONFIG)
  assert f'checkpoint step {TRAINED_STEPS} in {copy / "checkpoints"} cannot be read' in line, line


def test_checkpoints_that_are_not_trained_models(capsys, tmp_path, trained_workdir):
  ids = _ids_file(tmp_path, 'ids.txt', '1\n2\n')
  bare = tmp_path / 'bare'
  bare.mkdir()
  shutil.copy(trained_workdir / 'config.json', bare / 'config.json')
  line = cli.error_line(capsys, tmp_path / 'o1', *_unlearn_args(bare, ids), config=UNLEARN_CONFIG)
  assert f"checkpoint='{bare}' holds no checkpoint" in line, line
  garbage = _ids_file(tmp_path, 'model.msgpack', os.urandom(100))
  line = cli.error_line(capsys, tmp_path / 'o2', *_unlearn_args(garbage, ids),
                        config=UNLEARN_CONFIG)
  assert f"checkpoint='{garbage}' is not a msgpack file of Flax variables" in line, line
  # The output of an unlearning run, given back as the model to unlearn.
  output = tmp_path / 'unlearned'
  assert cli.run(output, *_unlearn_args(trained_workdir, ids), config=UNLEARN_CONFIG) == 0
  line = cli.error_line(capsys, tmp_path / 'o3', *_unlearn_args(output, ids), config=UNLEARN_CONFIG)
  assert 'is the output of configs/unlearn.py; to unlearn it further, pass its ' \
         'unlearned.msgpack' in line, line
  line = cli.error_line(capsys, tmp_path / 'o4', *_unlearn_args(
      output / 'unlearned.msgpack', ids, '--config.method=retrain'), config=UNLEARN_CONFIG)
  assert "method='retrain' repeats the original training recipe, which only a launch.py " \
         'workdir records' in line, line


def test_data_other_than_the_checkpoint_was_trained_on_is_refused(capsys, tmp_path,
                                                                    trained_workdir):
  ids = _ids_file(tmp_path, 'ids.txt', '1\n2\n')
  line = cli.error_line(capsys, tmp_path / 'out', *_unlearn_args(
      trained_workdir, ids, '--config.data.image_size=32', '--config.data.num_train=512'),
                        config=UNLEARN_CONFIG)
  assert 'was trained with other settings' in line, line
  assert 'data.image_size: 16 -> 32' in line and 'data.num_train: 256 -> 512' in line, line
  assert not (tmp_path / 'out').exists()


def test_a_garbage_corruption_file_is_named(capsys, tmp_path, trained_workdir):
  ids = _ids_file(tmp_path, 'ids.txt', '1\n2\n')
  garbage = _ids_file(tmp_path, 'corruption.json', '{"format": 1, "task": 3}')
  line = cli.error_line(capsys, tmp_path / 'out', *_unlearn_args(
      trained_workdir, ids, f'--config.corruption={garbage}'), config=UNLEARN_CONFIG)
  assert str(garbage) in line and 'corruption' in line, line
