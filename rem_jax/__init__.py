"""rem_jax: REM (Redirection for Erasing Memory) and the corrupted-data unlearning benchmark."""

from rem_jax import xla_flags as _xla_flags

_xla_flags.apply()  # Before any backend starts: see rem_jax/xla_flags.py.

__version__ = '0.1.0'
