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


def peak_tflops(device_kind: str, dtype_name: str) -> float | None:
  kind = device_kind.lower()
  for name, peaks in PEAK_TFLOPS.items():
    if name in kind:
      return peaks[dtype_name]
  return None

_MODELS = flags.DEFINE_list('models', ['resnet9_full', 'resnet9_half'], f'Of {list(MODELS)}.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32'], f'Of {list(DTYPES)}.')
_BATCH = flags.DEFINE_integer('batch_size', 0, 'Batch size; 0 = the paper\'s for each model.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Timed steps after the compiling one.')
_OUTPUT = flags.DEFINE_string('output', '', 'JSON path; default benchmarks/results/'
                              'throughput_<platform>.json.')


def measure(name: str, dtype_name: str, batch_size: int, steps: int, mesh) -> dict:
  build, optimizer_name, paper_batch = MODELS[name]
  batch_size = batch_size or paper_batch
  model = build(DTYPES[dtype_name])
  variables = init_variables(model, jax.random.key(0))
  optimizer = optim.OptimizerSettings(optimizer_name, 0.01)
  state = sharding.replicate(trainer.create_train_state(variables, optimizer,
                                                        jax.random.key(1)), mesh)
  rng = np.random.default_rng(0)
  images = sharding.replicate(rng.integers(0, 256, (batch_size, 32, 32, 3), np.uint8), mesh)
  view = pipeline.View(images, np.arange(batch_size, dtype=np.int32),
                       rng.integers(0, 10, batch_size).astype(np.int32),
                       np.zeros(batch_size, bool))
  batch = view.batch(np.arange(batch_size), mesh)
  step = trainer.jit_train_step(trainer.TrainStepConfig(model, optimizer), mesh)

  began = time.perf_counter()
  compiled = step.lower(state, images, batch).compile()
  compile_s = time.perf_counter() - began
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  state, _ = compiled(state, images, batch)  # Warm-up: first execution, allocations.
  jax.block_until_ready(state)
  began = time.perf_counter()
  for _ in range(steps):
    state, _ = compiled(state, images, batch)
  jax.block_until_ready(state)
  step_s = (time.perf_counter() - began) / steps
  peak = peak_tflops(jax.devices()[0].device_kind, dtype_name)
  nominal = NOMINAL_GFLOP[name]
  nominal_tflop_s = nominal * batch_size / step_s / 1e3 if nominal else None
  return {'model': name, 'dtype': dtype_name, 'batch_size': batch_size,
          'parameters': int(sum(x.size for x in jax.tree.leaves(variables['params']))),
          'compile_s': round(compile_s, 2), 'step_s': round(step_s, 4),
          'images_per_s': round(batch_size / step_s, 1),
          'gflop_per_image': round(flops / batch_size / 1e9, 3),
          'achieved_tflop_s': round(flops / step_s / 1e12, 3),
          'nominal_tflop_s': None if nominal_tflop_s is None else round(nominal_tflop_s, 3),
          'peak_tflop_s': peak,
          'fraction_of_peak': (None if peak is None or nominal_tflop_s is None
                               else round(nominal_tflop_s / peak, 4)),
          'projected_4000_step_run_s': round(PAPER_RUN_STEPS * step_s, 1)}


def main(argv):
  del argv
  for name in _MODELS.value:
    if name not in MODELS:
      raise app.UsageError(f'--models: {name!r} is unknown; allowed: {list(MODELS)}.')
  for name in _DTYPES.value:
    if name not in DTYPES:
      raise app.UsageError(f'--dtypes: {name!r} is unknown; allowed: {list(DTYPES)}.')
  mesh = sharding.make_mesh()
  device = jax.devices()[0]
  rows = []
  for name in _MODELS.value:
    for dtype_name in _DTYPES.value:
      print(f'measuring {name} {dtype_name} ...', file=sys.stderr, flush=True)
      rows.append(measure(name, dtype_name, _BATCH.value, _STEPS.value, mesh))
  header = ('model', 'dtype', 'batch_size', 'compile_s', 'step_s', 'images_per_s',
            'gflop_per_image', 'achieved_tflop_s', 'fraction_of_peak',
            'projected_4000_step_run_s')
  print(' | '.join(header))
  for row in rows:
    print(' | '.join(str(row[k]) for k in header))
  output = pathlib.Path(_OUTPUT.value or
                        f'benchmarks/results/throughput_{device.platform}.json')
  files.write_json_atomic(output, {
      'command': ' '.join(['python'] + sys.argv),
      'device': f'{device.platform}: {device.device_kind}', 'num_devices': jax.device_count(),
      'cpu_count': os.cpu_count(), 'jax': jax.__version__,
      'python': platform.python_version(), 'results': rows})
  print(f'wrote {output}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
