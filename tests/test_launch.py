"""The command line end to end: a shrunken quickstart, kill-and-resume, bad configs, workdirs."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import chex
import jax
import pytest

from configs import quickstart
from rem_jax import checkpoints, experiments, trainer, training
from rem_jax.experiments import cell, config_lib
from rem_jax.models import init_variables

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The quickstart shrunk to seconds: 16x16 shapes, 256 training images, 8 steps of 32.
TINY_FIELDS = {'data.image_size': 16, 'data.num_train': 256, 'data.num_test': 64,
               'num_corrupted': 32, 'train.steps': 8, 'train.batch_size': 32,
               'train.checkpoint_every': 4, 'eval_batch_size': 64, 'method': 'no_ul'}
TINY = [f'--config.{field}={value}' for field, value in TINY_FIELDS.items()]


def _launch(workdir, *overrides, config='configs/quickstart.py', wait=True):
  command = [sys.executable, 'launch.py', f'--config={config}', f'--workdir={workdir}',
             *overrides]
  if not wait:
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                        check=False)


def _one_error_line(result) -> str:
  assert result.returncode == 1, result.stderr[-2000:]
  lines = [l for l in result.stderr.strip().splitlines() if not l.startswith(('I', 'W'))]
  assert len(lines) == 1 and lines[0].startswith('launch.py: error: '), result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  return lines[0]


def _final_params(workdir) -> dict:
  """The last checkpoint's parameters, read back with a target built like the trainer's."""
  config = quickstart.get_config()
  model, _ = cell.original_model(config)
  recipe = trainer.Recipe.from_config(config.train)
  target = training.create_train_state(init_variables(model, jax.random.key(0), (16, 16, 3)),
                                       recipe.make_optimizer(), jax.random.key(0))
  with checkpoints.Checkpointer(workdir) as checkpointer:
    state, _ = checkpointer.restore(target)
  return jax.device_get(state['params'])


def test_quickstart_smoke_run_writes_every_record(tmp_path):
  result = _launch(tmp_path, *TINY, '--config.method=rem', '--config.methods.rem.epochs=1',
                   '--config.methods.rem.eval_batch_size=64')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Healed' in result.stdout and 'after rem' in result.stdout
  # No GPU here: one line says so and how to get one, and the run goes on.
  assert result.stderr.count('No GPU or TPU found: running on the CPU') == 1
  assert 'pip install -U "jax[cuda13]"' in result.stderr
  record = json.loads((tmp_path / 'results.json').read_text())
  assert record['train'] == {**record['train'], 'steps': 8, 'resumed_from': 0, 'steps_run': 8}
  for phase in ('before', 'after'):
    assert 0.0 <= record[phase]['healed'] <= 1.0 and 0.0 <= record[phase]['utility'] <= 1.0
    assert 'poison_success_test' in record[phase]
  assert record['method']['steps'] == 256 // 32  # One REM epoch of D_tr.
  assert record['model'] == {**record['model'], 'mask_size': 0}  # θo2 was dropped.
  ids = json.loads((tmp_path / 'corruption.json').read_text())
  assert len(ids['corrupted_ids']) == 32
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if l['phase'] == 'train'] == [4, 8]
  # REM's dynamics: one line per iteration, and the plot.
  assert [l['iteration'] for l in lines if l['phase'] == 'unlearn'] == [1]
  assert (tmp_path / 'dynamics.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert json.loads((tmp_path / 'config.json').read_text())['train']['steps'] == 8


def test_a_run_killed_mid_training_resumes_and_ends_with_identical_params(tmp_path):
  overrides = [*TINY, '--config.train.steps=48', '--config.train.checkpoint_every=8']
  uninterrupted, killed = tmp_path / 'uninterrupted', tmp_path / 'killed'
  assert _launch(uninterrupted, *overrides).returncode == 0
  process = _launch(killed, *overrides, wait=False)
  deadline = time.time() + 240
  while not any(p.name.isdigit() for p in (killed / 'checkpoints').glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before exit'
    time.sleep(0.02)
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  saved = sorted(int(p.name) for p in (killed / 'checkpoints').glob('*') if p.name.isdigit())
  assert saved and saved[-1] < 48, f'the run finished before the kill: {saved}'
  resumed = _launch(killed, *overrides)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  train = json.loads((killed / 'results.json').read_text())['train']
  assert train['resumed_from'] == saved[-1]
  assert train['steps_run'] == 48 - saved[-1]
  chex.assert_trees_all_equal(_final_params(killed), _final_params(uninterrupted))


def test_a_workdir_of_another_config_is_refused_unless_overwrite(tmp_path):
  experiments.run(config_lib.cell_with(**TINY_FIELDS), tmp_path)
  with pytest.raises(ValueError, match=r'holds a run of another config.*seed: 0 -> 1'):
    experiments.run(config_lib.cell_with(**TINY_FIELDS, seed=1), tmp_path)
  experiments.run(config_lib.cell_with(**TINY_FIELDS, seed=1), tmp_path, overwrite=True)
  assert json.loads((tmp_path / 'results.json').read_text())['seed'] == 1


@pytest.mark.parametrize('override, message', [
    ('--config.method=rem_typo', "method='rem_typo' is not a registered method; allowed: "
                                 "['ascent', 'bad_teacher', 'cf', 'etd', 'no_ul', 'npo', "
                                 "'potion', 'rem', 'rem_etd', 'rem_ideal', 'rem_no_redirect', "
                                 "'rem_no_remove', 'retrain', 'scrub']"),
    ('--config.dataset=mnist', "dataset='mnist' is unknown; allowed: ['cifar10',"),
    ('--config.task=label_noise', "task='label_noise' is unknown; allowed: "
                                  "['random_label_swap', 'inter_class_confusion', "
                                  "'poison_trigger']"),
    ('--config.model.name=resnet50', "model.name='resnet50' is not a model; allowed: "
                                     "['resnet9', 'vit']"),
    ('--config.model.capacity=1.5', 'capacity=1.5 is outside (0, 1]'),
    ('--config.discovery_rate=0', 'discovery'),
    ('--config.train.optimizer=rmsprop', "optimizer='rmsprop' is not supported"),
    ('--config.foo=1', "cannot build the config: \"'foo'\" (a --config.FIELD override must "
                       'name a field'),
    ('--config.seed=abc', 'flag --config.seed=abc'),
    ('--coordinator_address=localhost:1234', '--coordinator_address configure a multi-process '
                                             'run: add --distributed'),
])
def test_bad_config_exits_nonzero_with_one_readable_line(tmp_path, override, message):
  line = _one_error_line(_launch(tmp_path / 'run', override))
  assert message in line, line
  assert not (tmp_path / 'run').exists()  # Nothing is written for a config that cannot run.
