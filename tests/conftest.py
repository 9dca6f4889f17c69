"""Test-wide setup: a persistent XLA compilation cache and 8 fake CPU devices.

The cache lives in `.jax_cache/` at the repository root (git-ignored), so a second local run
skips most compilation. 8 host devices let the sharded code paths run as they would on 8 GPUs;
the flag must be set before JAX initialises its backends, hence here at import time. Both are
set as environment variables so that the CLI subprocesses the tests start inherit them.
"""

import os
import pathlib

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'
os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
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
