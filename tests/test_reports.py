"""Reports from hand-made records: known means, SEMs, best-per-cell picks, preconditions."""

import json
import math
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from rem_jax import methods
from rem_jax.experiments import records as records_lib
from rem_jax.experiments import reports, selection, store

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_COMMITTED = _ROOT / 'benchmarks' / 'results'


def _record(method, healed, utility, *, task='poison_trigger', rate=0.5, seed=0, base='plain',
            variant=None, learned=0.9, original_utility=0.8, wall=10.0, train=100.0,
            retain=0.9, forget=0.1):
  before = {'healed': 0.1, 'utility': original_utility, 'healed_x_utility': 0.1 * 0.8,
            'poison_success_corrupted': learned, 'corrupted_label_accuracy': learned}
  return {'cell': f'{base},{method},{variant},{task},{rate},{seed}', 'base': base,
          'method': method, 'variant': variant or method, 'task': task, 'discovery_rate': rate,
          'seed': seed, 'original': f'{base}-{task}-{seed}', 'before': before,
          'after': {'healed': healed, 'utility': utility, 'healed_x_utility': healed * utility,
                    'retain_accuracy': retain, 'forget_accuracy': forget},
          'train': {'wall_time_s': train, 'wall_time_full_s': train},
          'unlearn': {'wall_time_s': wall, 'wall_time_without_evaluation_s': wall / 2}}


def test_the_store_ignores_a_torn_last_line_and_cuts_it_off_before_appending(tmp_path):
  results = store.ResultStore(tmp_path / 'results.jsonl')
  results.append({'cell': 'a'})
  with open(results.path, 'ab') as f:
    f.write(b'{"cell": "b", "after": {"hea')  # A kill in the middle of a write.
  with pytest.warns(store.CorruptRecordWarning, match='its last line is not a complete'):
    assert results.read() == [{'cell': 'a'}]
  with pytest.warns(store.CorruptRecordWarning, match='removing a truncated last line'):
    results.append({'cell': 'c'})
  assert results.read() == [{'cell': 'a'}, {'cell': 'c'}]
  assert results.path.read_text() == '{"cell": "a"}\n{"cell": "c"}\n'
  assert results.finished_cells() == {'a', 'c'}


def test_mean_sem_known_values():
  assert reports.mean_sem([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 0.6454972243679028))
  mean, sem = reports.mean_sem([5.0])
  assert mean == 5.0 and math.isnan(sem)


def test_pooled_rows_pool_tasks_rates_and_seeds_and_sort_by_hxu():
  records = [_record('rem', 0.5, 1.0, rate=0.2), _record('rem', 1.0, 1.0, rate=1.0,
                                                            task='random_label_swap'),
             _record('npo', 0.2, 0.5, seed=0), _record('npo', 0.4, 0.5, seed=1)]
  rows = reports.pooled_rows(records)
  assert [row['method'] for row in rows] == ['rem', 'npo']
  rem, npo = rows
  assert rem['runs'] == 2
  assert rem['healed'] == pytest.approx((75.0, 25.0))        # mean 75, sd 35.36, /sqrt(2)
  assert rem['healed_x_utility'] == pytest.approx((75.0, 25.0))
  assert npo['utility'] == pytest.approx((50.0, 0.0))
  assert npo['healed_x_utility'] == pytest.approx((15.0, 5.0))  # H×U 10 and 20.
  markdown = reports.table_markdown(rows)
  assert '| plain | rem | 2 | 75.00 ± 25.00 | 100.00 ± 0.00 | 75.00 ± 25.00 |' in markdown
  assert 'rem,2,75.0000,25.0000' in reports.table_csv(rows)
  assert r'rem & 2 & 75.00 $\pm$ 25.00' in reports.table_latex(rows)


def test_rows_that_pool_different_cells_are_flagged():
  records = [_record('rem', 0.5, 1.0, rate=0.2), _record('rem', 0.5, 1.0, rate=1.0),
             _record('npo', 0.2, 0.5, rate=0.2)]
  note = reports.uneven_cells_note(records)
  assert 'Rows pool different cells' in note
  assert '- plain npo: (poison_trigger, 1.0, 0)' in note
  assert 'plain rem' not in note
  assert reports.uneven_cells_note(records + [_record('npo', 0.2, 0.5, rate=1.0)]) == ''


