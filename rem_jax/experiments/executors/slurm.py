"""The Slurm engine: submitit's Slurm executor, one job array per phase.

- the originals: one array, a task per original model to train;
- the cells: one array per original, `cells_per_task` cells per task, held with
  `--dependency=afterok:<its original's task>` (a failed original blocks only its own cells, which
  `--kill-on-invalid-dep=yes` then cancels, so nothing waits forever);
- the reports: one small job, `--dependency=afterany:` every array above.

`max_concurrent` caps the running tasks of each array (`--array=0-N%max_concurrent`); a QoS
limit caps them across arrays. submitit sends a task SIGUSR2 before its time limit or on
preemption and requeues it (the task's `checkpoint`: it runs again, skipping what is recorded).

`active` asks `squeue` (never `sacct`, which a cluster without `slurmdbd` lacks): a job it no
longer lists has ended.
"""

import getpass
import shutil
import subprocess
from collections.abc import Callable, Collection

from rem_jax.experiments import executors

_REPORTS_MINUTES = 30
# Slurm shares a GPU between jobs only through these generic resources.
_SHARED_GPU_RESOURCES = ('shard', 'mps')


class Engine:
  """Submits a plan as Slurm job arrays (see the module docstring)."""
  name = 'slurm'
  blocking = False

  def __init__(self, section, folder):
    self._submitit = executors.import_submitit()
    if shutil.which('sbatch') is None:
      raise ValueError("cluster.executor='slurm': sbatch is not on this machine's PATH; submit "
                       "from a Slurm login node, or use cluster.executor='local'.")
    self._folder = folder
    extra = {str(k).replace('-', '_'): v for k, v in section.extra.items()}
    self.shares_devices = any(kind in str(extra.get('gres', ''))
                              for kind in _SHARED_GPU_RESOURCES)
    self._task = {'partition': section.partition or None, 'account': section.account or None,
                  'qos': section.qos or None, 'time': section.time_minutes,
                  'cpus_per_task': section.cpus_per_task,
                  'gpus_per_task': section.gpus_per_task or None,
                  'array_parallelism': section.max_concurrent, 'extra': extra}

  def _executor(self, job_name: str, after: str = '', *, task=None, kill_on_invalid_dep=False):
    task = dict(task or self._task)
    additional = dict(task.pop('extra'))
    if after:
      additional['dependency'] = after
      if kill_on_invalid_dep:
        additional['kill_on_invalid_dep'] = 'yes'
    executor = self._submitit.SlurmExecutor(folder=self._folder)
    executor.update_parameters(job_name=job_name, additional_parameters=additional,
                               **{k: v for k, v in task.items() if v is not None})
    return executor

  def _submit(self, unit_list, run, job_name, after='', **options):
    jobs = self._executor(job_name, after, **options).map_array(run, unit_list)
    return [executors.Submitted(unit, job.job_id, str(job.paths.stdout), str(job.paths.stderr),
                                after) for unit, job in zip(unit_list, jobs)]

  def submit(self, plan: executors.Plan, run: Callable) -> list[executors.Submitted]:
    submitted = self._submit(list(plan.originals), run, 'rem-originals') if plan.originals else []
    trains = {s.unit.original: s.job_id for s in submitted} | dict(plan.waits)
    by_original = {}
    for unit in plan.cells:
      by_original.setdefault(unit.original, []).append(unit)
    for original, units in by_original.items():
      after = f'afterok:{trains[original]}' if original in trains else ''
      submitted += self._submit(units, run, f'rem-cells-{original}', after,
                                kill_on_invalid_dep=True)
    arrays = list(dict.fromkeys(s.job_id.split('_')[0] for s in submitted))
    reports_task = {'partition': self._task['partition'], 'account': self._task['account'],
                    'qos': self._task['qos'], 'time': _REPORTS_MINUTES, 'cpus_per_task': 1,
                    'extra': {k: v for k, v in self._task['extra'].items()
                              if k not in ('gres', 'gpus', 'mem_per_gpu')}}
    after = 'afterany:' + ':'.join(arrays) if arrays else ''
    job = self._executor('rem-reports', after, task=reports_task).submit(run, plan.reports)
    return submitted + [executors.Submitted(plan.reports, job.job_id, str(job.paths.stdout),
                                            str(job.paths.stderr), after)]

  def active(self, job_ids: Collection[str]) -> dict[str, str]:
    """{id: 'RUNNING' | 'PENDING (reason)' ...} from squeue, one line per array task (-r)."""
    if shutil.which('squeue') is None:
      return {}
    listing = subprocess.run(['squeue', '-h', '-r', '-u', getpass.getuser(), '-o', '%i|%T|%r'],
                             capture_output=True, text=True, timeout=60, check=False)
    if listing.returncode:
      raise ValueError(f'squeue failed: {listing.stderr.strip() or listing.returncode}')
    wanted, states = set(job_ids), {}
    for line in listing.stdout.splitlines():
      job_id, state, reason = (line.split('|') + ['', ''])[:3]
      if job_id in wanted:
        states[job_id] = state + (f' ({reason})' if state == 'PENDING' and reason not in
                                  ('', 'None') else '')
    return states
