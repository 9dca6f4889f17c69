"""The diagnosis (configs/diagnose.py): regularity, suspects, calibration, advice, bad input.

Behaviour on the shared poisoned fixture (tests/poisoned.py): the found half of a 64-image
poison, probes of half the training recipe. The pure parts are checked on hand-made values.
"""

import dataclasses
import json
import re

import flax.serialization
import jax
import numpy as np
import pytest

from rem_jax import methods
from rem_jax import sharding
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.diagnosis import advice
from rem_jax.diagnosis import regularity
from rem_jax.diagnosis import suspects
from rem_jax.experiments import cell
from rem_jax.experiments import config_lib
from rem_jax.experiments import diagnose
from rem_jax.models import init_variables
from tests import cli
from tests import poisoned as poisoned_module

# Every benchmark task's score, and two methods per cell, by hand: advice reads only these.
SCORES = {'poison_trigger': 1.0, 'inter_class_confusion': 0.5, 'random_label_swap': 0.0}


def _summary(best='rem'):
  """NPO best at discovery rate 0.2, `best` at 0.5 and 1.0."""
  cells = []
  for task in regularity.ROWS:
    for rate in (0.2, 0.5, 1.0):
      top = 'npo' if rate == 0.2 else best
      for method in ('rem', 'npo'):
        value = (0.5 if rate == 0.2 else 0.6) if method == top else 0.4
        cells.append({'base': 'plain', 'task': task, 'discovery_rate': rate, 'method': method,
                      'healed_x_utility': value, 'sem': 0.02 if method == 'rem' else 0.03,
                      'seeds': 3})
  return {'source': 'hand-made', 'regularity_scores': dict(SCORES),
          'regularity_measure': regularity.MEASURE, 'cells': cells}


# ---- pure parts ---------------------------------------------------------------------------------


def test_folds_deal_the_found_and_the_retained_evenly():
  forget = np.arange(0, 100, 10)
  fold = regularity.folds(100, forget, 3, np.random.default_rng(0))
  for k in range(3):
    assert 3 <= np.sum(fold[forget] == k) <= 4
    assert 30 <= np.sum(np.delete(fold, forget) == k) <= 30
  with pytest.raises(ValueError, match='folds=11 must be between 2 and'):
    regularity.folds(100, forget, 11, np.random.default_rng(0))


def test_the_regularity_score_runs_from_chance_to_clean_and_is_capped_there():
  forget = np.array([1, 1, 0, 0])  # A(D_f) 0.5
  retain = np.array([1, 1, 1, 1, 1, 1, 1, 0])  # A(D_r) 0.875; chance (1 − 0.875) / 9
  value = regularity.score(forget, retain, num_classes=10, bootstrap=500,
                           rng=np.random.default_rng(0))
  chance = 0.125 / 9
  assert value['chance_agreement'] == pytest.approx(chance)
  assert value['score'] == pytest.approx((0.5 - chance) / (0.875 - chance))
  assert value['low'] < value['score'] < value['high'] <= 1.0
  assert value['measure'] == regularity.MEASURE
  # A pattern easier than the dataset's classes (a trigger on CIFAR-10: 0.85 against 0.5) and
  # one on easy data (1.0 against 0.999) are both a fully shared pattern: 1, not 1.7 and 1.0.
  assert regularity.capped_ratio(0.85, 0.5, 10) == 1.0
  assert regularity.capped_ratio(1.0, 0.999, 10) == 1.0
  assert regularity.capped_ratio(0.5 / 9, 0.5, 10) == pytest.approx(0.0)  # Chance: 0.
  assert np.isnan(regularity.capped_ratio(0.5, 0.1, 10))  # Probes no better than chance.
  assert regularity.nearest_task(0.8, SCORES) == 'poison_trigger'
  assert regularity.nearest_task(0.3, SCORES) == 'inter_class_confusion'
  assert regularity.nearest_task(0.1, SCORES) == 'random_label_swap'


