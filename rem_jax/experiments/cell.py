"""One cell of the task space: (dataset, task, discovery rate, method, seed) end to end.

load data -> corrupt (ids saved) -> train the original model on the corrupted data (checkpointed,
resumable) -> evaluate -> unlearn with the configured method -> evaluate -> write the record.

Everything random derives from `config.seed`: the corruption and forget ids (numpy streams
inside `rem_jax.data.corruptions`), the model's initialisation, the training data order and
augmentation, and the masks (`mask_seed = seed`).
"""

import dataclasses
import hashlib
import json
import pathlib
import time

from absl import logging
import jax
import ml_collections

from rem_jax import evaluation
from rem_jax import files
from rem_jax import masks
from rem_jax import methods
from rem_jax import seeds
from rem_jax import sharding
from rem_jax import trainer
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.data import sources
from rem_jax.experiments import config_lib
from rem_jax.experiments import fields
from rem_jax.experiments import plots
from rem_jax.experiments import records
from rem_jax.experiments import workdir as workdir_lib
from rem_jax.models import build_model, describe, init_variables

BASES = fields.BASES
METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
DYNAMICS_FILE = 'dynamics.png'
IDS_FILE = 'corruption.json'
# A cell workdir's D_f, one id per line: what configs/unlearn.py and configs/diagnose.py take as
# `forget_ids`, so the README's commands run on the quickstart's model as written.
FOUND_IDS_FILE = 'found_ids.txt'
TRAIN_RECORD_FILE = 'train.json'
RUNS_DIR = 'runs'
# The fields that decide the corrupted data and the original model: cells that agree on these
# share one trained model (a sweep's `originals/<key>`, a cell workdir's claim).
ORIGINAL_FIELDS = ('seed', 'dataset', 'data', 'task', 'num_corrupted', 'class_pair', 'base',
                   'p_mem', 'model', 'train')


def check_config(config: ml_collections.ConfigDict, mesh=None) -> None:
  """Every field of a cell config, before anything is loaded or trained.

  Names (every section has exactly the fields of `config_lib.cell_config()`), values
  (`fields.CELL_FIELDS`), the combinations (an ETD base needs extra units, REM on it brings
  none of its own), the model's widths, and the settings of every method section. With a
  `mesh`, the batch sizes must also split evenly over its devices. A `ValueError` names the
  field and what is allowed.
  """
  fields.check_names(config.to_dict(), config_lib.cell_config().to_dict(),
                     nested=('data', 'model', 'train'))
  for name in config.methods:
    methods.get_method(name)
  fields.check_values(config.to_dict())
  if config.base == 'etd' and not config.model.expansion > 0:
    raise ValueError("base='etd' trains the model with extra units: set model.expansion > 0 "
                     '(the paper: 1 - capacity).')
  if config.dataset == 'shapes' and (config.data.path or config.data.data_dir):
    raise ValueError("dataset='shapes' is generated: leave data.path and data.data_dir unset.")
  trainer.Recipe.from_config(config.train)
  original_model(config)
  for name in config.methods:
    settings = method_settings(config, name)
    methods.check_settings(name, settings)
    if config.base == 'etd' and fields.is_rem(name) and settings.get('expansion') is not None:
      raise ValueError(f"methods.{name}.expansion={settings.expansion!r}: on base='etd' REM uses "
                       "the base's extra units; leave it unset.")
  if mesh is not None:
    sharding.check_batch_size(config.train.batch_size, mesh, 'train.batch_size')
    sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')


def method_settings(config: ml_collections.ConfigDict, name: str | None = None
                    ) -> ml_collections.ConfigDict:
  """The settings method `name` (default: `config.method`) runs with: its section, and for REM
  the masks' keep probability, which is the config's one `p_mem` (an ETD base's masks and REM's
  are the same masks)."""
  name = name or config.method
  section = config.methods.get(name)
  settings = ml_collections.ConfigDict(section.to_dict() if section is not None else {})
  if fields.is_rem(name):
    settings.p_mem = config.p_mem
  return settings


