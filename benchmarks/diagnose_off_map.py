"""The diagnosis where it was not built (issue 35): `shapes` settings, and a clean model.

    python benchmarks/diagnose_off_map.py --workdir=workdirs/diagnose_off_map

The diagnosis was designed, and its references measured, on the CPU map's CIFAR-10 cells
(`benchmarks/diagnose_map.py`). Here it runs as a user first meets it, with the packaged map
summary and every default of `configs/diagnose.py` (probes of the whole training recipe):

- `quickstart`: the quickstart's model (`configs/quickstart.py`: `shapes`, 250 poisoned images,
  seed 0) and the 125 ids it found at discovery rate 0.5;
- `shapes_seed1`: the same recipe at seed 1 with 120 poisoned images, discovery rate 0.3;
- `clean`: the same recipe trained on clean labels (no corruption at all), and 125 training
  ids drawn at random as the "found" set: the right answer is "cannot tell" or "no shared
  pattern", and no count or discovery rate.

Each setting trains its model once (checkpointed in `<workdir>/<setting>/`, resumed after a
kill), diagnoses, scores the outcome against the truth (D_c is known here, never to the
diagnosis) and appends a record to `<workdir>/results.jsonl` (a re-run skips recorded settings).
Then it writes `benchmarks/results/diagnose_off_map.{json,md}`: per setting the regularity
score, its row(s) or "cannot tell", each signal's verdict, the suspects' precision at
k = |D_c \\ D_f| against random, the estimated discovery rate against the truth, whether the
suspects would be added, and the diagnosis's wall time over the model's training run.
`--report` only rewrites the tables from the records.
"""

import json
import pathlib
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # For `rem_jax`.

from rem_jax import files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import seeds  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import sharding  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax import trainer  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.data import pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import advice  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.diagnosis import suspects  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import cell  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import config_lib  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import diagnose  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.experiments import store  # pylint: disable=g-import-not-at-top,wrong-import-position
from rem_jax.models import init_variables  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
# name: (cell overrides of the quickstart's config, discovery rate); num_corrupted 0 = clean.
SETTINGS = {
    'quickstart': ({}, 0.5),
    'shapes_seed1': ({'seed': 1, 'num_corrupted': 120}, 0.3),
    'clean': ({'num_corrupted': 0}, 0.5),
}
CLEAN_FOUND = 125  # The clean setting's random "found" set: the quickstart's |D_f|.


def _clean_original(config, mesh, workdir: pathlib.Path) -> cell.Prepared:
  """The quickstart's recipe on clean labels (no corruption record)."""
  splits = cell.load_splits(config)
  images = pipeline.put_images(splits, mesh)
  train_view = pipeline.make_practitioner_views(splits, [0], images).train
  model, mask_config = cell.original_model(config)
  variables = init_variables(model, seeds.key(config.seed, seeds.Stream.MODEL_INIT),
                             splits.train.images.shape[1:])
  recipe = trainer.Recipe.from_config(config.train)
  trained, train_record = trainer.train(model, variables, train_view, recipe, mesh=mesh,
                                        seed=config.seed, workdir=workdir)
  return cell.Prepared(splits, images, None, recipe,
                       methods.TrainedModel(model, trained, mask_config), train_record)


def measure(name: str, workdir: pathlib.Path, mesh, probe_steps: int | None = None) -> dict:
  """Trains (or resumes) the setting's model, diagnoses it (`probe_steps`: None, the default)
  and scores the diagnosis."""
  overrides, rate = SETTINGS[name]
  # The clean setting's num_corrupted 0 is not a cell field's value: it trains without one.
  config = config_lib.cell_with(discovery_rate=rate, **{
      path: value for path, value in overrides.items() if (path, value) != ('num_corrupted', 0)})
  folder = workdir / name
  if overrides.get('num_corrupted') == 0:
    prepared = _clean_original(config, mesh, folder)
    rng = np.random.default_rng(config.seed)
    forget_ids = np.sort(rng.choice(prepared.splits.train.num_examples, CLEAN_FOUND,
                                    replace=False))
    corrupted_ids = np.array([], np.int64)
  else:
    prepared = cell.prepare(config, mesh, workdir=folder)
    forget_ids = prepared.record.forget_ids_at(rate)
    corrupted_ids = prepared.record.corrupted_ids
  splits, images, original = prepared.splits, prepared.images, prepared.original
  # Kept from the run that trained the model (a re-run only reloads it).
  train_record = cell.train_record(folder, prepared)
  views = pipeline.make_practitioner_views(splits, forget_ids, images, prepared.record)
  diagnose_config = config_lib.diagnose_config()  # Every default, as the README runs it.
  diagnose_config.probe_steps = probe_steps
  settings = diagnose.settings_from(diagnose_config, trainer.Recipe.from_config(config.train))
  began = time.perf_counter()
  result = diagnose.diagnose(original, views, forget_ids, mesh=mesh, settings=settings,
                             map_summary=advice.load(), num_classes=splits.train.num_classes)
  wall = time.perf_counter() - began
  scores, summary = result.scores, result.summary
  retain = ~scores['in_forget']
  corrupted = np.isin(scores['ids'], corrupted_ids)[retain]
  unfound = int(corrupted.sum())
  at_k = {}
  if unfound:
    rankings = {s: scores[s][retain] for s in ('co_forgetting', 'disagreement', 'combined',
                                                'own_loss')}
    rankings['random'] = np.random.default_rng(config.seed).permutation(
        retain.sum()).astype(np.float64)
    for signal, ranking in rankings.items():
      if np.isnan(ranking).all():  # 'combined' where no signal is informative.
        continue
      at_k[signal] = suspects.precision_recall_at(ranking, corrupted, unfound)[0]
  found = np.isin(result.suspect_ids, corrupted_ids)
  training = train_record['wall_time_full_s']
  return {
      'cell': cell_key(name, probe_steps), 'setting': name, 'overrides': overrides,
      'discovery_rate': rate, 'probe_steps': summary['probe_steps'],
      'num_found': int(len(forget_ids)), 'num_corrupted': int(len(corrupted_ids)),
      'num_unfound': unfound, 'num_retain': int(retain.sum()),
      'true_discovery_rate': (len(forget_ids) / len(corrupted_ids) if len(corrupted_ids)
                              else None),
      'regularity': summary['regularity'], 'calibration': summary['calibration'],
      'threshold': summary['threshold'], 'advice': summary['advice'],
      'add_suspects': summary['add_suspects'], 'flush': summary['co_forgetting'],
      'precision_at_k': at_k, 'random_precision': unfound / retain.sum(),
      'suspects': {'count': int(len(result.suspect_ids)), 'corrupted': int(found.sum())},
      'wall_time_s': wall, 'training_wall_time_s': training,
      'cost_over_training': wall / training}


