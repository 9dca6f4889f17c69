"""Bad input, as a new user gives it: exit status 1, one line naming the field or file, no
traceback, and no workdir claimed. Through `launch.py`'s own parser and `main` (tests/cli.py).
The practitioner's path (configs/unlearn.py) has its table in tests/test_unlearn.py, beside the
trained model it needs."""

import io
import json
import logging
import pathlib
import subprocess
import sys

from PIL import Image
import pytest

from tests import cli

@pytest.mark.parametrize('args, message', [
    (['--config.method=rem_typo'], "method='rem_typo' is not allowed; allowed: ascent, "
                                   'bad_teacher, cf, etd, no_ul, npo, potion, rem, rem_etd, '
                                   'rem_ideal, rem_no_redirect, rem_no_remove, retrain, scrub.'),
    (['--config.dataset=mnist'], "dataset='mnist' is not allowed; allowed: cifar10, "
                                 'svhn_cropped, imagenette, shapes, folder.'),
    (['--config.task=label_noise'], "task='label_noise' is not allowed; allowed: "
                                    'random_label_swap, inter_class_confusion, poison_trigger.'),
    (['--config.model.name=resnet50'], "model.name='resnet50' is not allowed; allowed: resnet9, "
                                       'vit.'),
    (['--config.model.capacity=1.5'], 'model.capacity=1.5 is not allowed; allowed: (0, 1].'),
    (['--config.discovery_rate=0'], 'discovery_rate=0.0 is not allowed; allowed: (0, 1].'),
    (['--config.train.optimizer=rmsprop'], "train.optimizer='rmsprop' is not allowed; allowed: "
                                           'sgd, adam.'),
    (['--config.seed=abc'], 'flag --config.seed=abc'),
    (['--coordinator_address=localhost:1234'], '--coordinator_address configure a '
                                               'multi-process run: add --distributed'),
    (['--config.train.momentum=1.5'], 'train.momentum=1.5 is not allowed; allowed: [0, 1)'),
    (['--config.seed=-1'], 'seed=-1 is not allowed; allowed: int ≥ 0'),
    (['--config.p_mem=1.5'], 'p_mem=1.5 is not allowed; allowed: (0, 1]'),
    (['--config.eval_batch_size=0'], 'eval_batch_size=0 is not allowed; allowed: int ≥ 1'),
    (['--config.eval_batch_size=10'], 'eval_batch_size=10 must be a positive multiple of the '
                                      "number of devices on the 'data' axis (4)"),
    (['--config.model.width_multiplier=0'], 'model.width_multiplier=0.0 is not allowed'),
    (['--config.methods.rem.p_mem=0.3'], "--config.methods.rem.p_mem: section methods.rem has "
                                         "no field 'p_mem'"),
    (['--config.methods.rem.learning_rate=-1'], 'methods.rem: learning_rate=-1.0 must be > 0'),
    (['--config.methods.scrub.msteps=20'], 'methods.scrub: msteps=20 must be an integer in'),
    (['--config.method=cf', '--config.p_mem=0.3'], "--config.p_mem has no effect in this run: "
                                                   "base='plain' has no masks"),
    (['--config.methods.npo.epochs=3'], "--config.methods.npo.epochs has no effect in this run: "
                                        "method='rem' runs"),
    (['--config.class_pair=(1, 2)'], "--config.class_pair has no effect in this run: "
                                     "task='poison_trigger'"),
    (['--config.model.expansion=0.3'], "--config.model.expansion has no effect in this run: "
                                       "base='plain' has no extra units"),
    (['--config.base=etd', '--config.methods.rem.expansion=0.3'],
     "methods.rem.expansion=0.3: on base='etd' REM uses the base's extra units"),
    (['--config.task=random_label_swap', '--config.num_corrupted=0'],
     'num_corrupted=0 is not allowed; allowed: int ≥ 1'),
])
def test_bad_fields_are_named_before_any_work(capsys, tmp_path, args, message):
  line = cli.error_line(capsys, tmp_path / 'run', *args)
  assert message in line, line
  assert not (tmp_path / 'run').exists()  # Nothing is claimed for a run that cannot start.


def test_a_bad_config_file_argument_is_one_line(capsys, tmp_path):
  line = cli.error_line(capsys, tmp_path / 'run', config='configs/quickstart.py:bogus')
  assert "arguments ['bogus'] are unknown; allowed: ['sweep']" in line, line


