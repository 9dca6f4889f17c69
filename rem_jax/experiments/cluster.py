"""A sweep on a cluster: its cells as tasks of Slurm job arrays (through submitit) or processes.

    python launch.py --config=configs/paper_resnet9_cifar10.py:table1 --workdir=/shared/table1 \
        --config.cluster.executor=slurm --config.cluster.partition=gpu
    python -m rem_jax.experiments.cluster status --workdir=/shared/table1

With `config.cluster.executor` 'slurm' or 'local', `launch.py` submits the cells `only` selects
and no record holds (nor a task still queued or running) instead of running them, prints the job
ids and where the logs are, and returns. Three phases (`executors.Plan`):

1. one task per original model to train (those without a finished training run): it trains the
   model into `<workdir>/originals/<key>/` exactly as the in-process sweep does
   (`sweep.Originals`: orbax checkpoints, resumed after a kill);
2. the cells, grouped by original, `cluster.cells_per_task` per task, each task waiting only
   for its own original's task;
3. one task that merges the records and writes the reports, once every other task has ended.

Each cell computes what it computes in the in-process sweep at the same devices per cell (a task
runs `parallel_cells` at once on its devices, as a one-process sweep does), and each record goes
to a file of its own (`store.ResultStore.write_cell`), so any number of tasks write to the shared
workdir at once without locks. Re-running the same command submits only what has no record, so
a failed or cancelled task costs one resubmission. A task that Slurm preempts, requeues or kills
loses at most its cell in flight: the records skip finished cells and an original resumes from
its last checkpoint (submitit requeues a preempted or timed-out task itself: `Runner.checkpoint`).

`<workdir>/cluster/` holds the logs (`logs/<job id>_0_log.{out,err}`) and `submissions.jsonl`,
one line per task: its job id, phase, cells and logs. `status` reads that, the records and
`squeue` (not Slurm accounting: `sacct` needs a `slurmdbd`): a cell is done (it has a record),
queued or running (its task is in `squeue`), failed (its task ended without its record; the
task's log, or its original's when that failed) or not submitted.
"""

import argparse
import itertools
import os
import pathlib
import sys
import time
from collections.abc import Sequence

from absl import logging
import jax
import ml_collections

from rem_jax import compilation
from rem_jax import files
from rem_jax import sharding
from rem_jax.experiments import cell as cell_module
from rem_jax.experiments import concurrent
from rem_jax.experiments import config_lib
from rem_jax.experiments import executors
from rem_jax.experiments import records
from rem_jax.experiments import store as store_module
from rem_jax.experiments import sweep
from rem_jax.experiments import workdir as workdir_lib

CLUSTER_DIR = 'cluster'
LOGS_DIR = f'{CLUSTER_DIR}/logs'
SUBMISSIONS_FILE = f'{CLUSTER_DIR}/submissions.jsonl'
# Test-only hook: a cells task about to start the cell named by the first variable writes
# `<file>.reached` (its Slurm ids) and waits until `<file>` exists, so a test can cancel it at a
# known point (tests/test_cluster.py).
PAUSE_CELL_ENV = 'REM_JAX_TEST_PAUSE_CELL'
PAUSE_FILE_ENV = 'REM_JAX_TEST_PAUSE_FILE'


def _pause_for_tests(cell: sweep.Cell) -> None:
  if os.environ.get(PAUSE_CELL_ENV) != cell.key:
    return
  marker = pathlib.Path(os.environ[PAUSE_FILE_ENV])
  files.write_json_atomic(marker.with_name(marker.name + '.reached'),
                          {'pid': os.getpid(), **records.scheduler_ids()})
  while not marker.exists():
    time.sleep(0.1)


# ---- What a task runs ----------------------------------------------------------------------------


def train_original(config: ml_collections.ConfigDict, workdir: pathlib.Path, key: str) -> str:
  """Trains (or resumes, or finds trained) the original model `key` of the sweep."""
  grid = sweep.expand_grid(config)
  cell = next(c for c in grid if c.original_key == key)
  sweep.Originals(workdir, sharding.make_mesh(), grid).get(cell)
  return key


def run_cells(config: ml_collections.ConfigDict, workdir: pathlib.Path,
              keys: Sequence[str]) -> int:
  """Runs the cells named `keys` that have no record yet; returns how many it ran."""
  grid = sweep.expand_grid(config)
  store = store_module.ResultStore(workdir / store_module.RESULTS_FILE)
  wanted = set(keys) - store.finished_cells()
  cells = [c for c in grid if c.key in wanted]
  logging.info('Cells task: %d of its %d cells have no record yet.', len(cells), len(keys))
  meshes = concurrent.cell_meshes(config.parallel_cells)
  sweep.run_cells(cells, sweep.Originals(workdir, sharding.make_mesh(), grid), meshes,
                  store.write_cell, before_cell=_pause_for_tests)
  return len(cells)


