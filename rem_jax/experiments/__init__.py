"""Experiments: one benchmark cell end to end, a sweep over the task space, and the
practitioner's unlearning run and diagnosis."""

from rem_jax.experiments import cell
from rem_jax.experiments import diagnose
from rem_jax.experiments import practitioner
from rem_jax.experiments import sweep

EXPERIMENTS = {'cell': cell.run, 'sweep': sweep.run, 'unlearn': practitioner.run,
               'diagnose': diagnose.run}


def run(config, workdir, *, overwrite: bool = False, overrides=()) -> dict:
  """Runs `config.experiment` ('cell' when the config has no such field) in `workdir`.

  `overrides`: the dotted fields set on the command line; one that has no effect in the run is
  an error.
  """
  name = config.get('experiment', 'cell')
  if name not in EXPERIMENTS:
    raise ValueError(f'experiment={name!r} is unknown; allowed: {sorted(EXPERIMENTS)}.')
  return EXPERIMENTS[name](config, workdir, overwrite=overwrite, overrides=overrides)


__all__ = ['EXPERIMENTS', 'run']
