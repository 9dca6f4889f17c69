"""Processes and devices: multi-host start-up and the device problems a user meets first.

rem_jax is data-parallel over one global mesh (`rem_jax.sharding`). On one host the mesh spans
its local GPUs with nothing to set up. On several hosts, one process runs per host (or per GPU),
every one with the same command, and `initialize` connects them before JAX touches a device:
afterwards `jax.devices()` lists the devices of every process, every process builds the same
mesh and feeds its own devices, and only process 0 writes files (`rem_jax.files`).

`no_accelerator_message` and `describe_error` turn the two device problems that stop a new
user first (JAX fell back to the CPU; the device ran out of memory) into one line that says
what to do.
"""

from absl import logging
import jax
import ml_collections

CUDA_INSTALL = 'pip install -U "jax[cuda13]"'
_OOM_MARKER = 'RESOURCE_EXHAUSTED'


def initialize(*, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> None:
  """Connects this process to the others of a multi-process run (`jax.distributed.initialize`).

  Must run before any JAX computation. Under Slurm, Open MPI or on a TPU pod all arguments may
  be None: JAX reads them from the environment. Elsewhere pass all three, the same
  `coordinator_address` (host:port of process 0) and `num_processes` everywhere. `timeout_s`
  bounds the wait for the other processes to connect.

  Raises:
    ValueError: the arguments are incomplete or inconsistent, or JAX could not connect; the
      message says which arguments a run outside a detected cluster needs.
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'--num_processes={num_processes} must be at least 1.')
  if process_id is not None and (
      process_id < 0 or (num_processes is not None and process_id >= num_processes)):
    raise ValueError(f'--process_id={process_id} must lie in [0, --num_processes).')
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s)
  except (ValueError, RuntimeError) as error:
    # JAX's own message names the missing argument but not where to pass it.
    raise ValueError(
        f'--distributed: jax.distributed.initialize failed: {_first_line(error)} (outside '
        'Slurm, Open MPI or a TPU pod, pass --coordinator_address=HOST:PORT of process 0, '
        '--num_processes=N and --process_id=I to every process).') from error
  logging.info('Process %d of %d: %d local devices, %d in all (%s).', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)


def check_flags(distributed: bool, **values) -> None:
  """`--coordinator_address` and friends mean nothing without `--distributed`: say so."""
  given = sorted(name for name, value in values.items() if value is not None)
  if given and not distributed:
    raise ValueError(f'{", ".join("--" + name for name in given)} configure a multi-process '
                     'run: add --distributed.')


def no_accelerator_message() -> str | None:
  """One line for a run that found no GPU or TPU (JAX fell back to the CPU); else None.

  None also when the user asked for the CPU (`JAX_PLATFORMS=cpu`).
  """
  if jax.default_backend() != 'cpu':
    return None
  requested = (jax.config.jax_platforms or '').split(',')
  if requested == ['cpu']:
    return None
  count = jax.device_count()
  return (f'No GPU or TPU found: running on the CPU ({count} device{"s" * (count != 1)}), fine '
          'for the quickstart but slow for real datasets. For an NVIDIA GPU install the CUDA '
          f'plugin: {CUDA_INSTALL} (jax[cuda12] for CUDA 12 drivers); JAX_PLATFORMS=cpu '
          'silences this line.')


def out_of_memory_error(error: BaseException) -> BaseException | None:
  """XLA's out-of-device-memory error (RESOURCE_EXHAUSTED) in `error` or its causes, or None.

  The causes count because a library may wrap it (e.g. a checkpoint save that ran out).
  """
  seen = set()
  while error is not None and id(error) not in seen:
    if isinstance(error, jax.errors.JaxRuntimeError) and _OOM_MARKER in str(error):
      return error
    seen.add(id(error))
    error = error.__cause__ or error.__context__
  return None


def describe_error(error: BaseException,
                   config: ml_collections.ConfigDict | None = None) -> str | None:
  """One line telling the user what to change, for errors we know; None for the others.

  Out of device memory: the batch-size fields of `config` that the run uses (the training and
  evaluation batch sizes and those of the configured method), as `--config.` overrides.
  """
  oom = out_of_memory_error(error)
  if oom is None:
    return None
  fields = batch_size_fields(config) if config is not None else []
  if not fields:
    fields = ['train.batch_size', 'eval_batch_size', 'methods.<method>.eval_batch_size']
  names = ', '.join(f'--config.{field}' for field in fields)
  return (f'out of device memory ({_first_line(oom)[:200]}). Lower the batch sizes: {names} '
          f'(each a multiple of the device count, {jax.device_count()}), or use a smaller '
          'model.')


def batch_size_fields(config: ml_collections.ConfigDict) -> list[str]:
  """The dotted names of the batch-size fields a run of `config` uses.

  Only the configured method's section of `methods` counts (a sweep: every method on its
  `method` axis), since the other methods never run.
  """
  prefix = ''
  if config.get('experiment') == 'sweep':
    prefix, methods = 'cell.', set(config.axes.get('method', ()) or ()) or {config.cell.method}
    config = config.cell
  else:
    methods = {config.method} if config.get('method') is not None else set()
  fields = _batch_fields(config, methods, '')
  # Training first, then evaluation, then the methods' own; a field several methods share is
  # named once, as methods.{a,b}.field.
  shared = {}
  for name in fields:
    if name.startswith('methods.'):
      _, method, field = name.split('.', 2)
      shared.setdefault(field, []).append(method)
  own = sorted((f for f in fields if not f.startswith('methods.')),
               key=lambda f: ('eval' in f, f))
  by_method = [f'methods.{names[0]}.{field}' if len(names) == 1
               else f'methods.{{{",".join(names)}}}.{field}'
               for field, names in sorted(shared.items())]
  return [prefix + name for name in own + by_method]


def _batch_fields(node, methods: set[str], prefix: str) -> list[str]:
  found = []
  for key in node.keys():
    value = node[key]
    if isinstance(value, ml_collections.ConfigDict):
      if prefix == '' and key == 'methods':
        found += [f'methods.{name}.{field}' for name in sorted(methods) if name in value
                  for field in _batch_fields(value[name], set(), '')]
      else:
        found += _batch_fields(value, methods, f'{prefix}{key}.')
    elif key.endswith('batch_size'):
      found.append(prefix + key)
  return found


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
