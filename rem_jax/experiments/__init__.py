"""Experiments: one benchmark cell end to end, a sweep over the task space, and the
practitioner's unlearning run."""

from rem_jax.experiments import cell
from rem_jax.experiments import sweep
from rem_jax.experiments import unlearn

EXPERIMENTS = {'cell': cell.run, 'sweep': sweep.run, 'unlearn': unlearn.run}


def run(config, workdir, *, overwrite: bool = False, only=()) -> dict:
  """Runs `config.experiment` ('cell' when the config has no such field).

  `only` (sweeps only) selects cells by axis values, e.g. ['method=rem,npo'].
  """
  name = config.get('experiment', 'cell')
  if name not in EXPERIMENTS:
    raise ValueError(f'experiment={name!r} is unknown; allowed: {sorted(EXPERIMENTS)}.')
  if name == 'sweep':
    return sweep.run(config, workdir, overwrite=overwrite, only=only)
  if only:
    raise ValueError(f'--only selects cells of a sweep; experiment={name!r} has one cell.')
  return EXPERIMENTS[name](config, workdir, overwrite=overwrite)


__all__ = ['EXPERIMENTS', 'run']
