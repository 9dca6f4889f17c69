"""rem_jax's train step against a PyTorch ResNet-9 doing the same work, interleaved in one run.

    pip install -e '.[peer]'                  # PyTorch: a benchmark-only extra
    python benchmarks/peer_pytorch.py         # CPU: full-width ResNet-9, batch 128 and 512
    python benchmarks/peer_pytorch.py --batch_sizes=128 --steps=2 \
        --output=benchmarks/results/peer_pytorch_cpu_lowering.json   # issue 33's full width
    python benchmarks/peer_pytorch.py --width_multiplier=0.25 --batch_sizes=256 --steps=5 \
        --output=benchmarks/results/peer_pytorch_cpu_width4.json     # the CPU map's widths

Both sides run the full-width ResNet-9 of SPEC §4 (written here from the spec) in float32 on a
device-resident uint8 batch: gather → per-example random crop (zero padding 4) and flip →
normalise → forward → cross-entropy → backward → SGD with momentum 0.9 and coupled L2 5e-4. The
rem_jax side is `benchmarks/throughput.py`'s `CompiledStep` (the library's real train step);
PyTorch runs in NCHW and in channels_last; on CPU rem_jax also runs with XLA's own lowerings
(`cpu_lowering=False`, what it ran before `rem_jax.models.cpu_lowering`), and PyTorch's OpenMP
threads wait passively (`OMP_WAIT_POLICY`, see `main`). The implementations take turns,
`--rounds` times `--steps` steps each, so a noisy neighbour slows all of them alike; the median
step time of each is reported, and the ratio rem_jax / PyTorch in images per second (above 1:
rem_jax is faster). The machine's float32 matmul peak (a 2048² matmul under `jax.jit`) is
printed for context. Without PyTorch the script says how to install it and exits 0.
"""

import os
import pathlib
import platform
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

import throughput  # benchmarks/throughput.py: this script's own folder is on sys.path.
from rem_jax import files, sharding
from rem_jax.data import pipeline
from rem_jax.models import ResNet9
from rem_jax.models.common import scale_width
from rem_jax.models.resnet9 import FULL_TRUNK_WIDTHS

INSTALL_HINT = ("PyTorch is not installed; it is a benchmark-only extra: pip install -e '.[peer]' "
                '(CPU-only wheels: pip install torch --index-url '
                'https://download.pytorch.org/whl/cpu).')


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
  """The float32 matmul rate of the default device under `jax.jit`: the machine's practical peak."""
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  matmul = jax.jit(lambda x: x @ x)
  jax.block_until_ready(matmul(a))
  began = time.perf_counter()
  for _ in range(repeats):
    out = matmul(a)
  jax.block_until_ready(out)
  return 2 * size ** 3 * repeats / (time.perf_counter() - began) / 1e9


def torch_resnet9(torch, num_classes: int = 10, width_multiplier: float = 1.0):
  """SPEC §4's ResNet-9 at full width: conv_bn = Conv (bias) → BatchNorm (PyTorch momentum 0.1,
  i.e. flax's 0.9; eps 1e-5) → CELU(0.075); the first inner conv of each residual block reads
  and writes the trunk width here, as at full width there are no extra channels. Widths scale
  by `width_multiplier` as rem_jax's do."""
  nn = torch.nn
  w1, w2, w3, w4 = (scale_width(w, width_multiplier) for w in FULL_TRUNK_WIDTHS)

  def conv_bn(c_in, c_out, kernel=3, stride=1, padding=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=True),
                         nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1), nn.CELU(0.075))

  class Residual(nn.Module):

    def __init__(self, width):
      super().__init__()
      self.inner = nn.Sequential(conv_bn(width, width), conv_bn(width, width))

    def forward(self, x):
      return x + self.inner(x)

  class ResNet9(nn.Module):

    def __init__(self):
      super().__init__()
      self.trunk = nn.Sequential(
          conv_bn(3, w1), conv_bn(w1, w2, kernel=5, stride=2, padding=2), Residual(w2),
          conv_bn(w2, w3), nn.MaxPool2d(2), Residual(w3), conv_bn(w3, w4, padding=0),
          nn.AdaptiveMaxPool2d(1), nn.Flatten())
      self.head = nn.Linear(w4, num_classes, bias=False)

    def forward(self, x):
      return self.head(self.trunk(x))

  return ResNet9()