def test_a_pattern_is_claimed_only_where_co_forgetting_shows_one():
  # A clean found set is as predictable as clean labels: high by the score alone.
  assert not regularity.placeable(1.0, SCORES, co_forgetting_informative=False)
  assert regularity.placeable(1.0, SCORES, co_forgetting_informative=True)
  assert not regularity.placeable(0.5, SCORES, co_forgetting_informative=False)
  # The low row claims no pattern: it needs no evidence of one.
  assert regularity.placeable(0.05, SCORES, co_forgetting_informative=False)
  # No score (probes at chance): nothing to place.
  assert not regularity.placeable(float('nan'), SCORES, co_forgetting_informative=True)


def test_an_interval_places_the_task_between_rows():
  assert regularity.tasks_within(0.1, 0.2, SCORES) == ['random_label_swap']
  assert regularity.tasks_within(0.4, 1.3, SCORES) == ['inter_class_confusion', 'poison_trigger']
  assert regularity.tasks_within(-0.2, 1.3, SCORES) == list(reversed(regularity.ROWS))
  assert regularity.tasks_within(float('nan'), 1.0, SCORES) == list(reversed(regularity.ROWS))
  assert (regularity.describe_rows(['inter_class_confusion', 'poison_trigger'])
          == 'between the medium and the high rows')
  assert regularity.describe_rows(['poison_trigger']) == 'the high row'


def test_percentile_ranks_and_auc_known_values():
  np.testing.assert_allclose(suspects.percentile_ranks(np.array([3.0, 1.0, 2.0, 2.0])),
                             [1.0, 0.0, 0.5, 0.5])
  assert suspects.auc(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 1, 0, 0], bool)) == 1.0
  assert suspects.auc(np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 1, 0], bool)) == 0.75
  assert suspects.auc(np.ones(4), np.array([1, 0, 1, 0], bool)) == 0.5


def test_calibration_recovers_a_known_recall_on_a_hand_made_ranking():
  # 200 candidates: 20 unfound corrupted examples and the 20 hidden (the other half of D_f)
  # alternate at the top, then 160 clean ones.
  scores = -np.arange(200.0)
  hidden = np.zeros(200, bool)
  hidden[1:40:2] = True
  calibration = suspects.calibrate(scores, hidden)
  assert calibration['own_estimate'] == pytest.approx(40)
  assert calibration['cutoff'] == 40 and calibration['recall'] == 1.0
  assert calibration['precision'] == pytest.approx(1.0)
  # The hidden example at position 2i + 1 outranks 180 − (i + 1) of the 180 others.
  assert calibration['auc'] == pytest.approx((20 * 180 - 210) / (20 * 180))
  np.testing.assert_allclose(calibration['recall_curve'][:4], [0.0, 0.05, 0.05, 0.1])
  cut = suspects.threshold(calibration, num_found=40)
  assert cut['remaining'] == pytest.approx(20) and cut['num_suspects'] == 20
  assert cut['estimated_discovery_rate'] == pytest.approx(40 / 60)
  # A ranking that finds nothing: AUC near 0.5, and a loose (large) estimate.
  rng = np.random.default_rng(0)
  blind = suspects.calibrate(rng.normal(size=200), hidden)
  assert abs(blind['auc'] - 0.5) < 0.15 and blind['own_estimate'] > 100