def write_reports(workdir: pathlib.Path) -> str:
  from rem_jax.experiments import reports  # pylint: disable=g-import-not-at-top  (matplotlib)
  stored, written = sweep.write_reports(workdir)
  summary = reports.summary_table(stored)
  print(f'{summary}\n{len(stored)} records; reports in {workdir / sweep.REPORTS_DIR} '
        f'({len(written)} files).')
  return summary


class Runner:
  """What every task runs: `runner(unit)`, pickled by submitit into the task's process.

  `checkpoint` is submitit's hook for a task it is about to requeue (preempted, or at its time
  limit): the same unit again, which skips whatever got recorded.
  """

  def __init__(self, config: dict, workdir: str, shares_devices: bool):
    self.config, self.workdir, self.shares_devices = config, workdir, shares_devices

  def __call__(self, unit: executors.Unit):
    if self.shares_devices:
      # Before JAX starts its backend: several processes on one GPU must not each take most of
      # its memory up front (a variable the user set wins).
      os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    logging.set_verbosity(logging.INFO)
    compilation.use_persistent_cache()  # As launch.py: re-runs skip compilation.
    config, workdir = ml_collections.ConfigDict(self.config), pathlib.Path(self.workdir)
    logging.info('Task %s %s on %s (%s).', unit.phase, unit.original, jax.devices(),
                 records.scheduler_ids())
    if unit.phase == 'original':
      return train_original(config, workdir, unit.original)
    if unit.phase == 'cells':
      return run_cells(config, workdir, unit.cells)
    return write_reports(workdir)

  def checkpoint(self, unit: executors.Unit):
    return executors.import_submitit().helpers.DelayedSubmission(self, unit)


# ---- Submitting ----------------------------------------------------------------------------------


def _is_trained(workdir: pathlib.Path, key: str) -> bool:
  return (workdir / sweep.ORIGINALS_DIR / key / cell_module.TRAIN_RECORD_FILE).exists()


def _chunks(items: Sequence, size: int) -> list[tuple]:
  return [tuple(items[i:i + size]) for i in range(0, len(items), size)]


def _job_list(job_ids) -> str:
  """Job ids, each array's tasks as one range: '12_[0-22], 13_0, 14'."""
  arrays = {}
  for job_id in job_ids:
    array, _, index = job_id.partition('_')
    arrays.setdefault(array, []).append(index)
  return ', '.join(array if indices == [''] else f'{array}_{indices[0]}' if len(indices) == 1
                   else f'{array}_[{indices[0]}-{indices[-1]}]'
                   for array, indices in arrays.items())


def _submissions(workdir: pathlib.Path) -> files.JsonLines:
  return files.JsonLines(workdir / SUBMISSIONS_FILE)


def _queued(submitted: Sequence[dict], active: dict) -> tuple[dict, dict]:
  """({cell: job id}, {original: job id}) of the tasks still queued or running."""
  cells, originals = {}, {}
  for entry in submitted:
    if entry['job_id'] in active:
      cells.update(dict.fromkeys(entry['cells'], entry['job_id']))
      if entry['phase'] == 'original':
        originals[entry['original']] = entry['job_id']
  return cells, originals


