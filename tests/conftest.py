"""Test-wide setup: a persistent XLA compilation cache and 8 fake CPU devices.

The cache lives in `.jax_cache/` at the repository root (git-ignored), so a second local run
skips most compilation. 8 host devices let the sharded code paths run as they would on 8 GPUs;
the flag must be set before JAX initialises its backends, hence here at import time.
"""

import os
import pathlib

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')

import jax  # pylint: disable=g-import-not-at-top

_CACHE_DIR = pathlib.Path(__file__).resolve().parent.parent / '.jax_cache'
jax.config.update('jax_compilation_cache_dir', str(_CACHE_DIR))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
