"""Test-wide setup: a persistent XLA compilation cache, 8 fake CPU devices, LLVM at -O2.

The cache lives in `.jax_cache/` at the repository root (git-ignored), so a second local run
skips most compilation. 8 host devices let the sharded code paths run as they would on 8 GPUs.
Compiling is about 70 % of the suite's time on 2 cores (XLA's backend 61 %, tracing and
lowering the rest; measured with JAX's compile events), and XLA's CPU backend at LLVM -O3 (its default) spends seconds on programs that draw random
numbers: a tiny ResNet-9's `init` took 4.4 s at -O3 and 0.9 s at -O2, while train steps
compiled and ran alike. -O2 took the whole suite from 11 min 31 s to 9 min 10 s. (-O0 is no
option: REM's loss went NaN under it.) Users' runs keep XLA's default.
The flags must be set before JAX initialises its backends, hence here at import time, and as
environment variables so that the CLI subprocesses the tests start inherit them.
"""

import os
import pathlib

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'
if not os.environ.get('XLA_FLAGS', '').strip():  # Unset or blank (some shells export it empty).
  os.environ['XLA_FLAGS'] = ('--xla_force_host_platform_device_count=8 '
                             '--xla_backend_optimization_level=2')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(_CACHE_DIR))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import rem_jax  # pylint: disable=g-import-not-at-top,unused-import  (adds its XLA flags)
import jax  # pylint: disable=g-import-not-at-top,unused-import  (reads the variables above)

import pytest  # pylint: disable=g-import-not-at-top,g-bad-import-order


@pytest.fixture(scope='session')
def poisoned(tmp_path_factory):
  """A tiny ResNet-9 trained once per run on a poisoned task (see tests/poisoned.py)."""
  from tests import poisoned as poisoned_module  # pylint: disable=g-import-not-at-top
  if 'PYTEST_XDIST_WORKER' not in os.environ:
    return poisoned_module.train_poisoned()
  # The workers' base temporary directories share this parent, one per run.
  return poisoned_module.shared_poisoned(tmp_path_factory.getbasetemp().parent)
