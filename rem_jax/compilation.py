"""Counting XLA compilations, to check that a sweep compiles each step once.

JAX lowers a jitted function to XLA each time its in-memory cache misses (a new function, new
static arguments, or new shapes); the persistent compilation cache may then skip the backend
compile, but the lowering still happens. `CompileCounter` counts lowerings through
`jax.monitoring`, so "no new compilations" means no cache miss at all:

    with CompileCounter() as compiles:
      method(original, task_at_rate_0_2, settings)
    assert compiles.count == 0
"""

import collections
import threading

import jax
from jax import monitoring

from rem_jax.data import sources

_LOWERING_EVENT = '/jax/core/compile/jaxpr_to_mlir_module_duration'
_lock = threading.Lock()
_active: list['CompileCounter'] = []
_registered = False


def _on_event(name: str, seconds: float, **kwargs) -> None:
  del seconds
  if name == _LOWERING_EVENT:
    with _lock:
      for counter in _active:
        counter.count += 1
        counter.names[kwargs.get('fun_name', '')] += 1


class CompileCounter:
  """A context manager counting the XLA lowerings (jit cache misses) while it is open.

  `count` is the total; `names` counts them per function, e.g. `{'jit(repair_step)': 1}`.
  """

  def __init__(self):
    self.count = 0
    self.names = collections.Counter()

  def __enter__(self) -> 'CompileCounter':
    global _registered
    with _lock:
      if not _registered:  # jax.monitoring has no unregister: one listener for the process.
        monitoring.register_event_duration_secs_listener(_on_event)
        _registered = True
      _active.append(self)
    return self

  def __exit__(self, *exc_info) -> None:
    with _lock:
      _active.remove(self)


def use_persistent_cache() -> None:
  """Keeps XLA's compiled programs in `<default_cache_dir>/xla` (unless a cache directory is set
  already, e.g. by JAX_COMPILATION_CACHE_DIR), so re-runs and resumed runs skip compilation."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', str(sources.default_cache_dir() / 'xla'))
