"""The command line end to end: a shrunken quickstart, kill-and-resume, one trained model per
workdir reused by every unlearning run, bad configs."""

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
from rem_jax import experiments, trainer
from rem_jax.experiments import cell, config_lib
from tests import cli
from tests.cli import ROOT, TINY, TINY_FIELDS


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
  """The last checkpoint's parameters."""
  model, _ = cell.original_model(quickstart.get_config())
  variables, _ = trainer.load_variables(workdir, model, (16, 16, 3))
  return jax.device_get(variables['params'])


def test_quickstart_smoke_run_writes_every_record(tmp_path, capsys):
  # In this process, through launch.py's parser and main (tests/cli.py); the real processes
  # are the kill test below and tests/test_bad_inputs.py's NaN test.
  assert cli.run(tmp_path, *TINY, '--config.method=rem', '--config.methods.rem.epochs=1',
                 '--config.methods.rem.eval_batch_size=64') == 0
  stdout = capsys.readouterr().out
  assert 'Healed' in stdout and 'after rem' in stdout
  run_dir = _only_run(tmp_path)
  assert run_dir.name.startswith('rem_rate0.5_')
  assert f'Results in {run_dir}.' in stdout
  record = json.loads((run_dir / 'results.json').read_text())
  assert record['train'] == {**record['train'], 'steps': 8, 'resumed_from': 0, 'steps_run': 8}
  for phase in ('before', 'after'):
    assert 0.0 <= record[phase]['healed'] <= 1.0 and 0.0 <= record[phase]['utility'] <= 1.0
    assert 'poison_success_test' in record[phase]
  assert record['unlearn']['steps'] == 256 // 32  # One REM epoch of D_tr.
  assert record['model'] == {**record['model'], 'mask_size': 0}  # θo2 was dropped.
  ids = json.loads((tmp_path / 'corruption.json').read_text())
  assert len(ids['corrupted_ids']) == 32
  lines = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [l['step'] for l in lines if l['phase'] == 'train'] == [4, 8]
  # REM's dynamics: one line per iteration, and the plot.
  lines = [json.loads(l) for l in (run_dir / 'metrics.jsonl').read_text().splitlines()]
  assert [l['phase'] for l in lines] == ['before', 'unlearn', 'after']
  assert (run_dir / 'dynamics.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert json.loads((tmp_path / 'config.json').read_text())['train']['steps'] == 8
  assert json.loads((run_dir / 'config.json').read_text())['method'] == 'rem'


def _only_run(workdir: pathlib.Path) -> pathlib.Path:
  (run_dir,) = (workdir / cell.RUNS_DIR).iterdir()
  return run_dir


def test_a_run_killed_mid_training_resumes_and_ends_with_identical_params(tmp_path):
  overrides = [*TINY, '--config.train.steps=48', '--config.train.checkpoint_every=8']
  uninterrupted, killed = tmp_path / 'uninterrupted', tmp_path / 'killed'
  assert cli.run(uninterrupted, *overrides) == 0  # The same program in this process.
  process = _launch(killed, *overrides, wait=False)
  deadline = time.time() + 240
  while not any(p.name.isdigit() for p in (killed / 'checkpoints').glob('*')):
    assert process.poll() is None and time.time() < deadline, 'no checkpoint before exit'
    time.sleep(0.02)
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  saved = sorted(int(p.name) for p in (killed / 'checkpoints').glob('*') if p.name.isdigit())
  assert saved and saved[-1] < 48, f'the run finished before the kill: {saved}'
  assert cli.run(killed, *overrides) == 0  # The same command again, in this process.
  train = json.loads((_only_run(killed) / 'results.json').read_text())['train']
  assert train['resumed_from'] == saved[-1]
  assert train['steps_run'] == 48 - saved[-1]
  chex.assert_trees_all_equal(_final_params(killed), _final_params(uninterrupted))


def test_one_trained_model_serves_every_method_and_a_corrected_setting(tmp_path):
  # A method that diverges after training: its correction reuses the trained model.
  diverging = config_lib.cell_with(**{**TINY_FIELDS, 'method': 'cf'})
  diverging.methods.cf.learning_rate = 1e30
  diverging.methods.cf.epochs = 1
  with pytest.raises(trainer.NonFiniteLossError, match='cf: non-finite loss'):
    experiments.run(diverging, tmp_path)
  corrected = config_lib.cell_with(**{**TINY_FIELDS, 'method': 'cf'})
  corrected.methods.cf.epochs = 1
  first = experiments.run(corrected, tmp_path)
  assert first['train']['steps_run'] == 8  # The record of the run that trained the model.
  other = experiments.run(config_lib.cell_with(**TINY_FIELDS, discovery_rate=1.0), tmp_path)
  runs = sorted(p.name for p in (tmp_path / cell.RUNS_DIR).iterdir())
  assert [name.rsplit('_', 1)[0] for name in runs] == ['cf_rate0.5', 'no_ul_rate1']
  # Both results are kept, and the model was trained once: its checkpoints are those of one run.
  assert json.loads((tmp_path / cell.RUNS_DIR / runs[0] / 'results.json').read_text()
                    )['after'] == first['after']
  assert other['before'] == {**other['before'], 'utility': first['before']['utility']}
  steps = [json.loads(l)['step'] for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert steps == [4, 8]
  # The same run again is not repeated: its results are read back.
  assert experiments.run(corrected, tmp_path) == first


def test_a_workdir_of_another_model_is_refused_unless_overwrite(tmp_path):
  experiments.run(config_lib.cell_with(**TINY_FIELDS), tmp_path)
  with pytest.raises(ValueError, match=r'holds a run of other settings.*seed: 0 -> 1'):
    experiments.run(config_lib.cell_with(**TINY_FIELDS, seed=1), tmp_path)
  with pytest.raises(ValueError, match=r'train.learning_rate: 0.05 -> 0.1'):
    experiments.run(config_lib.cell_with(**TINY_FIELDS, **{'train.learning_rate': 0.1}),
                    tmp_path)
  # Fields that shape nothing of a plain model do not retrain it.
  same_model = config_lib.cell_with(**TINY_FIELDS, p_mem=0.3, **{'model.expansion': 0.25})
  assert cell.original_key(same_model) == cell.original_key(config_lib.cell_with(**TINY_FIELDS))
  experiments.run(same_model, tmp_path)
  result = experiments.run(config_lib.cell_with(**TINY_FIELDS, seed=1), tmp_path, overwrite=True)
  assert result['seed'] == 1 and result['train']['resumed_from'] == 0
  assert len(list((tmp_path / cell.RUNS_DIR).iterdir())) == 1  # The old model's runs are gone.


def test_a_bad_config_in_a_real_process_is_one_line_and_exit_status_1(tmp_path):
  # The wiring of launch.py's __main__; tests/test_bad_inputs.py has the table of bad inputs.
  line = _one_error_line(_launch(tmp_path / 'run', '--config.foo=1'))
  assert "--config.foo: the config has no field 'foo'" in line, line
  assert not (tmp_path / 'run').exists()  # Nothing is written for a config that cannot run.
