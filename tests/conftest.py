"""Test-wide setup: a persistent XLA compilation cache, 4 fake CPU devices, LLVM at -O2, one
compute thread per process, and the heaviest test files scheduled first.

The cache lives in `.jax_cache/` at the repository root (git-ignored), so a second local run
skips most compilation. 4 host devices let the sharded code paths run as they would on 4 GPUs
(batches split over `data`, parameters replicated, gradients summed across devices); the
behaviour fixture `poisoned` serves its task on one of them (tests/poisoned.py says why).
Compiling is about 55 % of the suite's time on 2 cores (measured per test from JAX's
compiler), and XLA's CPU backend at LLVM -O3 (its default) spends seconds on programs that draw
random numbers: a tiny ResNet-9's `init` took 4.4 s at -O3 and 0.9 s at -O2, while train steps
compiled and ran alike. -O2 took the whole suite from 11 min 31 s to 9 min 10 s. (-O0 is no
option: REM's loss went NaN under it.)
The suite runs two pytest-xdist workers on two cores, so each gets one compute thread
(`--xla_cpu_multi_thread_eigen=false`), and 4 fake devices rather than 8 (each device adds
per-step launches and cross-device sums): two processes running REM's behaviour tests side by
side took 190 s with 8 devices and multithreaded Eigen, 172 s single-threaded, 162 s with 4
devices and 143 s with both (2026-12-01, 2 cores). `import rem_jax` below then appends its own
flag (rem_jax/xla_flags.py), so the tests run the library's XLA settings, as users do.
Users' runs keep XLA's defaults for these three.
The flags must be set before JAX initialises its backends, hence here at import time, and as
environment variables so that the CLI subprocesses the tests start inherit them.
"""

import os
import pathlib

DEVICES = 4  # Fake CPU devices: the mesh every test runs on.
_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'
if not os.environ.get('XLA_FLAGS', '').strip():  # Unset or blank (some shells export it empty).
  os.environ['XLA_FLAGS'] = (f'--xla_force_host_platform_device_count={DEVICES} '
                             '--xla_backend_optimization_level=2 '
                             '--xla_cpu_multi_thread_eigen=false')
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


# Seconds per file, measured (2026-12-01, 2 cores): 255, 230, 130, 85, 80, 75, 50, 45, 40 and
# (the notebooks) 80; since 2026-12-06 test_commands.py (41 s: the README's commands) and
# test_cpu_lowering.py (35 s); every other file took under 30 s. `--dist loadfile` hands whole files to
# the workers in collection order (pyproject.toml turns off xdist's own reordering, which sorts
# by test count), so the longest go first and the short ones fill in at the end: a long file
# started last leaves the other core idle (it did, for 100 s). The notebooks come after
# test_launch.py has run the same tiny cell: their kernel then reads its compiled programs from
# the persistent cache (the quickstart notebook took 62 s cold and 32 s after it). test_sweep.py
# starts the second worker because it needs no `poisoned` model: by the time that worker asks
# for one, the first has trained and saved it (two at once trained it twice, 15 s each).
# test_cluster.py (22 s, 2026-12-06) runs a sweep as 5 local processes; its real-Slurm test
# runs apart (`-m slurm`, pyproject.toml).
_LONGEST_FIRST = ('test_rem.py', 'test_sweep.py', 'test_baselines.py', 'test_rem_drop_mode.py',
                  'test_launch.py', 'test_gpu_check.py', 'test_diagnose.py', 'test_cluster.py',
                  'test_practitioner.py', 'test_commands.py', 'test_distributed.py',
                  'test_cpu_lowering.py', 'test_notebooks.py')


def pytest_collection_modifyitems(items):
  rank = {name: position for position, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: files stay whole.