def test_table_a_is_also_pooled_over_the_partial_rates_and_at_each_rate(tmp_path):
  # Retrain wins at rate 1.0 alone, by enough to lead the table pooled over every rate; REM
  # leads at each partial rate. Each (method, rate) has two runs, one per (task, seed), at
  # Utility 1, so H×U is Healed.
  healed = {'retrain': {0.2: (0.1, 0.1), 0.5: (0.2, 0.2), 1.0: (1.0, 1.0)},
            'rem': {0.2: (0.2, 0.4), 0.5: (0.3, 0.5), 1.0: (0.4, 0.6)}}
  records = [_record(method, value, 1.0, rate=rate, task=task, seed=seed)
             for method, rates in healed.items() for rate, values in rates.items()
             for value, task, seed in zip(values, ('poison_trigger', 'random_label_swap'), (0, 1))]
  # A tuning variant on seed 0 alone is not table (a)'s: it is in none of these tables.
  records.append(_record('rem', 1.0, 1.0, rate=0.2, variant='rem(gamma=0.5)'))
  reports.write_reports(records, tmp_path)
  read = lambda name: (tmp_path / name).read_text()
  metrics = lambda mean, sem: f'{mean:.4f},{sem:.4f},100.0000,0.0000,{mean:.4f},{sem:.4f}'
  # Every rate: retrain 10, 10, 20, 20, 100, 100; REM 20, 40, 30, 50, 40, 60.
  assert read('table.csv').splitlines()[1:] == [f'plain,retrain,6,{metrics(43.3333, 18.0123)}',
                                                f'plain,rem,6,{metrics(40.0, 5.7735)}']
  # Rates 0.2 and 0.5: retrain 10, 10, 20, 20; REM 20, 40, 30, 50.
  assert read('table_partial.csv').splitlines()[1:] == [f'plain,rem,4,{metrics(35.0, 6.4550)}',
                                                        f'plain,retrain,4,{metrics(15.0, 2.8868)}']
  assert read('table_by_rate.csv').splitlines() == [
      'discovery_rate,base,method,runs,healed_mean,healed_sem,utility_mean,utility_sem,'
      'healed_x_utility_mean,healed_x_utility_sem',
      f'0.2,plain,rem,2,{metrics(30.0, 10.0)}', f'0.2,plain,retrain,2,{metrics(10.0, 0.0)}',
      f'0.5,plain,rem,2,{metrics(40.0, 10.0)}', f'0.5,plain,retrain,2,{metrics(20.0, 0.0)}',
      f'1.0,plain,retrain,2,{metrics(100.0, 0.0)}', f'1.0,plain,rem,2,{metrics(50.0, 10.0)}']
  # table.md: the pooled table first, as before, then the same tables as sections.
  text = read('table.md')
  pooled, rest = text.split('\n## Pooled over the partial discovery rates (0.2, 0.5)\n')
  partial, by_rate = rest.split('\n## At each discovery rate\n')
  rows = lambda section: [line.split(' | ')[1] for line in section.splitlines()
                          if line.startswith('| plain')]
  assert rows(pooled) == ['retrain', 'rem'] and rows(partial) == ['rem', 'retrain']
  assert '| plain | rem | 4 | 35.00 ± 6.45 | 100.00 ± 0.00 | 35.00 ± 6.45 |' in partial
  at = by_rate.split('\n### Discovery rate ')[1:]
  assert [section.splitlines()[0] for section in at] == ['0.2', '0.5', '1.0']
  assert [rows(section) for section in at] == [['rem', 'retrain']] * 2 + [['retrain', 'rem']]
  assert '| plain | rem | 2 | 50.00 ± 10.00 | 100.00 ± 0.00 | 50.00 ± 10.00 |' in at[2]


def test_the_rate_tables_are_left_out_where_they_would_repeat_the_pooled_one(tmp_path):
  one_rate = [_record('rem', 0.5, 1.0, seed=seed) for seed in (0, 1)]
  assert reports.rate_tables(one_rate) == ([], [])
  assert '##' not in reports.table_a(one_rate)[2]
  # Without rate 1.0, the partial rates are every rate: no partial table.
  no_full = one_rate + [_record('rem', 0.3, 1.0, rate=0.2, seed=seed) for seed in (0, 1)]
  by_rate, partial = reports.rate_tables(no_full)
  assert [(row['discovery_rate'], row['runs']) for row in by_rate] == [(0.2, 2), (0.5, 2)]
  assert partial == []
  reports.write_reports(no_full, tmp_path)
  assert (tmp_path / 'table_by_rate.csv').exists()
  assert not (tmp_path / 'table_partial.csv').exists()
  assert 'partial' not in (tmp_path / 'table.md').read_text()


