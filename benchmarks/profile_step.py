"""Where a step's time goes: XLA's own per-operation trace, and each layer alone against PyTorch.

    python benchmarks/profile_step.py --batch_size=128 --steps=2 --label=auto \
        --output=benchmarks/results/profile_step_cpu_lowering.json   # full-width ResNet-9
    python benchmarks/profile_step.py --width_multiplier=0.25 --capacity=0.5 --batch_size=256 \
        --steps=5 --cpu_lowering=off --label=off \
        --output=benchmarks/results/profile_step_cpu_map_off.json    # the CPU map's train step
    python benchmarks/profile_step.py --width_multiplier=0.25 --capacity=0.5 --batch_size=256 \
        --steps=5 --step=rem_repair --noper_op --cpu_lowering=off --label=off \
        --output=benchmarks/results/profile_step_cpu_map_rem_off.json  # REM's Step 3 on it

(and each with --cpu_lowering=auto --label=auto into the `_auto.json` twins: `off` is XLA's own
lowerings, what rem_jax ran before issue 33, `auto` rem_jax's CPU lowerings).

Runs --steps steps of the real train step (gather, augmentation, forward, backward, update; or
with --step=rem_repair REM's repair + redirect step on the model expanded to full width) under
`jax.profiler`, sums every executed operation's duration from the trace (on CPU: XLA's thunks,
e.g. `convolution.3`, `loop_fusion.12`, `copy.7`), and prints per step: the top operations, and
the same grouped by kind (the name without its number), each with its share of the step's
summed operation time. Without YNN fusions XLA CPU's convolution thunks leave no trace events of
their own (the step's time minus the traced operations is theirs), so --per_op (default on, the
train step in float32) also times each convolution and each BatchNorm + CELU layer of the model
alone, forward and gradients, three ways: XLA's lowering, rem_jax's CPU lowering
(`rem_jax.models.cpu_lowering`) and, if installed, PyTorch channels_last. --cpu_lowering picks
the step's model's lowering (auto: on when the backend is the CPU). Writes JSON with the device,
XLA_FLAGS and the label.
"""

import collections
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import throughput  # benchmarks/: this script's own folder is on sys.path.
import rem_jax
from rem_jax import files, optim, sharding
from rem_jax.data import pipeline
from rem_jax.methods import common, rem
from rem_jax.models import ResNet9, cpu_lowering, init_variables, resnet9

_MODEL = flags.DEFINE_enum('model', 'resnet9_full', list(throughput.MODELS), 'The network.')
_WIDTH = flags.DEFINE_float(
    'width_multiplier', 1.0, 'A ResNet-9 at this width (configs/cpu_map.py: 0.25) instead of '
    "--model's full width; with --capacity.")
_CAPACITY = flags.DEFINE_float('capacity', 1.0, 'Base capacity of the --width_multiplier model '
                               '(the CPU map: 0.5).')
_CPU_LOWERING = flags.DEFINE_enum(
    'cpu_lowering', 'auto', ['auto', 'on', 'off'], "The ResNet-9's `cpu_lowering` (auto: None).")