def test_workdirs_that_cannot_hold_a_run(capsys, tmp_path):
  afile = tmp_path / 'afile'
  afile.write_text('x')
  assert '--workdir is empty' in cli.error_line(capsys, '', *cli.TINY)
  assert f'workdir {afile} is a file' in cli.error_line(capsys, afile, *cli.TINY)
  assert f'lies under {afile}, which is a file' in cli.error_line(capsys, afile / 'run', *cli.TINY)
  frozen = tmp_path / 'frozen'
  frozen.mkdir()
  # Tests run as root, where permissions do not stop a write; an immutable folder does.
  if subprocess.run(['chattr', '+i', str(frozen)], capture_output=True, check=False).returncode:
    pytest.skip('chattr +i is not available here')
  try:
    line = cli.error_line(capsys, frozen / 'run', *cli.TINY)
  finally:
    subprocess.run(['chattr', '-i', str(frozen)], check=True)
  assert f'workdir {frozen / "run"} cannot be written: Operation not permitted' in line, line


def test_fewer_model_classes_than_the_data_has_is_named_before_training(capsys, tmp_path):
  line = cli.error_line(capsys, tmp_path / 'run', *cli.TINY, '--config.model.num_classes=5')
  assert 'model.num_classes=5 is smaller than the 10 classes of dataset' in line, line
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def _png(color) -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', (8, 8), color).save(buffer, format='PNG')
  return buffer.getvalue()


def _folder(root: pathlib.Path, files: dict[str, bytes]) -> pathlib.Path:
  for name, content in files.items():
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(content)
  return root


@pytest.mark.parametrize('make, message', [
    (lambda root: _folder(root, {'x.tar.gz': b'not an archive at all'}) / 'x.tar.gz',
     'is not a readable .tar.gz/.tar archive'),
    (lambda root: _folder(root, {'train/cat/0.png': _png('red'), 'train/dog/0.png': b'\x89PNG',
                                 'test/cat/0.png': _png('red')}),
     "'train/dog/0.png' cannot be decoded as an image"),
    (lambda root: _folder(root, {'train/cat/0.png': _png('red'), 'test/cat/0.png': _png('red')}),
     'a classifier needs at least 2 classes'),
])
def test_bad_data_files_are_named_before_training(capsys, tmp_path, make, message):
  path = make(tmp_path / 'data')
  line = cli.error_line(capsys, tmp_path / 'run', *cli.TINY, '--config.dataset=folder',
                        f'--config.data.path={path}')
  assert f"path='{path}'" in line and message in line, line
  assert not (tmp_path / 'run' / 'checkpoints').exists()


def test_a_nan_keeps_the_checkpoint_it_names_and_the_rerun_resumes_from_it(tmp_path, capsys,
                                                                          caplog):
  # A real process: the bug was an exit before the background save of that step was done.
  # lr 100 diverges between steps 9 and 12 (30 did under XLA's own lowerings; with the CPU
  # lowerings it stays finite for 32 steps).
  args = [*cli.TINY, '--config.train.learning_rate=100', '--config.train.steps=32',
          '--config.train.checkpoint_every=4']
  command = [sys.executable, 'launch.py', '--config=configs/quickstart.py',
             f'--workdir={tmp_path}', *args]
  first = subprocess.run(command, cwd=cli.ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
  assert first.returncode == 1, first.stderr[-3000:]
  # No GPU here: one line says so and how to get one, and the run goes on.
  assert first.stderr.count('No GPU or TPU found: running on the CPU') == 1
  assert 'pip install -U "jax[cuda13]"' in first.stderr
  error = [l for l in first.stderr.splitlines() if l.startswith('launch.py: error:')]
  assert len(error) == 1 and 'non-finite training loss' in error[0], first.stderr[-3000:]
  assert 'Traceback' not in first.stderr
  kept = int(error[0].split('the checkpoint at step ')[1].split(' ')[0])
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir())
  assert steps[-1] == kept, steps  # Committed, not left as <step>.orbax-checkpoint-tmp.
  # The same command again (in this process: it only has to read the checkpoint back).
  caplog.set_level(logging.INFO, logger='absl')
  line = cli.error_line(capsys, tmp_path, *args)
  assert f'Resuming training from the checkpoint at step {kept} of 32' in caplog.text
  assert 'non-finite training loss' in line
  assert json.loads((tmp_path / 'config.json').read_text())['train']['learning_rate'] == 100
