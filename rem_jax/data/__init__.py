"""Data: sources (TFDS, offline folder/archive, built-in `shapes`), corruption tasks, pipeline.

`load(name, ...)` is the entry point; see `rem_jax.data.sources`.
"""

from rem_jax.data.sources import Dataset, Splits, load

__all__ = ['Dataset', 'Splits', 'load']
