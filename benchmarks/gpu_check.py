"""The GPU check in one command: throughput, the PyTorch peer, one paper-scale original model and
three methods on it, written to one JSON part by part, cheapest first.

Prepare here (the device image has jax with CUDA, flax, optax, orbax, chex, absl-py, pillow,
tqdm and torch, but not ml-collections; only the repository travels, not ../shared):

    mkdir -p .data && cp ../shared/data/cifar10-jpeg.tar.gz .data/
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp -d .whl ml-collections==1.1.0

then, on the device machine (`device` run, carrying `.whl` and `.data`):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
    PYTHONPATH=/tmp/site python3 benchmarks/gpu_check.py --data=.data/cifar10-jpeg.tar.gz \
        --output=$OUT/gpu_check.json

and on a CPU, the same code on toy sizes and the built-in `shapes` data in about a minute:

    python benchmarks/gpu_check.py --tiny --output=/tmp/gpu_check_tiny.json

Parts, in order (each is written as soon as it is measured; one that fails records its error
and the rest still run; the exit status is 1 if any failed):
  throughput  train-step images/s of ResNet-9 full width and capacity 0.5 in float32 and
              bfloat16, and the ViT in bfloat16, with the fraction of the device's dense peak
              (`benchmarks/throughput.py`).
  peer        rem_jax's step against PyTorch's (`benchmarks/peer_pytorch.py`: NCHW and
              channels_last, autocast for bfloat16), full width, batch 512, float32 and bfloat16,
              interleaved; skipped with a note where PyTorch is missing.
  original    the paper's capacity-0.5 ResNet-9 recipe (`configs/paper_resnet9_cifar10.py`:
              4000 steps of 512, bfloat16) on the CIFAR-10 mirror with 1000 random label swaps:
              wall time (compile included) and the steady-state time per step, test accuracy, and
              accuracy on D_c against its corrupted labels (how much of the corruption it learnt).
  methods     No UL, NPO and REM at discovery rate 0.5 with the paper's settings: Healed,
              Utility, H×U and wall time, beside the paper's pooled Table 1 row (SPEC §10) and,
              for REM, its Fig. 1 cell (random label swap, rate 0.5, seeds 0-2); --tiny runs
              No UL and REM.

Goals it prints (issue 17): ResNet-9 bfloat16 >= 100k images/s and >= 1.0x PyTorch; the 4000-step
run <= 25 s; REM <= 1.5x that run.
"""

import dataclasses
import os
import pathlib
import platform
import sys
import time
import traceback

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `configs`, and rem_jax where it is not installed (the device).
# pylint: disable=g-import-not-at-top,wrong-import-position

import peer_pytorch  # benchmarks/: this script's folder.
import throughput
from configs import paper_resnet9_cifar10
from rem_jax import evaluation, files, sharding
from rem_jax.experiments import cell, config_lib
from rem_jax.models import ResNet9, ViT

PARTS = ('throughput', 'peer', 'original', 'methods')
METHODS = ('no_ul', 'npo', 'rem')
TASK, NUM_CORRUPTED, RATE, SEED = 'random_label_swap', 1000, 0.5, 0
# SPEC §10, Table 1, plain base: (Healed, Utility, H×U) in %, mean over tasks x rates x seeds.
PAPER_TABLE1 = {'rem': (81.16, 90.54, 73.40), 'npo': (64.84, 87.59, 56.40),
                'no_ul': (35.33, 89.94, 31.72)}