def test_best_per_cell_keeps_one_variant_per_cell_pooled_over_seeds():
  records = [_record('scrub', 0.2, 1.0, variant='scrub(alpha=0.01)', seed=0),
             _record('scrub', 0.6, 1.0, variant='scrub(alpha=10.0)', seed=0),
             _record('scrub', 0.9, 1.0, variant='scrub(alpha=0.01)', seed=1),
             _record('scrub', 0.4, 1.0, variant='scrub(alpha=10.0)', seed=1),
             _record('scrub', 0.3, 1.0, variant='scrub(alpha=0.01)', seed=0, rate=1.0),
             _record('scrub', 0.5, 1.0, variant='scrub(alpha=10.0)', seed=0, rate=1.0)]
  chosen = selection.best_per_cell(records)
  # alpha=0.01 at rate 0.5 (mean 0.55 over seeds against 0.5; per seed, each seed's best would
  # have given 0.6 and 0.9), alpha=10 at rate 1.0.
  assert sorted(r['after']['healed'] for r in chosen) == [0.2, 0.5, 0.9]
  rows = reports.pooled_rows(chosen)
  assert len(rows) == 1 and rows[0]['method'] == 'scrub' and rows[0]['runs'] == 3


def test_the_selection_proxy_on_hand_values():
  # Acc(D_r) * (1 - max(Acc(D_f), 0.2)): forgetting below gamma earns nothing more.
  assert selection.proxy(_record('npo', 0, 0, retain=0.9, forget=0.5)) == pytest.approx(0.45)
  assert selection.proxy(_record('npo', 0, 0, retain=0.8, forget=0.05)) == pytest.approx(0.64)
  assert selection.proxy(_record('npo', 0, 0, retain=0.8, forget=0.2)) == pytest.approx(0.64)
  assert selection.proxy(_record('npo', 0, 0, retain=1.0, forget=1.0)) == 0.0
  assert selection.PROXY_GAMMA == methods.default_config('rem').gamma == (
      methods.default_config('npo').gamma)


def test_tuned_chooses_by_training_data_on_the_tuning_seeds_only():
  lr = lambda value: f'npo(learning_rate={value})'
  records = [
      # Seed 0, the tuning grid: the default forgets less; 0.01 has the better proxy (0.72
      # against 0.45) though its H×U (test set, D_c) is the worse one.
      _record('npo', 0.9, 0.9, retain=0.9, forget=0.5),
      _record('npo', 0.3, 0.9, variant=lr(0.01), retain=0.9, forget=0.1),
      _record('npo', 0.1, 0.9, variant=lr(0.0025), retain=0.5, forget=0.1),
      # Seed 1 ran the default only: table (a)'s, not the tuned table's.
      _record('npo', 0.9, 0.9, seed=1, retain=0.9, forget=0.5)]
  assert selection.tuned_seeds(records) == [0]
  chosen = selection.tuned(records)
  assert [(r['seed'], r['chosen'], r['variant']) for r in chosen] == [(0, lr(0.01), 'npo')]
  assert selection.best_per_cell(records[:3])[0]['chosen'] == 'npo'  # The oracle differs.
  # table_best's oracle also reads only the tuning seeds: seed 1's default is left out.
  oracle = selection.tuned(records, score=selection.healed_x_utility)
  assert [(r['seed'], r['chosen']) for r in oracle] == [(0, 'npo')]
  text = reports.tuned_markdown(records)
  assert '| plain | npo | poison_trigger | 0.5 | npo(learning_rate=0.01) |' in text
  assert '| plain | npo | 1 | 30.00 | 90.00 | 27.00 |' in text       # Tuned, seed 0.
  assert '| plain | npo | 1 | 90.00 | 90.00 | 81.00 |' in text       # Defaults, seed 0.