def cell_key(name: str, probe_steps: int | None) -> str:
  return name if probe_steps is None else f'{name},probe_steps={probe_steps}'


def _row(r: dict) -> str:
  reg = r['regularity']
  place = ('cannot tell' if not reg['measurable'] else
           f'{reg["row"]}; interval: {", ".join(reg["tasks_within"])}')
  verdicts = ', '.join(f'{s} {"finds" if c["informative"] else "cannot tell"} '
                       f'(AUC {c["auc"]:.2f})' for s, c in r['calibration'].items()
                       if s != 'combined')
  at_k = r['precision_at_k']
  precision = (f'{at_k["combined"]:.2f} / {r["random_precision"]:.3f}' if 'combined' in at_k
               else ('no corrupted example left' if not r['num_unfound'] else 'abstains'))
  cut = r['threshold']
  rate = ('cannot tell' if cut is None else
          f'{cut["estimated_discovery_rate"]:.2f} ({cut["estimated_discovery_rate_low"]:.2f}–'
          f'{cut["estimated_discovery_rate_high"]:.2f})')
  truth = 'n/a' if r['true_discovery_rate'] is None else f'{r["true_discovery_rate"]:.2f}'
  add = 'yes' if r['add_suspects']['add'] else 'no'
  return (f'| {r["setting"]} | {r["probe_steps"]} | {reg["score"]:.2f} ({reg["low"]:.2f}–{reg["high"]:.2f}) | '
          f'{place} | {verdicts} | {precision} | {r["suspects"]["count"]} | {rate} | {truth} | '
          f'{add} | {r["cost_over_training"]:.2f} |')


def report_markdown(rows) -> str:
  lines = ['Diagnosis off the map (`python benchmarks/diagnose_off_map.py`, its docstring): '
           '`shapes` settings and a clean model, with the packaged map summary and every '
           'default of `configs/diagnose.py`.', '',
           '| setting | probe steps | regularity score (95 % interval) | row | signals '
           '(calibration) | '
           'suspects\' precision at k: combined / random | suspects | estimated discovery '
           'rate | true | add suspects | diagnosis / training time |',
           '|---|---|---|---|---|---|---|---|---|---|---|']
  lines += [_row(r) for r in sorted(rows, key=lambda r: (list(SETTINGS).index(r['setting']),
                                                         r['probe_steps']))]
  return '\n'.join(lines) + '\n'


_WORKDIR = flags.DEFINE_string('workdir', 'workdirs/diagnose_off_map', 'Models and records.')
_SETTINGS = flags.DEFINE_list('settings', list(SETTINGS), 'Which settings.')
_REPORT = flags.DEFINE_bool('report', False, 'Only write the report from the records.')
_PROBE_STEPS = flags.DEFINE_integer('probe_steps', None, "Each probe's steps (unset: "
                                    "configs/diagnose.py's default, 1.5 × the recipe's ÷ folds).")
_OUTPUT = flags.DEFINE_string(
    'output', str(ROOT / 'benchmarks' / 'results' / 'diagnose_off_map'),
    'The report (.json and .md).')


def main(argv):
  del argv
  unknown = sorted(set(_SETTINGS.value) - set(SETTINGS))
  if unknown:
    sys.exit(f'diagnose_off_map.py: error: --settings: {unknown} unknown; allowed: '
             f'{list(SETTINGS)}.')
  workdir = pathlib.Path(_WORKDIR.value)
  results = store.ResultStore(workdir / store.RESULTS_FILE)
  if not _REPORT.value:
    mesh = sharding.make_mesh()
    done = results.finished_cells()
    for name in _SETTINGS.value:
      if cell_key(name, _PROBE_STEPS.value) not in done:
        print(f'diagnose_off_map: {name}', file=sys.stderr, flush=True)
        results.append(measure(name, workdir, mesh, _PROBE_STEPS.value))
  rows = results.read()
  if not rows:
    sys.exit(f'diagnose_off_map.py: error: no records in {workdir / store.RESULTS_FILE}.')
  output = pathlib.Path(_OUTPUT.value)
  files.write_json_atomic(output.with_suffix('.json'), {'records': rows})
  text = report_markdown(rows)
  files.write_atomic(output.with_suffix('.md'), lambda f: f.write(text.encode()))
  print(text)


if __name__ == '__main__':
  app.run(main)