# SPEC §10: REM at rate 0.5 on random label swap, seeds 0-2 (the Fig. 1 cell).
PAPER_REM_CELL = {'healed': (0.772, 0.774, 0.752), 'utility': (0.891, 0.888, 0.896)}
GOALS = {'resnet9_bfloat16_images_per_s': 100_000, 'rem_jax_over_pytorch': 1.0,
         'training_run_s': 25.0, 'rem_over_training': 1.5}


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What differs between the GPU check and its --tiny rehearsal."""
  throughput_models: tuple  # (throughput.MODELS name, dtype name, model or None: the real one)
  throughput_batch: int  # 0: each model's paper batch.
  throughput_steps: int
  peer_batch: int
  peer_dtypes: tuple
  peer_model: object  # None: full width.
  peer_rounds: int
  peer_steps: int
  methods: tuple  # Of METHODS.


def sizes(tiny: bool) -> Sizes:
  if not tiny:
    return Sizes(
        throughput_models=(('resnet9_full', 'float32', None), ('resnet9_full', 'bfloat16', None),
                           ('resnet9_half', 'float32', None), ('resnet9_half', 'bfloat16', None),
                           ('vit', 'bfloat16', None)),
        throughput_batch=0, throughput_steps=20, peer_batch=512,
        peer_dtypes=('float32', 'bfloat16'), peer_model=None, peer_rounds=3, peer_steps=20,
        methods=METHODS)
  narrow = dict(width_multiplier=1 / 8)
  return Sizes(
      # Both architectures and both dtypes, in two compiles (the check's own code is the same
      # loop for its five rows).
      throughput_models=(
          ('resnet9_full', 'float32', ResNet9(capacity=1.0, **narrow)),
          ('vit', 'bfloat16', ViT(depth=1, width_multiplier=1 / 16, patch_size=8,
                                  dtype=jnp.bfloat16))),
      throughput_batch=16, throughput_steps=1, peer_batch=16, peer_dtypes=('float32',),
      peer_model=ResNet9(capacity=1.0, **narrow), peer_rounds=1, peer_steps=1,
      # NPO's row runs the same code as REM's: the rehearsal skips it (10 s of the suite).
      methods=('no_ul', 'rem'))


def cell_config(tiny: bool, data: str):
  """The paper's ResNet-9 / CIFAR-10 cell on random label swap (tiny: its smoke version)."""
  config = config_lib.sweep_config(paper_resnet9_cifar10.cell(), {'method': METHODS})
  if tiny:
    config = config_lib.runlocal(config)
  base = config.cell
  base.task, base.seed, base.discovery_rate = TASK, SEED, RATE
  if not tiny:
    base.data.path = data
    base.num_corrupted = NUM_CORRUPTED
  return base


def throughput_part(plan: Sizes, mesh) -> dict:
  rows = [throughput.measure(name, dtype, plan.throughput_batch, plan.throughput_steps, mesh,
                             model)
          for name, dtype, model in plan.throughput_models]
  for row in rows:  # Also by XLA's own FLOP count, which covers every model (capacity 0.5 too).
    peak = row['peak_tflop_s']
    row['xla_count_fraction_of_peak'] = (None if peak is None
                                         else round(row['achieved_tflop_s'] / peak, 4))
  return {'results': rows}


def peer_part(plan: Sizes, mesh) -> dict:
  try:
    import torch  # pylint: disable=g-import-not-at-top  (an optional extra)
  except ImportError:
    return {'skipped': peer_pytorch.INSTALL_HINT}
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  torch.backends.cudnn.benchmark = True  # PyTorch's own best convolution algorithms.
  comparisons = [peer_pytorch.compare(torch, plan.peer_batch, mesh, rounds=plan.peer_rounds,
                                      steps=plan.peer_steps, dtype_name=dtype, device=device,
                                      model=plan.peer_model)
                 for dtype in plan.peer_dtypes]
  return {'torch': torch.__version__, 'torch_device': device, 'comparisons': comparisons}