class TorchStep:
  """The same training step in PyTorch on a uint8 NHWC dataset held as a tensor on `device`;
  bfloat16 runs under autocast (PyTorch's mixed precision: float32 weights and optimizer)."""

  def __init__(self, torch, batch_size: int, channels_last: bool, *, device: str = 'cpu',
               dtype_name: str = 'float32', width_multiplier: float = 1.0):
    self.torch, self.batch_size, self.channels_last = torch, batch_size, channels_last
    self.device, self.dtype_name = device, dtype_name
    generator = torch.Generator().manual_seed(0)
    self.images = torch.randint(0, 256, (batch_size, 32, 32, 3), dtype=torch.uint8,
                                generator=generator).to(device)
    self.labels = torch.randint(0, 10, (batch_size,), generator=generator).to(device)
    self.ids = torch.arange(batch_size, device=device)
    self.model = torch_resnet9(torch, width_multiplier=width_multiplier).to(device)
    if channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
    self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9,
                                     weight_decay=5e-4)
    self.mean = torch.tensor(pipeline.MEAN, device=device).view(1, 3, 1, 1)
    self.std = torch.tensor(pipeline.STD, device=device).view(1, 3, 1, 1)
    self.run(1)  # Warm-up: allocations, oneDNN primitive creation, cuDNN's algorithm choice.

  def _inputs(self):
    torch, padding, device = self.torch, pipeline.CROP_PADDING, self.device
    selected = self.images[self.ids]
    padded = torch.nn.functional.pad(selected, (0, 0, padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (self.batch_size, 2), device=device)
    span = torch.arange(32, device=device)
    rows = (offsets[:, :1] + span)[:, :, None]
    cols = (offsets[:, 1:] + span)[:, None, :]
    cropped = padded[torch.arange(self.batch_size, device=device)[:, None, None], rows, cols]
    flip = torch.rand(self.batch_size, device=device) < 0.5
    cropped = torch.where(flip[:, None, None, None], cropped.flip(2), cropped)
    inputs = (cropped.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std
    if self.channels_last:
      inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs

  def _synchronize(self):
    if self.device.startswith('cuda'):
      self.torch.cuda.synchronize()

  def run(self, steps: int) -> float:
    torch = self.torch
    self._synchronize()
    began = time.perf_counter()
    for _ in range(steps):
      with torch.autocast(self.device.split(':')[0], dtype=torch.bfloat16,
                          enabled=self.dtype_name == 'bfloat16'):
        loss = torch.nn.functional.cross_entropy(self.model(self._inputs()), self.labels)
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      self.optimizer.step()
    self._synchronize()
    return (time.perf_counter() - began) / steps


def compare(torch, batch_size: int, mesh, *, rounds: int, steps: int,
            dtype_name: str = 'float32', device: str = 'cpu', model=None,
            xla_lowering: bool = False) -> dict:
  """Median seconds per step of each implementation, taking turns.

  `model`: a narrower rem_jax ResNet-9 (capacity 1.0) for both sides; default the full width.
  `xla_lowering`: also run rem_jax with `cpu_lowering=False` ('rem_jax_xla_lowering': XLA's own
  lowerings, what rem_jax ran before `rem_jax.models.cpu_lowering`).
  """
  width = 1.0 if model is None else model.width_multiplier
  peers = lambda channels_last: TorchStep(torch, batch_size, channels_last, device=device,
                                          dtype_name=dtype_name, width_multiplier=width)
  jax_step = lambda model: throughput.CompiledStep('resnet9_full', dtype_name, batch_size, mesh,
                                                   model)
  implementations = {'rem_jax': jax_step(model)}
  if xla_lowering:
    model = model or ResNet9(dtype=throughput.DTYPES[dtype_name])
    implementations['rem_jax_xla_lowering'] = jax_step(model.clone(cpu_lowering=False))
  implementations.update(pytorch_nchw=peers(False), pytorch_channels_last=peers(True))
  # The same architecture: the parameter counts agree exactly (a cheap check of the PyTorch side).
  torch_parameters = sum(p.numel() for p in implementations['pytorch_nchw'].model.parameters())
  if torch_parameters != implementations['rem_jax'].parameters:
    raise RuntimeError(f'the PyTorch ResNet-9 has {torch_parameters} parameters, rem_jax\'s '
                       f'{implementations["rem_jax"].parameters}: not the same network.')
  times = {name: [] for name in implementations}
  for round_index in range(rounds):
    print(f'batch {batch_size} {dtype_name}: round {round_index + 1}/{rounds}', file=sys.stderr,
          flush=True)
    for name, step in implementations.items():
      times[name].append(step.run(steps))
  rows = {}
  for name, seconds in times.items():
    median = statistics.median(seconds)
    rows[name] = {'step_s': round(median, 5), 'images_per_s': round(batch_size / median, 1),
                  'step_s_per_round': [round(s, 5) for s in seconds]}
  jax_rate = rows['rem_jax']['images_per_s']
  ratios = {}
  if xla_lowering:
    ratios['rem_jax_xla_lowering_over_pytorch_channels_last'] = round(
        rows['rem_jax_xla_lowering']['images_per_s']
        / rows['pytorch_channels_last']['images_per_s'], 3)
  return {'batch_size': batch_size, 'dtype': dtype_name, 'width_multiplier': width,
          'parameters': torch_parameters, 'results': rows, **ratios,
          'rem_jax_over_pytorch_nchw': round(jax_rate / rows['pytorch_nchw']['images_per_s'], 3),
          'rem_jax_over_pytorch_channels_last': round(
              jax_rate / rows['pytorch_channels_last']['images_per_s'], 3)}


def main(argv):
  del argv
  # Idle OpenMP threads of PyTorch spin for a while after each parallel region (libgomp's
  # default), taking the cores from the next implementation's turn: measured here, they cut
  # rem_jax's rate by a third. Passive waiting treats every turn alike. Set before the import:
  # libgomp reads it once.
  os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
  try:
    import torch  # pylint: disable=g-import-not-at-top  (an optional extra)
  except ImportError:
    print(INSTALL_HINT)
    return
  values = flags.FLAGS
  batch_sizes = [int(size) for size in values.batch_sizes]
  mesh = sharding.make_mesh()
  device = jax.devices()[0]
  peak = matmul_gflops()
  model = ResNet9(width_multiplier=values.width_multiplier)
  comparisons = [compare(torch, batch_size, mesh, rounds=values.rounds, steps=values.steps,
                         model=model, xla_lowering=device.platform == 'cpu')
                 for batch_size in batch_sizes]
  print(f'float32 matmul (2048², jax.jit): {peak:.0f} GFLOP/s; torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads')
  print(f'width {values.width_multiplier:g}: batch | rem_jax img/s | rem_jax with XLA\'s '
        'lowerings | PyTorch NCHW img/s | PyTorch channels_last img/s | rem_jax/NCHW | '
        'rem_jax/channels_last | XLA\'s lowerings/channels_last')
  for c in comparisons:
    r = c['results']
    print(f"{c['batch_size']} | {r['rem_jax']['images_per_s']} | "
          f"{r.get('rem_jax_xla_lowering', {}).get('images_per_s')} | "
          f"{r['pytorch_nchw']['images_per_s']} | {r['pytorch_channels_last']['images_per_s']} | "
          f"{c['rem_jax_over_pytorch_nchw']} | {c['rem_jax_over_pytorch_channels_last']} | "
          f"{c.get('rem_jax_xla_lowering_over_pytorch_channels_last')}")
  output = pathlib.Path(values.output or
                        f'benchmarks/results/peer_pytorch_{device.platform}.json')
  files.write_json_atomic(output, {
      'command': ' '.join(['python'] + sys.argv),
      'device': f'{device.platform}: {device.device_kind}', 'cpu_count': os.cpu_count(),
      'jax': jax.__version__, 'torch': torch.__version__,
      'torch_threads': torch.get_num_threads(), 'python': platform.python_version(),
      'omp_wait_policy': os.environ['OMP_WAIT_POLICY'],
      'matmul_float32_gflop_s': round(peak, 1), 'comparisons': comparisons})
  print(f'wrote {output}', file=sys.stderr)


def _define_flags() -> None:
  """Defined only when run as a script, so `benchmarks/gpu_check.py` can import `compare`."""
  flags.DEFINE_list('batch_sizes', ['128', '512'], 'Batch sizes to compare.')
  flags.DEFINE_float('width_multiplier', 1.0, "Both sides' ResNet-9 widths (capacity 1.0); the "
                     "CPU map's is 0.25.")
  flags.DEFINE_integer('steps', 3, 'Timed steps per turn.')
  flags.DEFINE_integer('rounds', 3, 'Turns per implementation, interleaved.')
  flags.DEFINE_string('output', '', 'JSON path; default benchmarks/results/'
                      'peer_pytorch_<platform>.json.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
