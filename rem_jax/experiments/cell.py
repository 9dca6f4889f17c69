"""One cell of the task space: (dataset, task, discovery rate, method, seed) end to end.

load data -> corrupt (ids saved) -> train the original model on the corrupted data (checkpointed,
resumable) -> evaluate -> unlearn with the configured method -> evaluate -> write the record.

Everything random derives from `config.seed`: the corruption and forget ids (numpy streams
inside `rem_jax.data.corruptions`), the model's initialisation, the training data order and
augmentation, and the masks (`mask_seed = seed`).
"""

import dataclasses
import pathlib
import platform
import time

from absl import logging
import jax
import ml_collections

from rem_jax import checkpoints
from rem_jax import evaluation
from rem_jax import files
from rem_jax import masks
from rem_jax import methods
from rem_jax import sharding
from rem_jax import trainer
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.data import sources
from rem_jax.experiments import plots
from rem_jax.models import build_model, describe, init_variables

BASES = ('plain', 'etd')
METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
DYNAMICS_FILE = 'dynamics.png'
IDS_FILE = 'corruption.json'
TOP_LEVEL_FIELDS = ('seed', 'dataset', 'data', 'task', 'num_corrupted', 'class_pair',
                    'discovery_rate', 'method', 'methods', 'base', 'p_mem', 'model', 'train',
                    'eval_batch_size')
# The fields that decide the corrupted data and the original model: cells that agree on these
# share one trained model (the sweep's cache key).
ORIGINAL_FIELDS = ('seed', 'dataset', 'data', 'task', 'num_corrupted', 'class_pair', 'base',
                   'p_mem', 'model', 'train')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Names, values and fields of a cell config; a ValueError names the field and the choices."""
  unknown = sorted(set(config.keys()) - set(TOP_LEVEL_FIELDS))
  if unknown:
    raise ValueError(f'config fields {unknown} are unknown; allowed: {sorted(TOP_LEVEL_FIELDS)}.')
  missing = sorted(set(TOP_LEVEL_FIELDS) - set(config.keys()))
  if missing:
    raise ValueError(f'config lacks the fields {missing}; start from configs/quickstart.py.')
  if config.dataset not in sources.DATASETS:
    raise ValueError(f'dataset={config.dataset!r} is unknown; allowed: {list(sources.DATASETS)}.')
  if config.task not in corruptions.TASKS:
    raise ValueError(f'task={config.task!r} is unknown; allowed: {list(corruptions.TASKS)}.')
  corruptions.check_discovery_rate(config.discovery_rate)
  methods.get_method(config.method)
  if config.base not in BASES:
    raise ValueError(f'base={config.base!r} is unknown; allowed: {list(BASES)}.')
  if config.base == 'etd' and not config.model.expansion > 0:
    raise ValueError('base=\'etd\' trains the model with extra units: set model.expansion > 0 '
                     '(the paper: 1 - capacity).')
  trainer.Recipe.from_config(config.train)
  build_model(config.model)


def load_splits(config) -> sources.Splits:
  data = config.data
  return sources.load(config.dataset, path=data.path or None, data_dir=data.data_dir or None,
                      image_size=data.image_size or None, seed=config.seed,
                      num_train=data.num_train, num_test=data.num_test)


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
  `task(mesh, seed, rate)` give one cell's views and method input.
  """
  splits: sources.Splits
  images: dict
  record: corruptions.CorruptionRecord
  recipe: trainer.Recipe
  original: methods.TrainedModel
  train_record: dict

  def views(self, rate: float) -> pipeline.Views:
    return pipeline.make_views(self.splits, self.record, self.record.forget_ids_at(rate),
                               self.images)

  def task(self, mesh, seed: int, rate: float) -> methods.Task:
    return methods.Task(self.views(rate), self.record, self.record.forget_ids_at(rate), mesh,
                        self.recipe.batch_size, seed, self.recipe)

  def on(self, mesh) -> 'Prepared':
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
  variables = init_variables(model, jax.random.fold_in(jax.random.key(config.seed), 0),
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
  evaluate = evaluation.Evaluator(prepared.original.model, views, prepared.record, mesh,
                                  config.eval_batch_size)
  before = evaluate(prepared.original.variables)
  logging.info('Original model: %s', _summary(before))
  logging.info('Unlearning with %s at discovery rate %s.', config.method, config.discovery_rate)
  method = methods.get_method(config.method)
  method_config = config.methods.get(config.method, ml_collections.ConfigDict())
  began = time.perf_counter()
  unlearned = method(prepared.original, prepared.task(mesh, config.seed, config.discovery_rate),
                     method_config)
  jax.block_until_ready(unlearned.variables)
  unlearned.record['wall_time_s'] = time.perf_counter() - began
  after = dataclasses.replace(evaluate, model=unlearned.model)(unlearned.variables)
  logging.info('After %s: %s', config.method, _summary(after))
  return before, after, unlearned


def environment() -> dict:
  """Versions and devices, recorded with every result."""
  return {'versions': {'jax': jax.__version__, 'python': platform.python_version()},
          'device': str(jax.devices()[0].device_kind), 'num_devices': jax.device_count()}


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False) -> dict:
  """Runs one cell; returns (and writes to `<workdir>/results.json`) its record.

  A workdir holding a run of the same config is resumed from its last training checkpoint; one
  holding another config's run is refused unless `overwrite`, which starts afresh.
  """
  check_config(config)
  workdir = pathlib.Path(workdir).expanduser().absolute()
  status = checkpoints.check_workdir(workdir, config.to_dict(), overwrite=overwrite)
  if status == 'overwrite':  # check_workdir cleared the checkpoints; the rest is ours.
    for name in (METRICS_FILE, RESULTS_FILE):
      (workdir / name).unlink(missing_ok=True)
  logging.info('Workdir %s (%s).', workdir, status)
  metrics_log = files.JsonLines(workdir / METRICS_FILE)
  mesh = sharding.make_mesh()
  logging.info('Devices: %s; mesh %s.', jax.devices(), dict(mesh.shape))
  prepared = prepare(config, mesh, workdir=workdir,
                     log_metrics=lambda m: metrics_log.append({'phase': 'train', **m}))
  before, after, unlearned = unlearn_and_evaluate(config, prepared, mesh)
  metrics_log.append({'phase': 'before', **before})
  iterations = unlearned.record.get('iterations', [])
  for entry in iterations:
    metrics_log.append({'phase': 'unlearn', **entry})
  if iterations and 'corrupted_accuracy_shared_mask' in iterations[0]:
    plots.plot_dynamics(iterations, workdir / DYNAMICS_FILE,
                        title=f'{config.method}: {config.task}, discovery {config.discovery_rate}')
  metrics_log.append({'phase': 'after', **after})
  result = {
      'config': config.to_dict(),
      'seed': config.seed,
      'ids_file': IDS_FILE,
      'before': before,
      'after': after,
      'train': prepared.train_record,
      'method': unlearned.record,
      'model': describe(unlearned.model),
      **environment(),
  }
  files.write_json_atomic(workdir / RESULTS_FILE, result)
  return result


def _summary(values: dict) -> str:
  return (f'Healed {values["healed"]:.4f}, Utility {values["utility"]:.4f}, '
          f'Healed x Utility {values["healed_x_utility"]:.4f}')
