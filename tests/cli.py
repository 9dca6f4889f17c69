"""Runs `launch.py` in this process, as its `__main__` would (not a test module itself).

A fresh interpreter per command costs seconds of imports and compilation; parsing the same
argv with the same parser and calling `main` exercises the same code, so tables of bad inputs
run in-process. What only a real process can show (an exit before a background write is done)
is tested with a subprocess.
"""

import pathlib
import sys

from absl import flags
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The quickstart shrunk to seconds: 16x16 shapes, 256 training images, 8 steps of 32.
TINY_FIELDS = {'data.image_size': 16, 'data.num_train': 256, 'data.num_test': 64,
               'num_corrupted': 32, 'train.steps': 8, 'train.batch_size': 32,
               'train.checkpoint_every': 4, 'eval_batch_size': 64, 'method': 'no_ul'}
TINY = [f'--config.{field}={value}' for field, value in TINY_FIELDS.items()]


def _launch_module():
  if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
  import launch  # pylint: disable=g-import-not-at-top  (defines the CLI's flags once)
  return launch


def run(workdir, *args, config='configs/quickstart.py') -> int:
  """Parses `--config=config --workdir=workdir *args` and runs `launch.main`; its exit status.

  An exception other than `SystemExit` propagates: for a user it would be a traceback.
  """
  launch = _launch_module()
  argv = ['launch.py', f'--config={ROOT / config}', f'--workdir={workdir}', *args]
  saved_argv, sys.argv = sys.argv, argv  # ml_collections reads the overrides from sys.argv.
  try:
    try:
      launch._parse_flags(argv)  # pylint: disable=protected-access
      launch.main(['launch.py'])
    except SystemExit as exit_status:
      return exit_status.code
    return 0
  finally:
    sys.argv = saved_argv
    flags.FLAGS.unparse_flags()
    for name in list(flags.FLAGS):  # The override flags the config defined for this argv.
      if name.startswith('config.'):
        delattr(flags.FLAGS, name)


def error_line(capsys, workdir, *args, config='configs/quickstart.py') -> str:
  """The one line `launch.py: error: ...` a bad input gives, after checking exit status 1."""
  capsys.readouterr()
  status = run(workdir, *args, config=config)
  err = capsys.readouterr().err
  lines = [l for l in err.strip().splitlines() if l.startswith('launch.py:')]
  if status != 1 or len(lines) != 1 or 'Traceback' in err:
    pytest.fail(f'expected exit status 1 and one error line, got {status}:\n{err[-3000:]}')
  return lines[0]