def original_part(config, mesh) -> tuple[dict, cell.Prepared]:
  """Trains the original model (no workdir: nothing is written) and evaluates it."""
  marks = []  # (time, step) at each checkpoint interval: the steady state excludes the compile.
  log = lambda interval: marks.append((time.perf_counter(), interval['step']))
  began = time.perf_counter()
  prepared = cell.prepare(config, mesh, log_metrics=log)
  wall = time.perf_counter() - began
  views = prepared.views(config.discovery_rate)
  metrics = evaluation.Evaluator(prepared.original.model, views, prepared.record, mesh,
                                 config.eval_batch_size)(prepared.original.variables)
  steady = ((marks[-1][0] - marks[0][0]) / (marks[-1][1] - marks[0][1])
            if len(marks) > 1 else None)
  steps = prepared.recipe.steps
  return {
      'task': config.task, 'num_train': views.train.num_examples,
      'num_corrupted': prepared.record.num_corrupted, 'steps': steps,
      'batch_size': prepared.recipe.batch_size, 'dtype': config.model.dtype,
      'capacity': config.model.capacity,
      'wall_time_s': prepared.train_record['wall_time_s'],
      'prepare_wall_time_s': wall,  # Data loading and corruption included.
      'steady_step_s': steady,
      'steady_run_s': None if steady is None else steady * steps,
      'test_accuracy': metrics['utility'],
      'corrupted_label_accuracy': metrics['corrupted_label_accuracy'],
      'healed': metrics['healed']}, prepared


def method_row(config, prepared, method: str, mesh, train_s: float) -> dict:
  config = config.copy_and_resolve_references()
  config.method = method
  _, after, unlearned = cell.unlearn_and_evaluate(config, prepared, mesh)
  wall = unlearned.record['wall_time_s']
  paper = PAPER_TABLE1[method]
  row = {'method': method, 'healed': after['healed'], 'utility': after['utility'],
         'healed_x_utility': after['healed_x_utility'], 'wall_time_s': wall,
         'wall_time_without_evaluation_s': unlearned.record.get('wall_time_without_evaluation_s'),
         'over_training_run': wall / train_s if train_s else None,
         'paper_table1_pooled_percent': dict(zip(('healed', 'utility', 'healed_x_utility'),
                                                 paper))}
  if method == 'rem':
    healed, utility = (np.array(PAPER_REM_CELL[k]) for k in ('healed', 'utility'))
    row['paper_fig1_cell'] = {'healed': float(healed.mean()), 'utility': float(utility.mean()),
                              'healed_x_utility': float((healed * utility).mean()),
                              'seeds': 3}
  return row


class Report:
  """The JSON, rewritten atomically after every part."""

  def __init__(self, path: pathlib.Path, header: dict):
    self.path, self.value = path, {**header, 'parts': {}}
    self.failed = []
    self.write()

  def write(self) -> None:
    files.write_json_atomic(self.path, self.value)

  def attempt(self, name: str, fn) -> dict:
    """fn() -> a dict; on an error, the error instead (the caller goes on to the next part)."""
    print(f'gpu_check: {name} ...', file=sys.stderr, flush=True)
    began = time.perf_counter()
    try:
      part = fn()
    except Exception as error:  # pylint: disable=broad-except  (recorded; later parts still run)
      traceback.print_exc()
      part = {'error': f'{type(error).__name__}: {error}'}
      self.failed.append(name)
    part['part_wall_time_s'] = time.perf_counter() - began
    return part

  def run(self, name: str, fn) -> dict:
    """`attempt`, stored as part `name` and written."""
    part = self.value['parts'][name] = self.attempt(name, fn)
    self.write()
    return part


def fail(message: str):
  """Exit status 1 with one line (no usage text, no traceback)."""
  sys.exit(f'gpu_check.py: error: {message}')


def check_parts(parts) -> list[str]:
  unknown = [part for part in parts if part not in PARTS]
  if unknown:
    fail(f'--parts: {unknown} unknown; allowed: {list(PARTS)}.')
  if 'methods' in parts and 'original' not in parts:
    fail("--parts: 'methods' needs 'original' (the model they unlearn from).")
  return [part for part in PARTS if part in parts]