def test_runs_of_originals_that_miss_their_preconditions_are_not_tabulated():
  floors = reports.Thresholds(utility_floor=0.5, poison_floor=0.8, memorised_floor=0.5)
  records = [_record('rem', 0.9, 0.9),
             _record('rem', 0.1, 0.9, task='random_label_swap', learned=0.05),
             _record('rem', 0.1, 0.9, seed=1, original_utility=0.3)]
  kept = reports.passing(records, floors)
  assert [r['task'] for r in kept] == ['poison_trigger'] and kept[0]['seed'] == 0
  text = reports.preconditions_markdown(records, floors)
  assert text.count('**no**: not tabulated') == 2
  assert '| plain | random_label_swap | 0 | 80.00 | 5.00 (corrupted_label_accuracy) |' in text


def test_heatmap_grid_has_a_no_unlearning_column_and_regularity_rows():
  records = [_record('rem', 0.5, 1.0, rate=0.2), _record('rem', 1.0, 1.0, rate=1.0),
             _record('rem', 0.5, 0.5, rate=1.0, task='random_label_swap')]
  grid, rates = reports.heatmap_grid(records)
  assert rates == [0.2, 1.0]
  np.testing.assert_allclose(grid[0], [8.0, 50.0, 100.0])   # poison: the high-regularity row.
  assert np.isnan(grid[1]).all()                             # No inter-class runs.
  np.testing.assert_allclose(grid[2], [8.0, np.nan, 25.0])


def test_the_overview_shows_defaults_on_every_seed_best_first():
  records = [_record('rem', 0.5, 1.0, seed=seed) for seed in (0, 1)]
  records += [_record('npo', 0.9, 1.0, seed=seed) for seed in (0, 1)]
  records += [_record('npo', 1.0, 1.0, variant='npo(learning_rate=0.01)', seed=0),  # Tuning.
              _record('rem_no_redirect', 0.2, 1.0, seed=0)]  # An ablation: seed 0.
  assert reports.overview_panels(records) == [('plain', 'npo'), ('plain', 'rem')]
  # Table (a) pools the same rows and names what it left out; the ablation keeps its own
  # heatmap and dynamics files, the tuning variant shows in table_tuned.md only.
  text = reports.table_a(records)[2]
  assert [line.split(' | ')[1] for line in text.splitlines() if line.startswith('| plain')] == [
      'npo', 'rem']
  assert text.endswith('Run on fewer seeds, so not pooled here: rem_no_redirect (plain, seeds '
                       '[0]); 1 hyperparameter variant (table_tuned.md).\n')
  assert [r['variant'] for r in reports.drawn(records)] == ['rem', 'rem', 'npo', 'npo',
                                                            'rem_no_redirect']


def test_costs_are_relative_to_training():
  rows = reports.cost_rows([_record('rem', 0.5, 1.0, wall=10.0, train=100.0),
                            _record('rem', 0.5, 1.0, wall=30.0, train=100.0, seed=1)])
  assert rows[0]['percent_of_training'] == pytest.approx(20.0)
  assert rows[0]['median_percent_of_training'] == pytest.approx(20.0)
  assert rows[0]['percent_without_evaluation'] == pytest.approx(10.0)
  assert rows[0]['paper_percent'] == 10.7


def test_the_median_cost_is_not_moved_by_one_run_held_up():
  # Three runs at 10 % of training and one held paused for 50 minutes (3,000 s of wall time).
  rows = reports.cost_rows([_record('rem', 0.5, 1.0, wall=10.0, seed=seed) for seed in range(3)]
                           + [_record('rem', 0.5, 1.0, wall=3010.0, seed=3)])
  assert rows[0]['percent_of_training'] == pytest.approx(760.0)
  assert rows[0]['median_percent_of_training'] == pytest.approx(10.0)
  assert '| 4 | 760.0 | 760.0 | 10.0 |' in reports.costs_markdown(rows)


