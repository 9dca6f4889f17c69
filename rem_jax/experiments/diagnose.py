"""A practitioner's diagnosis: where the task lies on the map, what was missed, which method.

    trained model + the ids found + the training data -> regularity, suspects, advice

`diagnose` is the library function (a trained model and its views in, a `Diagnosis` out);
`run` is configs/diagnose.py's experiment: it loads what configs/unlearn.py loads, diagnoses,
writes the report (`report.md`, `diagnosis.json`, `diagnosis.png`, `suspects.json`,
`scores.npz`) and, with `unlearn`, unlearns D_f and the suspects with the advised method.

The steps (their pure parts live in `rem_jax.diagnosis`):
1. Probes: the training set is split in `folds` folds, each holding its share of D_f and of
   D_r (`regularity.folds`); probe k is the checkpoint's architecture trained from a fresh
   initialisation with the training recipe on every fold but k, and predicts fold k. Every
   training example so gets held-out class probabilities.
2. Regularity: how predictable D_f's given labels are from the rest of the data, from chance
   (0) to as predictable as clean labels (1, the cap) (`regularity.score`); placed in the map's
   row of the benchmark task whose reference is nearest, with every row the interval
   reaches; "cannot tell" where the score claims a shared pattern that co-forgetting's
   calibration does not show (`regularity.placeable`: a clean found set is as
   predictable as clean labels too).
3. Suspects: co-forgetting (`guarded_flush`: NPO on D_f until Acc(D_f) <= gamma, at most
   REM's flush cap, from a copy of the trained model, kept from flushing the rest of the
   model by `flush_margin`; the drop in each example's given-label log-probability) and
   out-of-sample disagreement (cleanlab on the probes' probabilities); each calibrated by
   running it with one half of D_f as the found set and the other half hidden among the
   candidates (`suspects.calibrate_all`). A signal whose calibration cannot tell it from
   chance (its AUC's interval holds 0.5) says "cannot tell" and is left out; the informative
   ones are combined on the scale of their calibrated precision (`suspects.combine`), and the
   combined ranking's calibration sets how many suspects to take, with intervals
   (`suspects.threshold`). No informative signal: no suspects, no count, no rate.
4. Advice: the estimated discovery rate |D_f| / (|D_f| + estimated corrupted left in D_r)
   and the regularity row pick the map's cell; the method with the best mean H×U there is
   advised, with the runner-up and the best at each rate the rate's interval allows
   (`advice.advise`). Without an estimated rate, the best at each of the map's rates, and
   the best on average over them; without a row, the best on average over the rows. Whether
   to unlearn the suspects too: only where the map measured that adding them helps in every
   row the task may lie in (`advice.suspects_decision`).
"""

import dataclasses
import json
import pathlib
import time

from absl import logging
import jax
import matplotlib

matplotlib.use('Agg')  # Files only; no display is needed.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from rem_jax import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import seeds  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import trainer  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import advice  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import regularity  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import suspects  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import cell  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import fields  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import practitioner  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import workdir as workdir_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.methods import npo as npo_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.models import init_variables  # pylint: disable=g-import-not-at-top,wrong-import-position

REPORT_FILE = 'report.md'
RESULTS_FILE = 'diagnosis.json'
FIGURE_FILE = 'diagnosis.png'
SUSPECTS_FILE = 'suspects.json'
SCORES_FILE = 'scores.npz'
UNLEARN_IDS_FILE = 'forget_and_suspects.json'
UNLEARNED_DIR = 'unlearned'
SIGNALS = ('co_forgetting', 'disagreement', 'combined')
# The fewest found examples a diagnosis works with: the calibration halves need two each.
MIN_FOUND = 4
# The co-forgetting flush's default margin: how far Acc(D_r) may fall (see `guarded_flush`).
# 0.1 is twice the corrupted share of the map's and the quickstart's training sets (150 of
# 3,000, 250 of 5,000): a flush that forgot every unfound corrupted example of D_r, and
# nothing else, would stay within it, sampling noise included (`RETAIN_SAMPLE`); the
# quickstart's unguarded flush that found nothing had lost 0.7 of it.
FLUSH_MARGIN = 0.1
# At most this many examples of D_r are the flush's watch (a seeded subsample): the standard
# error of an accuracy on 2,000 examples is at most 0.011, a ninth of the margin.
RETAIN_SAMPLE = 2000
# A flush epoch that breaks the margin is undone and retried at half the learning rate at
# most this many times (1/8 of it); then the flush stops at the last epoch within the margin.
FLUSH_BACKOFFS = 3
# The probes' default budget, in training runs of the original model, for all of them together
# (`settings_from`): the most that keeps a diagnosis near 1.5 training runs (issue 35's limit;
# with the flushes and evaluations 1.4-1.8 on the map, 1.5 on the rung). Why not less: probes of half a run each (2 folds: one run in
# all, the recipe's epochs over each probe's half of the data) learnt the quickstart's `shapes`
# trigger only partly (held-out agreement 0.57 on the found set), which placed that poison in
# the medium row; at 0.75 of a run each it placed it in the high row
# (benchmarks/results/diagnose_off_map.md).
PROBE_BUDGET = 1.5
# What a diagnosis config adds to an unlearning config's fields.
DIAGNOSE_FIELDS = {
    'folds': fields.Field('int ≥ 2', fields.integer(2), 'probe models; at most \\|D_f\\|'),
    'probe_steps': fields.Field('unset or int ≥ 1',
                                lambda v: v is None or fields.integer(1)(v),
                                "each probe's training steps (unset: 1.5 × the recipe's ÷ "
                                'folds: the probes together cost 1.5 training runs)'),
    'bootstrap': fields.Field('int ≥ 0', fields.integer(0),
                              "resamples of the regularity score's and the estimates' "
                              'intervals'),
    'flush_margin': fields.Field('[0, 1]', fields.number(0, 1),
                                 "co-forgetting's flush stops before Acc(D_r) falls more"),
    'records': fields.Field('unset or a path', fields.is_optional_text,
                            "a sweep's results.jsonl or a map summary (unset: the packaged one)"),
    'unlearn': fields.Field('true or false', lambda v: isinstance(v, bool),
                            'then unlearn D_f (and the suspects: `add_suspects`)'),
    'add_suspects': fields.Field("'auto', 'yes' or 'no'", lambda v: v in ('auto', 'yes', 'no'),
                                 "with unlearn: add the suspects to D_f ('auto': where the "
                                 "map measured that it helps)"),
    'method': fields.Field('unset or a method', lambda v: v is None or v in methods.METHODS,
                           'with unlearn: the method (unset: the advised one)'),
}


