"""A sweep on a cluster (rem_jax.experiments.cluster): the `cluster` section's checks, records
from many writers, submitit's local engine and a real one-node Slurm, each against the same
sweep run in this process (tests/sweep_config.py:cluster: 2 originals, 6 cells)."""

import faulthandler
import json
import multiprocessing
import subprocess
import sys

import pytest

from rem_jax.experiments import claims, cluster, executors, reports, store, sweep
from tests import cli
from tests import slurm_cluster
from tests import sweep_config

# The real-Slurm test runs apart from the suite's two workers (`-m slurm`: pyproject.toml,
# .ci/run), whose cores its tasks would share, with its own budget: the suite's per-test fault
# timeout (300 s) is for tests that run in one process; this one waits for a queue of tasks.
SLURM_BUDGET_S = 600


def _config(**cluster_fields):
  config = sweep_config.get_config('cluster')
  # 2 one-core tasks at a time (this host's Slurm node has 2 CPUs), one cells task per original.
  config.cluster.update(dict(gpus_per_task=0, cpus_per_task=1, cells_per_task=3,
                             max_concurrent=2, time_minutes=10, **cluster_fields))
  return config


def _by_cell(records):
  by_cell = {record['cell']: record for record in records}
  assert len(by_cell) == len(records), 'a cell recorded twice'
  return by_cell


@pytest.fixture(scope='module')
def in_process(tmp_path_factory):
  """The records of the sweep run in this process, on every device per cell."""
  workdir = tmp_path_factory.mktemp('in_process')
  sweep.run(_config(), workdir)
  return _by_cell(store.ResultStore(workdir / store.RESULTS_FILE).read()), workdir


def _assert_same_results(workdir, in_process):
  expected, expected_dir = in_process
  records = store.ResultStore(workdir / store.RESULTS_FILE).read()
  got = _by_cell(records)
  assert sorted(got) == sorted(expected)
  for key, record in got.items():
    assert record['num_devices'] == expected[key]['num_devices'], key
    assert record['before'] == expected[key]['before'], key
    assert record['after'] == expected[key]['after'], key
  # Tasks record in the order they finish and the reports list tied rows in record order, so
  # both sides are read in cell order. The tiny models miss the reports' preconditions, so
  # the tables come from every record.
  done = reports.completed(sorted(records, key=lambda r: r['cell']))
  reference = reports.completed(sorted(expected.values(), key=lambda r: r['cell']))
  assert reports.table_a(done).markdown == reports.table_a(reference).markdown
  assert claims.claims_markdown(done) == claims.claims_markdown(reference)
  for name in ('preconditions.md', 'claims.md', 'table.md'):
    written, wanted = (folder / sweep.REPORTS_DIR / name for folder in (workdir, expected_dir))
    assert written.exists() == wanted.exists(), name
    if written.exists():  # The same lines (tied rows in any order).
      assert sorted(written.read_text().splitlines()) == sorted(
          wanted.read_text().splitlines()), name


# ---- The cluster section ------------------------------------------------------------------------