def test_combining_follows_the_signal_that_finds_and_ignores_the_one_that_does_not():
  rng = np.random.default_rng(0)
  hidden = np.zeros(300, bool)
  hidden[:30] = True
  finds = np.where(hidden, 5.0, 0.0) + rng.normal(size=300)
  blind = rng.normal(size=300)
  # Calibrated against each other, both blind and informative, the larger precision wins.
  both = {name: suspects.calibrate(score, hidden, corrupted=30)
          for name, score in (('finds', finds), ('blind', blind))}
  combined = suspects.combine([finds, blind], [both['finds'], both['blind']])
  assert suspects.precision_recall_at(combined, hidden, 30)[0] >= 0.9
  assert suspects.precision_recall_at(np.maximum(suspects.percentile_ranks(finds),
                                                 suspects.percentile_ranks(blind)),
                                      hidden, 30)[0] < 0.9  # What a plain max of ranks gets.
  # `calibrate_all` leaves the blind one out altogether: it cannot tell it from chance.
  calibrations = suspects.calibrate_all({'finds': finds, 'blind': blind}, hidden)
  assert calibrations['finds']['auc'] > 0.95 and calibrations['finds']['informative']
  assert not calibrations['blind']['informative'] and abs(calibrations['blind']['auc'] - 0.5) < 0.1
  assert set(calibrations['blind']) == {'auc', 'auc_low', 'auc_high', 'informative',
                                        'num_hidden'}  # No count, threshold or precision.
  # One count of corrupted candidates for all: the informative signal's own estimate.
  assert (calibrations['combined']['corrupted_among_candidates']
          == calibrations['finds']['own_estimate'])
  alone = suspects.calibrate_all({'finds': finds}, hidden)
  assert calibrations['combined']['recall_curve'] == alone['combined']['recall_curve']


def test_a_signal_of_pure_noise_says_cannot_tell_and_a_strong_one_does_not():
  hidden = np.zeros(3000, bool)
  hidden[:40] = True
  informative = []
  for seed in range(20):
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=3000)
    calibrations = suspects.calibrate_all({'noise': noise}, hidden, resamples=50, rng=rng)
    informative.append(calibrations['noise']['informative'])
    if not informative[-1]:
      assert calibrations['noise']['auc_low'] <= 0.5  # (Below it too: worse than chance.)
      assert not calibrations['combined']['informative']
      assert suspects.threshold(calibrations['combined'], 80) is None  # No count, no rate.
  # A one-sided 2.5 % test: 1 of 20 noise draws passing is chance (measured: 0 of these 20).
  assert sum(informative) <= 1, informative
  # Ties everywhere (a flush that moved nothing): AUC exactly 0.5, cannot tell.
  flat = suspects.calibrate_all({'flat': np.zeros(3000)}, hidden)
  assert flat['flat']['auc'] == 0.5 and not flat['flat']['informative']
  rng = np.random.default_rng(0)
  strong = np.where(np.arange(3000) < 120, 3.0, 0.0) + rng.normal(size=3000)
  calibrations = suspects.calibrate_all({'strong': strong}, hidden, resamples=50, rng=rng)
  assert calibrations['strong']['informative'] and calibrations['strong']['auc_low'] > 0.9
  assert suspects.threshold(calibrations['combined'], 80)['num_suspects'] > 0


def test_the_estimates_intervals_hold_the_truth_on_synthetic_rankings():
  # 5,000 candidates: 50 hidden (half of a found set of 100) and 100 unfound corrupted that
  # rank alike (3 standard deviations above the clean). True: 100 left, discovery rate 0.5.
  hidden = np.zeros(5000, bool)
  hidden[:50] = True
  corrupted = np.arange(5000) < 150
  held = {'remaining': 0, 'estimated_discovery_rate': 0}
  for seed in range(20):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=5000) + 3.0 * corrupted
    calibrations = suspects.calibrate_all({'s': scores}, hidden, resamples=200, rng=rng)
    cut = suspects.threshold(calibrations['combined'], 100)
    for key, truth in (('remaining', 100), ('estimated_discovery_rate', 0.5)):
      assert cut[f'{key}_low'] <= cut[key] <= cut[f'{key}_high'], (seed, key)
      held[key] += cut[f'{key}_low'] <= truth <= cut[f'{key}_high']
    assert (cut['expected_corrupted_among_suspects_low'] <= cut['expected_corrupted_among_suspects']
            <= cut['expected_corrupted_among_suspects_high'])
  # Nominally 95 %; measured 17 of 20 (0.85 over 100 seeds): the count is a minimum over
  # cut-offs, biased low where the ranking is sharp, which a bootstrap does not undo.
  assert held['remaining'] >= 15 and held['estimated_discovery_rate'] >= 15, held