@dataclasses.dataclass(frozen=True)
class Settings:
  """How a diagnosis runs (`settings_from` reads them from a diagnose config).

  Attributes:
    folds: probe models.
    recipe: the probes' training recipe.
    flush: NPO's settings for the co-forgetting flush (epochs: REM's flush cap).
    batch_size: the flushes' batch size (at most half the found set: both flushes, the whole
      found set's and the calibration half's, share one compiled step).
    eval_batch_size: the prediction passes' batch size.
    bootstrap: resamples of the regularity score's and the estimates' intervals.
    seed: fixes folds, calibration halves, bootstrap, probe inits, data order.
    flush_margin: the flushes stop before Acc(D_r) falls more than this (`guarded_flush`).
  """
  folds: int
  recipe: trainer.Recipe
  flush: ml_collections.ConfigDict
  batch_size: int
  eval_batch_size: int
  bootstrap: int = 1000
  seed: int = 0
  flush_margin: float = FLUSH_MARGIN


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  """A diagnosis's outcome.

  Attributes:
    summary: everything the report shows (JSON-ready).
    scores: per training example (view order): 'ids', 'in_forget', 'fold', and each signal's
      score ('co_forgetting', 'disagreement', 'combined' (NaN on D_f), 'own_loss'), 'flagged'
      (cleanlab's own verdict), 'probe_probabilities'.
    suspect_ids: the suspects' dataset ids, most suspect first.
  """
  summary: dict
  scores: dict
  suspect_ids: np.ndarray


def settings_from(config: ml_collections.ConfigDict, recipe: trainer.Recipe) -> Settings:
  """A diagnose config's settings; `recipe`: the checkpoint's training recipe.

  Each probe trains `probe_steps` steps, or (unset) `PROBE_BUDGET` training runs of the
  original model split evenly over the `folds` probes.
  """
  steps = config.probe_steps or max(1, round(PROBE_BUDGET * recipe.steps / config.folds))
  recipe = dataclasses.replace(recipe, steps=steps,
                               checkpoint_every=min(recipe.checkpoint_every, steps))
  flush = cell.method_settings(config, 'npo')
  flush.epochs = config.methods.rem.max_flush_epochs
  return Settings(folds=config.folds, recipe=recipe, flush=flush,
                  batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                  bootstrap=config.bootstrap, seed=config.seed,
                  flush_margin=config.flush_margin)


# ---- The steps ----------------------------------------------------------------------------------


def _with_found(views: pipeline.Views, found: np.ndarray) -> pipeline.Views:
  """`views` with D_f = the training examples where `found` (a mask) and D_r the rest."""
  return dataclasses.replace(views, forget=views.train.subset(found),
                             retain=views.train.subset(~found))


def given_log_probs(model, variables, views: pipeline.Views, mesh, batch_size: int):
  """log p(given label) of every training example (drop mode)."""
  evaluate = evaluation.Evaluator(model, views, None, mesh, batch_size)
  return suspects.given_label_log_prob(evaluate.probabilities(variables, views.train),
                                       views.train.labels)


