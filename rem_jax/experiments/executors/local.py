"""The local engine: submitit's local executor, each task a process on this machine.

At most `cluster.max_concurrent` tasks run at once, and no more than this machine's cores allow
at `cpus_per_task` each. A cells task starts once its original's task succeeded; the reports
task runs last. The submission returns when every task has ended (this engine tests the cluster
path and runs a grid on one multi-core host); job ids are the processes' ids. Every task sees
the same first `gpus_per_task` GPUs, hence `shares_devices`.
"""

import os
import time
from collections.abc import Callable, Collection

from rem_jax.experiments import executors

_POLL_S = 0.2


def _succeeded(job) -> bool:
  return job.exception() is None


class Engine:
  """Runs a plan's tasks as local processes (see the module docstring)."""
  name = 'local'
  shares_devices = True
  blocking = True

  def __init__(self, section, folder):
    self._submitit = executors.import_submitit()
    self._folder, self._section = folder, section

  def _start(self, executor, unit, run, after='') -> tuple[object, executors.Submitted]:
    job = executor.submit(run, unit)
    return job, executors.Submitted(unit, str(job.job_id), str(job.paths.stdout),
                                    str(job.paths.stderr), after)

  def submit(self, plan: executors.Plan, run: Callable) -> list[executors.Submitted]:
    training = {unit.original for unit in plan.originals}
    blocked = {}  # {original: its cells tasks}, until its own task has succeeded.
    ready = [(unit, '') for unit in plan.originals]
    for unit in plan.cells:
      if unit.original in training:
        blocked.setdefault(unit.original, []).append(unit)
      else:
        ready.append((unit, ''))
    executor = self._submitit.LocalExecutor(folder=self._folder)
    # gpus_per_node=0 hides every GPU from a task (CUDA_VISIBLE_DEVICES='').
    executor.update_parameters(timeout_min=self._section.time_minutes,
                               gpus_per_node=self._section.gpus_per_task)
    at_once = min(self._section.max_concurrent,
                  max(1, (os.cpu_count() or 1) // self._section.cpus_per_task))
    running, submitted = {}, []
    while ready or running:
      while ready and len(running) < at_once:
        unit, after = ready.pop(0)
        job, started = self._start(executor, unit, run, after)
        running[job] = started
        submitted.append(started)
      time.sleep(_POLL_S)
      for job in [job for job in running if job.done()]:
        started = running.pop(job)
        if started.unit.phase == 'original' and _succeeded(job):
          ready += [(unit, f'job {started.job_id}')
                    for unit in blocked.pop(started.unit.original, ())]
    job, started = self._start(executor, plan.reports, run)
    job.wait()
    return submitted + [started]

  def active(self, job_ids: Collection[str]) -> dict[str, str]:
    del job_ids  # Every task has ended by the time `submit` returns.
    return {}
