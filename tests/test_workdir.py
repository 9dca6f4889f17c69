"""A run's folder: usable before anything is written, claimed by one set of fields."""

import json

import jax.numpy as jnp
import pytest

from rem_jax import checkpoints
from rem_jax.experiments import workdir as workdir_lib


def test_a_workdir_is_claimed_by_its_fields(tmp_path):
  workdir = tmp_path / 'run'
  claimed = {'seed': 0, 'model': {'capacity': 0.5, 'widths': (8, 16)}}
  assert workdir_lib.claim(workdir, claimed) == 'new'
  assert json.loads((workdir / 'config.json').read_text())['model']['widths'] == [8, 16]
  # The same fields (a tuple equals the list JSON gives back) resume.
  same = {**claimed, 'model': {'capacity': 0.5, 'widths': [8, 16]}}
  assert workdir_lib.claim(str(workdir), same) == 'resume'

  with checkpoints.Checkpointer(workdir) as ckpt:
    ckpt.save(1, {'x': jnp.zeros(2)})
  (workdir / 'results').mkdir()
  (workdir / 'ids.json').write_text('{}')
  other = {'seed': 1, 'model': {'capacity': 1.0, 'widths': [8, 16]}, 'dataset': 'svhn'}
  with pytest.raises(ValueError) as error:
    workdir_lib.claim(workdir, other)
  assert str(error.value) == (
      f'workdir {workdir} holds a run of other settings (fields that differ: dataset: (absent) '
      '-> "svhn", model.capacity: 0.5 -> 1.0, seed: 0 -> 1); pass --overwrite (it deletes them) '
      'or use another workdir.')
  assert workdir_lib.claim(workdir, other, overwrite=True,
                           owned=('results', 'ids.json', 'absent')) == 'overwrite'
  assert sorted(p.name for p in workdir.iterdir()) == ['config.json']
  assert json.loads((workdir / 'config.json').read_text()) == json.loads(json.dumps(other))
  assert workdir_lib.claim(workdir, other) == 'resume'

  # Checkpoints of unknown fields are not adopted.
  orphan = tmp_path / 'orphan'
  with checkpoints.Checkpointer(orphan) as ckpt:
    ckpt.save(1, {'x': jnp.zeros(2)})
  with pytest.raises(ValueError, match=r'holds checkpoints but no config.json.*--overwrite'):
    workdir_lib.claim(orphan, claimed)


def test_a_config_json_with_more_fields_is_compared_on_the_claimed_ones(tmp_path):
  # An earlier version recorded the whole config; the claim now holds fewer fields.
  (tmp_path / 'config.json').write_text(json.dumps(
      {'seed': 0, 'method': 'rem', 'model': {'capacity': 0.5, 'expansion': 0.5}}))
  assert workdir_lib.claim(tmp_path, {'seed': 0, 'model': {'capacity': 0.5}}) == 'resume'
  with pytest.raises(ValueError, match=r'model.capacity: 0.5 -> 1.0'):
    workdir_lib.claim(tmp_path, {'seed': 0, 'model': {'capacity': 1.0}})
  (tmp_path / 'config.json').write_text('{"seed": ')
  with pytest.raises(ValueError, match=r'config.json is not readable JSON'):
    workdir_lib.claim(tmp_path, {'seed': 0})


def test_unusable_workdirs_are_named(tmp_path):
  afile = tmp_path / 'afile'
  afile.write_text('x')
  with pytest.raises(ValueError, match='--workdir is empty'):
    workdir_lib.usable('  ')
  with pytest.raises(ValueError, match=f'workdir {afile} is a file, not a directory'):
    workdir_lib.usable(afile)
  with pytest.raises(ValueError, match=f'lies under {afile}, which is a file'):
    workdir_lib.usable(afile / 'a' / 'b')
  assert workdir_lib.usable(tmp_path / 'new' / 'run') == tmp_path / 'new' / 'run'
  assert (tmp_path / 'new' / 'run').is_dir()
