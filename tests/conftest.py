"""Test-wide setup: a persistent XLA compilation cache and 8 fake CPU devices.

The cache lives in `.jax_cache/` at the repository root (git-ignored), so a second local run
skips most compilation. 8 host devices let the sharded code paths run as they would on 8 GPUs;
the flag must be set before JAX initialises its backends, hence here at import time. Both are
set as environment variables so that the CLI subprocesses the tests start inherit them.

`SINGLE_THREADED_OPS`: twice in nine full runs on 2 cores a test worker stopped for good inside
Potion's importances (per-example gradients, then their all-reduce over the 8 devices): with
XLA's default collective timeout the process aborted (SIGABRT, the issue's crash) after 40 s;
with that timeout raised it hung until the suite's faulthandler_timeout. Some device never
reached the all-reduce. XLA's CPU backend runs multi-threaded Eigen ops (convolutions,
contractions) by handing pieces to a shared intra-op pool of about one thread per core and
waiting for them; a device thread blocked in the all-reduce, or another op waiting the same way,
can leave no thread to run them (the way XLA's FFT thunk is known to wedge that pool). With
single-threaded Eigen no op waits on the pool; with 8 devices on 2 cores it costs nothing
(measured: the baselines' file in 156 s with, 165 s without). Runs since: see the README.
"""

import os
import pathlib

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'
SINGLE_THREADED_OPS = '--xla_cpu_multi_thread_eigen=false'


def _with_flags(flags: str, *wanted: str) -> str:
  """`flags` with each of `wanted` appended unless a value of that flag is already set."""
  present = {flag.split('=')[0] for flag in flags.split()}
  return ' '.join([flags, *(w for w in wanted if w.split('=')[0] not in present)]).strip()


os.environ['XLA_FLAGS'] = _with_flags(os.environ.get('XLA_FLAGS', ''),
                                      '--xla_force_host_platform_device_count=8',
                                      SINGLE_THREADED_OPS)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(_CACHE_DIR))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import jax  # pylint: disable=g-import-not-at-top,unused-import  (reads the variables above)

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(scope='session')
def poisoned():
  """A tiny ResNet-9 trained once per session on a poisoned task (see tests/poisoned.py)."""
  from tests import poisoned as poisoned_module  # pylint: disable=g-import-not-at-top
  return poisoned_module.train_poisoned()
