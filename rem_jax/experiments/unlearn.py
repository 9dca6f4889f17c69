"""The practitioner's path: unlearn an existing model, given the corrupted examples found so far.

    trained variables + a file of forget ids + the training data -> method -> unlearned variables

The model comes from a `launch.py` workdir (its latest checkpoint) or a `.msgpack` file of Flax
variables ({'params', 'batch_stats'}, `flax.serialization.msgpack_serialize`). D_c is unknown
here, so only metrics that need no D_c are reported: Utility (clean test accuracy) and the
accuracy on D_f and D_r against the training labels as given.
"""

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
from rem_jax import sharding
from rem_jax import trainer
from rem_jax import training
from rem_jax.data import corruptions
from rem_jax.data import pipeline
from rem_jax.experiments import cell
from rem_jax.models import describe, init_variables

RESULTS_FILE = 'results.json'
IDS_FILE = 'forget_ids.json'


def read_ids(path) -> np.ndarray:
  """Forget ids from `.npy`, `.json` (a list, or {'forget_ids': [...]}) or text (one per line;
  blank lines and lines starting with '#' are skipped)."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise ValueError(f'forget_ids={str(path)!r} is not a file.')
  if path.suffix == '.npy':
    return np.load(path)
  if path.suffix == '.json':
    values = json.loads(path.read_text())
    return np.asarray(values['forget_ids'] if isinstance(values, dict) else values)
  lines = [l.strip() for l in path.read_text().splitlines()]
  try:
    return np.asarray([int(l) for l in lines if l and not l.startswith('#')], np.int64)
  except ValueError as error:
    raise ValueError(f'forget_ids file {path}: every line must be one integer id ({error}).')


def load_trained(config, image_shape) -> methods.TrainedModel:
  """The trained model named by `config.checkpoint`, checked against `config.model`."""
  model, mask_config = cell.original_model(config)
  source = pathlib.Path(config.checkpoint or '').expanduser().absolute()
  if source.is_file() and source.suffix == '.msgpack':
    variables = flax.serialization.msgpack_restore(source.read_bytes())
    expansion.check_shapes(variables, expansion.variable_shapes(model, image_shape),
                           f'checkpoint {source} does not match config.model')
    return methods.TrainedModel(model, variables, mask_config)
  if not (source / checkpoints.CONFIG_FILE).is_file():
    raise ValueError(f'checkpoint={str(source)!r} is neither a launch.py workdir (with '
                     f'{checkpoints.CONFIG_FILE} and checkpoints/) nor a .msgpack file.')
  trained_with = ml_collections.ConfigDict(
      json.loads((source / checkpoints.CONFIG_FILE).read_text()))
  # The train state's optimizer part has the structure of the original run's optimizer.
  optimizer = trainer.Recipe.from_config(trained_with.train).make_optimizer()
  target = jax.eval_shape(lambda: training.create_train_state(
      init_variables(model, jax.random.key(0), image_shape), optimizer, jax.random.key(0)))
  with checkpoints.Checkpointer(source) as checkpointer:
    state, metadata = checkpointer.restore(target)
  if 'mask_config' in metadata:  # An ETD base: its masks are part of the model.
    mask_config = masks.MaskConfig.from_dict(metadata['mask_config'])
  return methods.TrainedModel(model, training.variables_of(state), mask_config)


def training_recipe(config) -> trainer.Recipe | None:
  """The recipe the checkpoint was trained with (what Retrain repeats): known for a launch.py
  workdir, unknown (None) for a bare .msgpack file."""
  config_file = pathlib.Path(config.checkpoint).expanduser() / checkpoints.CONFIG_FILE
  if not config_file.is_file():
    return None
  return trainer.Recipe.from_config(json.loads(config_file.read_text())['train'])


def practitioner_metrics(evaluate, variables, views) -> dict:
  """What can be measured without D_c: Utility, and accuracy on D_f and D_r (given labels)."""
  predict = lambda view: evaluate.predictions(variables, view)
  return {'utility': metrics.utility(predict(views.test), views.test.labels),
          'forget_accuracy': metrics.accuracy(predict(views.forget), views.forget.labels),
          'retain_accuracy': metrics.accuracy(predict(views.retain), views.retain.labels)}


def run(config: ml_collections.ConfigDict, workdir, *, overwrite: bool = False) -> dict:
  """Unlearns `config.forget_ids` from `config.checkpoint`; writes the result to `workdir`."""
  methods.get_method(config.method)
  for field in ('checkpoint', 'forget_ids'):
    if not config[field]:
      raise ValueError(f'{field} is required: pass --config.{field}=PATH.')
  workdir = pathlib.Path(workdir).expanduser().absolute()
  checkpoints.check_workdir(workdir, config.to_dict(), overwrite=overwrite)
  mesh = sharding.make_mesh()
  splits = cell.load_splits(config)
  forget_ids = corruptions.check_forget_ids(read_ids(config.forget_ids),
                                            splits.train.num_examples)
  files.write_json_atomic(workdir / IDS_FILE, {'forget_ids': forget_ids.tolist()})
  images = pipeline.put_images(splits, mesh)
  corruption = corruptions.load_record(config.corruption) if config.corruption else None
  views = pipeline.make_practitioner_views(splits, forget_ids, images, corruption)
  original = load_trained(config, splits.train.images.shape[1:])
  original = dataclasses.replace(original,
                                 variables=sharding.replicate(original.variables, mesh))
  logging.info('Unlearning %d examples from %s with %s.', len(forget_ids), config.checkpoint,
               config.method)
  evaluate = evaluation.Evaluator(original.model, views, None, mesh, config.eval_batch_size)
  before = practitioner_metrics(evaluate, original.variables, views)
  task = methods.Task(views, None, forget_ids, mesh, config.batch_size, config.seed,
                      training_recipe(config))
  method_config = config.methods.get(config.method, ml_collections.ConfigDict())
  unlearned = methods.get_method(config.method)(original, task, method_config)
  evaluate_after = dataclasses.replace(evaluate, model=unlearned.model)
  after = practitioner_metrics(evaluate_after, unlearned.variables, views)
  with checkpoints.Checkpointer(workdir) as checkpointer:
    checkpointer.save(0, unlearned.variables, {'model': describe(unlearned.model),
                                               'method': config.method,
                                               'num_forget_ids': len(forget_ids)})
  result = {'config': config.to_dict(), 'seed': config.seed, 'ids_file': IDS_FILE,
            'before': before, 'after': after, 'method': unlearned.record,
            'model': describe(unlearned.model)}
  files.write_json_atomic(workdir / RESULTS_FILE, result)
  logging.info('Before: %s; after: %s.', before, after)
  return result
