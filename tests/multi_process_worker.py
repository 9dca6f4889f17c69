"""One process of the 2-process CPU run in tests/test_distributed.py (not a test module itself).

    python -m tests.multi_process_worker PROCESS_ID PORT OUT_DIR

Two of these, started with 2 fake CPU devices each, join through `rem_jax.distributed` on a
localhost coordinator and form one 4-device mesh (CPU collectives go through gloo). Each one
checks that it feeds only its own devices and reads global arrays back whole, then trains a
tiny model through `rem_jax.trainer` (orbax checkpoints included) and predicts with it. Both
append to the same log and write the same result file, which only process 0 may do.
"""

import json
import pathlib
import sys

import jax
import numpy as np

from rem_jax import distributed, evaluation, files, optim, sharding, trainer
from rem_jax.data import pipeline, sources
from rem_jax.models import init_variables
from tests import tiny

NUM_PROCESSES = 2
RECIPE = trainer.Recipe(
    optim.OptimizerSettings(learning_rate=0.05, schedule='warmup_linear_decay'),
    steps=6, batch_size=16, checkpoint_every=3)


MODEL = tiny.tiny_resnet(expansion=0.0)


def _views(mesh) -> tuple[pipeline.View, pipeline.View]:
  splits = sources.load('shapes', image_size=16, num_train=64, num_test=24, seed=0)
  images = pipeline.put_images(splits, mesh)
  return tuple(pipeline.View(images[name], split.ids, split.labels,
                             np.zeros(split.num_examples, bool))
               for name, split in (('train', splits.train), ('test', splits.test)))


def initial_variables() -> dict:
  return init_variables(MODEL, jax.random.key(0), (16, 16, 3))


def train(mesh, workdir=None, seed: int = 0) -> dict:
  """A few training steps of a tiny ResNet-9 on `shapes` (`seed`: the data order); host."""
  trained, _ = trainer.train(MODEL, initial_variables(), _views(mesh)[0], RECIPE, mesh=mesh,
                             seed=seed, workdir=workdir)
  return sharding.to_host(trained)


def predict(mesh, variables: dict) -> np.ndarray:
  """The test predictions of `variables` (host)."""
  test = _views(mesh)[1]
  return evaluation.predict(evaluation.jit_predict_step(MODEL, mesh),
                          sharding.replicate(variables, mesh), test.images, test, 16, mesh)


def main(process_id: int, port: int, out: pathlib.Path) -> None:
  distributed.initialize(coordinator_address=f'localhost:{port}', num_processes=NUM_PROCESSES,
                         process_id=process_id, timeout_s=60)
  assert jax.process_count() == NUM_PROCESSES and jax.process_index() == process_id
  mesh = sharding.make_mesh()
  assert sharding.data_parallel_size(mesh) == jax.device_count() == 2 * jax.local_device_count()

  # A batch every process holds whole: each feeds its own devices their rows, nothing else.
  rows = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
  batch = sharding.shard_batch(rows, mesh)
  assert not batch.is_fully_addressable and len(batch.addressable_shards) == 2
  for shard in batch.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data), rows[shard.index])
  np.testing.assert_array_equal(sharding.to_host(batch), rows)  # Gathered from both processes.
  total = jax.jit(lambda x: x.sum(), out_shardings=sharding.replicated(mesh))(batch)
  assert float(total) == rows.sum()
  key = sharding.replicate(jax.random.key(3), mesh)  # A PRNG key, as in every train state.
  assert key.is_fully_replicated and not key.is_fully_addressable

  params = train(mesh, out / 'run')
  predictions = predict(mesh, params)
  flat = {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
  files.write_atomic(out / 'result.npz',
                     lambda f: np.savez(f, predictions=predictions, **flat))
  files.JsonLines(out / 'log.jsonl').append({'process': process_id})
  files.write_atomic(out / f'done_{process_id}.json',
                     lambda f: f.write(json.dumps({'predictions': predictions.tolist()}).encode()),
                     every_process=True)


if __name__ == '__main__':
  main(int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]))