def test_total_compute_counts_each_training_run_once():
  records = [_record('rem', 0.5, 1.0, wall=1800.0, train=3600.0),
             # A sweep that reused the trained model: its training adds nothing.
             _record('ascent', 0.5, 1.0, wall=0.0, train=3600.0),
             # A sweep that trained the same model again in its own workdir: a second run.
             _record('npo', 0.5, 1.0, wall=1800.0, train=1800.0),
             _record('rem', 0.5, 1.0, wall=3600.0, train=7200.0, seed=1)]
  total = reports.total_compute(records)
  assert (total['runs'], total['originals'], total['trainings']) == (4, 2, 3)
  assert (total['unlearning_s'], total['training_s']) == (7200.0, 12600.0)
  assert reports.total_compute_markdown(total) == (
      '\nTotal compute (unknown): 2.0 h unlearning in 4 runs, 3.5 h training 2 original models '
      'in 3 runs (mean 4200 s); 5.5 h in all, 5.5 device-hours.\n')
  part = reports.total_compute(records[:2])
  assert (part['trainings'], part['training_s']) == (1, 3600.0)
  assert reports.total_compute_markdown(part, of='table (a)').startswith(
      '\nTotal compute of table (a) (unknown): 0.5 h unlearning in 2 runs, 1.0 h training 1 '
      'original model in 1 run (mean 3600 s)')


def test_device_hours_count_the_devices_each_run_held():
  # Two runs of half an hour, on 2 devices and on 1 (a record before the field: 1).
  two = {**_record('rem', 0.5, 1.0, wall=1800.0, train=3600.0), 'num_devices': 2}
  one = _record('rem', 0.5, 1.0, wall=1800.0, train=3600.0, seed=1)
  row, = reports.cost_rows([two, one])
  assert row['device_hours'] == pytest.approx(1.5)
  assert '| 1.50 |' in reports.costs_markdown([row])
  # Training: seed 0's hour on the 2 devices its cells held, seed 1's on 1.
  assert reports.total_compute([two, one])['device_hours'] == pytest.approx(1.5 + 3.0)


def test_records_say_where_they_ran(monkeypatch):
  environ = {'SLURM_JOB_ID': '71', 'SLURM_ARRAY_JOB_ID': '70', 'SLURM_ARRAY_TASK_ID': '1',
             'HOME': '/root'}
  assert records_lib.scheduler_ids(environ) == {'job_id': '71', 'array_job_id': '70',
                                                'array_task_id': '1'}
  assert records_lib.scheduler_ids({'HOME': '/root'}) == {}
  for variable, value in environ.items():
    monkeypatch.setenv(variable, value)
  where = records_lib.environment()
  assert where['host'] == socket.gethostname() and where['slurm']['array_task_id'] == '1'
  monkeypatch.delenv('SLURM_JOB_ID')
  monkeypatch.delenv('SLURM_ARRAY_JOB_ID')
  monkeypatch.delenv('SLURM_ARRAY_TASK_ID')
  assert 'slurm' not in records_lib.environment()


def test_costs_name_no_table_a_compute_where_table_a_has_no_runs(tmp_path):
  # Each method ran on one seed only: nothing runs on every seed, so table (a) is empty.
  records = [_record('scrub', 0.5, 0.9, variant='scrub(alpha=1)'),
             _record('rem', 0.5, 0.9, seed=1)]
  reports.write_reports(records, tmp_path)
  costs = (tmp_path / 'costs.md').read_text()
  assert 'of table (a)' not in costs
  assert '\nTotal compute (unknown): 0.0 h unlearning in 2 runs' in costs


def test_the_oracle_table_says_it_is_one_in_every_format(tmp_path):
  records = [_record('scrub', 0.5, 0.9, variant=f'scrub(alpha={a})') for a in (1, 2)]
  records += [_record('scrub', 0.5, 0.9, seed=seed) for seed in (0, 1)]
  reports.write_reports(records, tmp_path)
  read = lambda name: (tmp_path / name).read_text()
  assert read('table_best.md').startswith(reports.ORACLE)
  header, row = read('table_best.csv').splitlines()[:2]
  assert header.endswith(',chosen_by') and row.endswith(f',{reports.ORACLE}')
  assert (r'\multicolumn{6}{l}{Best per cell by H$\times$U (an oracle: it reads the test set '
          r'and D\_c)} \\') in read('table_best.tex')
  # Table (a) chose nothing: no label.
  assert 'chosen_by' not in read('table.csv') and 'multicolumn' not in read('table.tex')