def original_fields(settings) -> dict:
  """The fields that decide a cell's data and original model, JSON-normalised.

  A plain base has no masks and no extra units, so `p_mem` and `model.expansion` do not shape
  it, and only the inter-class task reads `class_pair`: they are left out, and changing them
  never retrains a model.
  """
  if isinstance(settings, ml_collections.ConfigDict):
    settings = settings.to_dict()
  kept = json.loads(json.dumps({name: settings[name] for name in ORIGINAL_FIELDS}))
  if kept['base'] == 'plain':
    del kept['p_mem']
    kept['model'].pop('expansion', None)
  if kept['task'] != 'inter_class_confusion':
    del kept['class_pair']
  return kept


def original_key(settings) -> str:
  """A short hash of `original_fields`: cells with the same key share one trained model."""
  text = json.dumps(original_fields(settings), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_name(config: ml_collections.ConfigDict) -> str:
  """The folder of one unlearning run in a cell workdir: method, discovery rate and a hash of
  everything else that shapes its result (its settings, the evaluation batch size)."""
  shaping = {'method': config.method, 'discovery_rate': config.discovery_rate,
             'settings': method_settings(config).to_dict(),
             'eval_batch_size': config.eval_batch_size}
  digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:8]
  return f'{config.method}_rate{config.discovery_rate:g}_{digest}'


def load_splits(config) -> sources.Splits:
  data = config.data
  return sources.load(config.dataset, path=data.path or None, data_dir=data.data_dir or None,
                      image_size=data.image_size or None, seed=config.seed,
                      num_train=data.num_train, num_test=data.num_test)


def check_data_fits(config, splits: sources.Splits) -> None:
  """The loaded data against the model, before anything is trained."""
  classes = splits.train.num_classes
  if config.model.num_classes < classes:
    raise ValueError(f'model.num_classes={config.model.num_classes} is smaller than the '
                     f'{classes} classes of dataset {config.dataset!r}; set it to at least '
                     f'{classes}.')


