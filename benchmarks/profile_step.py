"""Where the train step's time goes: XLA's own per-operation trace of `throughput.CompiledStep`.

    python benchmarks/profile_step.py                                # full-width ResNet-9, 128
    PYTHONPATH=../before python benchmarks/profile_step.py --label=before \
        --output=benchmarks/results/profile_step_cpu_before.json     # another checkout's rem_jax

Runs --steps steps of the real train step (gather, augmentation, forward, backward, update) under
`jax.profiler`, sums every executed operation's duration from the trace (on CPU: XLA's thunks,
e.g. `convolution.3`, `loop_fusion.12`, `copy.7`), and prints per step: the top operations, and
the same grouped by kind (the name without its number), each with its share of the step's
summed operation time. Without YNN fusions XLA CPU's convolution thunks leave no trace events of
their own (the step's time minus the traced operations is theirs), so --convolutions (default
on, full-width float32) also times each convolution layer alone, forward and both gradients, in
XLA and, if installed, in PyTorch channels_last. Writes JSON with the device, XLA_FLAGS and the
label.
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
import jax

import throughput  # benchmarks/: this script's own folder is on sys.path.
import rem_jax
from rem_jax import files, sharding

_MODEL = flags.DEFINE_enum('model', 'resnet9_full', list(throughput.MODELS), 'The network.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', list(throughput.DTYPES), 'Its dtype.')
_BATCH = flags.DEFINE_integer('batch_size', 128, 'Batch size.')
_STEPS = flags.DEFINE_integer('steps', 2, 'Profiled steps (after a compiling and a warm step).')
_TOP = flags.DEFINE_integer('top', 15, 'Rows per table.')
_LABEL = flags.DEFINE_string('label', '', 'What this profile shows (e.g. before, after).')
_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/profile_step_cpu.json', 'JSON path.')
_CONVOLUTIONS = flags.DEFINE_bool(
    'convolutions', True, "Also time each of the full-width ResNet-9's convolutions (forward, "
    'input and weight gradients) in XLA and, if installed, in PyTorch channels_last: without '
    "YNN fusions XLA CPU's convolution thunks leave no trace events of their own.")

# The full-width ResNet-9's convolutions on 32x32 images (SPEC §4): (name, input size, in and
# out channels, kernel, stride, padding, count).
CONVOLUTIONS = (('conv1', 32, 3, 64, 3, 1, 1, 1), ('conv2', 32, 64, 128, 5, 2, 2, 1),
                ('res1', 16, 128, 128, 3, 1, 1, 2), ('conv3', 16, 128, 256, 3, 1, 1, 1),
                ('res2', 8, 256, 256, 3, 1, 1, 2), ('conv4', 8, 256, 128, 3, 1, 0, 1))


def _median_time(fn, repeats: int = 5) -> float:
  fn()
  times = []
  for _ in range(repeats):
    began = time.perf_counter()
    fn()
    times.append(time.perf_counter() - began)
  return sorted(times)[len(times) // 2]


def convolution_times(batch: int) -> list[dict]:
  """Seconds per call of each convolution's forward + both gradients, XLA and PyTorch."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    import torch  # pylint: disable=g-import-not-at-top  (an optional extra)
  except ImportError:
    torch = None
  rows = []
  for name, size, c_in, c_out, kernel, stride, padding, count in CONVOLUTIONS:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, c_in), np.float32)
    w = rng.standard_normal((kernel, kernel, c_in, c_out), np.float32) * 0.05
    out = (size + 2 * padding - kernel) // stride + 1
    g = rng.standard_normal((batch, out, out, c_out), np.float32)

    def loss(x, w):
      y = jax.lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      return jnp.sum(y * g)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))
    xj, wj = jnp.asarray(x), jnp.asarray(w)
    row = {'name': name, 'count': count,
           'xla_s': _median_time(lambda: jax.block_until_ready(grads(xj, wj)))}
    if torch is not None:
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(
          memory_format=torch.channels_last).requires_grad_()
      wt = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(
          memory_format=torch.channels_last).requires_grad_()
      gt = torch.from_numpy(g).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

      def torch_step():
        y = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
        torch.autograd.grad((y * gt).sum(), (xt, wt))

      row['pytorch_channels_last_s'] = _median_time(torch_step)
      row['xla_over_pytorch_time'] = round(row['xla_s'] / row['pytorch_channels_last_s'], 2)
    rows.append(row)
  return rows


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


def main(argv):
  del argv
  step = throughput.CompiledStep(_MODEL.value, _DTYPE.value, _BATCH.value, sharding.make_mesh())
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
      'model': _MODEL.value, 'dtype': _DTYPE.value, 'batch_size': _BATCH.value,
      'step_s': round(step_s, 4), 'measured_s': round(time.perf_counter() - began, 2),
      'operations_s_per_step': round(total_us / 1e6 / _STEPS.value, 4),
      'by_kind': table(kinds, _STEPS.value, _TOP.value, total_us),
      'top_operations': table(operations, _STEPS.value, _TOP.value, total_us),
      'device': str(jax.devices()[0].device_kind), 'cpu_count': os.cpu_count(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'jax': jax.__version__,
      'command': ' '.join(['python'] + sys.argv)}
  if _CONVOLUTIONS.value and _MODEL.value == 'resnet9_full' and _DTYPE.value == 'float32':
    rows = convolution_times(_BATCH.value)
    result['convolutions'] = rows
    result['convolutions_xla_s_per_step'] = round(sum(r['xla_s'] * r['count'] for r in rows), 4)
    if all('pytorch_channels_last_s' in r for r in rows):
      result['convolutions_pytorch_channels_last_s_per_step'] = round(
          sum(r['pytorch_channels_last_s'] * r['count'] for r in rows), 4)
  print(f'{_MODEL.value} {_DTYPE.value} batch {_BATCH.value}: {step_s:.3f} s/step, operations '
        f'{result["operations_s_per_step"]:.3f} s/step ({_LABEL.value or "this checkout"})')
  for title in ('by_kind', 'top_operations'):
    print(f'\n{title}:')
    for row in result[title]:
      print(f'{row["s_per_step"]:>9.4f} s  {100 * row["share"]:5.1f} %  {row["name"][:90]}')
  if 'convolutions' in result:
    print('\nconvolutions (forward + input and weight gradients, s per call):')
    for row in result['convolutions']:
      print(f'{row["name"]:<6} x{row["count"]} XLA {row["xla_s"]:.4f}  PyTorch channels_last '
            f'{row.get("pytorch_channels_last_s", float("nan")):.4f}')
    print(f'all convolutions of a step: XLA {result["convolutions_xla_s_per_step"]} s, PyTorch '
          f'{result.get("convolutions_pytorch_channels_last_s_per_step")} s')
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), result)
  print(f'wrote {_OUTPUT.value}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
