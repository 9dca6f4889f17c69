"""The sweep runner: grid expansion, the original-model cache, resumption and bad input."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import chex
import jax
import ml_collections
import pytest

from configs import cpu_map, mini_cifar10, paper_imagenette, paper_resnet9_cifar10
from configs import paper_vit_svhn, quickstart
from rem_jax import methods, sharding, trainer
from rem_jax.experiments import cell, concurrent, config_lib, store, sweep
from tests import sweep_config

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _keys(records):
  return sorted(record['cell'] for record in records)


@pytest.fixture(scope='module')
def finished_sweep(tmp_path_factory):
  """The tiny grid run once, uninterrupted."""
  workdir = tmp_path_factory.mktemp('sweep')
  summary = sweep.run(sweep_config.get_config(), workdir)
  return workdir, summary, store.ResultStore(workdir / store.RESULTS_FILE).read()


def test_every_cell_is_recorded_once_with_its_config_ids_and_metrics(finished_sweep):
  workdir, summary, records = finished_sweep
  cells = sweep.expand_grid(sweep_config.get_config())
  assert len(cells) == 8 and summary['ran'] == 8
  assert _keys(records) == sorted(cell.key for cell in cells)
  for record in records:
    config = record['config']
    assert record['seed'] == config['seed'] and record['method'] == config['method']
    assert record['discovery_rate'] == config['discovery_rate']
    ids = json.loads((workdir / record['ids_file']).read_text())
    assert ids['seed'] == record['seed']
    assert record['num_forget'] == round(16 * record['discovery_rate'])
    assert 0 <= record['after']['healed_x_utility'] <= 1
    assert record['unlearn']['wall_time_s'] >= 0 and record['train']['wall_time_s'] > 0
    assert record['versions']['jax'] and record['device']
  # No UL returns the original model: its metrics after equal those before.
  for record in records:
    if record['method'] == 'no_ul':
      assert record['after'] == record['before']
  assert (workdir / 'reports' / 'preconditions.md').exists()


def test_two_seeds_train_two_original_models_once_each(finished_sweep):
  workdir, _, records = finished_sweep
  originals = sorted(p.name for p in (workdir / sweep.ORIGINALS_DIR).iterdir())
  assert len(originals) == 2
  assert sorted({record['original'] for record in records}) == originals
  by_seed = {record['seed']: record['original'] for record in records}
  assert by_seed[0] != by_seed[1]
  # Every cell of one seed starts from the same trained model (same metrics before).
  for seed in (0, 1):
    befores = {json.dumps(r['before']['utility']) for r in records if r['seed'] == seed}
    assert len(befores) == 1


def test_a_rerun_records_nothing_new(finished_sweep):
  workdir, _, records = finished_sweep
  summary = sweep.run(sweep_config.get_config(), workdir)
  assert summary['ran'] == 0
  assert store.ResultStore(workdir / store.RESULTS_FILE).read() == records


def test_only_selects_cells_and_a_run_fills_in_the_rest(tmp_path, finished_sweep):
  _, _, complete = finished_sweep
  config = sweep_config.get_config()
  config.only = 'method=npo;discovery_rate=1'
  summary = sweep.run(config, tmp_path)
  assert summary['ran'] == 2
  records = store.ResultStore(tmp_path / store.RESULTS_FILE).read()
  assert {(r['method'], r['discovery_rate']) for r in records} == {('npo', 1.0)}
  # The rest two at a time, each on half the devices: `only` and `parallel_cells` change no
  # result, so the workdir takes the other selection as the same sweep.
  config.only, config.parallel_cells = '', 2
  assert sweep.run(config, tmp_path)['ran'] == 6
  records = store.ResultStore(tmp_path / store.RESULTS_FILE).read()
  assert _keys(records) == _keys(complete)
  devices = jax.device_count()
  assert sorted(r['num_devices'] for r in records) == [devices // 2] * 6 + [devices] * 2
  # Same seeds, same cells: the same numbers as the uninterrupted run.
  by_key = {r['cell']: r['after'] for r in complete}
  for record in records:
    assert record['after'] == pytest.approx(by_key[record['cell']], abs=1e-6), record['cell']


def test_cells_sharing_one_device_compute_what_each_computes_alone():
  # The many-runs-per-GPU path: NPO (a stop rule, a selection, a frozen reference) at two
  # discovery rates, two at a time on one device. The original is the sweep's own seed-0 model,
  # trained on every device (the fixture's compile) and copied onto the one (`Prepared.placed_on`).
  config = sweep_config.get_config().cell
  config.method = 'npo'
  slots = concurrent.cell_meshes(2, jax.devices()[:1])
  mesh = slots[0]
  assert slots == [mesh, mesh]
  prepared = cell.prepare(config, sharding.make_mesh(), rates=(0.5, 1.0)).placed_on(mesh)
  threads = set()

  def work(rate, cell_mesh):
    threads.add(threading.current_thread().name)
    cell_config = config.copy_and_resolve_references()
    cell_config.discovery_rate = rate
    return cell.unlearn_and_evaluate(cell_config, prepared, cell_mesh)

  together = {rate: result for rate, _, result in concurrent.run_cells((0.5, 1.0), slots, work)}
  assert len(threads) == 2
  for rate in (0.5, 1.0):
    _, after, unlearned = work(rate, mesh)
    assert together[rate][1] == after
    chex.assert_trees_all_equal(together[rate][2].variables, unlearned.variables)
  assert together[0.5][1] != together[1.0][1]


def test_parallel_cells_must_split_the_devices_evenly():
  devices = jax.devices()[:4]
  assert [m.size for m in concurrent.cell_meshes(2, devices)] == [2, 2]
  assert [m.size for m in concurrent.cell_meshes(8, devices)] == [1] * 8
  for bad in (0, 3, 6):
    with pytest.raises(ValueError, match='parallel_cells'):
      concurrent.cell_meshes(bad, devices)


def test_a_sweep_killed_mid_grid_resumes_to_the_same_records(tmp_path, finished_sweep):
  _, _, complete = finished_sweep
  command = [sys.executable, str(ROOT / 'launch.py'), f'--config={ROOT}/tests/sweep_config.py',
             f'--workdir={tmp_path}']
  results = tmp_path / store.RESULTS_FILE
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if results.exists() and len(results.read_text().splitlines()) >= 3:
      break
    time.sleep(0.05)
  assert process.poll() is None, 'the sweep finished before it could be killed'
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  # The kill may have cut a record short: the restart must cope with a torn last line too.
  with open(results, 'ab') as f:
    f.write(b'{"cell": "torn')
  with pytest.warns(store.CorruptRecordWarning, match='its last line is not a complete'):
    killed_with = len(store.ResultStore(results).read())
  assert 3 <= killed_with < 8
  sweep.run(sweep_config.get_config(), tmp_path)  # The same sweep again, in this process.
  records = store.ResultStore(results).read()
  assert _keys(records) == _keys(complete)
  by_key = {r['cell']: r['after'] for r in complete}
  for record in records:
    assert record['after'] == pytest.approx(by_key[record['cell']], abs=1e-6), record['cell']


def test_a_diverged_method_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
  real = sweep.cell_module.unlearn_and_evaluate

  def diverging(config, prepared, mesh):
    if config.method == 'npo':
      raise trainer.NonFiniteLossError('npo: non-finite loss in epoch 1; lower its '
                                        'learning_rate.')
    return real(config, prepared, mesh)

  monkeypatch.setattr(sweep.cell_module, 'unlearn_and_evaluate', diverging)
  config = sweep_config.get_config()
  config.only = 'seed=0;discovery_rate=1'
  summary = sweep.run(config, tmp_path)
  assert summary['ran'] == 2
  records = {r['method']: r for r in store.ResultStore(tmp_path / store.RESULTS_FILE).read()}
  assert records['npo']['error'].startswith('npo: non-finite loss') and 'after' not in records[
      'npo']
  assert 'after' in records['no_ul']
  assert 'npo' in (tmp_path / 'reports' / 'failures.md').read_text()
  config.only = 'seed=0'
  assert sweep.run(config, tmp_path)['ran'] == 2  # Not retried.


# ---- Grid expansion and bad input --------------------------------------------------------------


def test_method_axes_multiply_only_their_method():
  config = config_lib.sweep_config(config_lib.cell_config(), {'method': ('no_ul', 'scrub'),
                                                      'discovery_rate': (0.5,)},
                               method_axes={'scrub': {'alpha': (0.01, 10.0)}})
  cells = sweep.expand_grid(config)
  assert [cell.variant for cell in cells] == ['no_ul', 'scrub(alpha=0.01)', 'scrub(alpha=10.0)']
  assert [cell.config.methods.scrub.alpha for cell in cells[1:]] == [0.01, 10.0]
  # Hyperparameters do not change the original model: one training run for all three.
  assert len({cell.original_key for cell in cells}) == 1


def test_base_presets_set_capacity_and_masks():
  config = config_lib.sweep_config(config_lib.cell_config(), {'base': ('plain', 'etd', 'full')})
  cells = {cell.base_label: cell.config for cell in sweep.expand_grid(config)}
  assert (cells['plain'].base, cells['plain'].model.capacity) == ('plain', 0.5)
  assert (cells['etd'].base, cells['etd'].model.expansion) == ('etd', 0.5)
  assert (cells['full'].base, cells['full'].model.capacity) == ('plain', 1.0)
  # Table 4: REM and its plain-base variants run unexpanded on the 100 % model, as in the paper.
  for name in ('rem', 'rem_ideal', 'rem_no_redirect', 'rem_no_remove'):
    assert cells['full'].methods[name].expansion == 0.0
    assert cells['plain'].methods[name].expansion is None  # Fill up to the full width.
  table4 = sweep.expand_grid(paper_resnet9_cifar10.get_config('table4'))
  assert {cell.config.methods.rem.expansion for cell in table4} == {0.0}


SHIPPED_GRIDS = [
    (paper_resnet9_cifar10, '', 2970, 27),
    (paper_resnet9_cifar10, 'table1', 3 * 3 * 10 * 2 * 9, 18),
    (paper_resnet9_cifar10, 'table2', 3 * 3 * 10 * 2 * 3, 18),
    (paper_resnet9_cifar10, 'table4', 3 * 3 * 10 * 9, 9),
    (paper_resnet9_cifar10, 'capacity', 3 * 3 * 10 * 3 * 2, 27),
    (paper_resnet9_cifar10, 'mask5', 3 * 3 * 10 * 3, 9),
    (paper_resnet9_cifar10, 'table1,runlocal', 2 * 2 * 2 * 2 * 9, 8),
    (paper_vit_svhn, '', 3 * 3 * 10 * 2 * 12, 18),          # SCRUB: 4 alphas.
    (paper_vit_svhn, 'table5', 3 * 3 * 10 * 3 * 12, 27),
    (paper_imagenette, 'table7', 3 * 3 * 10 * 12, 9),
    (paper_imagenette, 'runlocal', 2 * 2 * 2 * 12, 4),
    (mini_cifar10, '', 3 * 9, 1),
    (mini_cifar10, 'swaps', 3 * 3 * 9, 3),
    (mini_cifar10, 'runlocal', 2 * 9, 1),
    (quickstart, 'sweep', 3 * 3, 1),
    (cpu_map, '', 3 * 3 * 3 * 9, 9),
    (cpu_map, 'etd', 3 * 3 * 3 * 2, 9),
    (cpu_map, 'tuned', 3 * 3 * (5 * 2 + 9), 3),  # The 1 x runs are table (a)'s; SCRUB x alpha.
    (cpu_map, 'ablations', 3 * 3 * 2, 3),
    (cpu_map, 'runlocal', 2 * 2 * 2 * 9, 4),
    (cpu_map, 'proportions', 2 * 3 * 3 * 9, 6),  # Poison and random swap: table (a)'s models.
    (cpu_map, 'proportions,inter_class', 3 * 3 * 9, 3),  # Its own |D_c|: new models.
    (cpu_map, 'proportions,ablations', 2 * 3 * 2, 2),  # Seed 0: the proportions grid's models.
    (cpu_map, 'proportions,ablations,inter_class', 3 * 2, 1),
    (cpu_map, 'proportions,tuned', 2 * 3 * (5 * 2 + 9), 2),
    (cpu_map, 'proportions,tuned,inter_class', 3 * (5 * 2 + 9), 1),
    (cpu_map, 'rung', 2 * 3 * 9, 2),  # Seed 0 at twice the images.
    (cpu_map, 'rung,inter_class', 3 * 9, 1),
]
# A method's optimiser settings: tuned only on axes every method shares (SPEC §7-8, issue 18).
_OPTIMISER_FIELDS = ('optimizer', 'learning_rate', 'momentum', 'weight_decay', 'epochs')


@pytest.mark.parametrize('module, arg, cells, originals', SHIPPED_GRIDS)
def test_reproduction_configs_expand_to_their_grids(module, arg, cells, originals):
  grid = sweep.expand_grid(module.get_config(arg))
  assert len(grid) == cells
  assert len({cell.original_key for cell in grid}) == originals


@pytest.mark.parametrize('module, arg', [(module, arg) for module, arg, _, _ in SHIPPED_GRIDS
                                          if 'runlocal' not in arg] + [(quickstart, '')])
def test_shipped_configs_give_every_method_the_same_terms(module, arg):
  config = module.get_config(arg)
  cell_config = config.cell if 'cell' in config else config
  # Each optimiser field departs from the methods' own defaults for all of them alike (the
  # ViT's Adam 2e-5 for every method) or for none: no method gets another step size.
  for field in _OPTIMISER_FIELDS:
    changes = []
    for name, settings in cell_config.methods.items():
      default = methods.default_config(name).get(field)
      if default is not None and settings[field] != default:
        changes.append(settings[field] if isinstance(default, str) else settings[field] / default)
      elif default is not None:
        changes.append('unchanged')
    assert len(set(changes)) == 1, (field, changes)
  # Hyperparameter axes: SCRUB's alpha (the paper's grid), or a learning-rate axis that every
  # method with a learning rate gets, with the same factors of its own default.
  method_axes = config.get('method_axes', {})
  learning_rates = {}
  for name, settings in method_axes.items():
    assert set(settings) <= {'alpha', 'learning_rate'}, (name, dict(settings))
    assert 'alpha' not in settings or name == 'scrub', name
    if 'learning_rate' in settings:
      default = cell_config.methods[name].learning_rate
      learning_rates[name] = {round(v / default, 6) for v in settings.learning_rate} | {1.0}
  if learning_rates:
    tuned_methods = {name for name in config.axes.method
                     if 'learning_rate' in cell_config.methods[name]}
    assert set(learning_rates) == tuned_methods
    assert len({frozenset(f) for f in learning_rates.values()}) == 1, learning_rates


def test_the_unlearning_defaults_are_the_papers_at_the_source():
  # No method gets a learning rate of its own in the cell every config builds on (issue 18:
  # REM once had 2 x the others').
  cell = config_lib.cell_config()
  for name, settings in cell.methods.items():
    if 'learning_rate' in settings:
      assert settings.learning_rate == methods.default_config(name).learning_rate == 0.005, name


@pytest.mark.parametrize('module, arg', [(m, a) for m, a, _, _ in SHIPPED_GRIDS
                                          if {'proportions', 'rung'} & set(a.split(','))])
def test_every_cell_of_a_proportions_grid_keeps_the_papers_ratios(module, arg):
  """Issue 34: the budget (24.5 % of training, to the nearest epoch), the learning rate (0.2 x
  the training peak, every method; a tuning grid's variants at ½ and 2 x it), SCRUB's max
  epochs (2 of 10, to the nearest epoch) and the inter-class swap (10 % of each class). The
  10 %-budget grids are exempt by name."""
  config = module.get_config(arg)
  tuned = {name for name, axes in config.get('method_axes', {}).items()
           if 'learning_rate' in axes}
  for cell in sweep.expand_grid(config):
    cell_config = cell.config
    trained = config_lib.training_epochs(cell_config)
    ratios = config_lib.proportions(cell_config)
    for name, budget in ratios['budget'].items():
      assert abs(budget - config_lib.PAPER_BUDGET_FRACTION) <= 0.5 / trained, (cell.key, name)
    for name, learning_rate in ratios['learning_rate'].items():
      factors = (0.5, 1.0, 2.0) if name == cell_config.method and name in tuned else (1.0,)
      assert any(learning_rate == pytest.approx(f * config_lib.PAPER_LEARNING_RATE_FRACTION)
                 for f in factors), (cell.key, name, learning_rate)
    epochs = cell_config.methods.scrub.epochs
    assert abs(ratios['scrub_max'] - config_lib.PAPER_SCRUB_MAX_FRACTION) <= 0.5 / epochs
    assert cell_config.methods.retrain.unlearn_learning_rate == pytest.approx(
        config_lib.PAPER_LEARNING_RATE_FRACTION * cell_config.train.learning_rate)
    if cell_config.task == 'inter_class_confusion':
      per_class = cell_config.data.num_train / cell_config.model.num_classes
      assert abs(ratios['inter_class'] - config_lib.PAPER_INTER_CLASS_FRACTION) <= 1 / per_class


def test_the_cpu_map_in_proportions_gets_25_epochs_at_lr_0_01_and_60_swaps():
  config = cpu_map.get_config('proportions,inter_class').cell
  assert config_lib.training_epochs(config) == pytest.approx(102.4)
  assert {config.methods[m].epochs for m in ('cf', 'ascent', 'npo', 'scrub', 'bad_teacher',
                                             'rem')} == {25}
  assert {config.methods[m].learning_rate for m in ('cf', 'npo', 'scrub', 'rem')} == {0.01}
  assert (config.methods.scrub.msteps, config.methods.rem.max_flush_epochs) == (5, 100)
  assert config.num_corrupted == 60 and config.train == cpu_map.get_config().cell.train
  # The 10 %-budget grid (table (a) as first run) keeps 10 epochs at 0.1 x the peak.
  ratios = config_lib.proportions(cpu_map.get_config().cell)
  assert ratios['budget']['rem'] == pytest.approx(10 / 102.4)
  assert ratios['learning_rate']['rem'] == pytest.approx(0.1)


def test_the_rung_doubles_the_images_and_keeps_every_proportion():
  rung, base = (cpu_map.get_config(arg).cell for arg in ('rung,inter_class',
                                                          'proportions,inter_class'))
  assert rung.data.num_train == 2 * base.data.num_train
  assert config_lib.training_epochs(rung) == config_lib.training_epochs(base)
  assert rung.num_corrupted == 2 * base.num_corrupted == 120
  assert rung.model == base.model and rung.methods == base.methods
  assert cpu_map.get_config('rung').cell.num_corrupted / 6_000 == 150 / 3_000


@pytest.mark.parametrize('grid', ['ablations', 'tuned'])
def test_the_grids_in_proportions_reuse_the_proportions_grids_models(grid):
  # Seed 0 of table (a) in proportions: linking its originals trains nothing (docstring).
  for row in ('', ',inter_class'):
    grid_keys = {cell.original_key for cell in sweep.expand_grid(
        cpu_map.get_config(f'proportions,{grid}{row}'))}
    seed_0 = {cell.original_key for cell in sweep.expand_grid(
        cpu_map.get_config(f'proportions{row}')) if cell.axes['seed'] == 0}
    assert grid_keys == seed_0


@pytest.mark.parametrize('arg, message', [
    ('proportions,rung', r"\['proportions', 'rung'\] are separate settings"),
    ('tuned,ablations', r"\['ablations', 'tuned'\] are separate grids"),
    ('ablations,inter_class', "'inter_class' is the inter-class row"),
    ('etd,proportions', "'etd' runs at the 10 % budget only"),
])
def test_cpu_map_arguments_that_do_not_combine_are_named(arg, message):
  with pytest.raises(ValueError, match=message):
    cpu_map.get_config(arg)


def test_proportions_need_a_known_training_set_size():
  cell = config_lib.cell_with(**{'data.num_train': 0})
  with pytest.raises(ValueError, match='data.num_train=0'):
    config_lib.in_paper_proportions(cell)


def test_config_arguments_are_checked():
  with pytest.raises(ValueError, match=r"arguments \['fast'\] are unknown"):
    mini_cifar10.get_config('fast')


def _tiny(axes, method_axes=None):
  return config_lib.sweep_config(config_lib.cell_config(), axes, method_axes)


@pytest.mark.parametrize('axes, method_axes, message', [
    ({'task': ('poison', )}, None, r"axis task=poison: task='poison' is not allowed; allowed: "
                                   'random_label_swap'),
    ({'method': ('rem', 'magic')}, None, "axis method=magic: method='magic' is not allowed; "
                                         'allowed: ascent, '),
    ({'base': ('tiny',)}, None, r"axis base: \['tiny'\] unknown; allowed: \['etd', 'full', "
                                r"'plain'\]"),
    ({'discovery_rate': (0.0,)}, None, r'axis discovery_rate=0.0: discovery_rate=0.0 is not '
                                       r'allowed; allowed: \(0, 1\]'),
    ({'colour': ('red',)}, None, "axis colour=red: the cell config has no field 'colour'"),
    ({'model': {'depth': (3,)}}, None, "axis model.depth=3: model has no field 'depth'"),
    ({'seed': ('one',)}, None, "axis seed=one: seed expects a int, got 'one'"),
    ({'seed': ()}, None, 'the grid is empty: axis seed has no values'),
    ({'methods': {'rem': {'epochs': (1,)}}}, None, 'per-method settings go in method_axes.rem'),
    ({'method': ('npo',)}, {'scrub': {'alpha': (1.0,)}}, "'scrub' is not among the grid's"),
    ({'method': ('scrub',)}, {'scrub': {'beta': (1.0,)}},
     r"method_axes.scrub settings \['beta'\] are unknown"),
])
def test_bad_axes_are_named(axes, method_axes, message):
  with pytest.raises(ValueError, match=message):
    sweep.expand_grid(_tiny(axes, method_axes))


def test_bad_filters_are_named():
  cells = sweep.expand_grid(_tiny({'method': ('no_ul', 'npo')}))
  with pytest.raises(ValueError, match=r"axis 'task' is not in the grid; axes: \['method'\]"):
    sweep.select(cells, 'task=poison_trigger')
  with pytest.raises(ValueError, match='selects no cell'):
    sweep.select(cells, 'method=rem')
  assert [c.key for c in sweep.select(cells, 'method=npo')] == ['method=npo']
  assert sweep.select(cells, '') == list(cells)


def test_a_workdir_of_another_sweep_is_refused(tmp_path):
  config = sweep_config.get_config()
  config.only = 'seed=0;discovery_rate=0.5;method=no_ul'
  sweep.run(config, tmp_path)
  other = ml_collections.ConfigDict(config.to_dict())
  other.axes.seed = (0, 1, 2)
  with pytest.raises(ValueError, match=r'holds a run of other settings \(fields that differ: '
                                       r'axes.seed'):
    sweep.run(other, tmp_path)


def test_the_cli_runs_a_sweep_cell_and_rejects_a_bad_filter(tmp_path):
  command = [sys.executable, 'launch.py', '--config=tests/sweep_config.py',
             f'--workdir={tmp_path}']
  bad = subprocess.run(command + ['--config.only=colour=red'], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith(
      "launch.py: error: only='colour=red': axis 'colour' is not in the grid")