def submit(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
           overrides: Sequence[str] = ()) -> dict:
  """Submits the sweep's cells that have no record as tasks (see the module docstring).

  Returns {'submitted': what launch.py prints, 'tasks': how many tasks started}; with the
  local engine every task has ended by then, and what it prints ends with `status`.
  """
  section = sweep.cluster_section(config)
  if jax.process_count() > 1:
    raise ValueError(f'cluster.executor={section.executor!r} submits from one process; run '
                     'launch.py without --distributed.')
  if not isinstance(config.parallel_cells, int) or config.parallel_cells < 1:
    raise ValueError(f'parallel_cells={config.parallel_cells!r} must be a positive integer.')
  grid, cells = sweep.selected_cells(config, overrides)
  folder = pathlib.Path(str(workdir or '')).expanduser().absolute() / LOGS_DIR
  engine = executors.get(section, folder)  # Before the claim: a missing engine claims nothing.
  workdir, claim_status = sweep.claim(config, workdir, overwrite=overwrite, owned=(CLUSTER_DIR,))
  finished = store_module.ResultStore(workdir / store_module.RESULTS_FILE).finished_cells()
  earlier = _submissions(workdir).read()
  queued, training = _queued(earlier, engine.active({e['job_id'] for e in earlier}))
  todo = [c for c in cells if c.key not in finished and c.key not in queued]
  counts = (f'{len(cells)} selected of {len(grid)}: '
            f'{len([c for c in cells if c.key in finished])} recorded, '
            f'{len([c for c in cells if c.key in queued and c.key not in finished])} queued or '
            'running')
  status_command = f'python -m rem_jax.experiments.cluster status --workdir={workdir}'
  if not todo:
    return {'submitted': f'Nothing to submit ({counts}).\nStatus: {status_command}', 'tasks': 0}
  by_original = {}
  for cell in todo:
    by_original.setdefault(cell.original_key, []).append(cell.key)
  plan = executors.Plan(
      originals=[executors.Unit('original', key) for key in by_original
                 if not _is_trained(workdir, key) and key not in training],
      cells=[executors.Unit('cells', key, chunk) for key, keys in by_original.items()
             for chunk in _chunks(keys, section.cells_per_task)],
      reports=executors.Unit('reports'),
      waits={key: training[key] for key in by_original if key in training})
  logging.info('Sweep in %s (%s): submitting %d cells to %s.', workdir, claim_status,
               len(todo), engine.name)
  submitted = engine.submit(plan, Runner(config.to_dict(), str(workdir), engine.shares_devices))
  log = _submissions(workdir)
  for task in submitted:
    log.append({'job_id': task.job_id, 'phase': task.unit.phase, 'original': task.unit.original,
                'cells': list(task.unit.cells), 'after': task.after, 'stdout': task.stdout,
                'stderr': task.stderr, 'executor': engine.name,
                'submitted_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
  text = [f'Submitted {len(todo)} cells to {engine.name} ({counts}), '
          f'{len(plan.originals)} original models to train, {len(submitted)} tasks:']
  for phase, tasks in itertools.groupby(submitted, key=lambda task: task.unit.phase):
    tasks = list(tasks)
    after = list(dict.fromkeys(task.after for task in tasks if task.after))
    shown = '; '.join(after if len(after) < 4 else (after[0], '...', after[-1]))
    text.append(f'  {phase:<9} job {_job_list(task.job_id for task in tasks)}'
                + (f' (after: {shown})' if after else ''))
  text += [f'Logs: {folder}/<job id>_0_log.out and .err', f'Status: {status_command}',
           'The same command again submits whatever then has no record.']
  if engine.blocking:  # Every task has ended: what they left.
    text += [status(workdir)]
  return {'submitted': '\n'.join(text), 'tasks': len(submitted)}


# ---- Status --------------------------------------------------------------------------------------


def _grid_of(workdir: pathlib.Path) -> list[sweep.Cell]:
  """The grid of the sweep claimed in `workdir` (its config.json holds all but scheduling)."""
  config = ml_collections.ConfigDict(workdir_lib.read_config(workdir))
  if config.get('experiment') != 'sweep':
    raise ValueError(f'{workdir} holds no sweep (its config.json has experiment='
                     f'{config.get("experiment")!r}).')
  config.only, config.parallel_cells = '', 1
  return sweep.expand_grid(config)


def cell_states(workdir) -> dict[str, tuple[str, str]]:
  """{cell: (state, detail)} for every cell of the sweep in `workdir`. state: done, diverged,
  running or pending (squeue's word, with its reason), failed or not submitted; detail: the
  task (and for a failed cell the log to read)."""
  workdir = pathlib.Path(workdir).absolute()
  grid = _grid_of(workdir)
  recorded = {r['cell']: r for r in
              store_module.ResultStore(workdir / store_module.RESULTS_FILE).read() if 'cell' in r}
  submitted = _submissions(workdir).read()
  section = config_lib.cluster_config()
  section.executor = submitted[-1]['executor'] if submitted else 'local'
  active = executors.get(section, workdir / LOGS_DIR).active({e['job_id'] for e in submitted})
  last_task, last_original = {}, {}
  for entry in submitted:  # The newest submission of a cell or original wins.
    last_task.update(dict.fromkeys(entry['cells'], entry))
    if entry['phase'] == 'original':
      last_original[entry['original']] = entry
  states = {}
  for cell in grid:
    task = last_task.get(cell.key)
    if cell.key in recorded:
      states[cell.key] = ('diverged' if 'error' in recorded[cell.key] else 'done', '')
    elif task is None:
      states[cell.key] = ('not submitted', '')
    elif task['job_id'] in active:
      states[cell.key] = (active[task['job_id']].lower(), f'task {task["job_id"]}')
    else:
      original = last_original.get(cell.original_key)
      if (original is not None and not _is_trained(workdir, cell.original_key)
          and original['job_id'] not in active):
        task = original
      states[cell.key] = ('failed', f'{task["phase"]} task {task["job_id"]}, log '
                                    f'{task["stderr"]}')
  return states


def status(workdir) -> str:
  """The counts of `cell_states` in one line, then every cell not done with its detail."""
  states = cell_states(workdir)
  counts = {}
  for state, _ in states.values():
    counts[state] = counts.get(state, 0) + 1
  lines = [f'{len(states)} cells: ' + ', '.join(f'{n} {state}' for state, n in
                                               sorted(counts.items()))]
  width = max(map(len, counts))
  for key, (state, detail) in states.items():
    if state not in ('done', 'diverged'):
      lines.append(f'  {state:<{width}}  {key}' + (f'  ({detail})' if detail else ''))
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> int:
  """`status --workdir=DIR`: prints `status(DIR)`; a bad workdir is one line and exit status 1."""
  parser = argparse.ArgumentParser(prog='python -m rem_jax.experiments.cluster')
  parser.add_argument('command', choices=('status',))
  parser.add_argument('--workdir', required=True, help="the sweep's workdir")
  args = parser.parse_args(argv)
  try:
    print(status(args.workdir))
  except ValueError as error:
    print(f'cluster status: error: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