@pytest.mark.parametrize('field, value, message', [
    ('executor', 'kubernetes', "cluster.executor='kubernetes' is not allowed; allowed: none, "
                               'local, slurm.'),
    ('partition', 'gpu a100', "cluster.partition='gpu a100' is not allowed; allowed: a name or "
                              'empty.'),
    ('account', 'my lab', "cluster.account='my lab' is not allowed; allowed: a name or empty."),
    ('qos', 'high prio', "cluster.qos='high prio' is not allowed; allowed: a name or empty."),
    ('gpus_per_task', -1, 'cluster.gpus_per_task=-1 is not allowed; allowed: int ≥ 0.'),
    ('cpus_per_task', 0, 'cluster.cpus_per_task=0 is not allowed; allowed: int ≥ 1.'),
    ('time_minutes', 0, 'cluster.time_minutes=0 is not allowed; allowed: int ≥ 1.'),
    ('cells_per_task', 0, 'cluster.cells_per_task=0 is not allowed; allowed: int ≥ 1.'),
    ('max_concurrent', 0, 'cluster.max_concurrent=0 is not allowed; allowed: int ≥ 1.'),
])
def test_a_bad_cluster_field_is_one_line_before_any_work(capsys, tmp_path, field, value,
                                                         message):
  line = cli.error_line(capsys, tmp_path / 'run', f'--config.cluster.{field}={value}',
                        config='tests/sweep_config.py:cluster')
  assert line == f'launch.py: error: {message}', line
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('extra, message', [
    ({'dependency': 'afterok:1'}, 'cluster.extra.dependency: the submission sets --dependency '
                                  'itself; remove it.'),
    ({'job_name': 'mine'}, 'cluster.extra.job_name: the submission sets --job-name itself'),
    ({'mem': ''}, "cluster.extra.mem='' is not allowed; allowed: a non-empty string, a number"),
    ({'mem': ['32G']}, "cluster.extra.mem=['32G'] is not allowed"),
])
def test_bad_extra_slurm_options_are_named(extra, message):
  config = _config()
  config.cluster.extra = extra
  with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]')):
    sweep.check_sweep_config(config)


def test_an_unknown_cluster_field_is_named():
  config = _config()
  config.cluster.nodes = 2
  with pytest.raises(ValueError, match=r"cluster fields \['nodes'\] are unknown; allowed: "):
    sweep.check_sweep_config(config)


def test_a_config_without_the_section_runs_in_process_and_claims_leave_it_out(tmp_path):
  config = _config()
  del config['cluster']
  sweep.check_sweep_config(config)
  assert sweep.cluster_section(config).executor == 'none'
  # The claim is the same with any cluster section: a workdir's sweep can move to a cluster.
  with_section = _config(executor='slurm', partition='gpu')
  sweep.claim(config, tmp_path)
  assert sweep.claim(with_section, tmp_path)[1] == 'resume'
  assert 'cluster' not in json.loads((tmp_path / 'config.json').read_text())


def test_a_missing_engine_is_one_line_and_claims_nothing(capsys, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'submitit', None)  # As if not installed.
  line = cli.error_line(capsys, tmp_path / 'run', '--config.cluster.executor=local',
                        config='tests/sweep_config.py:cluster')
  assert line == ('launch.py: error: cluster.executor needs submitit, which is not installed: '
                  'pip install "rem_jax[cluster]" (or pip install submitit).')
  assert not (tmp_path / 'run').exists()


def test_slurm_without_its_client_is_one_line_and_claims_nothing(capsys, tmp_path, monkeypatch):
  monkeypatch.setenv('PATH', '/nonexistent')  # No Slurm client here.
  line = cli.error_line(capsys, tmp_path / 'run', '--config.cluster.executor=slurm',
                        config='tests/sweep_config.py:cluster')
  assert "cluster.executor='slurm': sbatch is not on this machine's PATH" in line, line
  assert not (tmp_path / 'run').exists()


# ---- Records from many writers ------------------------------------------------------------------


def _write_cells(args):
  directory, writer = args
  results = store.ResultStore(f'{directory}/{store.RESULTS_FILE}')
  for i in range(25):
    results.write_cell({'cell': f'writer={writer},i={i}', 'payload': 'x' * 4000})


def test_many_writers_lose_no_record_and_the_merge_keeps_each_once(tmp_path):
  results = store.ResultStore(tmp_path / store.RESULTS_FILE)
  results.append({'cell': 'earlier'})  # A workdir of the in-process sweep goes on as it was.
  with multiprocessing.get_context('spawn').Pool(4) as pool:
    pool.map(_write_cells, [(str(tmp_path), writer) for writer in range(8)])
  expected = {'earlier'} | {f'writer={w},i={i}' for w in range(8) for i in range(25)}
  assert results.finished_cells() == expected
  assert len(results.read()) == len(expected)
  assert not [p for p in results.cells_dir.iterdir() if not p.name.endswith('.json')]
  assert results.merge() == 200
  assert not list(results.cells_dir.iterdir())
  assert [r['cell'] for r in store.files.JsonLines(results.path).read()][0] == 'earlier'
  # A merge killed between its append and its removal leaves a record twice: read once.
  results.write_cell({'cell': 'earlier', 'payload': 'again'})
  assert len(results.read()) == len(expected) and results.merge() == 0
  assert len(results.read()) == len(expected)