def guarded_flush(original: methods.TrainedModel, task: methods.Task, settings: Settings
                  ) -> tuple[object, dict, dict]:
  """Co-forgetting's flush: NPO on D_f from a copy of `original` until Acc(D_f) <= gamma, that
  keeps the rest of the model: (model, variables, record).

  NPO's own loop (`common.until_forgotten`) measures Acc(D_r) only to pick its best epoch: on
  easy data one epoch can flush everything (the quickstart's flush ended near a quarter of
  D_r's accuracy), and then every example's given label drops and co-forgetting ranks
  nothing. Here each epoch is checked: Acc(D_r) on a seeded subsample of D_r
  (`RETAIN_SAMPLE`) may not fall more than `settings.flush_margin` below its value before the
  flush. An epoch that breaks the margin (or whose loss is not finite) is undone and retried
  at half the learning rate, at most `FLUSH_BACKOFFS` times; then the flush stops. The result
  is the last epoch kept (the starting model if none was: co-forgetting then scores nothing,
  and its calibration says "cannot tell"). The extra cost is a forward pass over the
  subsample per epoch and one compile per back-off.

  Record: 'epochs' kept, 'stop_epoch' (where Acc(D_f) <= gamma, else None), 'stopped'
  ('forgotten', 'margin' or 'epochs'), 'backoffs', 'learning_rate' (the last one tried),
  'retain_accuracy_before' / '_after' and 'forget_accuracy_before' / '_after' (on the
  subsample and on D_f, of the starting and the returned model), 'margin', 'iterations' (per
  kept epoch) and 'rejected' (per undone epoch: its Acc(D_r) and learning rate).
  """
  common = methods.common
  flush = common.resolve_settings(settings.flush, npo_lib.default_config(), 'npo')
  views, mesh = task.views, task.mesh
  phase = common.Phase(npo_lib.NPO(flush.beta), views.forget, common.forget_batch_size(task))
  model, state, loop, data_key = common._start(  # pylint: disable=protected-access
      original, task, flush, flush.epochs * phase.steps,
      lambda start: {'reference': start}, None)
  accuracy = common.Accuracy(model, mesh, common.round_to_devices(flush.eval_batch_size, mesh))
  rng = np.random.default_rng([settings.seed, int(seeds.Stream.DIAGNOSIS), 1])
  retain = views.retain
  if retain.num_examples > RETAIN_SAMPLE:
    retain = retain.subset(np.sort(rng.choice(retain.num_examples, RETAIN_SAMPLE,
                                              replace=False)))
  variables = trainer.variables_of(state)
  before = accuracy(variables, retain)
  forget_before = accuracy(variables, views.forget)
  floor = before - settings.flush_margin
  learning_rate = loop.optimizer.learning_rate
  iterations, rejected, stopped, stop_epoch = [], [], 'epochs', None
  with common.progress(flush.epochs, 'co-forgetting flush', 'epoch') as bar:
    while len(iterations) < flush.epochs:
      saved = jax.device_get(state)  # The live state is donated by the epoch's steps.
      key = jax.random.fold_in(jax.random.fold_in(data_key, len(iterations) + 1), len(rejected))
      state = loop.run(state, phase, key)
      current = trainer.variables_of(state)
      retain_accuracy = accuracy(current, retain) if bool(state['finite']) else float('nan')
      if not retain_accuracy >= floor:  # NaN (a non-finite loss) breaks it too.
        rejected.append({'after_epoch': len(iterations), 'retain_accuracy': retain_accuracy,
                         'learning_rate': learning_rate})
        state = sharding.replicate(saved, mesh)
        if len(rejected) > FLUSH_BACKOFFS:
          stopped = 'margin'
          break
        learning_rate /= 2
        loop.optimizer = dataclasses.replace(loop.optimizer, learning_rate=learning_rate)
        continue
      forget_accuracy = accuracy(current, views.forget)
      iterations.append({'iteration': len(iterations) + 1, 'forget_accuracy': forget_accuracy,
                         'retain_accuracy': retain_accuracy, 'learning_rate': learning_rate})
      common.show(bar, f'Acc(D_f)={forget_accuracy:.3f}, Acc(D_r)={retain_accuracy:.3f}',
                  advance=1)
      if common.forgotten(forget_accuracy, flush.gamma):
        stopped, stop_epoch = 'forgotten', len(iterations)
        break
  variables = trainer.variables_of(state)
  last = iterations[-1] if iterations else {'retain_accuracy': before,
                                            'forget_accuracy': forget_before}
  record = {'epochs': len(iterations), 'stop_epoch': stop_epoch, 'stopped': stopped,
            'backoffs': len(rejected), 'learning_rate': learning_rate,
            'margin': settings.flush_margin, 'retain_sample': int(retain.num_examples),
            'retain_accuracy_before': before, 'retain_accuracy_after': last['retain_accuracy'],
            'forget_accuracy_before': forget_before,
            'forget_accuracy_after': last['forget_accuracy'], 'iterations': iterations,
            'rejected': rejected, 'steps': loop.steps}
  return model, variables, record


def flushed_log_probs(original: methods.TrainedModel, views: pipeline.Views, found_ids, mesh,
                      settings: Settings, batch_size: int) -> tuple[np.ndarray, dict]:
  """Co-forgetting's flush (`guarded_flush`) on the found set from a copy of `original`,
  `batch_size` examples a step; then log p(given label) of every training example, and the
  flush's record."""
  task = methods.Task(views, None, found_ids, mesh, batch_size, settings.seed, settings.recipe)
  model, variables, record = guarded_flush(original, task, settings)
  return (given_log_probs(model, variables, views, mesh, settings.eval_batch_size), record)


