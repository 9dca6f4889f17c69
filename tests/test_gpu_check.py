"""`benchmarks/gpu_check.py --tiny`: the GPU check's code end to end on the CPU, and its bad
input. In-process (`run`, what its `main` calls): a fresh interpreter would add seconds of
imports; `tests/test_commands.py` starts the script itself."""

import importlib
import json
import sys

import pytest

from tests.cli import ROOT


@pytest.fixture(scope='module')
def gpu_check():
  if str(ROOT / 'benchmarks') not in sys.path:
    sys.path.insert(0, str(ROOT / 'benchmarks'))  # As `python benchmarks/gpu_check.py` has it.
  return importlib.import_module('gpu_check')


def test_tiny_runs_every_part_and_writes_one_json(gpu_check, tmp_path):
  output = tmp_path / 'gpu_check.json'
  returned = gpu_check.run(tiny=True, data='', output=str(output), parts=gpu_check.PARTS)
  value = json.loads(output.read_text())
  assert value == json.loads(json.dumps(returned))
  assert value['tiny'] is True and value['failed_parts'] == []
  parts = value['parts']
  assert set(parts) == {'throughput', 'peer', 'original', 'methods'}
  rows = parts['throughput']['results']
  assert [(r['model'], r['dtype']) for r in rows] == [('resnet9_full', 'float32'),
                                                       ('vit', 'bfloat16')]
  assert all(r['images_per_s'] > 0 and r['step_s'] > 0 for r in rows)
  peer = parts['peer']  # PyTorch is an optional extra: compared if installed, else a note.
  assert 'pip install' in peer.get('skipped', '') or peer['comparisons'][0]['results']
  original = parts['original']
  assert original['task'] == 'random_label_swap' and original['steps'] > 0
  assert 0 <= original['test_accuracy'] <= 1 and 0 <= original['corrupted_label_accuracy'] <= 1
  assert original['steady_step_s'] > 0 and original['wall_time_s'] > 0
  methods = {row['method']: row for row in parts['methods']['results']}
  assert list(methods) == ['no_ul', 'rem']  # The GPU check adds NPO.
  for row in methods.values():
    assert 'error' not in row, row
    assert row['healed_x_utility'] == pytest.approx(row['healed'] * row['utility'])
    assert row['paper_table1_pooled_percent']['healed_x_utility'] > 0
  assert methods['no_ul']['wall_time_s'] < methods['rem']['wall_time_s']
  assert 'paper_fig1_cell' in methods['rem']
  summary = value['summary']
  assert summary['rem_over_training'] == methods['rem']['over_training_run']
  assert summary['goals']['training_run_s'] == 25.0


def test_a_failing_part_is_recorded_and_the_rest_still_run(gpu_check, tmp_path, monkeypatch):
  monkeypatch.setattr(gpu_check, 'throughput_part', lambda plan, mesh: 1 / 0)
  monkeypatch.setattr(gpu_check, 'peer_part', lambda plan, mesh: {'skipped': 'test'})
  value = gpu_check.run(tiny=True, data='', output=str(tmp_path / 'x.json'),
                        parts=['throughput', 'peer'])
  assert value['failed_parts'] == ['throughput']
  assert value['parts']['throughput']['error'] == 'ZeroDivisionError: division by zero'
  assert value['parts']['peer']['skipped'] == 'test'


@pytest.mark.parametrize('parts, data, message', [
    (['methods'], '', "'methods' needs 'original'"),
    (['fast'], '', r"\['fast'\] unknown"),
    (['original'], '/nowhere/cifar10.tar.gz', '--data: /nowhere/cifar10.tar.gz is not a file'),
])
def test_bad_input_is_one_line_before_any_work(gpu_check, tmp_path, parts, data, message):
  output = tmp_path / 'never.json'
  with pytest.raises(SystemExit, match=f'^gpu_check.py: error: .*{message}'):
    gpu_check.run(tiny=not data, data=data, output=str(output), parts=parts)
  assert not output.exists()
