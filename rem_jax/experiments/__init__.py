"""Experiments: one benchmark cell end to end, and the practitioner's unlearning run."""

from rem_jax.experiments import cell
from rem_jax.experiments import unlearn

EXPERIMENTS = {'cell': cell.run, 'unlearn': unlearn.run}


def run(config, workdir, *, overwrite: bool = False) -> dict:
  """Runs `config.experiment` ('cell' when the config has no such field)."""
  name = config.get('experiment', 'cell')
  if name not in EXPERIMENTS:
    raise ValueError(f'experiment={name!r} is unknown; allowed: {sorted(EXPERIMENTS)}.')
  return EXPERIMENTS[name](config, workdir, overwrite=overwrite)


__all__ = ['EXPERIMENTS', 'run']
