"""Several processes, one mesh; and the one-line answers to a missing GPU and to OOM."""

import functools
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from absl import flags

from configs import mini_cifar10, quickstart, unlearn
from rem_jax import distributed, files, sharding
from rem_jax.experiments import store
from tests import multi_process_worker

ROOT = pathlib.Path(__file__).resolve().parent.parent
OOM = ('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 6442450944 bytes.\n'
       'BufferAssignment OOM Debugging. ...')


# ---------------------------------------------------------------------------------------------
# Two processes on the CPU


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_train_on_one_global_mesh_like_one_process(tmp_path):
  # Two processes with 2 fake CPU devices each join over a localhost coordinator: one 4-device
  # mesh whose training run and predictions match a single process on 4 devices.
  # The suite's other XLA flags (tests/conftest.py: -O2) carry over; the device count does not.
  flags = [f for f in os.environ.get('XLA_FLAGS', '').split()
           if not f.startswith('--xla_force_host_platform_device_count')]
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu',
         'XLA_FLAGS': ' '.join(['--xla_force_host_platform_device_count=2', *flags])}
  port = _free_port()
  workers = [subprocess.Popen(
      [sys.executable, '-m', 'tests.multi_process_worker', str(i), str(port), str(tmp_path)],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(multi_process_worker.NUM_PROCESSES)]
  try:
    deadline = time.time() + 240
    # One failed worker leaves the other waiting on a collective: stop both at once.
    while any(w.poll() is None for w in workers):
      assert time.time() < deadline, 'the workers did not finish in time'
      assert all(w.poll() in (None, 0) for w in workers), 'a worker failed'
      time.sleep(0.2)
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
    logs = [worker.communicate()[0] for worker in workers]
  assert [w.returncode for w in workers] == [0, 0], '\n'.join(l[-3000:] for l in logs)

  mesh = sharding.make_mesh(jax.devices()[:4])
  alone = multi_process_worker.train(mesh)
  paths, structure = jax.tree_util.tree_flatten_with_path(alone)
  with np.load(tmp_path / 'result.npz') as result:
    assert sorted(result.files) == sorted(['predictions'] + [jax.tree_util.keystr(p)
                                                             for p, _ in paths])
    together = jax.tree_util.tree_unflatten(
        structure, [result[jax.tree_util.keystr(p)] for p, _ in paths])
    # Prediction has no cross-device sum: the same weights predict bit-identically here.
    np.testing.assert_array_equal(result['predictions'],
                                  multi_process_worker.predict(mesh, together))
  # Training does: every all-reduce (gradients, BatchNorm statistics) sums in another order over
  # 2 processes (gloo) than in one, a few ulps apart, and six steps amplify that to about 1e-4 of
  # each leaf's change from its initial value (measured). A wrong computation (rows fed to the
  # wrong devices, a process training on its own half of each batch) changes every step's
  # gradient by about its own size: the same training with another data order, checked below,
  # lands 1e-1 and more away. The bound, 1e-2 of the change, sits between the two. Leaves that
  # change only by rounding (a convolution's bias before BatchNorm gets no gradient) are held
  # to 1e-6 absolute.
  start = multi_process_worker.initial_variables()
  distance = _relative_distances(together, alone, start)
  assert max(distance.values()) <= _TOLERANCE, distance
  reordered = _relative_distances(multi_process_worker.train(mesh, seed=1), alone, start)
  assert sorted(reordered.values())[len(reordered) // 2] > 10 * _TOLERANCE, reordered
  # Both processes wrote the log and the result; only process 0's writes happened.
  assert files.JsonLines(tmp_path / 'log.jsonl').read() == [{'process': 0}]
  assert (tmp_path / 'done_1.json').exists()  # every_process=True: each process writes.
  assert sorted(p.name for p in (tmp_path / 'run' / 'checkpoints').iterdir()
                if p.name.isdigit()) == ['3', '6']


_TOLERANCE = 1e-2


def _relative_distances(variables, reference, start) -> dict[str, float]:
  """Per leaf, |variables − reference| / (|reference − start| + 1e-6 / 1e-2), norms over the
  leaf: the difference as a fraction of how far training moved the leaf."""
  distances = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(reference):
    get = lambda tree: np.asarray(functools.reduce(lambda node, key: node[key.key], path, tree))
    moved = np.linalg.norm(get(reference) - get(start))
    distances[jax.tree_util.keystr(path)] = float(
        np.linalg.norm(get(variables) - leaf) / (moved + 1e-6 / _TOLERANCE))
  return distances


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, 'process_index', lambda: 1)
  files.write_json_atomic(tmp_path / 'a.json', {'x': 1})
  files.JsonLines(tmp_path / 'b.jsonl').append({'x': 1})
  store.ResultStore(tmp_path / 'results.jsonl').append({'cell': 'c'})
  assert not list(tmp_path.iterdir())
  files.write_atomic(tmp_path / 'cache.bin', lambda f: f.write(b'x'), every_process=True)
  assert (tmp_path / 'cache.bin').read_bytes() == b'x'


def test_distributed_arguments_are_checked_before_jax_sees_them():
  with pytest.raises(ValueError, match=r'--coordinator_address, --num_processes configure a '
                     r'multi-process run: add --distributed'):
    distributed.check_flags(False, coordinator_address='h:1', num_processes=2, process_id=None)
  distributed.check_flags(True, coordinator_address='h:1', num_processes=2, process_id=0)
  distributed.check_flags(False, coordinator_address=None, num_processes=None, process_id=None)
  with pytest.raises(ValueError, match='at least 1'):
    distributed.initialize(num_processes=0)
  with pytest.raises(ValueError, match=r'--process_id=2 must lie in \[0, --num_processes\)'):
    distributed.initialize(num_processes=2, process_id=2)


# ---------------------------------------------------------------------------------------------
# The errors a user meets first


def test_running_on_the_cpu_says_how_to_install_the_cuda_plugin():
  assert jax.default_backend() == 'cpu'
  message = distributed.no_accelerator_message()
  assert message.startswith('No GPU or TPU found: running on the CPU (4 devices)')
  assert 'pip install -U "jax[cuda13]"' in message and '\n' not in message
  jax.config.update('jax_platforms', 'cpu')  # The user asked for the CPU: nothing to say.
  try:
    assert distributed.no_accelerator_message() is None
  finally:
    jax.config.update('jax_platforms', None)


@pytest.mark.parametrize('config, fields', [
    (quickstart.get_config(), '--config.train.batch_size, --config.eval_batch_size, '
                              '--config.methods.rem.eval_batch_size (each a multiple of the '
                              'device count, 4)'),
    (unlearn.get_config(), '--config.batch_size, --config.eval_batch_size, '
                           '--config.methods.rem.eval_batch_size ('),
    (mini_cifar10.get_config(), '--config.cell.train.batch_size, --config.cell.eval_batch_size, '
                                '--config.cell.methods.potion.batch_size, --config.cell.methods.'
                                '{ascent,bad_teacher,cf,npo,potion,rem,scrub}.eval_batch_size'),
])
def test_out_of_memory_names_the_batch_sizes_to_lower(config, fields):
  line = distributed.describe_error(jax.errors.JaxRuntimeError(OOM), config)
  assert line.startswith('out of device memory (RESOURCE_EXHAUSTED: Out of memory while trying '
                         'to allocate 6442450944 bytes.). Lower the batch sizes: ')
  assert fields in line and '\n' not in line


def test_only_out_of_memory_is_described():
  config = quickstart.get_config()
  assert distributed.describe_error(ValueError('RESOURCE_EXHAUSTED'), config) is None
  assert distributed.describe_error(jax.errors.JaxRuntimeError('INTERNAL: boom'), config) is None
  try:  # Wrapped by a library, e.g. a checkpoint save that ran out of memory.
    try:
      raise jax.errors.JaxRuntimeError(OOM)
    except jax.errors.JaxRuntimeError as error:
      raise RuntimeError('save failed') from error
  except RuntimeError as wrapped:
    assert distributed.describe_error(wrapped, config).startswith('out of device memory')


def test_launch_turns_out_of_memory_into_one_line_and_exit_status_1(tmp_path, monkeypatch,
                                                                    capsys):
  monkeypatch.syspath_prepend(str(ROOT))
  import launch  # pylint: disable=g-import-not-at-top  (defines the CLI's flags)

  def out_of_memory(*args, **kwargs):
    raise jax.errors.JaxRuntimeError(OOM)

  monkeypatch.setattr(launch.experiments, 'run', out_of_memory)
  flags.FLAGS(['launch.py', f'--config={ROOT / "configs" / "quickstart.py"}',
               f'--workdir={tmp_path}'])
  try:
    with pytest.raises(SystemExit) as exit_status:
      launch.main(['launch.py'])
  finally:
    flags.FLAGS.unparse_flags()
  assert exit_status.value.code == 1
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('launch.py: error: out of device memory')
  assert '--config.train.batch_size' in lines[0]
