"""rem_jax command line: `python launch.py --config=configs/<name>.py --workdir=<dir>`.

The logic lives in the `rem_jax` package, which tests and notebooks import; this file only
parses flags, sets up logging and turns a bad configuration into one readable line and a
non-zero exit status. It runs the config's experiment (`rem_jax.experiments.run`): a benchmark
cell (configs/quickstart.py: the workdir holds one trained model, `config.json` with the fields
that shape it, `corruption.json` with the ids, `found_ids.txt` with D_f's (the forget ids
configs/unlearn.py and configs/diagnose.py take), `metrics.jsonl` and checkpoints, and each
unlearning run's `runs/<method>_rate<r>_<hash>/results.json`; a killed run restarted with the
same command resumes from its last checkpoint, and another method reuses the model), a sweep
over the task space (configs/mini_cifar10.py, configs/paper_*.py: `results.jsonl` and
`reports/`; a re-run skips the recorded cells, `--config.only` selects cells;
`--config.cluster.executor=slurm` submits the cells as Slurm job arrays and returns, see
docs/devices.md) or a
practitioner's unlearning run (configs/unlearn.py).

Data-parallel over every local GPU by default; with `--distributed`, one process per host (or
per GPU), each started with the same command, forms one global mesh (`rem_jax.distributed`);
only process 0 writes files and prints the table.
"""

import logging as python_logging
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from rem_jax import compilation
from rem_jax import distributed
from rem_jax import experiments

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Configuration file (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the run\'s outputs.')
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Start afresh in a workdir that holds a run of other settings (its '
    'trained model and results are deleted; a sweep keeps its original models).')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Multi-process run: call jax.distributed.initialize first (one '
    'process per host or GPU, all with the same command; under Slurm, Open MPI or on a TPU pod '
    'the next three flags are detected).')
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None, '--distributed: HOST:PORT of process 0, the same everywhere.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None,
                                      '--distributed: how many processes in all.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None,
                                   '--distributed: this process, 0 … num_processes − 1.')
flags.mark_flags_as_required(['config', 'workdir'])


def _parse_flags(argv):
  """absl's flag parsing, with a bad flag, config file or override reported in one line."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:  # ml_collections: a field the config lacks.
    _fail(_unknown_field_message(argv, error))
  except (flags.Error, ValueError, TypeError) as error:
    _fail(_config_file_message(str(error)))


def _unknown_field_message(argv, error: BaseException) -> str:
  """Which `--config.FIELD=` override names a field the config lacks, in one line."""
  missing = str(error.args[0] if error.args else error)
  while missing[:1] in '\'"' and missing[-1:] == missing[:1] and len(missing) > 1:
    missing = missing[1:-1]  # KeyError quotes its key, and ml_collections quotes it again.
  for arg in argv:
    path = arg.partition('=')[0]
    if path.startswith('--config.') and path.split('.')[-1] == missing:
      section = '.'.join(path.split('.')[1:-1])
      where = f'section {section}' if section else 'the config'
      return (f'{path}: {where} has no field {missing!r} (a --config.FIELD override must name '
              "a field that the config file's get_config() defines; see the table in docs/cli.md).")
  return (f'cannot build the config: {missing!r} is not a field (a --config.FIELD override must '
          "name a field that the config file's get_config() defines).")


def _config_file_message(message: str) -> str:
  """ml_collections embeds the config file's traceback in its error: keep the error's own line
  (the last one) and the flag it belongs to."""
  if 'Error whilst parsing config file' not in message:
    return message
  lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
  return f'--config: {lines[0].split(":")[0]}: {lines[-1]}'


def _fail(message: str):
  print(f'launch.py: error: {message}', file=sys.stderr)
  sys.exit(1)


def _one_line(error: BaseException) -> str:
  return ' '.join(str(error).split()) or type(error).__name__


def _quiet_orbax(record: python_logging.LogRecord) -> bool:
  """Keeps orbax's warnings but not its per-save INFO lines, which drown out the run's own log."""
  return record.levelno >= python_logging.WARNING or '/orbax/' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  python_logging.getLogger('absl').addFilter(_quiet_orbax)
  try:
    _start_processes()
  except ValueError as error:
    _fail(str(error))
  compilation.use_persistent_cache()
  if (message := distributed.no_accelerator_message()) is not None:
    logging.warning(message)
  overrides = list(config_flags.get_override_values(flags.FLAGS['config']))
  try:
    result = experiments.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value,
                             overrides=overrides)
  except (ValueError, RuntimeError) as error:
    # Bad configuration, data, a diverged run or a device out of memory: one line that says
    # what to change, no traceback from deep inside.
    _fail(distributed.describe_error(error, _CONFIG.value) or _one_line(error))
  except OSError as error:  # A file that cannot be read or written: disk full, permissions.
    _fail(f'{error.filename or "a file"}: {error.strerror or error}')
  if jax.process_index() == 0:  # Every process holds the same result.
    print(report(result))


def _start_processes() -> None:
  """`--distributed`: joins the other processes before JAX touches a device."""
  explicit = {'coordinator_address': _COORDINATOR_ADDRESS.value,
              'num_processes': _NUM_PROCESSES.value, 'process_id': _PROCESS_ID.value}
  distributed.check_flags(_DISTRIBUTED.value, **explicit)
  if not _DISTRIBUTED.value:
    return
  distributed.initialize(**explicit)
  if _OVERWRITE.value and jax.process_count() > 1:
    # Every process would delete the workdir's checkpoints while the others may be reading them.
    raise ValueError('--overwrite is not supported with several processes; delete the workdir '
                     'or use another one.')


_COLUMNS = {'healed': 'Healed', 'utility': 'Utility', 'healed_x_utility': 'Healed x Utility',
            'forget_accuracy': 'Acc(D_f)', 'retain_accuracy': 'Acc(D_r)'}


def report(result: dict) -> str:
  """The headline metrics before and after unlearning, as a small table (a sweep, a diagnosis:
  their own)."""
  if 'regularity' in result:
    return experiments.diagnose.headline(result)
  if 'submitted' in result:  # A sweep submitted to a cluster (rem_jax.experiments.cluster).
    return result['submitted']
  if 'summary' in result:
    return (f'{result["summary"]}\nRan {result["ran"]} of {result["selected"]} selected cells; '
            f'records in {result["results"]}, reports in {len(result["reports"])} files.')
  keys = [k for k in _COLUMNS if k in result['before']]
  rows = [('', *(_COLUMNS[k] for k in keys))]
  for name, values in (('before', result['before']),
                       (f'after {result["config"]["method"]}', result['after'])):
    rows.append((name, *(f'{values[k]:.4f}' for k in keys)))
  width = max(len(r[0]) for r in rows)
  table = '\n'.join(f'{r[0]:<{width}}  ' + '  '.join(f'{c:>16}' for c in r[1:]) for r in rows)
  return table + (f'\nResults in {result["run_dir"]}.' if 'run_dir' in result else '')


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