# ---- The local engine ----------------------------------------------------------------------------


def test_the_local_engine_records_what_the_in_process_sweep_does(tmp_path, in_process):
  submitted = sweep.run(_config(executor='local'), tmp_path)
  # 2 originals, a cells task per original (3 cells each), the reports.
  assert submitted['tasks'] == 5, submitted['submitted']
  assert '6 cells: 6 done' in submitted['submitted']
  _assert_same_results(tmp_path, in_process)
  assert not list((tmp_path / store.CELLS_DIR).iterdir())  # Merged by the reports task.
  assert sweep.run(_config(executor='local'), tmp_path)['tasks'] == 0  # Nothing left to do.
  status = subprocess.run([sys.executable, '-m', 'rem_jax.experiments.cluster', 'status',
                           f'--workdir={tmp_path}'], capture_output=True, text=True, check=True,
                          timeout=120)
  assert status.stdout.strip() == '6 cells: 6 done'


# ---- A real Slurm --------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def slurm():
  reason = slurm_cluster.start()
  if reason is not None:
    pytest.skip(reason)


def _submitted_jobs(workdir):
  return [entry['job_id'] for entry in store.files.JsonLines(
      workdir / cluster.SUBMISSIONS_FILE).read()]


def _wait(condition):
  return slurm_cluster.wait(condition, 240)


def _wait_for_jobs(workdir):
  assert slurm_cluster.wait_until_gone(_submitted_jobs(workdir), 240), (
      cluster.status(workdir))


@pytest.mark.slurm
def test_slurm_runs_the_sweep_and_a_resubmission_redoes_only_the_cancelled_cell(
    slurm, tmp_path, in_process, monkeypatch):
  del slurm
  faulthandler.dump_traceback_later(SLURM_BUDGET_S, exit=True)  # Replaces the suite's 300 s.
  workdir, marker = tmp_path / 'sweep', tmp_path / 'release'
  config = _config(executor='slurm', partition=slurm_cluster.PARTITION)
  # The first original's cells task stops before its second cell, which is cancelled there.
  victim = 'discovery_rate=1.0,method=npo,task=poison_trigger'
  monkeypatch.setenv(cluster.PAUSE_CELL_ENV, victim)
  monkeypatch.setenv(cluster.PAUSE_FILE_ENV, str(marker))
  first = sweep.run(config, workdir)
  assert first['tasks'] == 5 and 'original  job' in first['submitted'], first['submitted']
  reached = marker.with_name(marker.name + '.reached')
  assert _wait(reached.exists), cluster.status(workdir)
  job = json.loads(reached.read_text())['job_id']  # The task's own (an array task has one too).
  first_cell = store.ResultStore(workdir / store.RESULTS_FILE).cells_dir.glob('*.json')
  recorded = {path: path.read_text() for path in first_cell}
  assert len(recorded) >= 1  # The task's first cell, and maybe the other original's.
  # Preempted: Slurm requeues the task, which skips its recorded cell and stops at the same one.
  reached.unlink()
  subprocess.run(['scontrol', 'requeue', job], check=True)
  # Once the task has ended (submitit ignores SIGTERM: Slurm's KillWait, 30 s), Slurm holds the
  # requeued job for two minutes (its old credentials' lifetime): not on this test's node.
  assert _wait(lambda: slurm_cluster.job_state(job) == 'PENDING')
  subprocess.run(['scontrol', 'update', f'jobid={job}', 'StartTime=now'], check=True)
  assert _wait(reached.exists), cluster.status(workdir)
  assert json.loads(reached.read_text())['job_id'] == job
  assert {path: path.read_text() for path in recorded} == recorded
  subprocess.run(['scancel', job], check=True)  # Killed for good this time.
  _wait_for_jobs(workdir)
  monkeypatch.delenv(cluster.PAUSE_CELL_ENV)

  states = cluster.cell_states(workdir)
  failed = {key for key, (state, _) in states.items() if state == 'failed'}
  assert failed == {victim, victim.replace('npo', 'ascent')}, states
  assert all(state == 'done' for key, (state, _) in states.items() if key not in failed)
  assert '_log.err' in states[victim][1]
  kept = {key: record for key, record in _by_cell(
      store.ResultStore(workdir / store.RESULTS_FILE).read()).items()}
  originals = sorted((workdir / sweep.ORIGINALS_DIR).glob('*/train.json'))
  trained = {path: path.read_text() for path in originals}
  checkpoints = {path: sorted(p.name for p in (path.parent / 'checkpoints').iterdir())
                 for path in originals}

  second = sweep.run(config, workdir)  # The same command again.
  assert second['tasks'] == 2, second['submitted']  # One cells task and the reports.
  assert 'original  job' not in second['submitted']
  _wait_for_jobs(workdir)
  records = _by_cell(store.ResultStore(workdir / store.RESULTS_FILE).read())
  lines = store.files.JsonLines(workdir / store.RESULTS_FILE).read()
  assert len(lines) == 6  # Every cell once.
  for key, record in kept.items():
    assert records[key] == record, key  # Not recomputed.
  assert records[victim]['slurm']['job_id'] != kept[victim.replace('npo', 'no_ul')]['slurm'][
      'job_id']  # Redone by the second submission's task.
  assert {path: path.read_text() for path in originals} == trained
  assert {path: sorted(p.name for p in (path.parent / 'checkpoints').iterdir())
          for path in originals} == checkpoints
  assert cluster.status(workdir) == '6 cells: 6 done'
  _assert_same_results(workdir, in_process)


