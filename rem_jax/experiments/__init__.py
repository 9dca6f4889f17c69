"""Experiments: one cell of the task space end to end (`run`); the sweep runner builds on it."""

from rem_jax.experiments.cell import check_config, run

__all__ = ['check_config', 'run']
