"""Where a sweep's tasks run: one module per engine behind one small interface.

`rem_jax.experiments.cluster` turns a sweep into a `Plan` of tasks (train an original model,
run some cells of one original, write the reports) and hands it to an engine, which starts each
task as a separate process somewhere and honours two dependencies: a cells task starts once its
own original's task succeeded (a failed original blocks only its own cells), and the reports
task once every other task ended, however it ended. Engines:

- `local` (`executors/local.py`): submitit's local executor, processes on this machine; the
  submission waits until every task has ended;
- `slurm` (`executors/slurm.py`): submitit's Slurm executor, job arrays with `afterok` /
  `afterany` dependencies; the submission returns at once.

Another engine (Ray, a Kubernetes indexed job) is one module with a class that has a `name`,
`shares_devices` and `blocking` flags, `submit(plan, run)` and `active(job_ids)`, registered in `ENGINES` below
and in `fields.EXECUTORS` (docs/devices.md says more).
"""

import dataclasses
import importlib
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Unit:
  """One task's work. phase: 'original' (train `original`), 'cells' (run `cells`, all of
  `original`) or 'reports' (merge the records, write the reports)."""
  phase: str
  original: str = ''
  cells: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to start. `waits`: {original: job id} of originals an earlier submission is still
  training; cells of those wait for that job."""
  originals: Sequence[Unit]
  cells: Sequence[Unit]
  reports: Unit
  waits: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Submitted:
  """A task as the engine started it: its id (Slurm: `<array job>_<index>`) and its logs."""
  unit: Unit
  job_id: str
  stdout: str
  stderr: str
  after: str = ''  # The job it waits for, as the engine spells it ('' for none).


class Engine(Protocol):
  """An engine, built from the sweep's `cluster` section and a folder for its logs."""
  name: str
  # Whether several tasks may share one GPU (then JAX must not preallocate most of its memory).
  shares_devices: bool
  # Whether `submit` returns only once every task has ended.
  blocking: bool

  def submit(self, plan: Plan, run: Callable[[Unit], object]) -> list[Submitted]:
    """Starts `run(unit)` for every unit of `plan`, each in a process of its own."""

  def active(self, job_ids: Collection[str]) -> dict[str, str]:
    """{job id: its state in words} for the ids of `job_ids` still queued or running."""


_SUBMITIT_LOGGING = 'SUBMITIT_LOG_LEVEL'
ENGINES = {'local': 'rem_jax.experiments.executors.local',
           'slurm': 'rem_jax.experiments.executors.slurm'}


def import_submitit():
  """submitit, or a one-line error saying how to install it (it is an optional dependency)."""
  # Importing submitit runs logging.config.dictConfig, which closes every logging handler
  # already installed (absl's, a test runner's): not in this process (its tasks configure it).
  saved = os.environ.get(_SUBMITIT_LOGGING)
  os.environ[_SUBMITIT_LOGGING] = 'NOCONFIG'
  try:
    return importlib.import_module('submitit')
  except ImportError:
    raise ValueError('cluster.executor needs submitit, which is not installed: pip install '
                     '"rem_jax[cluster]" (or pip install submitit).') from None
  finally:
    if saved is None:
      del os.environ[_SUBMITIT_LOGGING]
    else:
      os.environ[_SUBMITIT_LOGGING] = saved


def get(section, folder) -> Engine:
  """The engine `section.executor` names, writing its logs under `folder`."""
  return importlib.import_module(ENGINES[section.executor]).Engine(section, folder)
