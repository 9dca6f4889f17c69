"""What every config field accepts, and whether it does anything in a given run: one place.

`CELL_FIELDS` maps each dotted field of a cell config (`config_lib.cell_config()`) to a `Field`:
what it accepts, as docs/cli.md's "allowed" column says it word for word (`tests/test_readme.py`
holds the two together), and the check of a value. `check_values` runs every check and raises one
`ValueError` naming the field, the value and what is allowed, before anything expensive starts.

`inert_fields(config)` lists the fields that cannot change a run's outcome (another method's
settings, `class_pair` outside the inter-class task, ...): setting one of them on the command
line is an error (`check_overrides`), never a silently ignored setting.
"""

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rem_jax import methods
from rem_jax import optim
from rem_jax import sections
from rem_jax.data import corruptions
from rem_jax.data import sources
from rem_jax.models import registry

BASES = ('plain', 'etd')


@dataclasses.dataclass(frozen=True)
class Field:
  """One field: `accepts` (what a value may be, for error messages) and `meaning` (what it does);
  docs/cli.md's "allowed" column reads `accepts: meaning`, or `accepts` alone."""
  accepts: str
  check: Callable[[Any], bool]
  meaning: str = ''

  @property
  def allowed(self) -> str:
    return f'{self.accepts}: {self.meaning}' if self.meaning else self.accepts


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int) -> Callable[[Any], bool]:
  return lambda value: _is_int(value) and value >= minimum


def number(low: float, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[Any], bool]:
  """A check for a number in the interval given by `low`, `high` and which ends are open."""

  def check(value) -> bool:
    if not _is_number(value) or value != value:  # NaN.
      return False
    above = value > low if low_open else value >= low
    below = high is None or (value < high if high_open else value <= high)
    return above and below

  return check


def one_of(choices: Iterable[str]) -> Callable[[Any], bool]:
  choices = tuple(choices)
  return lambda value: value in choices


def _choices(choices: Iterable[str]) -> str:
  return ', '.join(f'`{c}`' for c in choices)


def is_text(value) -> bool:
  return isinstance(value, str) and bool(value.strip())


def is_optional_text(value) -> bool:
  return value is None or is_text(value)


def _class_pair(value) -> bool:
  return (isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value))
          and min(value) >= 0 and value[0] != value[1])


CELL_FIELDS: dict[str, Field] = {
    'seed': Field('int ≥ 0', integer(0),
                  'fixes corruption and forget ids, init, data order, augmentation, masks'),
    'dataset': Field(_choices(sources.DATASETS), one_of(sources.DATASETS)),
    'data.path': Field('unset or a path', is_optional_text,
                       'an offline folder or `.tar.gz` (`split/class_name/*.jpg\\|png`)'),
    'data.data_dir': Field('unset or a path', is_optional_text,
                           "a TFDS data directory (default: TFDS's own)"),
    'data.image_size': Field('int ≥ 0', integer(0),
                             "side in pixels (`shapes` draws at it, others are resized; 0: the "
                             "source's own)"),
    'data.num_train': Field('int ≥ 0', integer(0),
                            '`shapes`: how many to generate; others: a seeded subset (0: all)'),
    'data.num_test': Field('int ≥ 0', integer(0), 'likewise for the test split'),
    'task': Field(_choices(corruptions.TASKS), one_of(corruptions.TASKS)),
    'num_corrupted': Field('int ≥ 1', integer(1),
                           '\\|D_c\\| (the paper: 1000 of CIFAR-10\'s 50,000)'),
    'class_pair': Field('two distinct class ids', _class_pair, '`inter_class_confusion` only'),
    'discovery_rate': Field('(0, 1]', number(0, 1, low_open=True), '\\|D_f\\| / \\|D_c\\|'),
    'method': Field(_choices(sorted(methods.METHODS)), one_of(methods.METHODS),
                    'its settings are `methods.<name>.*` (see Methods)'),
    'base': Field(_choices(BASES), one_of(BASES),
                  'an ETD base is trained with extra units and per-example masks'),
    'p_mem': Field('(0, 1]', number(0, 1, low_open=True),
                   "the masks' keep probability: an ETD base's and REM's (one set of masks)"),
    'model.name': Field(_choices(registry.MODELS), one_of(registry.MODELS)),
    'model.num_classes': Field('int ≥ 2', integer(2), 'at least the dataset\'s classes'),
    'model.capacity': Field('(0, 1]', number(0, 1, low_open=True),
                            "the base units' share of the full widths"),
    'model.expansion': Field('≥ 0', number(0),
                             "an ETD base's extra units (REM's own: `methods.rem.expansion`)"),
    'model.width_multiplier': Field('> 0', number(0, low_open=True),
                                    "scales every width (1: the paper's)"),
    'model.dtype': Field(_choices(registry.DTYPES), one_of(registry.DTYPES),
                         'the compute dtype; parameters stay float32'),
    'train.optimizer': Field(_choices(optim.OPTIMIZERS), one_of(optim.OPTIMIZERS)),
    'train.learning_rate': Field('> 0', number(0, low_open=True), 'peak, after warm-up'),
    'train.schedule': Field(_choices(optim.SCHEDULES), one_of(optim.SCHEDULES)),
    'train.steps': Field('int ≥ 1', integer(1)),
    'train.batch_size': Field('int ≥ 1', integer(1), 'a multiple of the device count'),
    'train.momentum': Field('[0, 1)', number(0, 1, high_open=True), "SGD's"),
    'train.weight_decay': Field('≥ 0', number(0), "coupled L2, as PyTorch's SGD"),
    'train.checkpoint_every': Field('int ≥ 1', integer(1), 'steps between orbax checkpoints'),
    'eval_batch_size': Field('int ≥ 1', integer(1), 'a multiple of the device count'),
}