_STEP = flags.DEFINE_enum(
    'step', 'train', ['train', 'rem_repair'], "Which step: the train step, or REM's repair + "
    'redirect step (Step 3) on the model expanded to full width, as `rem.rem` runs it.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(throughput.DTYPES), 'Its dtype.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Batch size.')
_STEPS = flags.DEFINE_integer('steps', 2, 'Profiled steps (after a compiling and a warm step).')
_TOP = flags.DEFINE_integer('top', 15, 'Rows per table.')
_LABEL = flags.DEFINE_string('label', '', 'What this profile shows (e.g. before, after).')
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/profile_step_cpu.json', 'JSON path.')
_PER_OP = flags.DEFINE_bool(
    'per_op', True, "Also time each of the ResNet-9's convolutions and BatchNorm + CELU layers "
    "alone (forward and gradients) in XLA's lowering, rem_jax's CPU lowering and, if "
    "installed, PyTorch channels_last: without YNN fusions XLA CPU's convolution thunks leave "
    'no trace events of their own (train step, float32).')

def convolution_layers(model) -> tuple[tuple, ...]:
  """A ResNet-9's convolutions on 32x32 images (SPEC §4), from its widths: (name, input size,
  in and out channels, kernel, stride, padding)."""
  t0, t1, t2, t3 = (b + e for b, e in zip(model.base_widths, model.extra_widths))
  i0, i1 = model.inner_widths
  layers = (('conv1', 32, 3, t0, 3, 1, 1), ('conv2', 32, t0, t1, 5, 2, 2),
            ('res1_a', 16, t1, i0, 3, 1, 1), ('res1_b', 16, i0, t1, 3, 1, 1),
            ('conv3', 16, t1, t2, 3, 1, 1), ('res2_a', 8, t2, i1, 3, 1, 1),
            ('res2_b', 8, i1, t2, 3, 1, 1), ('conv4', 8, t2, t3, 3, 1, 0))
  return layers


def _calling(fn, *args):
  """fn(*args) as a call without arguments that waits for JAX's result."""
  return lambda: jax.block_until_ready(fn(*args))


def _torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top  (an optional extra)
  except ImportError:
    return None
  return torch


def convolution_times(model, batch: int) -> list[dict]:
  """Seconds per call of each of `model`'s convolutions, forward + weight gradient (+ input
  gradient, except for conv1, whose input is the images): XLA's lowering, rem_jax's CPU
  lowering (`cpu_lowering.conv_general_dilated`) and PyTorch channels_last (if installed)."""
  torch = _torch()
  rows = []
  for name, size, c_in, c_out, kernel, stride, padding in convolution_layers(model):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, c_in), np.float32)
    w = rng.standard_normal((kernel, kernel, c_in, c_out), np.float32) * 0.05
    out = (size + 2 * padding - kernel) // stride + 1
    g = rng.standard_normal((batch, out, out, c_out), np.float32)
    wrt = (1,) if name == 'conv1' else (0, 1)
    row = {'name': name}
    for column, conv in (('xla_s', jax.lax.conv_general_dilated),
                         ('rem_jax_s', cpu_lowering.conv_general_dilated)):

      def loss(x, w, conv=conv):
        y = conv(x, w, (stride, stride), [(padding, padding)] * 2,
                 dimension_numbers=jax.lax.conv_dimension_numbers(
                     x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC')))
        return jnp.sum(y * g)

      grads = jax.jit(jax.grad(loss, argnums=wrt))
      xj, wj = jnp.asarray(x), jnp.asarray(w)
      row[column] = throughput.median_seconds(_calling(grads, xj, wj))
    if torch is not None:
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
          memory_format=torch.channels_last).requires_grad_(name != 'conv1')
      wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(
          memory_format=torch.channels_last).requires_grad_()
      gt = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
      inputs = (wt,) if name == 'conv1' else (xt, wt)

      def torch_step():
        y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
        torch.autograd.grad((y * gt).sum(), inputs)

      row['pytorch_channels_last_s'] = throughput.median_seconds(torch_step)
    rows.append(row)
  return rows


def batchnorm_times(model, batch: int) -> list[dict]:
  """Seconds per call of BatchNorm (train mode) then CELU on each of `model`'s conv outputs,
  forward and gradients (input, scale, bias): flax's nn.BatchNorm, rem_jax's CPU lowering
  (`cpu_lowering.BatchNorm`) and PyTorch channels_last BatchNorm2d + CELU (if installed)."""
  torch = _torch()
  rows = []
  for name, size, _, c_out, kernel, stride, padding in convolution_layers(model):
    out = (size + 2 * padding - kernel) // stride + 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, out, out, c_out), np.float32) + 0.5
    g = rng.standard_normal(x.shape, np.float32)
    row = {'name': name, 'shape': list(x.shape)}
    for column, norm in (('xla_s', nn.BatchNorm), ('rem_jax_s', cpu_lowering.BatchNorm)):
      layer = norm(use_running_average=False, momentum=0.9, epsilon=1e-5)
      variables = layer.init(jax.random.key(0), x[:2])

      def loss(x, params, layer=layer, variables=variables):
        y, _ = layer.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
        return jnp.sum(jax.nn.celu(y, resnet9.CELU_ALPHA) * g)

      grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
      xj = jnp.asarray(x)
      row[column] = throughput.median_seconds(_calling(grads, xj, variables['params']))
    if torch is not None:
      layer = torch.nn.Sequential(torch.nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1),
                                  torch.nn.CELU(resnet9.CELU_ALPHA))
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
          memory_format=torch.channels_last).requires_grad_()
      gt = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
      inputs = (xt, *layer.parameters())
      row['pytorch_channels_last_s'] = throughput.median_seconds(
          lambda layer=layer, xt=xt, gt=gt, inputs=inputs: torch.autograd.grad(
              (layer(xt) * gt).sum(), inputs))
    rows.append(row)
  return rows