def test_advice_reads_the_cell_at_the_nearest_rate_and_names_the_runner_up():
  summary = _summary()
  low = advice.advise(summary, 'poison_trigger', 0.3)
  assert low['discovery_rate'] == 0.2 and low['row'] == 'high'
  assert low['best']['method'] == 'npo' and low['runner_up']['method'] == 'rem'
  assert advice.advise(summary, 'poison_trigger', 0.8)['best'] == {
      'method': 'rem', 'healed_x_utility': 0.6, 'sem': 0.02, 'seeds': 3}
  with pytest.raises(ValueError, match="no etd-base cells of task 'poison_trigger'"):
    advice.advise(summary, 'poison_trigger', 0.5, base='etd')
  # Placing: the task whose reference score is nearest, then its cell.
  score = {'score': SCORES['random_label_swap'] + 0.01, 'low': -0.1, 'high': 0.1,
           'measurable': True}
  task, tasks, placed = advice.place(summary, score, 0.9)
  assert task == 'random_label_swap' and tasks == [task] and placed['row'] == 'low'
  assert placed['discovery_rate'] == 1.0 and placed['best']['method'] == 'rem'
  assert placed['by_row'] == []
  # An interval over two rows: advice in the nearest, and each reached row's best.
  task, tasks, placed = advice.place(summary, {**score, 'high': 0.6}, 0.3)
  assert task == 'random_label_swap' and len(tasks) == 2
  assert [(r['row'], r['best']['method']) for r in placed['by_row']] == [('low', 'npo'),
                                                                          ('medium', 'npo')]
  # Not measurable: no row; methods ranked by their H×U averaged over the rows.
  task, tasks, placed = advice.place(summary, {**score, 'measurable': False}, 0.3)
  assert task is None and placed['row'] is None and len(placed['by_row']) == 3
  assert placed['best']['method'] == 'npo'
  assert placed['best']['healed_x_utility'] == pytest.approx(0.5)


def test_the_suspects_are_added_only_where_the_map_measured_that_it_helps():
  gains = {'poison_trigger': {'gain': 0.05}, 'inter_class_confusion': {'gain': -0.08}}
  summary = {**_summary(), 'suspect_gains': gains}
  cut = {'num_suspects': 40}
  assert advice.suspects_decision(summary, ['poison_trigger'], cut)['add']
  decision = advice.suspects_decision(summary, ['inter_class_confusion', 'poison_trigger'], cut)
  assert not decision['add'] and 'medium row -0.080' in decision['why']
  decision = advice.suspects_decision(summary, ['random_label_swap'], cut)
  assert not decision['add'] and 'not measured' in decision['why']
  assert not advice.suspects_decision(summary, ['poison_trigger'], None)['add']
  assert not advice.suspects_decision(summary, ['poison_trigger'], {'num_suspects': 0})['add']


def test_unlearn_true_follows_the_decision_unless_add_suspects_overrides_it():
  found, suspect_ids = np.array([1, 5]), np.array([9, 3])
  for decision, setting, expected in ((True, 'auto', [1, 3, 5, 9]), (False, 'auto', [1, 5]),
                                      (False, 'yes', [1, 3, 5, 9]), (True, 'no', [1, 5])):
    summary = {'add_suspects': {'add': decision, 'why': ''}}
    diagnosis = diagnose.Diagnosis(summary, {}, suspect_ids)
    assert diagnose.ids_to_unlearn(setting, diagnosis, found).tolist() == expected
  unplaced = diagnose.Diagnosis({'add_suspects': None}, {}, suspect_ids)  # No map summary.
  assert diagnose.ids_to_unlearn('auto', unplaced, found).tolist() == [1, 5]


def test_a_summary_of_another_regularity_measure_is_refused():
  with pytest.raises(ValueError, match="measured as 'agreement_ratio'; this version measures"):
    advice.check_covers({**_summary(), 'regularity_measure': 'agreement_ratio'}, 'plain')