def probe_probabilities(original: methods.TrainedModel, views: pipeline.Views, fold, mesh,
                        settings: Settings) -> np.ndarray:
  """Held-out class probabilities of every training example: probe k, trained on every fold
  but k from a fresh initialisation, predicts fold k."""
  train = views.train
  image_shape = train.images.shape[1:]
  probabilities = None
  init_key = seeds.key(settings.seed, seeds.Stream.PROBE_INIT)
  with methods.common.progress(settings.folds, 'probes', 'probe') as bar:
    for k in range(settings.folds):
      held = fold == k
      variables = init_variables(original.model, jax.random.fold_in(init_key, k), image_shape)
      trained, _ = trainer.train(original.model, variables, train.subset(~held),
                                 settings.recipe, mesh=mesh, seed=settings.seed + k,
                                 mask_config=original.mask_config)
      model, variables = methods.common.drop_mode_start(
          methods.TrainedModel(original.model, trained, original.mask_config), image_shape)
      evaluate = evaluation.Evaluator(model, views, None, mesh, settings.eval_batch_size)
      held_probabilities = evaluate.probabilities(variables, train.subset(held))
      if probabilities is None:
        probabilities = np.zeros((train.num_examples, held_probabilities.shape[1]),
                                 np.float32)
      probabilities[held] = held_probabilities
      bar.update()
  return probabilities


