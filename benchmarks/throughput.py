"""Training-step throughput: images/s, compile time and achieved FLOP/s of the real train step.

    python benchmarks/throughput.py                       # CPU: both ResNet-9s, float32, batch 512
    python benchmarks/throughput.py --models=resnet9_full,resnet9_half,vit \
        --dtypes=float32,bfloat16                         # GPU: the paper's batch sizes

Times `rem_jax.trainer.jit_train_step` (gather, augmentation, forward, backward, SGD/Adam
update) on a device-resident random uint8 dataset, after one compiling call, synchronised with
`block_until_ready`. FLOPs per step come from XLA's cost analysis of the compiled step; the
fraction of the device's peak uses the nominal training cost per 32x32 image (ResNet-9 at full
width ≈ 1.75 GFLOP, ViT ≈ 1.09 GFLOP; issue 9) and the dense peak of the device kind
(`PEAK_TFLOPS`; unknown devices, CPUs included, get none). Also printed: the projected wall
time of a 4000-step training run at this speed. Prints a table and writes JSON (device string
and the command included) to --output.
"""

import os
import pathlib
import platform
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rem_jax import files, optim, sharding, trainer
from rem_jax.data import pipeline
from rem_jax.models import ResNet9, ViT, init_variables

MODELS = {
    # name: (constructor, optimizer, the paper's batch size)
    'resnet9_full': (lambda dtype: ResNet9(capacity=1.0, dtype=dtype), 'sgd', 512),
    'resnet9_half': (lambda dtype: ResNet9(capacity=0.5, dtype=dtype), 'sgd', 512),
    'vit': (lambda dtype: ViT(dtype=dtype), 'adam', 2048),
}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
# Nominal training GFLOP per 32x32 image (forward + backward), for the fraction of peak.
NOMINAL_GFLOP = {'resnet9_full': 1.75, 'resnet9_half': None, 'vit': 1.09}
# Dense peak TFLOP/s by device kind (substring, lower case) and dtype, from vendor data sheets.
PEAK_TFLOPS = {
    'h100': {'bfloat16': 989.0, 'float32': 67.0},
    'h200': {'bfloat16': 989.0, 'float32': 67.0},
    'a100': {'bfloat16': 312.0, 'float32': 19.5},
}
PAPER_RUN_STEPS = 4000