def per_op_totals(rows: list[dict]) -> dict:
  """Each column's seconds per step: the sum over the layers (each runs once a step)."""
  columns = ('xla_s', 'rem_jax_s', 'pytorch_channels_last_s')
  return {column: round(sum(r[column] for r in rows), 4) for column in columns
          if all(column in r for r in rows)}


def operation_times(trace_dir: str) -> collections.Counter:
  """Summed duration (µs) of every complete event in the newest trace under `trace_dir`."""
  paths = sorted(pathlib.Path(trace_dir).glob('**/*.trace.json.gz'))
  if not paths:
    raise RuntimeError(f'jax.profiler wrote no trace under {trace_dir}.')
  with gzip.open(paths[-1]) as f:
    events = json.load(f)['traceEvents']
  totals = collections.Counter()
  for event in events:
    if event.get('ph') == 'X' and 'dur' in event:
      totals[event['name']] += event['dur']
  return totals


def kind(name: str) -> str:
  """`loop_fusion.12` -> `loop_fusion`: an operation's kind."""
  return re.sub(r'[.\d]+$', '', name)


def table(totals: collections.Counter, steps: int, top: int, total_us: float) -> list[dict]:
  return [{'name': name, 's_per_step': round(us / 1e6 / steps, 4),
           'share': round(us / total_us, 4)} for name, us in totals.most_common(top)]


class RepairStep:
  """REM's repair + redirect step (`rem.repair_step`, Step 3) as `rem.rem` runs it: `model`
  expanded to full width (1 - capacity extra), the shared forget mask on a fifth of the batch,
  drop-mode passes on the base network; `run` times steps of it like `CompiledStep.run`."""

  def __init__(self, model, batch_size: int, mesh):
    expanded = model.clone(expansion=rem.default_expansion(model.capacity))
    variables = init_variables(expanded, jax.random.key(0))
    optimizer = optim.OptimizerSettings('sgd', 0.005)
    self.setup = rem.Setup(model=expanded, p_mem=rem.DEFAULT_P_MEM, optimizer=optimizer,
                           image_shape=(32, 32, 3))
    self.reference = sharding.replicate(variables, mesh)
    self.state = rem.with_mask_seed(
        common.start_state(variables, optimizer, jax.random.key(1), mesh, 1000), 0, mesh)
    rng = np.random.default_rng(0)
    self.images = sharding.replicate(rng.integers(0, 256, (batch_size, 32, 32, 3), np.uint8),
                                     mesh)
    in_forget = np.arange(batch_size) % 5 == 0
    self.in_forget = sharding.replicate(jnp.asarray(in_forget), mesh)
    view = pipeline.View(self.images, np.arange(batch_size, dtype=np.int32),
                         rng.integers(0, 10, batch_size).astype(np.int32),
                         np.zeros(batch_size, bool))
    self.batch = view.batch(np.arange(batch_size), mesh)
    self.parameters = int(sum(x.size for x in jax.tree.leaves(variables['params'])))
    self.run(1)  # Compiles.

  def run(self, steps: int) -> float:
    began = time.perf_counter()
    for _ in range(steps):
      self.state, _ = rem.repair_step(self.setup, self.state, self.images, self.batch,
                                      self.reference, self.in_forget, self.in_forget)
    jax.block_until_ready(self.state)
    return (time.perf_counter() - began) / steps


def model_name() -> str:
  """What the flags profile, e.g. `resnet9 width 0.25 capacity 0.5, rem_repair`."""
  if _WIDTH.value == 1.0 and _CAPACITY.value == 1.0:
    name = _MODEL.value
  elif not _MODEL.value == 'resnet9_full':
    raise app.UsageError('--width_multiplier and --capacity: use --model=resnet9_full.')
  else:
    name = f'resnet9 width {_WIDTH.value:g} capacity {_CAPACITY.value:g}'
  return name if _STEP.value == 'train' else f'{name}, {_STEP.value}'