def test_a_summary_of_sweep_records_keeps_defaults_that_finished():
  def record(method, seed, value, **extra):
    return {'base': 'plain', 'task': 'random_label_swap', 'discovery_rate': 0.5,
            'method': method, 'variant': extra.pop('variant', method), 'seed': seed,
            'after': {'healed_x_utility': value}, **extra}
  records = [record('rem', 0, 0.5), record('rem', 1, 0.7), record('npo', 0, 0.9, variant='npo_lr2'),
             record('npo', 1, 0.2), record('npo', 2, 0.0, error='diverged'),
             record('rem_no_remove', 0, 0.95), record('rem_ideal', 0, 0.99)]
  cells = {c['method']: c for c in advice.summarise(records)['cells']}
  assert set(cells) == {'rem', 'npo'}  # An ablation and an oracle are never advised.
  assert cells['rem']['healed_x_utility'] == pytest.approx(0.6) and cells['rem']['seeds'] == 2
  assert cells['rem']['sem'] == pytest.approx(0.1)
  assert cells['npo']['seeds'] == 1  # Neither the tuning variant nor the diverged run.


# ---- behaviour on the poisoned fixture ----------------------------------------------------------


def _settings(steps=160):
  """The diagnosis's settings with probes of half the fixture's training recipe."""
  config = config_lib.diagnose_config()
  config.probe_steps = steps
  settings = diagnose.settings_from(config, poisoned_module.RECIPE)
  return dataclasses.replace(settings, batch_size=poisoned_module.BATCH, eval_batch_size=256,
                             bootstrap=200)


@pytest.fixture(scope='module')
def poisoned(poisoned):  # pylint: disable=redefined-outer-name  (the shared one, moved)
  """The shared fixture on the suite's whole mesh, where it was trained: the probes train as it
  did, from its compiled step, and this file's measured numbers are of runs on that mesh (on
  one device the poison's regularity score came out 0.61 instead of 0.79, nearer the
  inter-class reference; a half-recipe probe's score moves that much with float rounding)."""
  return poisoned.on(sharding.make_mesh())


@pytest.fixture(scope='module')
def poison_diagnosis(poisoned):
  forget = poisoned.record.forget_ids_at(0.5)
  original = methods.TrainedModel(poisoned.model, poisoned.variables)
  return diagnose.diagnose(original, poisoned.task(0.5).views, forget, mesh=poisoned.mesh,
                           settings=_settings(), map_summary=_summary(), num_classes=10)


def test_co_forgetting_finds_the_unfound_poison_and_calibration_counts_it(poisoned,
                                                                          poison_diagnosis):
  scores = poison_diagnosis.scores
  retain = ~scores['in_forget']
  corrupted = np.isin(scores['ids'], poisoned.record.corrupted_ids)
  unfound = int((corrupted & retain).sum())  # 32 of 64.
  random_precision = unfound / retain.sum()
  for signal in ('co_forgetting', 'combined'):
    precision, _ = suspects.precision_recall_at(scores[signal][retain], corrupted[retain],
                                                unfound)
    assert precision >= 10 * random_precision, signal  # Measured 0.81 and 0.78: 25x random.
  cut = poison_diagnosis.summary['threshold']
  assert 0.5 * unfound <= cut['remaining'] <= 2 * unfound  # Measured 37.8 against 32.
  found = np.isin(poison_diagnosis.suspect_ids, poisoned.record.corrupted_ids)
  assert found.mean() >= 0.5 and not np.isin(poison_diagnosis.suspect_ids,
                                              poisoned.record.forget_ids_at(0.5)).any()
  assert poison_diagnosis.summary['advice']['discovery_rate'] == 0.5
  # Co-forgetting finds the poison: it does not abstain, and its estimates carry intervals.
  calibration = poison_diagnosis.summary['calibration']
  assert calibration['co_forgetting']['informative'] and calibration['combined']['informative']
  assert cut['remaining_low'] <= cut['remaining'] <= cut['remaining_high']
  assert cut['estimated_discovery_rate_low'] <= 0.5 <= cut['estimated_discovery_rate_high']
  # The flush kept the rest of the model.
  for flush in poison_diagnosis.summary['co_forgetting'].values():
    assert flush['retain_accuracy_after'] >= flush['retain_accuracy_before'] - flush['margin']