def median_seconds(fn, repeats: int = 5) -> float:
  """The median wall time of `repeats` calls of `fn` (which must wait for its own result),
  after one untimed call (compiles, allocations)."""
  fn()
  times = []
  for _ in range(repeats):
    began = time.perf_counter()
    fn()
    times.append(time.perf_counter() - began)
  return sorted(times)[repeats // 2]


def peak_tflops(device_kind: str, dtype_name: str) -> float | None:
  kind = device_kind.lower()
  for name, peaks in PEAK_TFLOPS.items():
    if name in kind:
      return peaks[dtype_name]
  return None

class CompiledStep:
  """The real train step of one model, compiled for `mesh`, on a device-resident random uint8
  batch of `batch_size` images (the same batch every step); `run` times steps of it."""

  def __init__(self, name: str, dtype_name: str, batch_size: int, mesh, model=None):
    """`model` replaces `MODELS[name]`'s network (e.g. a narrower one; same optimizer)."""
    build, optimizer_name, paper_batch = MODELS[name]
    self.name, self.dtype_name = name, dtype_name
    self.batch_size = batch_size or paper_batch
    model = build(DTYPES[dtype_name]) if model is None else model
    variables = init_variables(model, jax.random.key(0))
    self.parameters = int(sum(x.size for x in jax.tree.leaves(variables['params'])))
    optimizer = optim.OptimizerSettings(optimizer_name, 0.01)
    self.state = sharding.replicate(trainer.create_train_state(variables, optimizer,
                                                               jax.random.key(1)), mesh)
    rng = np.random.default_rng(0)
    self.images = sharding.replicate(
        rng.integers(0, 256, (self.batch_size, 32, 32, 3), np.uint8), mesh)
    view = pipeline.View(self.images, np.arange(self.batch_size, dtype=np.int32),
                         rng.integers(0, 10, self.batch_size).astype(np.int32),
                         np.zeros(self.batch_size, bool))
    self.batch = view.batch(np.arange(self.batch_size), mesh)
    step = trainer.jit_train_step(trainer.TrainStepConfig(model, optimizer), mesh)
    began = time.perf_counter()
    self.compiled = step.lower(self.state, self.images, self.batch).compile()
    self.compile_s = time.perf_counter() - began
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    self.flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
    self.run(1)  # Warm-up: first execution, allocations.

  def run(self, steps: int) -> float:
    """Seconds per step over `steps` steps, synchronised with `block_until_ready`."""
    began = time.perf_counter()
    for _ in range(steps):
      self.state, _ = self.compiled(self.state, self.images, self.batch)
    jax.block_until_ready(self.state)
    return (time.perf_counter() - began) / steps


def measure(name: str, dtype_name: str, batch_size: int, steps: int, mesh, model=None) -> dict:
  """One row of the table; `model` as in `CompiledStep` (then no nominal cost, no fraction)."""
  step = CompiledStep(name, dtype_name, batch_size, mesh, model)
  step_s = step.run(steps)
  batch_size = step.batch_size
  peak = peak_tflops(jax.devices()[0].device_kind, dtype_name)
  nominal = NOMINAL_GFLOP[name] if model is None else None
  nominal_tflop_s = nominal * batch_size / step_s / 1e3 if nominal else None
  return {'model': name, 'dtype': dtype_name, 'batch_size': batch_size,
          'parameters': step.parameters,
          'compile_s': round(step.compile_s, 2), 'step_s': round(step_s, 4),
          'images_per_s': round(batch_size / step_s, 1),
          'gflop_per_image': round(step.flops / batch_size / 1e9, 3),
          'achieved_tflop_s': round(step.flops / step_s / 1e12, 3),
          'nominal_tflop_s': None if nominal_tflop_s is None else round(nominal_tflop_s, 3),
          'peak_tflop_s': peak,
          'fraction_of_peak': (None if peak is None or nominal_tflop_s is None
                               else round(nominal_tflop_s / peak, 4)),
          'projected_4000_step_run_s': round(PAPER_RUN_STEPS * step_s, 1)}


def _define_flags() -> None:
  """Defined only when run as a script, so other benchmarks can import `CompiledStep`."""
  flags.DEFINE_list('models', ['resnet9_full', 'resnet9_half'], f'Of {list(MODELS)}.')
  flags.DEFINE_list('dtypes', ['float32'], f'Of {list(DTYPES)}.')
  flags.DEFINE_integer('batch_size', 0, 'Batch size; 0 = the paper\'s for each model.')
  flags.DEFINE_integer('steps', 3, 'Timed steps after the compiling one.')
  flags.DEFINE_string('output', '', 'JSON path; default benchmarks/results/'
                      'throughput_<platform>.json.')


def main(argv):
  del argv
  values = flags.FLAGS
  for name in values.models:
    if name not in MODELS:
      raise app.UsageError(f'--models: {name!r} is unknown; allowed: {list(MODELS)}.')
  for name in values.dtypes:
    if name not in DTYPES:
      raise app.UsageError(f'--dtypes: {name!r} is unknown; allowed: {list(DTYPES)}.')
  mesh = sharding.make_mesh()
  device = jax.devices()[0]
  rows = []
  for name in values.models:
    for dtype_name in values.dtypes:
      print(f'measuring {name} {dtype_name} ...', file=sys.stderr, flush=True)
      rows.append(measure(name, dtype_name, values.batch_size, values.steps, mesh))
  header = ('model', 'dtype', 'batch_size', 'compile_s', 'step_s', 'images_per_s',
            'gflop_per_image', 'achieved_tflop_s', 'fraction_of_peak',
            'projected_4000_step_run_s')
  print(' | '.join(header))
  for row in rows:
    print(' | '.join(str(row[k]) for k in header))
  output = pathlib.Path(values.output or
                        f'benchmarks/results/throughput_{device.platform}.json')
  files.write_json_atomic(output, {
      'command': ' '.join(['python'] + sys.argv),
      'device': f'{device.platform}: {device.device_kind}', 'num_devices': jax.device_count(),
      'cpu_count': os.cpu_count(), 'jax': jax.__version__,
      'python': platform.python_version(), 'results': rows})
  print(f'wrote {output}', file=sys.stderr)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
