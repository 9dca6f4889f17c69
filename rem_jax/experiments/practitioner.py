"""The practitioner's path: unlearn an existing model, given the corrupted examples found so far.

    trained variables + a file of forget ids + the training data -> method -> unlearned variables

The model comes from a `launch.py` workdir (its latest checkpoint) or a `.msgpack` file of Flax
variables ({'params', 'batch_stats'}, `flax.serialization.msgpack_serialize`). D_c is unknown
here, so only metrics that need no D_c are reported: Utility (clean test accuracy) and the
accuracy on D_f and D_r against the training labels as given.
"""

from collections.abc import Mapping
import dataclasses
import json
import pathlib

from absl import logging
import flax.serialization
import jax
import ml_collections
import numpy as np

from rem_jax import checkpoints
from rem_jax import evaluation
from rem_jax import expansion
from rem_jax import files
from rem_jax import masks
from rem_jax import metrics
from rem_jax import methods
from rem_jax import sections
from rem_jax import sharding
from rem_jax import trainer
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.data import sources
from rem_jax.experiments import cell
from rem_jax.experiments import config_lib
from rem_jax.experiments import fields
from rem_jax.experiments import records
from rem_jax.experiments import workdir as workdir_lib
from rem_jax.models import describe

RESULTS_FILE = 'results.json'
IDS_FILE = 'forget_ids.json'
MSGPACK_FILE = 'unlearned.msgpack'
# What an unlearning run's config adds to the cell fields it shares (`fields.CELL_FIELDS`).
UNLEARN_FIELDS = {
    'checkpoint': fields.Field('a path', fields.is_text, 'a launch.py workdir or a .msgpack'),
    'forget_ids': fields.Field('a path', fields.is_text, '.npy, .json or one id per line'),
    'corruption': fields.Field('unset or a path', fields.is_optional_text,
                               "a benchmark's corruption.json"),
    'batch_size': fields.Field('int ≥ 1', fields.integer(1), 'a multiple of the device count'),
}
# The fields of a training workdir's config that decide the data it was trained on: the data
# given here must agree (the seed draws the subset, and generates `shapes`).
_DATA_FIELDS = ('dataset', 'data.image_size', 'data.num_train', 'data.num_test')


