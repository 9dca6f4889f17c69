"""The record of one unlearning run: what a cell (`results.json`), a sweep (a line of
`results.jsonl`) and the practitioner's path (`results.json`) write, built in one place so every
reader finds the same fields under the same names.
"""

import os
import platform
import socket
import time
from collections.abc import Mapping

import jax

from rem_jax import methods
from rem_jax.models import describe


# Slurm's variables for where a task ran, by the name a record gives them (issue 36): a job, or
# an array job's task (both the array's id and the task's own job id).
SLURM_VARIABLES = {'job_id': 'SLURM_JOB_ID', 'array_job_id': 'SLURM_ARRAY_JOB_ID',
                   'array_task_id': 'SLURM_ARRAY_TASK_ID'}


def scheduler_ids(environ: Mapping[str, str] = os.environ) -> dict:
  """The Slurm ids of the job or array task this process runs in ({} outside Slurm)."""
  return {name: environ[variable] for name, variable in SLURM_VARIABLES.items()
          if environ.get(variable)}


def environment() -> dict:
  """Versions, devices and where the run ran (the host, and its Slurm job or array task if
  any), recorded with every result."""
  where = {'host': socket.gethostname()}
  if ids := scheduler_ids():
    where['slurm'] = ids
  return {'versions': {'jax': jax.__version__, 'python': platform.python_version()},
          'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count(),
          **where}


def run_record(config: Mapping, *, mesh, train: dict | None = None, before: dict | None = None,
               after: dict | None = None, unlearned: methods.Unlearned | None = None,
               error: str | None = None, **context) -> dict:
  """One run's record.

  Args:
    config: the run's config as a plain dict (its `method` and `seed` are repeated on top).
    mesh: the mesh the method ran on (`num_devices` is its size: a sweep cell's own share).
    train: the original model's training record, where this process trained or knows it.
    before: the metrics of the original model.
    after: the metrics of the unlearned model.
    unlearned: the method's output: its record ('unlearn') and its architecture ('model').
    error: instead of `after` and `unlearned`, why the method failed (e.g. it diverged).
    **context: what the caller adds (a sweep's cell key and axes, where the ids file lies, ...).
  """
  record = {'config': dict(config), 'method': config['method'], 'seed': config['seed']}
  if train is not None:
    record['train'] = train
  if before is not None:
    record['before'] = before
  if error is not None:
    record['error'] = error
  else:
    record.update(after=after, unlearn=unlearned.record, model=describe(unlearned.model))
  return {**record, **context, 'finished_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
          **environment(), 'num_devices': mesh.size}


def training_seconds(record: Mapping) -> float:
  """Wall time of the training run that made the record's original model (all of it, where
  the run was resumed)."""
  return record['train'].get('wall_time_full_s') or record['train']['wall_time_s']


def percent_of_training(record: Mapping) -> float:
  """The run's unlearning wall time in percent of its original model's training run: the
  paper's cost measure (appendix A.8)."""
  return 100 * record['unlearn']['wall_time_s'] / training_seconds(record)