# ---- Status and preemption, without running anything ----------------------------------------------


def test_status_names_each_failed_cell_with_the_log_to_read(tmp_path):
  config = _config(executor='local')
  sweep.claim(config, tmp_path)
  grid = sweep.expand_grid(config)
  trained, failed = sorted({cell.original_key for cell in grid})
  (tmp_path / sweep.ORIGINALS_DIR / trained).mkdir(parents=True)
  (tmp_path / sweep.ORIGINALS_DIR / trained / 'train.json').write_text('{}')
  log = store.files.JsonLines(tmp_path / cluster.SUBMISSIONS_FILE)
  for original in (trained, failed):
    log.append({'job_id': f'1_{original}', 'phase': 'original', 'original': original,
                'cells': [], 'stderr': f'{original}.err', 'executor': 'local'})
    log.append({'job_id': f'2_{original}', 'phase': 'cells', 'original': original,
                'cells': [c.key for c in grid if c.original_key == original],
                'stderr': f'cells_{original}.err', 'executor': 'local'})
  done, lost = [c.key for c in grid if c.original_key == trained][:2]
  results = store.ResultStore(tmp_path / store.RESULTS_FILE)
  results.write_cell({'cell': done})
  results.append({'cell': [c.key for c in grid if c.original_key == trained][2], 'error': 'nan'})
  states = cluster.cell_states(tmp_path)
  assert states[done] == ('done', '')
  assert states[lost] == ('failed', f'cells task 2_{trained}, log cells_{trained}.err')
  for cell in grid:
    if cell.original_key == failed:  # Its cells never ran: the original's log says why.
      assert states[cell.key] == ('failed', f'original task 1_{failed}, log {failed}.err')
  assert cluster.status(tmp_path).splitlines()[0] == '6 cells: 1 diverged, 1 done, 4 failed'


def test_a_preempted_task_requeues_itself_with_the_same_work():
  runner = cluster.Runner({'experiment': 'sweep'}, '/shared/sweep', shares_devices=False)
  unit = executors.Unit('cells', 'abc', ('seed=0',))
  again = runner.checkpoint(unit)  # What submitit calls on SIGUSR2 before requeueing.
  assert again.function is runner and again.args == (unit,)