def test_write_reports_writes_every_file_from_the_records(tmp_path):
  records = [_record('rem', 0.9, 0.9, rate=r) for r in (0.2, 1.0)]
  records += [_record('scrub', 0.5, 0.9, rate=0.2, variant=f'scrub(alpha={a})') for a in (1, 2)]
  results = store.ResultStore(tmp_path / 'results.jsonl')
  for record in records:
    results.append(record)
  written = reports.write_reports(results.read(), tmp_path / 'reports')
  names = sorted(path.name for path in written)
  for expected in ('table.md', 'table.csv', 'table.tex', 'table_best.md', 'costs.md',
                   'preconditions.md', 'heatmaps.png', 'heatmap_plain_rem.png'):
    assert expected in names
  assert (tmp_path / 'reports' / 'heatmaps.png').read_bytes()[:4] == b'\x89PNG'


def test_claims_md_compares_the_settings_given_across_each_through_its_preconditions(tmp_path):
  tasks = ('poison_trigger', 'random_label_swap')
  records = [_record(m, h, 0.9, task=t) for m, h in (('rem', 0.8), ('retrain', 0.3))
             for t in tasks]
  # The second setting's REM runs are on originals that miss the utility floor: dropped.
  weak = [_record(m, h, 0.9, task=t, original_utility=0.3 if m == 'rem' else 0.8)
          for m, h in (('rem', 0.8), ('retrain', 0.3)) for t in tasks]
  reports.write_reports(records, tmp_path, across=[('first', records), ('second', weak)])
  text = (tmp_path / 'claims.md').read_text()
  section = text[text.index('## Across settings'):]
  assert '| claim | first | second | moves |' in section
  highest = next(l for l in section.splitlines() if l.startswith('| REM has the highest'))
  # `second` ran REM, but no REM run passed its preconditions: that cannot tell, not "not run".
  assert ('**cannot tell**: no REM records on either base that meet their preconditions'
          in highest)
  reports.write_reports(records, tmp_path / 'plain')
  assert '## Across settings' not in (tmp_path / 'plain' / 'claims.md').read_text()


def test_the_reports_command_keeps_the_settings_it_compared_and_reuses_them(tmp_path):
  # `--across` once; a later run into the same outdir without it (collect_sweep.sh) compares the
  # same settings, read through across.json's paths relative to the outdir.
  results = tmp_path / 'sweep' / 'results.jsonl'
  other = tmp_path / 'other' / 'results.jsonl'
  tasks = ('poison_trigger', 'random_label_swap')
  for path in (results, other):
    path.parent.mkdir()
    path.write_text(''.join(json.dumps(_record('rem', 0.8, 0.9, task=t)) + '\n' for t in tasks))
  outdir = tmp_path / 'out'

  def run(*flags):
    return subprocess.run([sys.executable, '-m', 'rem_jax.experiments.reports',
                           f'--results={results}', f'--outdir={outdir}', *flags],
                          capture_output=True, text=True, cwd=_ROOT)

  assert run(f'--across=first={other},second={results}').returncode == 0
  assert json.loads((outdir / reports.ACROSS_FILE).read_text()) == {
      'first': '../other/results.jsonl', 'second': '../sweep/results.jsonl'}
  first = (outdir / 'claims.md').read_text()
  (outdir / 'claims.md').unlink()
  assert run().returncode == 0
  assert (outdir / 'claims.md').read_text() == first
  assert '| claim | first | second | moves |' in first
  # A setting that has gone, or a broken file: one line naming the file, before any work.
  other.unlink()
  result = run()
  assert result.returncode == 1 and result.stderr.count('\n') == 1
  assert f'{outdir / reports.ACROSS_FILE}: ' in result.stderr and 'first=' in result.stderr
  (outdir / reports.ACROSS_FILE).write_text('[1, 2]')
  result = run()
  assert result.returncode == 1 and 'must be a JSON object' in result.stderr


def test_across_settings_are_label_equals_an_existing_results_file(tmp_path):
  results = tmp_path / 'results.jsonl'
  results.write_text('')
  assert reports.parse_across([f'10 % budget={results}']) == [('10 % budget', results)]
  for bad in (str(results), f'x={tmp_path / "missing.jsonl"}', f'={results}'):
    with pytest.raises(ValueError, match='is not LABEL=PATH'):
      reports.parse_across([bad])


