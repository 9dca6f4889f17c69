"""Many runs per device: K independent training runs one after another, from K threads, or vmapped.

    python benchmarks/many_runs.py                                   # CPU: width/8, batch 64
    python benchmarks/many_runs.py --width_multiplier=1 --batch_size=512 --runs=1,2,4,8 \
        --steps=50 --dtype=bfloat16 --output=benchmarks/results/many_runs_gpu.json   # GPU

The choice behind a sweep's `parallel_cells` (rem_jax.experiments.concurrent). Each run is the real
training step (`rem_jax.trainer.train_step`: gather, augmentation, forward, backward, SGD) of a
capacity-0.5 ResNet-9 on one device, with its own state and batches. Three ways to run K of them:
`sequential` (what one cell at a time does), `threads` (K Python threads, each dispatching its
own run's steps: what `parallel_cells` does) and `vmap` (one program over a runs axis: the
convolutions become grouped convolutions; the cells of a sweep cannot use it without running
in lockstep). Prints images/s over all runs and the speed-up over sequential; writes JSON with
the device string and the command.
"""

import pathlib
import sys
import threading
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rem_jax import files, optim, trainer
from rem_jax.data import pipeline
from rem_jax.models import ResNet9, init_variables

_RUNS = flags.DEFINE_list('runs', ['1', '2', '4'], 'Numbers of concurrent runs K.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per run (after a compiling one).')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Batch size of each run.')
_WIDTH = flags.DEFINE_float('width_multiplier', 0.125, 'ResNet-9 width multiplier.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/many_runs_cpu.json', 'JSON path.')
NUM_IMAGES = 4096


def _runs(model, optimizer, count: int, batch_size: int):
  """`count` fresh train states and, per run, its own stream of batches (host positions)."""
  states = [trainer.create_train_state(init_variables(model, jax.random.key(run)), optimizer,
                                        jax.random.key(100 + run)) for run in range(count)]
  rng = np.random.default_rng(0)
  positions = [rng.integers(0, NUM_IMAGES, (_STEPS.value + 1, batch_size)).astype(np.int32)
               for _ in range(count)]
  return states, positions


def _batch(view, positions):
  return pipeline.Batch(*(jnp.asarray(np.asarray(field)[positions])
                          for field in (view.ids, view.labels, view.triggered,
                                        np.ones(NUM_IMAGES, np.float32))))


def measure(mode: str, count: int, step_config, images, view) -> float:
  """Seconds for `count` runs of `_STEPS` steps each, after a compiling step."""
  states, positions = _runs(step_config.model, step_config.optimizer, count, _BATCH.value)
  if mode == 'vmap':
    step = jax.jit(jax.vmap(lambda s, b: trainer.train_step(step_config, s, images, b)),
                   donate_argnums=0)
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    batches = [jax.tree.map(lambda *leaves: jnp.stack(leaves),
                            *(_batch(view, p[i]) for p in positions))
               for i in range(_STEPS.value + 1)]
    state, _ = step(state, batches[0])
    jax.block_until_ready(state)
    began = time.perf_counter()
    for batch in batches[1:]:
      state, _ = step(state, batch)
    jax.block_until_ready(state)
    return time.perf_counter() - began
  step = jax.jit(lambda s, b: trainer.train_step(step_config, s, images, b), donate_argnums=0)
  batches = [[_batch(view, p[i]) for i in range(_STEPS.value + 1)] for p in positions]
  for run in range(count):  # Compile and warm every run's buffers before timing.
    states[run], _ = step(states[run], batches[run][0])
  jax.block_until_ready(states)

  def run_steps(run):
    state = states[run]
    for batch in batches[run][1:]:
      state, _ = step(state, batch)
    states[run] = jax.block_until_ready(state)

  began = time.perf_counter()
  if mode == 'sequential':
    for run in range(count):
      run_steps(run)
  else:
    threads = [threading.Thread(target=run_steps, args=(run,)) for run in range(count)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  return time.perf_counter() - began


def main(argv):
  del argv
  dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[_DTYPE.value]
  model = ResNet9(capacity=0.5, width_multiplier=_WIDTH.value, dtype=dtype)
  step_config = trainer.TrainStepConfig(model, optim.OptimizerSettings('sgd', 0.01))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3), np.uint8))
  view = pipeline.View(images, np.arange(NUM_IMAGES, dtype=np.int32),
                       rng.integers(0, 10, NUM_IMAGES).astype(np.int32),
                       np.zeros(NUM_IMAGES, bool))
  rows = []
  for count in (int(k) for k in _RUNS.value):
    baseline = None
    for mode in ('sequential', 'threads', 'vmap'):
      print(f'{count} runs, {mode} ...', file=sys.stderr, flush=True)
      seconds = measure(mode, count, step_config, images, view)
      rate = count * _STEPS.value * _BATCH.value / seconds
      baseline = baseline or rate
      rows.append({'runs': count, 'mode': mode, 'seconds': round(seconds, 3),
                   'images_per_s': round(rate, 1), 'speedup': round(rate / baseline, 3)})
  print(f'{"runs":>4} {"mode":<10} {"images/s":>10} {"x sequential":>12}')
  for row in rows:
    print(f'{row["runs"]:>4} {row["mode"]:<10} {row["images_per_s"]:>10} {row["speedup"]:>12}')
  device = jax.devices()[0]
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv),
      'device': f'{device.platform}: {device.device_kind}', 'jax': jax.__version__,
      'model': f'ResNet9(capacity=0.5, width_multiplier={_WIDTH.value})',
      'dtype': _DTYPE.value, 'batch_size': _BATCH.value, 'steps': _STEPS.value,
      'results': rows})


if __name__ == '__main__':
  app.run(main)
