"""Where XLA CPU itself is the limit: a per-channel sum, the reduction behind BatchNorm.

    python benchmarks/xla_cpu_reduction.py

Sums an NHWC activation over batch and positions (what BatchNorm's statistics and, in the
backward pass, its and the conv bias's gradients do), for the ResNet-9's activation shapes,
four ways: `jnp.sum(x, (0, 1, 2))` as XLA lowers it (jaxlib 0.10 splits a long reduction into a
tree of `reduce-window` operations), `rem_jax.models.cpu_lowering.channel_sum` (rows at least 128
floats wide), a matrix-vector product with a vector of ones, and PyTorch's `sum` (if
installed). Each is jitted and fed an elementwise product, as the backward pass feeds its sums,
so fusion counts. Prints the median milliseconds per call and writes JSON.
"""

import os
import pathlib
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import throughput  # benchmarks/: this script's own folder is on sys.path.
from rem_jax import files
from rem_jax.models import cpu_lowering

_OUTPUT = flags.DEFINE_string('output', 'benchmarks/results/xla_cpu_reduction.json', 'JSON path.')
# (batch, H, W, C): the CPU map's conv1 at width/4 and capacity 1.0, its res1 at 16x16, and the
# full-width conv1 and conv3 at batch 128.
SHAPES = ((256, 32, 32, 16), (256, 16, 16, 32), (128, 32, 32, 64), (128, 16, 16, 256))


def _median_ms(fn) -> float:
  return 1e3 * throughput.median_seconds(fn, repeats=9)


def _matvec(x):
  flat = x.reshape(-1, x.shape[-1])
  return jnp.ones((flat.shape[0],), x.dtype) @ flat


WAYS = {'xla_reduce': lambda x: jnp.sum(x, (0, 1, 2)),
        'rem_jax_channel_sum': cpu_lowering.channel_sum, 'ones_matvec': _matvec}


def main(argv):
  del argv
  try:
    import torch  # pylint: disable=g-import-not-at-top  (an optional extra)
  except ImportError:
    torch = None
  rows = []
  for shape in SHAPES:
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal(shape, np.float32) for _ in range(2))
    row = {'shape': list(shape)}
    for name, reduce in WAYS.items():
      summed = jax.jit(lambda x, y, reduce=reduce: reduce(x * y))
      xj, yj = jnp.asarray(x), jnp.asarray(y)
      row[f'{name}_ms'] = round(_median_ms(
          lambda summed=summed, xj=xj, yj=yj: jax.block_until_ready(summed(xj, yj))), 3)
    if torch is not None:
      xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
      yt = torch.from_numpy(y).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
      row['pytorch_ms'] = round(_median_ms(lambda xt=xt, yt=yt: (xt * yt).sum((0, 2, 3))), 3)
    rows.append(row)
    print(' | '.join(f'{k} {v}' for k, v in row.items()), flush=True)
  files.write_json_atomic(pathlib.Path(_OUTPUT.value), {
      'command': ' '.join(['python'] + sys.argv), 'device': str(jax.devices()[0].device_kind),
      'cpu_count': os.cpu_count(), 'jax': jax.__version__,
      'torch': None if torch is None else torch.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'rows': rows})
  print(f'wrote {_OUTPUT.value}', file=sys.stderr)


if __name__ == '__main__':
  app.run(main)