@pytest.mark.parametrize('name', sorted(p.parent.name for p in _COMMITTED.glob('*/results.jsonl')))
def test_every_committed_sweeps_tables_regenerate_from_its_records(tmp_path, name):
  committed = _COMMITTED / name
  records = store.ResultStore(committed / 'results.jsonl').read()
  assert records, f'benchmarks/results/{name}/results.jsonl holds no records'
  # The settings its claims.md compares, as `reports` reuses them (its across.json).
  across = [(label, store.ResultStore(path).read())
            for label, path in reports.read_across(committed)]
  reports.write_reports(records, tmp_path, across=across)
  for table in ('table.md', 'preconditions.md', 'costs.md', 'table_tuned.md', 'claims.md'):
    if (tmp_path / table).exists() or (committed / table).exists():
      assert (tmp_path / table).read_text() == (committed / table).read_text(), table
  # Every record's ids file is committed beside it.
  for record in records:
    assert (committed / record['ids_file']).is_file(), record['ids_file']


def test_the_committed_diagnosis_report_regenerates_from_its_records(tmp_path):
  # benchmarks/diagnose_map.py --report, from the diagnosis records and the map's committed
  # records (REM on D_f alone, the advice), writes the committed table: a map that grew
  # without the report being rewritten fails here.
  committed = json.loads((_COMMITTED / 'diagnose_map.json').read_text())
  workdir = tmp_path / 'workdir'
  workdir.mkdir()
  for name, rows in (('results.jsonl', committed['records']),
                     ('end_to_end.jsonl', committed['end_to_end'])):
    (workdir / name).write_text(''.join(json.dumps(row) + '\n' for row in rows))
  root = _COMMITTED.parent.parent
  subprocess.run([sys.executable, 'benchmarks/diagnose_map.py', '--report',
                  f'--workdir={workdir}', f'--output={tmp_path / "diagnose_map"}'],
                 cwd=root, check=True, capture_output=True)
  assert ((tmp_path / 'diagnose_map.md').read_text()
          == (_COMMITTED / 'diagnose_map.md').read_text())


def test_the_diagnosis_report_counts_the_seeds_whose_scores_leave_the_maps_order():
  # Seed 0 in order, seed 1 with the swaps' scores crossed, seed 2 missing a task (not
  # counted). In a subprocess, as below.
  program = (
      'import sys\n'
      'sys.path.insert(0, "benchmarks")\n'
      'import diagnose_map\n'
      'scores = {0: (1.5, 0.5, 0.1), 1: (1.5, 0.1, 0.5), 2: (1.5, 0.5, None)}\n'
      'rows = [{"seed": seed, "discovery_rate": 0.2, "task": task, "regularity": {"score": v}}\n'
      '        for seed, values in scores.items()\n'
      '        for task, v in zip(diagnose_map.cpu_map.TASKS, values) if v is not None]\n'
      'print(diagnose_map.misordered(rows))\n')
  result = subprocess.run([sys.executable, '-c', program], cwd=_COMMITTED.parent.parent,
                          check=True, capture_output=True, text=True)
  assert result.stdout.splitlines()[-1] == '(2, [(1, 0.2)])'


def test_the_packaged_map_summary_is_the_committed_maps():
  # What a pip-installed diagnosis advises from (rem_jax/diagnosis/map_summary.json) is what
  # `benchmarks/diagnose_map.py --report --write_summary` makes of the committed records: the
  # map's cells, placed by the committed diagnoses' regularity scores, with the gains from
  # adding suspects that its end-to-end runs measured. In a subprocess: the
  # script defines absl flags that other benchmark scripts imported by tests define too.
  from rem_jax.diagnosis import advice  # pylint: disable=g-import-not-at-top
  root = _COMMITTED.parent.parent
  program = (
      'import json, pathlib, sys\n'
      'sys.path.insert(0, "benchmarks")\n'
      'import diagnose_map\n'
      'from rem_jax.experiments import store\n'
      'committed = json.load(open("benchmarks/results/diagnose_map.json"))\n'
      'path = pathlib.Path("benchmarks/results/cpu_map/results.jsonl")\n'
      'records = store.ResultStore(path).read()\n'
      'print(json.dumps(diagnose_map.map_summary(committed["records"], records,\n'
      '                                          committed["end_to_end"])))\n')
  result = subprocess.run([sys.executable, '-c', program], cwd=root, check=True,
                          capture_output=True, text=True)
  assert json.loads(advice.PACKAGED.read_text()) == json.loads(result.stdout.splitlines()[-1])