# Where a sweep's cells run (`config.cluster`, `rem_jax.experiments.cluster`): scheduling only,
# so a workdir's claim leaves the section out. `extra` is checked by `check_cluster`.
EXECUTORS = ('none', 'local', 'slurm')


def _is_name(value) -> bool:
  return isinstance(value, str) and not any(c.isspace() for c in value)


CLUSTER_FIELDS: dict[str, Field] = {
    'executor': Field(_choices(EXECUTORS), one_of(EXECUTORS),
                      '`none` runs the cells in this process; `local` and `slurm` submit tasks'),
    'partition': Field('a name or empty', _is_name, "empty: the cluster's default"),
    'account': Field('a name or empty', _is_name, "empty: the user's default"),
    'qos': Field('a name or empty', _is_name, "empty: the partition's default"),
    'gpus_per_task': Field('int ≥ 0', integer(0), "each task's GPUs (0: none requested)"),
    'cpus_per_task': Field('int ≥ 1', integer(1), "each task's CPU cores"),
    'time_minutes': Field('int ≥ 1', integer(1), "each task's time limit"),
    'cells_per_task': Field('int ≥ 1', integer(1), 'cells of one original model per task'),
    'max_concurrent': Field('int ≥ 1', integer(1), 'tasks of one array running at once'),
}
# sbatch options the submission sets itself: an `extra` entry would silently break it.
_SUBMISSION_OPTIONS = ('array', 'dependency', 'output', 'error', 'job-name', 'signal',
                       'open-mode', 'kill-on-invalid-dep')


def check_cluster(section: Mapping) -> None:
  """A sweep's `cluster` section: its names, each value, and `extra` (free-form sbatch options,
  `{option: value}`, none of which the submission sets itself)."""
  sections.check_fields(section.keys(), (*CLUSTER_FIELDS, 'extra'), 'cluster', required=True)
  check_values(section, CLUSTER_FIELDS, prefix='cluster.')
  extra = section['extra']
  if not hasattr(extra, 'items'):
    raise ValueError(f'cluster.extra={extra!r} is not allowed; allowed: a mapping of sbatch '
                     "options to values, e.g. {'mem': '32G', 'constraint': 'a100'}.")
  for option, value in extra.items():
    name = str(option).replace('_', '-')
    if name in _SUBMISSION_OPTIONS:
      raise ValueError(f'cluster.extra.{option}: the submission sets --{name} itself; remove '
                       'it.')
    if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str)
                                                          and not value.strip()):
      raise ValueError(f'cluster.extra.{option}={value!r} is not allowed; allowed: a non-empty '
                       'string, a number or true.')


def check_names(given: Mapping, expected: Mapping, *, nested: Iterable[str] = (),
                where: str = 'config') -> None:
  """`given` has exactly the fields of `expected`, and so has each of its `nested` sections; a
  `ValueError` names the unknown (or missing) fields and the allowed ones."""
  sections.check_fields(given, expected, where, required=True)
  for section in nested:
    if not isinstance(given[section], Mapping):
      raise ValueError(f'{section} must be a section of fields, got {given[section]!r}.')
    check_names(given[section], expected[section], where=section)


def check_value(path: str, value, field: Field) -> None:
  if not field.check(value):
    raise ValueError(f'{path}={value!r} is not allowed; allowed: '
                     f'{field.accepts.replace("`", "")}.')


def check_values(config: Mapping, table: Mapping[str, Field] = CELL_FIELDS,
                 prefix: str = '') -> None:
  """Every field of `table` present in `config` (a nested mapping), checked against it."""
  flat = sections.flatten(config)
  for path, field in table.items():
    if path in flat:
      check_value(prefix + path, flat[path], field)


# ---- Fields that do nothing in a run ------------------------------------------------------------


def is_rem(method: str) -> bool:
  return method in methods.rem.VARIANTS


def inert_fields(config: Mapping) -> dict[str, str]:
  """{dotted field or section: why it has no effect} for a cell (or unlearn) config."""
  method, base = config['method'], config.get('base', 'plain')
  inert = {}
  for name in config.get('methods', {}):
    if name != method:
      inert[f'methods.{name}'] = f'method={method!r} runs; other methods\' settings are unused'
  if 'task' in config and config['task'] != 'inter_class_confusion':
    inert['class_pair'] = f'task={config["task"]!r} swaps no class pair'
  if base == 'plain':
    inert['model.expansion'] = ("base='plain' has no extra units (REM's on a plain base: "
                                f'methods.{method if is_rem(method) else "rem"}.expansion)')
    if not is_rem(method):
      inert['p_mem'] = f"base='plain' has no masks and method={method!r} draws none"
  elif is_rem(method):
    inert[f'methods.{method}.expansion'] = ("base='etd': REM uses the base's extra units and "
                                            'masks')
  return inert


def inert_override(path: str, inert: Mapping[str, str]) -> str | None:
  """Why the overridden field `path` has no effect, or None if it has one."""
  for field, why in inert.items():
    if path == field or path.startswith(field + '.'):
      return why
  return None


def check_overrides(overrides: Iterable[str], inert: Mapping[str, str], prefix: str = '') -> None:
  """Raises if a field set on the command line (`prefix` + dotted path) does nothing here."""
  for path in overrides:
    if not path.startswith(prefix):
      continue
    why = inert_override(path[len(prefix):], inert)
    if why is not None:
      raise ValueError(f'--config.{path} has no effect in this run: {why}.')
