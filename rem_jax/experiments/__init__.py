"""Experiments: one benchmark cell end to end, a sweep over the task space, and the
practitioner's unlearning run."""

from rem_jax.experiments import cell
from rem_jax.experiments import sweep
from rem_jax.experiments import unlearn

EXPERIMENTS = {'cell': cell.run, 'sweep': sweep.run, 'unlearn': unlearn.run}


def run(config, workdir, *, overwrite: bool = False, only=(), parallel_cells: int = 1,
        overrides=()) -> dict:
  """Runs `config.experiment` ('cell' when the config has no such field).

  Sweeps only: `only` selects cells by axis values, e.g. ['method=rem,npo']; `parallel_cells`
  runs that many cells at once (`rem_jax.experiments.concurrent`). `overrides`: the dotted
  fields set on the command line; one that has no effect in the run is an error.
  """
  name = config.get('experiment', 'cell')
  if name not in EXPERIMENTS:
    raise ValueError(f'experiment={name!r} is unknown; allowed: {sorted(EXPERIMENTS)}.')
  if name == 'sweep':
    return sweep.run(config, workdir, overwrite=overwrite, only=only,
                     parallel_cells=parallel_cells, overrides=overrides)
  if only:
    raise ValueError(f'--only selects cells of a sweep; experiment={name!r} has one cell.')
  if parallel_cells != 1:
    raise ValueError(f'--parallel_cells runs cells of a sweep at once; experiment={name!r} has '
                     'one cell.')
  return EXPERIMENTS[name](config, workdir, overwrite=overwrite, overrides=overrides)


__all__ = ['EXPERIMENTS', 'run']