def summary(value: dict) -> dict:
  """The goals next to what was measured (None where a part did not run or failed)."""
  parts = value['parts']
  rows = parts.get('throughput', {}).get('results', [])
  bf16 = [r['images_per_s'] for r in rows if r['model'] == 'resnet9_full'
          and r['dtype'] == 'bfloat16']
  peer = {c['dtype']: c['rem_jax_over_pytorch_channels_last']
          for c in parts.get('peer', {}).get('comparisons', [])}
  original = parts.get('original', {})
  rem = [r for r in parts.get('methods', {}).get('results', [])
         if r['method'] == 'rem' and 'error' not in r]
  return {'goals': GOALS,
          'resnet9_bfloat16_images_per_s': bf16[0] if bf16 else None,
          'rem_jax_over_pytorch_channels_last': peer or None,
          'training_run_s': original.get('wall_time_s'),
          'training_steady_run_s': original.get('steady_run_s'),
          'rem_over_training': rem[0]['over_training_run'] if rem else None}


def run(*, tiny: bool, data: str, output: str, parts) -> dict:
  """Runs `parts` and writes the JSON at `output` after each; returns its final value."""
  parts = check_parts(parts)
  if not tiny and 'original' in parts and not pathlib.Path(data).is_file():
    fail(f'--data: {data} is not a file; copy the CIFAR-10 mirror there (see this script\'s '
         'docstring) or pass --tiny.')
  plan = sizes(tiny)
  config = cell_config(tiny, data)
  # One device, as the check is specified (one H100/H200); --tiny likewise on one CPU device.
  device = jax.devices()[0]
  mesh = sharding.make_mesh([device])
  report = Report(pathlib.Path(output), {
      'command': ' '.join(['python'] + sys.argv), 'tiny': tiny,
      'device': f'{device.platform}: {device.device_kind}', 'num_devices': 1,
      'devices_present': jax.device_count(),
      'cpu_count': os.cpu_count(), 'jax': jax.__version__, 'python': platform.python_version()})
  began = time.perf_counter()
  if 'throughput' in parts:
    report.run('throughput', lambda: throughput_part(plan, mesh))
  if 'peer' in parts:
    report.run('peer', lambda: peer_part(plan, mesh))
  prepared = None
  if 'original' in parts:
    def original():
      nonlocal prepared
      part, prepared = original_part(config, mesh)
      return part
    report.run('original', original)
  if 'methods' in parts and prepared is not None:
    train_s = report.value['parts']['original']['wall_time_s']
    rows = []
    report.value['parts']['methods'] = {'rate': RATE, 'results': rows}
    for method in plan.methods:
      row = report.attempt(f'methods: {method}',
                           lambda method=method: method_row(config, prepared, method, mesh,
                                                             train_s))
      rows.append({'method': method, **row})
      report.write()
  report.value['wall_time_s'] = time.perf_counter() - began
  report.value['summary'] = summary(report.value)
  report.value['failed_parts'] = report.failed
  report.write()
  print(f'gpu_check: {report.value["summary"]}')
  print(f'wrote {report.path}', file=sys.stderr)
  return report.value


def main(argv):
  del argv
  values = flags.FLAGS
  value = run(tiny=values.tiny, data=values.data, output=values.output, parts=values.parts)
  if value['failed_parts']:
    fail(f'failed parts: {value["failed_parts"]} (their errors are in {values.output}).')


def _define_flags() -> None:
  """Defined only when run as a script: tests import `run`."""
  flags.DEFINE_bool('tiny', False, 'Toy sizes on the built-in shapes data (a CPU check).')
  flags.DEFINE_string('data', '.data/cifar10-jpeg.tar.gz',
                      'The CIFAR-10 mirror (ignored when --tiny).')
  flags.DEFINE_string('output', 'benchmarks/results/gpu_check.json', 'JSON path.')
  flags.DEFINE_list('parts', list(PARTS), 'Parts to run, in this order (methods needs original).')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