def read_ids(path) -> np.ndarray:
  """Forget ids from `.npy`, `.json` (a list, or {'forget_ids': [...]}) or text (one per line;
  blank lines and lines starting with '#' are skipped). A `ValueError` names the file."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise ValueError(f'forget_ids={str(path)!r} is not a file.')
  where = f'forget_ids file {path}'
  if path.suffix == '.npy':
    try:
      return np.load(path, allow_pickle=False)  # A pickle could run code: never loaded.
    except (OSError, ValueError, EOFError) as error:
      raise ValueError(f'{where} is not a numpy array of ids ({error}).') from None
  try:
    text = path.read_text()
  except UnicodeDecodeError:
    raise ValueError(f'{where} is binary, not text; give .npy, .json or one id per line.'
                     ) from None
  if path.suffix == '.json':
    try:
      values = json.loads(text)
    except ValueError as error:
      raise ValueError(f'{where} is not valid JSON ({error}).') from None
    if isinstance(values, dict):
      if 'forget_ids' not in values:
        raise ValueError(f'{where} holds a JSON object without the key "forget_ids"; give a '
                         'list of ids or {"forget_ids": [...]}.')
      values = values['forget_ids']
    if not isinstance(values, list):
      raise ValueError(f'{where} must hold a list of ids or {{"forget_ids": [...]}}.')
    return np.asarray(values)
  lines = [l.strip() for l in text.splitlines()]
  try:
    return np.asarray([int(l) for l in lines if l and not l.startswith('#')], np.int64)
  except ValueError as error:
    raise ValueError(f'{where}: every line must be one integer id ({error}).') from None


def check_config(config: ml_collections.ConfigDict, mesh=None, *,
                 template: ml_collections.ConfigDict | None = None,
                 extra_fields: Mapping[str, fields.Field] | None = None) -> None:
  """Every field of an unlearning config, before any data or model is loaded.

  `template` and `extra_fields`: a config built on the unlearning one (the diagnosis's,
  `config_lib.diagnose_config()` and its own fields' table), checked the same way.
  """
  template = config_lib.unlearn_config() if template is None else template
  fields.check_names(config.to_dict(), template.to_dict(),
                     nested=[s for s in ('data', 'model', 'train') if s in template])
  for field in ('checkpoint', 'forget_ids'):
    if not config[field]:
      raise ValueError(f'{field} is required: pass --config.{field}=PATH.')
  values = config.to_dict()
  if values['method'] is None:  # A diagnosis's: unset runs the advised one (`extra_fields`).
    del values['method']
  fields.check_values(values)
  fields.check_values(values, UNLEARN_FIELDS)
  fields.check_values(config.to_dict(), extra_fields or {})
  if 'train' in config:
    trainer.Recipe.from_config(config.train)
  cell.original_model(config)
  for name in config.methods:
    methods.check_settings(name, cell.method_settings(config, name))
  source = _checkpoint_path(config)
  if config.method == 'retrain' and not source.is_dir():
    raise ValueError("method='retrain' repeats the original training recipe, which only a "
                     'launch.py workdir records, not a .msgpack file.')
  if mesh is not None:
    sharding.check_batch_size(config.batch_size, mesh, 'batch_size')
    sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')


def _checkpoint_path(config) -> pathlib.Path:
  return pathlib.Path(config.checkpoint).expanduser().absolute()


def trained_with(config) -> dict | None:
  """The config a `launch.py` workdir checkpoint was trained with (None for a .msgpack), checked
  to be a training workdir that holds a checkpoint."""
  source = _checkpoint_path(config)
  if source.is_file():
    if source.suffix != '.msgpack':
      raise ValueError(f'checkpoint={str(source)!r} is neither a launch.py workdir nor a '
                       '.msgpack file of Flax variables.')
    return None
  if not (source / workdir_lib.CONFIG_FILE).is_file():
    raise ValueError(f'checkpoint={str(source)!r} is neither a launch.py workdir (with '
                     f'{workdir_lib.CONFIG_FILE} and checkpoints/) nor a .msgpack file.')
  recorded = workdir_lib.read_config(source)
  if recorded.get('experiment') == 'unlearn':
    raise ValueError(f'checkpoint={str(source)!r} is the output of configs/unlearn.py; to '
                     f'unlearn it further, pass its {MSGPACK_FILE}.')
  if 'train' not in recorded or 'model' not in recorded:
    raise ValueError(f'checkpoint={str(source)!r}: its {workdir_lib.CONFIG_FILE} is not that '
                     'of a trained cell (a sweep? pass its originals/<key> folder).')
  steps = source / checkpoints.CHECKPOINT_DIR
  if not steps.is_dir() or not any(p.name.isdigit() for p in steps.iterdir()):
    raise ValueError(f'checkpoint={str(source)!r} holds no checkpoint (its training never '
                     'saved one); run its training first.')
  return recorded


def check_matches(config, recorded: dict) -> None:
  """The data and model named here are those the checkpoint was trained with."""
  given = sections.flatten(config.to_dict())
  trained = sections.flatten(recorded)
  names = list(_DATA_FIELDS) + [f'model.{k}' for k in config.model if k != 'expansion']
  names.append('base')
  if recorded.get('base') == 'etd':
    names += ['model.expansion', 'p_mem']
  shapes_data = recorded.get('dataset') == 'shapes' or any(
      trained.get(f'data.{n}') for n in ('num_train', 'num_test'))
  if shapes_data:
    names.append('seed')  # It generates `shapes`, and draws a subset of the others.
  changed = [(n, trained.get(n), given.get(n)) for n in names
             if n in trained and trained[n] != given.get(n)]
  if changed:
    raise ValueError(f'checkpoint={config.checkpoint!r} was trained with other settings; set '
                     'them as it was trained (checkpoint -> this config): '
                     f'{workdir_lib.describe_differences(changed)}.')


def load_trained(config, image_shape) -> methods.TrainedModel:
  """The trained model named by `config.checkpoint`, checked against `config.model`."""
  model, mask_config = cell.original_model(config)
  source = _checkpoint_path(config)
  recorded = trained_with(config)
  if recorded is None:  # A .msgpack file.
    try:
      variables = flax.serialization.msgpack_restore(source.read_bytes())
    except Exception as error:  # pylint: disable=broad-except  (msgpack raises many kinds)
      raise ValueError(f'checkpoint={str(source)!r} is not a msgpack file of Flax variables '
                       f'({type(error).__name__}: {error}).') from None
    if not isinstance(variables, dict) or 'params' not in variables:
      raise ValueError(f'checkpoint={str(source)!r} does not hold Flax variables '
                       "({'params', 'batch_stats'}).")
    expansion.check_shapes(variables, expansion.variable_shapes(model, image_shape),
                           f'checkpoint {source} does not match config.model')
    return methods.TrainedModel(model, variables, mask_config)
  variables, metadata = trainer.load_variables(source, model, image_shape)
  if 'mask_config' in metadata:  # An ETD base: its masks are part of the model.
    mask_config = masks.MaskConfig.from_dict(metadata['mask_config'])
  return methods.TrainedModel(model, variables, mask_config)


def training_recipe(config) -> trainer.Recipe | None:
  """The recipe the checkpoint was trained with (what Retrain repeats): known for a launch.py
  workdir, unknown (None) for a bare .msgpack file."""
  recorded = trained_with(config)
  return None if recorded is None else trainer.Recipe.from_config(recorded['train'])


def practitioner_metrics(evaluate, variables, views) -> dict:
  """What can be measured without D_c: Utility, and accuracy on D_f and D_r (given labels)."""
  predict = lambda view: evaluate.predictions(variables, view)
  return {'utility': metrics.utility(predict(views.test), views.test.labels),
          'forget_accuracy': metrics.accuracy(predict(views.forget), views.forget.labels),
          'retain_accuracy': metrics.accuracy(predict(views.retain), views.retain.labels)}


def forget_ids_of(config, splits: sources.Splits) -> np.ndarray:
  forget_ids = corruptions.check_forget_ids(read_ids(config.forget_ids),
                                            splits.train.num_examples)
  if len(forget_ids) == splits.train.num_examples:
    raise ValueError(f'forget_ids={config.forget_ids!r} lists all {len(forget_ids)} training '
                     'examples: nothing would be left to retain (D_r is empty).')
  return forget_ids


def corruption_of(config, splits: sources.Splits) -> corruptions.CorruptionRecord | None:
  if not config.corruption:
    return None
  record = corruptions.load_record(config.corruption)
  if record.num_examples != splits.train.num_examples:
    raise ValueError(f'corruption={config.corruption!r} describes {record.num_examples} '
                     f'training examples; the data given has {splits.train.num_examples}.')
  return record


def load_inputs(config, mesh, check_ids=lambda forget_ids: None):
  """(splits, forget ids, views, the trained model replicated on `mesh`) of a practitioner's
  config: the data as given (`corruption` re-creates a benchmark's), D_f = the ids found.
  `check_ids(forget_ids)` may raise before the model is loaded."""
  splits = cell.load_splits(config)
  cell.check_data_fits(config, splits)
  forget_ids = forget_ids_of(config, splits)
  check_ids(forget_ids)
  corruption = corruption_of(config, splits)
  images = pipeline.put_images(splits, mesh)
  views = pipeline.make_practitioner_views(splits, forget_ids, images, corruption)
  original = load_trained(config, splits.train.images.shape[1:])
  original = dataclasses.replace(original,
                                 variables=sharding.replicate(original.variables, mesh))
  return splits, forget_ids, views, original


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False,
        overrides=()) -> dict:
  """Unlearns `config.forget_ids` from `config.checkpoint`; writes the result to `workdir`.

  Everything that can be checked before the data and the model are loaded is: the fields, the
  method settings, the command line's overrides (`fields.inert_fields`), the checkpoint's kind
  and that it was trained on the data and model named here.
  """
  mesh = sharding.make_mesh()
  check_config(config, mesh)
  fields.check_overrides(overrides, fields.inert_fields(config.to_dict()))
  recorded = trained_with(config)
  if recorded is not None:
    check_matches(config, recorded)
  workdir = workdir_lib.usable(workdir)
  workdir_lib.claim(workdir, config.to_dict(), overwrite=overwrite,
                    owned=(RESULTS_FILE, IDS_FILE, MSGPACK_FILE))
  splits, forget_ids, views, original = load_inputs(config, mesh)
  files.write_json_atomic(workdir / IDS_FILE, {'forget_ids': forget_ids.tolist()})
  logging.info('Unlearning %d examples from %s with %s.', len(forget_ids), config.checkpoint,
               config.method)
  model, variables = methods.common.drop_mode_start(original, splits.train.images.shape[1:])
  evaluate = evaluation.Evaluator(model, views, None, mesh, config.eval_batch_size)
  before = practitioner_metrics(evaluate, variables, views)
  task = methods.Task(views, None, forget_ids, mesh, config.batch_size, config.seed,
                      training_recipe(config))
  unlearned = methods.get_method(config.method)(original, task, cell.method_settings(config))
  evaluate_after = dataclasses.replace(evaluate, model=unlearned.model)
  after = practitioner_metrics(evaluate_after, unlearned.variables, views)
  # What came in as a file goes out as one (`MSGPACK_FILE`), and as an orbax checkpoint.
  host_variables = jax.device_get(unlearned.variables)
  files.write_atomic(workdir / MSGPACK_FILE,
                     lambda f: f.write(flax.serialization.msgpack_serialize(host_variables)))
  with checkpoints.Checkpointer(workdir) as checkpointer:
    checkpointer.save(0, unlearned.variables, {'model': describe(unlearned.model),
                                               'method': config.method,
                                               'num_forget_ids': len(forget_ids)})
  result = records.run_record(config.to_dict(), mesh=mesh, before=before, after=after,
                              unlearned=unlearned, ids_file=IDS_FILE, msgpack_file=MSGPACK_FILE)
  files.write_json_atomic(workdir / RESULTS_FILE, result)
  logging.info('Before: %s; after: %s.', before, after)
  return result