def test_a_report_that_cannot_tell_prints_no_count_and_no_rate(poison_diagnosis):
  hidden = np.zeros(2000, bool)
  hidden[:16] = True
  rng = np.random.default_rng(0)
  calibrations = suspects.calibrate_all({'co_forgetting': rng.normal(size=2000),
                                         'disagreement': rng.normal(size=2000)}, hidden,
                                        resamples=20, rng=rng)
  assert not any(c['informative'] for c in calibrations.values())
  cut = suspects.threshold(calibrations['combined'], 32)
  summary = {**poison_diagnosis.summary, 'calibration': calibrations, 'threshold': cut,
             'num_suspects': 0, 'report': 'report.md',
             'advice': advice.advise(_summary(), 'poison_trigger', None)}
  text = diagnose.report_markdown(summary) + diagnose.headline(summary)
  assert 'Suspects: **cannot tell**' in text and text.count('| cannot tell |') == 3
  for estimate in ('Estimated corrupted', 'Estimated discovery rate', 'suspects, about',
                   'estimated discovery rate 0', 'Advised: **'):
    assert estimate not in text, estimate
  # Advice covers what is known: the best at each of the map's rates, and on average.
  assert '| 0.2 | npo |' in text and '| 0.5 | rem |' in text and '| 1 | rem |' in text
  assert 'Advised by rate: npo at 0.2, rem at 0.5, rem at 1; on average over them: rem.' in text
  written = json.loads(json.dumps(summary))
  assert written['threshold'] is None and written['advice']['discovery_rate'] is None
  assert all(set(c) <= {'auc', 'auc_low', 'auc_high', 'informative', 'num_hidden'}
             for c in written['calibration'].values())


def test_the_flush_stops_before_it_flushes_the_rest_of_the_model(poisoned):
  # A learning rate at which one epoch of NPO on D_f (one step) wrecks D_r.
  settings = _settings()
  flush = settings.flush.copy_and_resolve_references()
  flush.learning_rate, flush.epochs = 20.0, 3
  settings = dataclasses.replace(settings, flush=flush)
  task = poisoned.task(0.5)
  original = methods.TrainedModel(poisoned.model, poisoned.variables)
  unguarded = methods.get_method('npo')(original, task, dict(flush, epochs=1))
  wrecked = unguarded.record['iterations'][0]['retain_accuracy']
  _, _, record = diagnose.guarded_flush(original, task, settings)
  before, after = record['retain_accuracy_before'], record['retain_accuracy_after']
  assert wrecked < before - settings.flush_margin, (wrecked, before)
  assert after >= before - settings.flush_margin, record
  assert record['backoffs'] >= 1 and record['learning_rate'] < 20.0
  assert all(r['retain_accuracy'] != r['retain_accuracy'] or
             r['retain_accuracy'] < before - settings.flush_margin for r in record['rejected'])
  # The report shows Acc(D_r) before and after.
  summary = diagnose._flush_summary(record)  # pylint: disable=protected-access
  line = diagnose._flush_line('whole found set', summary)  # pylint: disable=protected-access
  assert f'Acc(D_r) {before:.3f} before, {after:.3f} after (margin 0.1' in line, line


