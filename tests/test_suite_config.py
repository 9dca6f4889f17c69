"""The test suite's own settings (pyproject.toml): a crashed or stuck worker fails the run at
once instead of hanging it."""

import subprocess
import sys
import time

import pytest

from tests.cli import ROOT

_CRASH = 'import os\n\ndef test_crash():\n  os.abort()  # As XLA does on a failed check.\n'
_HANG = 'import time\n\ndef test_hang():\n  time.sleep(600)\n'
_FINE = 'def test_fine():\n  pass\n'


def _inner_run(tmp_path, *options) -> tuple[subprocess.CompletedProcess, float]:
  """pytest with the project's settings on the test files in `tmp_path`."""
  began = time.monotonic()
  result = subprocess.run(
      [sys.executable, '-m', 'pytest', '-c', str(ROOT / 'pyproject.toml'), '--rootdir',
       str(tmp_path), '-p', 'no:cacheprovider', *options, str(tmp_path)],
      cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False)
  return result, time.monotonic() - began


@pytest.mark.parametrize('failing, options, says', [
    (_CRASH, (), 'crashed and worker restarting disabled'),
    (_HANG, ('-o', 'faulthandler_timeout=3'), 'Timeout'),
])
def test_a_crashed_or_stuck_worker_fails_the_run_at_once(tmp_path, failing, options, says):
  # Files of their own, so that --dist loadfile gives the broken one a worker of its own.
  (tmp_path / 'test_a_broken.py').write_text(failing)
  for index in range(3):
    (tmp_path / f'test_b_fine_{index}.py').write_text(_FINE)
  result, seconds = _inner_run(tmp_path, *options)
  output = result.stdout + result.stderr
  assert result.returncode not in (0, 5), output[-3000:]
  assert says in output, output[-3000:]
  assert seconds < 120, f'the run took {seconds:.0f} s to fail'