def profiled_model():
  """The ResNet-9 the flags name; None for the ViT."""
  if not _MODEL.value.startswith('resnet9'):
    if (_WIDTH.value, _CAPACITY.value, _STEP.value) != (1.0, 1.0, 'train'):
      raise app.UsageError('--width_multiplier, --capacity and --step=rem_repair need a '
                           'ResNet-9 --model.')
    return None
  capacity = _CAPACITY.value if _MODEL.value == 'resnet9_full' else 0.5
  lowering = {'auto': None, 'on': True, 'off': False}[_CPU_LOWERING.value]
  return ResNet9(capacity=capacity, width_multiplier=_WIDTH.value, cpu_lowering=lowering,
                 dtype=throughput.DTYPES[_DTYPE.value])


def make_step(mesh):
  """The step the flags name (see `model_name`)."""
  if _STEP.value == 'rem_repair':
    return RepairStep(profiled_model(), _BATCH.value, mesh)
  return throughput.CompiledStep(_MODEL.value, _DTYPE.value, _BATCH.value, mesh,
                                 profiled_model())


def main(argv):
  del argv
  step = make_step(sharding.make_mesh())
  step.run(1)
  began = time.perf_counter()
  step_s = step.run(_STEPS.value)
  with tempfile.TemporaryDirectory() as trace_dir:
    jax.profiler.start_trace(trace_dir)
    step.run(_STEPS.value)
    jax.profiler.stop_trace()
    totals = operation_times(trace_dir)
  # Only XLA's operations: the trace also holds the host's Python and runtime spans, which
  # overlap them.
  operations = collections.Counter({name: us for name, us in totals.items()
                                    if re.search(r'\.\d+$', name) or name.endswith('fusion')})
  total_us = sum(operations.values())
  kinds = collections.Counter()
  for name, us in operations.items():
    kinds[kind(name)] += us
  result = {
      'label': _LABEL.value, 'rem_jax': str(pathlib.Path(rem_jax.__file__).parent),
      'model': model_name(), 'width_multiplier': _WIDTH.value, 'capacity': _CAPACITY.value,
      'step': _STEP.value, 'cpu_lowering': _CPU_LOWERING.value, 'dtype': _DTYPE.value,
      'batch_size': _BATCH.value,
      'step_s': round(step_s, 4), 'measured_s': round(time.perf_counter() - began, 2),
      'operations_s_per_step': round(total_us / 1e6 / _STEPS.value, 4),
      'by_kind': table(kinds, _STEPS.value, _TOP.value, total_us),
      'top_operations': table(operations, _STEPS.value, _TOP.value, total_us),
      'device': str(jax.devices()[0].device_kind), 'cpu_count': os.cpu_count(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'jax': jax.__version__,
      'command': ' '.join(['python'] + sys.argv)}
  model = profiled_model()
  if _PER_OP.value and _DTYPE.value == 'float32' and _STEP.value == 'train' and model:
    for title, timer in (('convolutions', convolution_times), ('batchnorms', batchnorm_times)):
      rows = timer(model, _BATCH.value)
      result[title] = rows
      result[f'{title}_s_per_step'] = per_op_totals(rows)
  print(f'{model_name()} {_DTYPE.value} batch {_BATCH.value}: {step_s:.3f} s/step, operations '
        f'{result["operations_s_per_step"]:.3f} s/step ({_LABEL.value or "this checkout"})')
  for title in ('by_kind', 'top_operations'):
    print(f'\n{title}:')
    for row in result[title]:
      print(f'{row["s_per_step"]:>9.4f} s  {100 * row["share"]:5.1f} %  {row["name"][:90]}')
  for title in ('convolutions', 'batchnorms'):
    if title not in result:
      continue
    print(f'\n{title} (forward and gradients, s per call): XLA | rem_jax | PyTorch channels_last')
    for row in result[title]:
      print(f'{row["name"]:<7} {row["xla_s"]:.4f} | {row["rem_jax_s"]:.4f} | '
            f'{row.get("pytorch_channels_last_s", float("nan")):.4f}')
    print(f'per step: {result[f"{title}_s_per_step"]}')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), result)
  print(f'wrote {_OUTPUT.value}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