def test_the_regularity_of_a_poison_is_higher_than_that_of_random_swaps(poisoned,
                                                                      poison_diagnosis):
  poison = poison_diagnosis.summary['regularity']
  assert poison['nearest_task'] == 'poison_trigger' and poison['measurable']
  # The same images with 64 random label swaps: probes alone, no trained model needed.
  swap = corruptions.corrupt(poisoned.splits.train.labels, task='random_label_swap', seed=0,
                             num_classes=10, num_corrupted=64, rates=[0.5])
  forget = swap.forget_ids_at(0.5)
  views = pipeline.make_views(poisoned.splits, swap, forget, poisoned.images)
  # One probe, holding out fold 0 of 2, is enough for a score (and half the cost of two). It
  # trains the fixture's whole recipe: at half of it the probe agreed with 0.31 of the retained
  # labels, and the ratio over 32 swapped images was noise (0.60 on 2026-12-01); at the whole
  # recipe, 0.80 and a ratio of 0.08.
  settings = dataclasses.replace(_settings(poisoned_module.RECIPE.steps), folds=1)
  held = regularity.folds(1024, forget, 2, np.random.default_rng(0)) == 0
  original = methods.TrainedModel(poisoned.model, poisoned.variables)
  probabilities = diagnose.probe_probabilities(original, views, np.where(held, 0, 1),
                                               poisoned.mesh, settings)
  agrees = probabilities.argmax(1) == views.train.labels
  in_forget = np.isin(views.train.ids, forget)
  swapped = regularity.score(agrees[held & in_forget], agrees[held & ~in_forget],
                             num_classes=10, bootstrap=200, rng=np.random.default_rng(0))
  assert swapped['score'] < 0.3 < poison['score'], (swapped, poison)


# ---- the command line ---------------------------------------------------------------------------

# cli.TINY's data and recipe (a diagnosis has no task, and its method is unset: the advised
# one, NPO everywhere in the summary the command reads).
TINY = [f'--config.{field}={cli.TINY_FIELDS[field]}'
        for field in ('data.image_size', 'data.num_train', 'data.num_test', 'train.steps',
                      'train.batch_size', 'train.checkpoint_every', 'eval_batch_size')]
TINY += ['--config.batch_size=32', '--config.bootstrap=20']


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  """A tiny model's .msgpack (untrained: the command's plumbing is what is checked), a file of
  found ids and a hand-made map summary."""
  folder = tmp_path_factory.mktemp('diagnose_inputs')
  config = config_lib.diagnose_config()
  config.data.image_size = 16
  model, _ = cell.original_model(config)
  variables = init_variables(model, jax.random.key(0), (16, 16, 3))
  (folder / 'model.msgpack').write_bytes(flax.serialization.msgpack_serialize(
      jax.device_get(variables)))
  (folder / 'found.txt').write_text('\n'.join(map(str, range(0, 64, 4))))
  (folder / 'summary.json').write_text(json.dumps(_summary(best='npo')))
  return folder


def _args(inputs, *more):
  return [*TINY, f'--config.checkpoint={inputs / "model.msgpack"}',
          f'--config.forget_ids={inputs / "found.txt"}',
          f'--config.records={inputs / "summary.json"}', *more]


def test_the_command_writes_the_report_and_unlearns_the_found_and_the_suspects(capsys, inputs,
                                                                              tmp_path):
  workdir = tmp_path / 'diagnosis'
  capsys.readouterr()
  # No UL: the plumbing is what is checked here (`unlearning_method` picks the advised one).
  assert cli.run(workdir, *_args(inputs, '--config.unlearn=true', '--config.method=no_ul'),
                 config='configs/diagnose.py') == 0
  # An untrained model and probes of a few steps: no signal beats chance and the probes
  # predict nothing, so neither the row nor the rate is told, and the advice is the best
  # method on average over the rows (NPO everywhere).
  out = capsys.readouterr().out
  assert 'row cannot tell (the probes predict clean labels no better than chance)' in out
  assert 'Advised on average over the rows: npo.' in out
  summary = json.loads((workdir / diagnose.RESULTS_FILE).read_text())
  assert summary['num_found'] == 16 and summary['advice']['best']['method'] == 'npo'
  assert summary['threshold'] is None and summary['num_suspects'] == 0
  report = (workdir / diagnose.REPORT_FILE).read_text()
  assert '## Regularity' in report and 'Best on average over the rows: **npo**' in report
  assert '| low (random_label_swap) | npo |' in report  # The best in each row.
  assert 'Acc(D_r)' in report  # Before and after each flush.
  assert (workdir / diagnose.FIGURE_FILE).stat().st_size > 0
  scores = np.load(workdir / diagnose.SCORES_FILE)
  assert scores['co_forgetting'].shape == (256,) and scores['probe_probabilities'].shape == (256, 10)
  suspect_ids = json.loads((workdir / diagnose.SUSPECTS_FILE).read_text())['suspect_ids']
  unlearned_ids = json.loads((workdir / diagnose.UNLEARN_IDS_FILE).read_text())['forget_ids']
  assert sorted(unlearned_ids) == sorted(set(range(0, 64, 4)) | set(suspect_ids))
  unlearned = json.loads((workdir / diagnose.UNLEARNED_DIR / 'results.json').read_text())
  assert unlearned['method'] == 'no_ul'
  advised = {'advice': {'best': {'method': 'npo'}}}
  assert diagnose.unlearning_method(config_lib.diagnose_config(), advised) == 'npo'
  # Without a map summary the report places nothing and advises nothing, and says why.
  unplaced = {**summary, 'advice': None, 'report': 'report.md'}
  assert 'None: no map summary' in diagnose.report_markdown(unplaced)
  assert 'No advice: no map summary' in diagnose.headline(unplaced)