def diagnose(original: methods.TrainedModel, views: pipeline.Views, forget_ids, *, mesh,
             settings: Settings, map_summary: dict | None, num_classes: int,
             base: str = 'plain') -> Diagnosis:
  """Diagnoses the found set `forget_ids` of a model trained on `views.train`.

  Args:
    original: the trained model (replicated on `mesh`).
    views: the practitioner's views (`pipeline.make_practitioner_views`): D_f = the found set.
    forget_ids: the found set's dataset ids (rows of `views.train`).
    mesh: the device mesh.
    settings: see `Settings`.
    map_summary: a benchmark's summary (`advice.load`), with its tasks' regularity scores;
      None: no placement and no advice (what the benchmark that measures the scores runs).
    num_classes: the dataset's classes (the model may have more outputs).
    base: the checkpoint's base ('plain' or 'etd'), the map's cells to read.
  """
  began = time.perf_counter()
  train = views.train
  num_examples = train.num_examples
  forget_ids = np.asarray(forget_ids)
  if len(forget_ids) < max(MIN_FOUND, settings.folds):
    raise ValueError(f'forget_ids: {len(forget_ids)} found examples; a diagnosis needs at '
                     f'least {max(MIN_FOUND, settings.folds)} (folds={settings.folds}, and two '
                     'halves for calibration).')
  rng = np.random.default_rng([settings.seed, int(seeds.Stream.DIAGNOSIS)])
  in_forget = np.isin(train.ids, forget_ids)
  labels = train.labels
  # Calibration halves: A plays the found set, B hides among the candidates.
  shuffled = rng.permutation(np.flatnonzero(in_forget))
  in_a = np.zeros(num_examples, bool)
  in_a[shuffled[:len(shuffled) // 2]] = True
  in_b = in_forget & ~in_a

  start_model, start_variables = methods.common.drop_mode_start(original, train.images.shape[1:])
  log_prob = given_log_probs(start_model, start_variables, views, mesh, settings.eval_batch_size)
  # Both flushes take the calibration half's batch size: one compiled step serves both.
  flush_batch = methods.common.shared_batch_size(settings.batch_size, int(in_a.sum()), mesh)
  logging.info('Co-forgetting: flushing the %d found examples.', len(forget_ids))
  flushed, flush_record = flushed_log_probs(original, views, forget_ids, mesh, settings,
                                            flush_batch)
  logging.info('Co-forgetting, calibration: flushing half of them (%d).', in_a.sum())
  flushed_a, flush_record_a = flushed_log_probs(original, _with_found(views, in_a),
                                                train.ids[in_a], mesh, settings, flush_batch)
  co_forgetting = suspects.co_forgetting(log_prob, flushed)
  co_forgetting_a = suspects.co_forgetting(log_prob, flushed_a)

  fold = regularity.folds(num_examples, np.flatnonzero(in_forget), settings.folds, rng)
  logging.info('Training %d probe models.', settings.folds)
  probabilities = probe_probabilities(original, views, fold, mesh, settings)
  agrees = probabilities.argmax(1) == labels
  regularity_score = regularity.score(agrees[in_forget], agrees[~in_forget],
                                      num_classes=num_classes, bootstrap=settings.bootstrap,
                                      rng=rng)
  disagreement, flagged = suspects.disagreement(
      labels, suspects.class_probabilities(probabilities, num_classes))

  retain = ~in_forget
  candidates = ~in_a
  hidden = in_b[candidates]
  calibrations = suspects.calibrate_all({'co_forgetting': co_forgetting_a[candidates],
                                         'disagreement': disagreement[candidates]}, hidden,
                                        resamples=settings.bootstrap, rng=rng)
  # Only the signals whose calibration tells them from chance rank the real candidates.
  full = {'co_forgetting': co_forgetting, 'disagreement': disagreement}
  informative = [name for name in full if calibrations[name]['informative']]
  combined = np.full(num_examples, np.nan)
  if informative:
    combined[retain] = suspects.combine([full[name][retain] for name in informative],
                                        [calibrations[name] for name in informative])
  cut = suspects.threshold(calibrations['combined'], len(forget_ids))
  retain_positions = np.flatnonzero(retain)
  num_suspects = 0 if cut is None else cut['num_suspects']
  suspect_positions = retain_positions[suspects.top(combined[retain], num_suspects)]
  suspect_ids = train.ids[suspect_positions]

  if map_summary is None:  # A benchmark measuring the scores themselves: no map to place on.
    task, tasks, advised, references, decision = None, [], None, None, None
  else:
    references = map_summary['regularity_scores']
    regularity_score['measurable'] = regularity.placeable(
        regularity_score['score'], references, calibrations['co_forgetting']['informative'])
    rate, interval = ((None, None) if cut is None else
                      (cut['estimated_discovery_rate'], (cut['estimated_discovery_rate_low'],
                                                         cut['estimated_discovery_rate_high'])))
    task, tasks, advised = advice.place(map_summary, regularity_score, rate, base,
                                        interval=interval)
    decision = advice.suspects_decision(map_summary, tasks, cut)
  summary = {
      'num_train': int(num_examples), 'num_found': int(len(forget_ids)),
      'folds': settings.folds, 'probe_steps': settings.recipe.steps,
      'regularity': {**regularity_score, 'nearest_task': task,
                     'row': regularity.ROWS.get(task), 'tasks_within': tasks,
                     'reference_scores': references},
      'co_forgetting': {'flush': _flush_summary(flush_record),
                        'calibration_flush': _flush_summary(flush_record_a)},
      'disagreement': {'flagged_in_retain': int(flagged[retain].sum()),
                       'flagged_in_found': int(flagged[in_forget].sum())},
      'calibration': {name: {k: v for k, v in c.items() if k not in ('recall_curve',
                                                                      'resampled')}
                      for name, c in calibrations.items()},
      'threshold': cut, 'num_suspects': int(len(suspect_ids)),
      'advice': advised, 'add_suspects': decision,
      'map_source': (map_summary or {}).get('source', ''),
      'wall_time_s': time.perf_counter() - began}
  scores = {'ids': train.ids, 'in_forget': in_forget, 'fold': fold,
            'co_forgetting': co_forgetting, 'disagreement': disagreement, 'combined': combined,
            'own_loss': suspects.own_loss(log_prob), 'flagged': flagged,
            'probe_probabilities': probabilities,
            'calibration_recall_combined': np.asarray(
                calibrations['combined'].get('recall_curve', []), np.float64)}
  return Diagnosis(summary, scores, suspect_ids)


def _flush_summary(record: dict) -> dict:
  return {**{k: record[k] for k in ('epochs', 'stop_epoch', 'stopped', 'backoffs',
                                     'learning_rate', 'margin', 'retain_sample',
                                     'retain_accuracy_before', 'retain_accuracy_after',
                                     'forget_accuracy_before', 'forget_accuracy_after')},
          'forget_accuracy': [it['forget_accuracy'] for it in record['iterations']],
          'retain_accuracy': [it['retain_accuracy'] for it in record['iterations']]}


# ---- The report ---------------------------------------------------------------------------------


def _percent(value) -> str:
  return 'n/a' if value is None or value != value else f'{100 * value:.1f}'


def _interval(cut: dict, key: str, fmt: str) -> str:
  """'value (low–high)' of a `suspects.threshold` estimate."""
  low, high = cut[f'{key}_low'], cut[f'{key}_high']
  bounds = ('no interval' if low != low else
            f'{int(100 * cut["level"])} % interval {low:{fmt}}–{high:{fmt}}')
  return f'{cut[key]:{fmt}} ({bounds})'


def _flush_line(name: str, flush: dict) -> str:
  return (f'{name}: Acc(D_r) {flush["retain_accuracy_before"]:.3f} before, '
          f'{flush["retain_accuracy_after"]:.3f} after (margin {flush["margin"]:g}, on '
          f'{flush["retain_sample"]} examples of D_r); Acc(D_f) '
          f'{flush["forget_accuracy_before"]:.3f} → {flush["forget_accuracy_after"]:.3f} in '
          f'{flush["epochs"]} epochs, stopped: {flush["stopped"]}'
          + (f' ({flush["backoffs"]} back-offs, last learning rate {flush["learning_rate"]:g})'
             if flush['backoffs'] else '') + '.')


def report_markdown(summary: dict) -> str:
  """report.md: the task's place on the map, the suspects and the advice; "cannot tell"
  wherever the calibration cannot support a number."""
  reg, cut, adv = summary['regularity'], summary['threshold'], summary['advice']
  lines = [
      '# Diagnosis', '',
      f'{summary["num_found"]} found corrupted examples among {summary["num_train"]} training '
      'examples.', '',
      '## Regularity', '',
      f'Score {reg["score"]:.3f} ({int(100 * reg["level"])} % interval {reg["low"]:.3f}–'
      f'{reg["high"]:.3f}): how predictable the found labels are from the rest of the data, '
      'from chance (0) to as predictable as clean labels (1, the cap). Held-out agreement with '
      f'the given labels {reg["forget_agreement"]:.3f} on the found set, '
      f'{reg["retain_agreement"]:.3f} on the rest, {reg["chance_agreement"]:.3f} by chance; '
      f'from {summary["folds"]} probe models of {summary["probe_steps"]} steps.', '']
  if adv is not None and reg['score'] != reg['score']:
    lines += ['Row: **cannot tell**. The probes predict clean labels no better than chance, so '
              'the score says nothing (train them longer: `probe_steps`).', '']
  elif adv is not None and not reg['measurable']:
    lines += ['Row: **cannot tell**. The found labels are about as predictable as clean ones, '
              'but flushing half of the found set does not single out the other half '
              '(co-forgetting\'s calibration, below): no shared pattern shows. The found '
              'examples may not be corrupted.', '']
  elif adv is not None:
    refs = ', '.join(f'{t} {s:.2f}' for t, s in sorted(reg['reference_scores'].items()))
    lines += [f'Nearest benchmark task: **{reg["nearest_task"]}**, the map\'s **{reg["row"]}** '
              f'regularity row; the interval lies '
              f'**{regularity.describe_rows(reg["tasks_within"])}** (benchmark scores: {refs}).',
              '']
  lines += [
      '## Suspects', '',
      '| signal | calibration AUC (95 % interval) | verdict | cut-off recall | '
      'estimated precision |', '|---|---|---|---|---|']
  for name in SIGNALS:
    c = summary['calibration'][name]
    auc = ('n/a' if c['auc'] != c['auc'] else
           f'{c["auc"]:.3f} ({c["auc_low"]:.3f}–{c["auc_high"]:.3f})')
    if c['informative']:
      lines.append(f'| {name} | {auc} | finds | {_percent(c["recall"])} % | '
                   f'{_percent(c["precision"])} % |')
    else:
      lines.append(f'| {name} | {auc} | cannot tell | – | – |')
  flush = summary['co_forgetting']
  lines += [
      '', 'Calibration: half of the found set played the found set, the other half hid among '
      'the rest; AUC 0.5 means a signal finds nothing, and a signal whose interval holds 0.5 '
      'cannot be told from chance: it gives no estimate and ranks nothing.', '',
      'Co-forgetting\'s flush (NPO on the found set, stopped before Acc(D_r) falls more than '
      'the margin):', '', f'- {_flush_line("whole found set", flush["flush"])}',
      f'- {_flush_line("calibration half", flush["calibration_flush"])}', '']
  if cut is None:
    lines += ['Suspects: **cannot tell**. No signal\'s calibration tells it from chance, so '
              'this diagnosis estimates neither how many corrupted examples are left nor the '
              'discovery rate, and names no suspects.', '']
  else:
    lines += [
        f'Estimated corrupted examples left unfound: {_interval(cut, "remaining", ".1f")}. '
        f'Suspects: {summary["num_suspects"]} (`suspects.json`), expected to hold '
        f'{_interval(cut, "expected_corrupted_among_suspects", ".1f")} of them. Estimated '
        f'discovery rate: {_interval(cut, "estimated_discovery_rate", ".2f")}. Intervals: '
        'the calibration re-read on bootstrap draws of the hidden half and the other '
        'candidates.', '']
  lines += ['## Advice', '']
  if adv is None:
    lines.append('None: no map summary to read it from (give `--config.records`).')
    return '\n'.join(lines) + '\n'
  best, runner = adv['best'], adv['runner_up']
  source = summary['map_source'] or 'the packaged CPU map'
  rate_text = ('unknown' if adv['discovery_rate'] is None else
               f'{adv["discovery_rate"]:g} (the map\'s nearest)')
  if adv['row'] is None:
    lines += [f'Map row: cannot tell ({adv["base"]} base; from {source}); discovery rate '
              f'{rate_text}. The best in each row:', '', *_by_row_table(adv['by_row']), '',
              f'Best on average over the rows: **{best["method"]}** (H×U '
              f'{_percent(best["healed_x_utility"])} ± {_percent(best["sem"])} %); '
              '`unlearn=true` without `method` runs it.']
    return '\n'.join(lines + ['', _decision_line(summary)]) + '\n'
  if adv['discovery_rate'] is None:
    lines += [
        f'Map row: {adv["row"]} regularity ({adv["base"]} base; from {source}). The discovery '
        'rate is unknown (cannot tell), so the advice covers every rate of the map:', '',
        '| discovery rate | best | H×U % | runner-up | H×U % |', '|---|---|---|---|---|']
  else:
    lines += [
        f'Map cell: {adv["row"]} regularity, discovery rate {adv["discovery_rate"]:g} '
        f'({adv["base"]} base; from {source}).', '',
        f'Advised: **{best["method"]}**, H×U {_percent(best["healed_x_utility"])} ± '
        f'{_percent(best["sem"])} % over {best["seeds"]} seeds.']
    if runner is not None:
      lines.append(f'Runner-up: {runner["method"]}, {_percent(runner["healed_x_utility"])} ± '
                   f'{_percent(runner["sem"])} %.')
    lines += ['', '| method | H×U % | SEM |', '|---|---|---|']
    lines += [f'| {c["method"]} | {_percent(c["healed_x_utility"])} | {_percent(c["sem"])} |'
              for c in adv['cell']]
    if len(adv['per_rate']) > 1:
      lines += ['', 'Within the discovery rate\'s interval the map reads these cells:', '',
                '| discovery rate | best | H×U % | runner-up | H×U % |', '|---|---|---|---|---|']
  if adv['discovery_rate'] is None or len(adv['per_rate']) > 1:
    for r in adv['per_rate']:
      second = r['runner_up'] or {'method': '–', 'healed_x_utility': None}
      lines.append(f'| {r["discovery_rate"]:g} | {r["best"]["method"]} | '
                   f'{_percent(r["best"]["healed_x_utility"])} | {second["method"]} | '
                   f'{_percent(second["healed_x_utility"])} |')
  if adv['discovery_rate'] is None:
    lines += ['', f'Best on average over those rates: **{best["method"]}** (H×U '
              f'{_percent(best["healed_x_utility"])} ± {_percent(best["sem"])} %); '
              '`unlearn=true` without `method` runs it.']
  if adv['by_row']:
    lines += ['', 'The regularity interval reaches other rows too; their best at the same '
              'discovery rate:', '', *_by_row_table(adv['by_row'])]
  return '\n'.join(lines + ['', _decision_line(summary)]) + '\n'


def _by_row_table(by_row) -> list[str]:
  lines = ['| row | best | H×U % | runner-up | H×U % |', '|---|---|---|---|---|']
  for r in by_row:
    second = r['runner_up'] or {'method': '–', 'healed_x_utility': None}
    lines.append(f'| {r["row"]} ({r["task"]}) | {r["best"]["method"]} | '
                 f'{_percent(r["best"]["healed_x_utility"])} | {second["method"]} | '
                 f'{_percent(second["healed_x_utility"])} |')
  return lines


def _decision_line(summary: dict) -> str:
  decision = summary['add_suspects']
  return (f'Unlearn the suspects with the found set: **{"yes" if decision["add"] else "no"}** '
          f'({decision["why"]}); `unlearn=true` follows this unless `add_suspects` says '
          'otherwise.')


def headline(result: dict) -> str:
  """What the command prints: the diagnosis in three lines."""
  reg, cut, adv = result['regularity'], result['threshold'], result['advice']
  if adv is None:
    place = ''
  elif reg['score'] != reg['score']:
    place = ': row cannot tell (the probes predict clean labels no better than chance)'
  elif not reg['measurable']:
    place = (': row cannot tell (labels as predictable as clean ones, and no shared pattern '
             'in co-forgetting)')
  else:
    place = (f': nearest {reg["nearest_task"]}, the {reg["row"]} row of the map; its interval '
             f'lies {regularity.describe_rows(reg["tasks_within"])}')
  if cut is None:
    found = ('Suspects: cannot tell (no signal beats chance in calibration); no count, no '
             'discovery rate.')
  else:
    found = (f'{result["num_suspects"]} suspects, about '
             f'{cut["expected_corrupted_among_suspects"]:.0f} '
             f'({cut["expected_corrupted_among_suspects_low"]:.0f}-'
             f'{cut["expected_corrupted_among_suspects_high"]:.0f}) of them corrupted; '
             f'estimated discovery rate {cut["estimated_discovery_rate"]:.2f} '
             f'({cut["estimated_discovery_rate_low"]:.2f}-'
             f'{cut["estimated_discovery_rate_high"]:.2f}).')
  if adv is None:
    advised = 'No advice: no map summary (give --config.records).'
  elif adv['row'] is None:
    advised = f'Advised on average over the rows: {adv["best"]["method"]}.'
  elif adv['discovery_rate'] is None:
    per_rate = ', '.join(f'{r["best"]["method"]} at {r["discovery_rate"]:g}'
                         for r in adv['per_rate'])
    advised = (f'Advised by rate: {per_rate}; on average over them: {adv["best"]["method"]}.')
  else:
    advised = (f'Advised: {adv["best"]["method"]} (H×U '
               f'{_percent(adv["best"]["healed_x_utility"])} % in that cell).')
  if result['add_suspects'] is not None:
    advised += f' Unlearn the suspects too: {"yes" if result["add_suspects"]["add"] else "no"}.'
  lines = [f'Regularity {reg["score"]:.2f} ({reg["low"]:.2f}-{reg["high"]:.2f}){place}.', found,
           f'{advised} Report: {result["report"]}.']
  if 'unlearned' in result:
    lines.append(f'Unlearned with {result["unlearned"]["method"]}: Utility '
                 f'{result["unlearned"]["after"]["utility"]:.4f}.')
  return '\n'.join(lines)


def plot(diagnosis: Diagnosis, path: pathlib.Path) -> None:
  """The figure: the combined score's calibration recall curve, and the scores of D_r against
  the suspects' cut-off."""
  figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
  recall = diagnosis.scores['calibration_recall_combined']
  calibration = diagnosis.summary['calibration']['combined']
  if calibration['informative']:
    left.plot(np.arange(1, len(recall) + 1), recall)
    left.axvline(calibration['cutoff'], color='k', linestyle=':')
    left.set(xscale='log')
  else:
    left.text(0.5, 0.5, 'cannot tell', ha='center', va='center', transform=left.transAxes)
  left.set(xlabel='candidates taken, most suspect first', ylabel='recall of the hidden half',
           title='calibration (combined)')
  combined = diagnosis.scores['combined']
  ranked = combined[~np.isnan(combined)]  # Empty where no signal is informative.
  right.hist(ranked, bins=50)
  right.set(xlabel='combined score (percentile)', ylabel='examples of D_r',
            title=(f'{diagnosis.summary["num_suspects"]} suspects' if ranked.size else
                   'suspects: cannot tell'), yscale='log' if ranked.size else 'linear')
  figure.tight_layout()
  files.write_atomic(path, lambda f: figure.savefig(f, format='png', dpi=120))
  plt.close(figure)


def write(diagnosis: Diagnosis, workdir: pathlib.Path) -> None:
  files.write_json_atomic(workdir / RESULTS_FILE, diagnosis.summary)
  files.write_json_atomic(workdir / SUSPECTS_FILE,
                          {'suspect_ids': diagnosis.suspect_ids.tolist()})
  files.write_atomic(workdir / SCORES_FILE, lambda f: np.savez(f, **diagnosis.scores))
  files.write_atomic(workdir / REPORT_FILE,
                     lambda f: f.write(report_markdown(diagnosis.summary).encode()))
  plot(diagnosis, workdir / FIGURE_FILE)


# ---- The experiment -----------------------------------------------------------------------------


def inert_fields(config: ml_collections.ConfigDict, recorded: dict | None) -> dict[str, str]:
  """The fields that cannot change this diagnosis (an override of one is an error)."""
  inert = {}
  if recorded is not None:
    inert['train'] = ("the checkpoint is a launch.py workdir: the probes repeat the recipe it "
                      'records (probe_steps shortens it)')
  if not config.unlearn:
    inert['method'] = 'unlearn=false: no method runs after the diagnosis'
    inert['add_suspects'] = 'unlearn=false: nothing is unlearned after the diagnosis'
  if config.base == 'plain':
    inert['model.expansion'] = "base='plain' has no extra units"
  return inert


def unlearning_method(config: ml_collections.ConfigDict, summary: dict) -> str:
  """`method` if set, else the advised one (with an unknown discovery rate: the best on average
  over the map's rates, `advice.advise`)."""
  return config.method or summary['advice']['best']['method']


def ids_to_unlearn(add_suspects: str, diagnosis: Diagnosis, forget_ids) -> np.ndarray:
  """D_f, with the suspects where `add_suspects` is 'yes', or 'auto' and the diagnosis's
  decision (`advice.suspects_decision`) says so."""
  decision = diagnosis.summary['add_suspects']
  add = add_suspects == 'yes' or (add_suspects == 'auto' and decision is not None
                                  and decision['add'])
  return np.union1d(forget_ids, diagnosis.suspect_ids) if add else np.asarray(forget_ids)


def _unlearn(config, workdir: pathlib.Path, diagnosis: Diagnosis, forget_ids, overwrite: bool
             ) -> dict:
  """configs/unlearn.py on D_f, and the suspects where `add_suspects` (or, at 'auto', the
  diagnosis's decision) says so, with `method` or the advised one."""
  ids = ids_to_unlearn(config.add_suspects, diagnosis, forget_ids)
  files.write_json_atomic(workdir / UNLEARN_IDS_FILE, {'forget_ids': ids.tolist()})
  unlearn = config_lib.unlearn_config()
  for name in unlearn:
    if name not in ('experiment',):
      unlearn[name] = config[name]
  unlearn.forget_ids = str(workdir / UNLEARN_IDS_FILE)
  unlearn.method = unlearning_method(config, diagnosis.summary)
  logging.info('Unlearning %d examples (%d found, %d suspects added) with %s.', len(ids),
               len(forget_ids), len(ids) - len(forget_ids), unlearn.method)
  return practitioner.run(unlearn, workdir / UNLEARNED_DIR, overwrite=overwrite)


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
        overrides=()) -> dict:
  """Diagnoses `config.forget_ids` of `config.checkpoint`; writes the report to `workdir`.

  Everything that can be checked before the data, the model and the benchmark's records are
  used is: the fields, the method settings, the overrides, the checkpoint against the data,
  the records (they must cover the checkpoint's base), the forget ids against the folds.
  """
  mesh = sharding.make_mesh()
  practitioner.check_config(config, mesh, template=config_lib.diagnose_config(),
                            extra_fields=DIAGNOSE_FIELDS)
  recorded = practitioner.trained_with(config)
  fields.check_overrides(overrides, inert_fields(config, recorded))
  if recorded is not None:
    practitioner.check_matches(config, recorded)
  map_summary = advice.load(config.records)
  if map_summary is not None:
    advice.check_covers(map_summary, config.base)
  elif config.unlearn and not config.method:
    raise ValueError('unlearn=true without method needs advice, and there is no map summary '
                     'to advise from: set --config.method or --config.records.')
  workdir = workdir_lib.usable(workdir)
  workdir_lib.claim(workdir, config.to_dict(), overwrite=overwrite,
                    owned=(REPORT_FILE, RESULTS_FILE, FIGURE_FILE, SUSPECTS_FILE, SCORES_FILE,
                           UNLEARN_IDS_FILE, UNLEARNED_DIR))

  def check_ids(forget_ids):
    if not max(MIN_FOUND, config.folds) <= len(forget_ids):
      raise ValueError(f'folds={config.folds}: the forget ids hold {len(forget_ids)} examples; '
                       f'a diagnosis needs at least max({MIN_FOUND}, folds) of them.')

  splits, forget_ids, views, original = practitioner.load_inputs(config, mesh, check_ids)
  recipe = (trainer.Recipe.from_config(recorded['train']) if recorded is not None
            else trainer.Recipe.from_config(config.train))
  diagnosis = diagnose(original, views, forget_ids, mesh=mesh,
                       settings=settings_from(config, recipe), map_summary=map_summary,
                       num_classes=splits.train.num_classes, base=config.base)
  write(diagnosis, workdir)
  logging.info('Diagnosis written to %s: %s', workdir, json.dumps(diagnosis.summary['advice']))
  result = {**diagnosis.summary, 'report': str(workdir / REPORT_FILE)}
  if config.unlearn:
    result['unlearned'] = _unlearn(config, workdir, diagnosis, forget_ids, overwrite)
  return result