def original_model(config):
  """The architecture trained on the corrupted data, and its masks if it is an ETD model."""
  model = build_model(config.model)
  if config.base == 'etd':
    return model, masks.MaskConfig(mask_seed=config.seed, p_mem=config.p_mem)
  return model.base_model(), None


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A corrupted dataset and the original model trained on it: what every method starts from.

  `record` holds the forget sets of every prepared discovery rate; `views(rate)` and
  `task(mesh, seed, rate)` give one cell's views and method input. `corrupted_only=False`: the
  record's forget sets may hold clean examples (a diagnosis's suspects added to them).
  """
  splits: sources.Splits
  images: dict
  record: corruptions.CorruptionRecord
  recipe: trainer.Recipe
  original: methods.TrainedModel
  train_record: dict
  corrupted_only: bool = True

  def views(self, rate: float) -> pipeline.Views:
    return pipeline.make_views(self.splits, self.record, self.record.forget_ids_at(rate),
                               self.images, corrupted_only=self.corrupted_only)

  def task(self, mesh, seed: int, rate: float) -> methods.Task:
    return methods.Task(self.views(rate), self.record, self.record.forget_ids_at(rate), mesh,
                        self.recipe.batch_size, seed, self.recipe)

  def placed_on(self, mesh) -> 'Prepared':
    """The same data and original model, copied onto `mesh` (a cell running on part of the
    devices: `rem_jax.experiments.concurrent`); itself when it is on `mesh` already."""
    if self.images['train'].sharding == sharding.replicated(mesh):
      return self
    original = dataclasses.replace(
        self.original, variables=sharding.replicate(self.original.variables, mesh))
    return dataclasses.replace(self, images=sharding.replicate(self.images, mesh),
                               original=original)


def prepare(config: ml_collections.ConfigDict, mesh, *, rates=None, workdir=None,
            log_metrics=None, splits: sources.Splits | None = None) -> Prepared:
  """Loads and corrupts the data, then trains the original model on it.

  Args:
    config: a cell config; only the fields that shape the data and the original model are read
      (`ORIGINAL_FIELDS`), plus `discovery_rate` when `rates` is None.
    mesh: the device mesh.
    rates: the discovery rates to draw forget sets for (default: `config.discovery_rate`).
      Forget sets are drawn independently per rate, so adding rates changes none of them.
    workdir: if given, the ids go to `<workdir>/corruption.json` and training checkpoints to
      `<workdir>/checkpoints` (a finished or interrupted training run there is resumed).
    log_metrics: called with the training metrics at every checkpoint interval.
    splits: the loaded dataset, if the caller has it already (`load_splits(config)`).
  """
  rates = [config.discovery_rate] if rates is None else sorted(set(rates))
  if splits is None:
    logging.info('Loading dataset %r.', config.dataset)
    splits = load_splits(config)
  check_data_fits(config, splits)
  record = corruptions.corrupt(
      splits.train.labels, task=config.task, seed=config.seed,
      num_classes=splits.train.num_classes, num_corrupted=config.num_corrupted,
      class_pair=tuple(config.class_pair), rates=rates)
  if workdir is not None:
    corruptions.save_record(record, pathlib.Path(workdir) / IDS_FILE)
  logging.info('Task %s: %d corrupted examples; discovered at rates %s: %s.', config.task,
               record.num_corrupted, rates, [len(record.forget_ids_at(r)) for r in rates])
  images = pipeline.put_images(splits, mesh)
  train_view = pipeline.make_views(splits, record, record.forget_ids_at(rates[0]), images).train

  model, mask_config = original_model(config)
  variables = init_variables(model, seeds.key(config.seed, seeds.Stream.MODEL_INIT),
                             splits.train.images.shape[1:])
  recipe = trainer.Recipe.from_config(config.train)
  logging.info('Training the original %s model (%s) for %d steps.', config.base,
               describe(model), recipe.steps)
  trained, train_record = trainer.train(
      model, variables, train_view, recipe, mesh=mesh, seed=config.seed,
      workdir=workdir, mask_config=mask_config, metadata={'model': describe(model)},
      log_metrics=log_metrics)
  return Prepared(splits, images, record, recipe,
                  methods.TrainedModel(model, trained, mask_config), train_record)


def unlearn_and_evaluate(config: ml_collections.ConfigDict, prepared: Prepared, mesh
                         ) -> tuple[dict, dict, methods.Unlearned]:
  """Runs `config.method` at `config.discovery_rate` on the prepared original model.

  Returns:
    (metrics before, metrics after, the method's result); the result's record carries the
    device-synchronised wall time of the whole method call as `wall_time_s`.
  """
  views = prepared.views(config.discovery_rate)
  # Drop mode: an ETD base is evaluated pruned (the same function at its base's cost).
  model, variables = methods.common.drop_mode_start(prepared.original,
                                                    views.train.images.shape[1:])
  evaluate = evaluation.Evaluator(model, views, prepared.record, mesh, config.eval_batch_size)
  before = evaluate(variables)
  logging.info('Original model: %s', _summary(before))
  logging.info('Unlearning with %s at discovery rate %s.', config.method, config.discovery_rate)
  method = methods.get_method(config.method)
  began = time.perf_counter()
  unlearned = method(prepared.original, prepared.task(mesh, config.seed, config.discovery_rate),
                     method_settings(config))
  jax.block_until_ready(unlearned.variables)
  unlearned.record['wall_time_s'] = time.perf_counter() - began
  after = dataclasses.replace(evaluate, model=unlearned.model)(unlearned.variables)
  logging.info('After %s: %s', config.method, _summary(after))
  return before, after, unlearned


def train_record(workdir: pathlib.Path, prepared: Prepared) -> dict:
  """The original's training record, kept from the run that trained it (a later run that only
  reloads the model would record 0 s); a run resumed after a kill timed only its last part, so
  its time is also projected to the whole run (`wall_time_full_s`)."""
  path = workdir / TRAIN_RECORD_FILE
  if path.exists():
    return json.loads(path.read_text())
  record = dict(prepared.train_record)
  steps_run = record['steps_run']
  record['wall_time_full_s'] = (record['wall_time_s'] * record['steps'] / steps_run
                                if steps_run else None)
  files.write_json_atomic(path, record)
  return record


def write_found_ids(path: pathlib.Path, ids) -> None:
  """`ids`, one per line (the text format `practitioner.read_ids` reads), written atomically."""
  text = ''.join(f'{int(i)}\n' for i in ids)
  files.write_atomic(path, lambda f: f.write(text.encode()))


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
        overrides=()) -> dict:
  """Runs one cell; returns (and writes to `<workdir>/runs/<run>/results.json`) its record.

  The workdir holds one trained model, claimed by the fields that shape it (`original_fields`):
  a re-run with another method, discovery rate or method settings reuses it (or resumes its
  training after a kill), and each unlearning run gets its own folder `runs/<run_name>`, so no
  earlier result is overwritten; a run whose results exist already is not repeated. Other data
  or training fields are refused, naming them, unless `overwrite` (which deletes the model and
  every run's results and starts afresh). Everything is validated before the workdir is touched.
  The run's D_f (its discovery rate's forget ids) goes to `<workdir>/found_ids.txt`, the
  `forget_ids` file configs/unlearn.py and configs/diagnose.py take.

  Args:
    config: a cell config.
    workdir: the cell's folder.
    overwrite: see above.
    overrides: the dotted fields set on the command line; one that has no effect in this run
      (`fields.inert_fields`) is an error.
  """
  mesh = sharding.make_mesh()
  check_config(config, mesh)
  fields.check_overrides(overrides, fields.inert_fields(config.to_dict()))
  workdir = workdir_lib.usable(workdir)
  status = workdir_lib.claim(workdir, original_fields(config), overwrite=overwrite,
                             owned=(IDS_FILE, FOUND_IDS_FILE, METRICS_FILE, TRAIN_RECORD_FILE,
                                    RUNS_DIR))
  run_dir = workdir / RUNS_DIR / run_name(config)
  if (run_dir / RESULTS_FILE).exists():
    logging.info('%s holds this run\'s results already; delete it to run again.', run_dir)
    return json.loads((run_dir / RESULTS_FILE).read_text())
  logging.info('Workdir %s (%s); this run: %s.', workdir, status, run_dir)
  logging.info('Devices: %s; mesh %s.', jax.devices(), dict(mesh.shape))
  training_log = files.JsonLines(workdir / METRICS_FILE)
  prepared = prepare(config, mesh, workdir=workdir,
                     log_metrics=lambda m: training_log.append({'phase': 'train', **m}))
  write_found_ids(workdir / FOUND_IDS_FILE, prepared.record.forget_ids_at(config.discovery_rate))
  trained = train_record(workdir, prepared)
  before, after, unlearned = unlearn_and_evaluate(config, prepared, mesh)
  files.write_json_atomic(run_dir / workdir_lib.CONFIG_FILE, config.to_dict())
  metrics_log = files.JsonLines(run_dir / METRICS_FILE)
  metrics_log.append({'phase': 'before', **before})
  iterations = unlearned.record.get('iterations', [])
  for entry in iterations:
    metrics_log.append({'phase': 'unlearn', **entry})
  if iterations and 'corrupted_accuracy_shared_mask' in iterations[0]:
    plots.plot_dynamics(iterations, run_dir / DYNAMICS_FILE,
                        title=f'{config.method}: {config.task}, discovery {config.discovery_rate}')
  metrics_log.append({'phase': 'after', **after})
  result = records.run_record(config.to_dict(), mesh=mesh, train=trained, before=before,
                              after=after, unlearned=unlearned, ids_file=f'../../{IDS_FILE}',
                              run_dir=str(run_dir))
  files.write_json_atomic(run_dir / RESULTS_FILE, result)
  return json.loads(json.dumps(result))  # As a re-run reads it back.


def _summary(values: dict) -> str:
  return (f'Healed {values["healed"]:.4f}, Utility {values["utility"]:.4f}, '
          f'Healed x Utility {values["healed_x_utility"]:.4f}')