@pytest.mark.parametrize('drop, more, message', [
    ('checkpoint', [], 'checkpoint is required: pass --config.checkpoint=PATH.'),
    (None, ['--config.folds=1'], 'folds=1 is not allowed; allowed: int ≥ 2.'),
    (None, ['--config.folds=17'], 'folds=17: the forget ids hold 16 examples'),
    (None, ['--config.flush_margin=1.5'], 'flush_margin=1.5 is not allowed; allowed: [0, 1].'),
    (None, ['--config.method=rem'], '--config.method has no effect in this run: unlearn=false'),
    (None, ['--config.add_suspects=yes'],
     '--config.add_suspects has no effect in this run: unlearn=false'),
    (None, ['--config.unlearn=true', '--config.add_suspects=maybe'],
     "add_suspects='maybe' is not allowed; allowed: 'auto', 'yes' or 'no'."),
    (None, ['--config.records=/nonexistent.jsonl'], "records='/nonexistent.jsonl' is not a file."),
    ('records', ['--config.records={partial}'], 'has no plain-base cells of'),
    ('forget_ids', ['--config.forget_ids={out_of_range}'], 'out of range'),
    ('records', ['--config.unlearn=true'], 'unlearn=true without method needs advice'),
])
def test_bad_input_is_one_line_before_any_work(capsys, monkeypatch, inputs, tmp_path, drop, more,
                                               message):
  monkeypatch.setattr(advice, 'PACKAGED', tmp_path / 'none.json')  # No packaged summary.
  partial = inputs / 'partial.json'
  summary = _summary()
  summary['cells'] = [c for c in summary['cells'] if c['task'] == 'poison_trigger']
  partial.write_text(json.dumps(summary))
  out_of_range = inputs / 'out_of_range.txt'
  out_of_range.write_text('3\n999\n')
  args = [a for a in _args(inputs) if not (drop and a.startswith(f'--config.{drop}='))]
  args += [m.format(partial=partial, out_of_range=out_of_range) for m in more]
  line = cli.error_line(capsys, tmp_path / 'run', *args, config='configs/diagnose.py')
  assert message in line


def test_the_docs_table_lists_every_diagnosis_field_with_its_default_and_what_it_allows():
  text = (cli.ROOT / 'docs' / 'methods.md').read_text()
  table = text.split("The diagnosis's own fields", 1)[1].split('\n\n', 2)[1]
  rows = {}
  for line in table.splitlines()[2:]:
    cells = [c.strip() for c in re.split(r'(?<!\\)\|', line.strip().strip('|'))]
    rows[cells[0].strip('`')] = (cells[1], cells[2])
  defaults = config_lib.diagnose_config()
  assert sorted(rows) == sorted(diagnose.DIAGNOSE_FIELDS)
  for field, spec in diagnose.DIAGNOSE_FIELDS.items():
    value = defaults[field]
    assert rows[field] == ('unset' if value is None else str(value), spec.allowed), field
    assert spec.check(value), field
