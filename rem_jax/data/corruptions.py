"""The three corruption tasks of the benchmark, discovery subsets, and the record that saves them.

A corruption is applied in place (the dataset keeps its size): a set of ids D_c gets new labels,
and for the poison task also a trigger patch (stamped by the pipeline, after augmentation).
Tasks, by how much the corrupted examples share structure (SPEC §3):

- 'random_label_swap' (low): ids uniform over the whole set; each new label is uniform over
  the *other* classes, so it is always wrong.
- 'inter_class_confusion' (medium): half of the ids from class a relabelled b, half from b
  relabelled a (a, b = `class_pair`, default 3 and 5: cat/dog in CIFAR-10).
- 'poison_trigger' (high): ids from classes other than the target (0), relabelled to the target,
  each carrying the trigger.

Discovery: for rate r, the forget set D_f is round(r·|D_c|) ids drawn from D_c, independently per
rate. Every choice comes from `numpy.random.default_rng` seeded with explicit integers derived
from the one `seed`, so a `CorruptionRecord` is reproducible and can be saved next to results.
"""

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from rem_jax import files

TASKS = ('random_label_swap', 'inter_class_confusion', 'poison_trigger')
DISCOVERY_RATES = tuple(round(0.1 * i, 1) for i in range(1, 11))
POISON_TARGET = 0
DEFAULT_CLASS_PAIR = (3, 5)

# Stream tags keep the corruption draw and the discovery draws independent for one seed.
_CORRUPTION_STREAM = 0
_DISCOVERY_STREAM = 1
_RECORD_FORMAT = 1
# The fields `save_record` writes, by kind, so `load_record` can name what a file lacks.
_RECORD_INTS = ('seed', 'num_examples', 'num_classes', 'poison_target')
_RECORD_ID_LISTS = ('corrupted_ids', 'clean_labels', 'corrupted_labels')
_RECORD_FIELDS = ('format', 'task', *_RECORD_INTS, 'class_pair', *_RECORD_ID_LISTS,
                  'forget_ids')
_NOT_A_RECORD = 'not a corruption record written by rem_jax (save_record)'
# What json.loads returns, by the names JSON gives them.
_JSON_TYPES = {list: 'array', str: 'string', int: 'number', float: 'number', bool: 'boolean',
               type(None): 'null'}


@dataclasses.dataclass(frozen=True)
class CorruptionRecord:
  """Everything one seed decided about a corrupted training set.

  Attributes:
    task: one of `TASKS`.
    seed: the seed that fixed every choice below.
    num_examples: |D_tr|, the size of the training set it applies to.
    num_classes: the number of classes of that training set.
    class_pair: the inter-class confusion pair (recorded for every task, used by that one).
    poison_target: the poison task's target label.
    corrupted_ids: int32, sorted: D_c.
    clean_labels: int32, the true labels of `corrupted_ids`.
    corrupted_labels: int32, the labels they are given.
    forget_ids: percent of D_c discovered (round(100·rate)) → sorted int32 ids of D_f.
  """
  task: str
  seed: int
  num_examples: int
  num_classes: int
  class_pair: tuple[int, int]
  poison_target: int
  corrupted_ids: np.ndarray
  clean_labels: np.ndarray
  corrupted_labels: np.ndarray
  forget_ids: dict[int, np.ndarray]

  @property
  def num_corrupted(self) -> int:
    return len(self.corrupted_ids)

  @property
  def triggered(self) -> bool:
    """Whether the corrupted examples carry the trigger patch."""
    return self.task == 'poison_trigger'

  def forget_ids_at(self, rate: float) -> np.ndarray:
    """D_f for discovery `rate` (one of the rates the record was made with)."""
    check_discovery_rate(rate)
    percent = _percent(rate)
    if percent not in self.forget_ids:
      raise ValueError(f'discovery rate={rate} is not in this record; it has rates '
                       f'{[p / 100 for p in sorted(self.forget_ids)]}.')
    return self.forget_ids[percent]

  def with_forget_ids(self, rate: float, forget_ids) -> 'CorruptionRecord':
    """The same record with D_f at `rate` replaced by `forget_ids` (sorted, int32): what a
    practitioner unlearns after adding a diagnosis's suspects, clean ones too, to the found
    set (views of it: `pipeline.make_views(..., corrupted_only=False)`)."""
    self.forget_ids_at(rate)  # The rate must be one of the record's.
    ids = np.unique(np.asarray(forget_ids)).astype(np.int32)
    return dataclasses.replace(self, forget_ids={**self.forget_ids, _percent(rate): ids})

  def corrupt_labels(self, clean_labels: np.ndarray) -> np.ndarray:
    """The corrupted training labels: `clean_labels` with D_c relabelled.

    Raises `ValueError` if `clean_labels` is not the training set this record was drawn for.
    """
    clean_labels = np.asarray(clean_labels)
    if clean_labels.shape != (self.num_examples,) or not np.array_equal(
        clean_labels[self.corrupted_ids], self.clean_labels):
      raise ValueError(
          f'labels do not match this corruption record (drawn for {self.num_examples} examples '
          f'with its own clean labels at the corrupted ids); got {clean_labels.shape[0]} labels.')
    labels = clean_labels.astype(np.int32, copy=True)
    labels[self.corrupted_ids] = self.corrupted_labels
    return labels


def corrupt(labels: np.ndarray, *, task: str, seed: int, num_classes: int,
            num_corrupted: int = 1000, class_pair: Sequence[int] = DEFAULT_CLASS_PAIR,
            poison_target: int = POISON_TARGET,
            rates: Iterable[float] = DISCOVERY_RATES) -> CorruptionRecord:
  """Draws D_c, its corrupted labels and the forget set for every discovery rate.

  Args:
    labels: the clean training labels, int (N,).
    task: one of `TASKS`.
    seed: fixes every random choice.
    num_classes: the number of classes (labels lie in [0, num_classes)).
    num_corrupted: |D_c| (1000 for CIFAR-10 and SVHN, 100 for Imagenette). For inter-class
      confusion the first class of the pair gives ceil(num_corrupted / 2), the second the rest.
    class_pair: two distinct classes for inter-class confusion.
    poison_target: the label poisoned examples get (they are drawn from the other classes).
    rates: the discovery rates to draw forget sets for, each in (0, 1].

  Returns:
    The `CorruptionRecord`.
  """
  labels = np.asarray(labels)
  if task not in TASKS:
    raise ValueError(f'task={task!r} is unknown; allowed: {", ".join(TASKS)}.')
  if num_classes < 2:
    raise ValueError(f'num_classes={num_classes} must be at least 2.')
  if labels.ndim != 1 or labels.size == 0 or labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f'labels must be a non-empty 1-D array of values in [0, {num_classes}).')
  if num_corrupted <= 0:
    raise ValueError(f'num_corrupted={num_corrupted} must be positive.')
  rates = [check_discovery_rate(rate) for rate in rates]
  if len({_percent(rate) for rate in rates}) != len(rates):
    raise ValueError(f'rates={rates} must be distinct after rounding to percent.')
  class_pair = tuple(int(c) for c in class_pair)
  if task == 'inter_class_confusion':
    _check_class_pair(class_pair, num_classes)
  if task == 'poison_trigger' and not 0 <= poison_target < num_classes:
    raise ValueError(f'poison_target={poison_target} must be a class in [0, {num_classes}).')
  rng = np.random.default_rng([seed, _CORRUPTION_STREAM])
  if task == 'random_label_swap':
    ids = _draw(rng, np.arange(labels.size), num_corrupted, 'all classes')
    # An offset in [1, K) moves every label to one of the other K−1 classes, uniformly.
    new_labels = (labels[ids] + rng.integers(1, num_classes, ids.size)) % num_classes
  elif task == 'inter_class_confusion':
    a, b = class_pair
    from_a = _draw(rng, np.flatnonzero(labels == a), (num_corrupted + 1) // 2, f'class {a}')
    from_b = _draw(rng, np.flatnonzero(labels == b), num_corrupted // 2, f'class {b}')
    ids = np.concatenate([from_a, from_b])
    new_labels = np.where(labels[ids] == a, b, a)
  else:
    ids = _draw(rng, np.flatnonzero(labels != poison_target), num_corrupted,
                f'classes other than the poison target {poison_target}')
    new_labels = np.full(ids.size, poison_target)
  order = np.argsort(ids)
  corrupted_ids = ids[order].astype(np.int32)
  return CorruptionRecord(
      task=task, seed=seed, num_examples=labels.size, num_classes=num_classes,
      class_pair=class_pair, poison_target=poison_target, corrupted_ids=corrupted_ids,
      clean_labels=labels[corrupted_ids].astype(np.int32),
      corrupted_labels=new_labels[order].astype(np.int32),
      forget_ids={_percent(r): discovery_subset(corrupted_ids, r, seed) for r in rates})


def discovery_subset(corrupted_ids: np.ndarray, rate: float, seed: int) -> np.ndarray:
  """D_f at `rate`: round(rate·|D_c|) ids drawn uniformly from D_c, seeded by (seed, rate).

  Rates draw independently (the subsets are not nested). Returns sorted int32 ids.
  """
  check_discovery_rate(rate)
  corrupted_ids = np.asarray(corrupted_ids)
  size = int(round(rate * corrupted_ids.size))
  if size == 0:
    raise ValueError(f'discovery rate={rate} of {corrupted_ids.size} corrupted ids selects none; '
                     f'allowed: rate ≥ {0.5 / corrupted_ids.size:.3g}.')
  rng = np.random.default_rng([seed, _DISCOVERY_STREAM, _percent(rate)])
  return np.sort(rng.choice(corrupted_ids, size, replace=False)).astype(np.int32)


def check_discovery_rate(rate: float) -> float:
  """Returns `rate` if it lies in (0, 1], else raises `ValueError`."""
  if not 0 < rate <= 1:
    raise ValueError(f'discovery rate={rate} must lie in (0, 1].')
  return rate


def check_forget_ids(forget_ids, num_examples: int,
                     corrupted_ids: np.ndarray | None = None) -> np.ndarray:
  """Validates a forget set and returns it as sorted int32 ids.

  Args:
    forget_ids: integer ids into the training set.
    num_examples: |D_tr|; ids must lie in [0, num_examples).
    corrupted_ids: D_c when it is known (the benchmark): every forget id must be corrupted.

  Raises:
    ValueError: empty, not 1-D integers, duplicated, out of range, or (benchmark) not corrupted.
      Floats are refused even when integer-valued (3.0): see `_id_array`.
  """
  ids = _id_array(forget_ids)
  unique, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f'forget_ids must not repeat; duplicated: {unique[counts > 1][:10].tolist()}.')
  if unique[0] < 0 or unique[-1] >= num_examples:
    outside = ids[(ids < 0) | (ids >= num_examples)]
    raise ValueError(f'forget_ids must lie in [0, {num_examples}); out of range: '
                     f'{outside[:10].tolist()}.')
  if corrupted_ids is not None:
    clean = np.setdiff1d(unique, corrupted_ids)
    if clean.size:
      raise ValueError(f'forget_ids must be corrupted ids (a subset of D_c); {clean.size} are '
                       f'not, e.g. {clean[:10].tolist()}.')
  return unique.astype(np.int32)


def _id_array(forget_ids) -> np.ndarray:
  """`forget_ids` as a non-empty 1-D integer array, or a one-line `ValueError` saying why not.

  Integer-valued floats (3.0) are refused like 1.5: float32 cannot hold every id above 2**24,
  so ids that went through floats may already be wrong ids.
  """
  try:
    ids = np.asarray(forget_ids)
  except ValueError:  # numpy refuses nested lists of different lengths.
    ids = None
  if ids is None:
    what = 'nested lists of different lengths'
  elif ids.ndim != 1:
    what = f'a single value {_short(ids.item())}' if ids.ndim == 0 else f'shape {ids.shape}'
  elif ids.size == 0:
    what = 'an empty list'
  elif np.issubdtype(ids.dtype, np.integer):
    return ids
  elif ids.dtype == bool:
    what = 'booleans (a mask? its ids are np.flatnonzero(mask))'
  elif np.issubdtype(ids.dtype, np.floating):
    fractional = ids[~np.isfinite(ids) | (ids != np.round(ids))]
    what = (f'non-integer values, e.g. {fractional[0]}' if fractional.size else
            f'{ids.dtype} values {_preview(ids)}; write ids as integers (3, not 3.0)')
  elif ids.dtype.kind in 'US':
    what = f'strings {_preview(ids)}'
  else:
    what = f'{ids.dtype} values {_preview(ids)}'
  raise ValueError(f'forget_ids must be a non-empty 1-D array of integer ids; got {what}.')


def _preview(values: np.ndarray, count: int = 5) -> str:
  """The first `count` values, for a message."""
  shown = values[:count].tolist()
  return f'{shown}'[:-1] + ', ...]' if values.size > count else f'{shown}'


def save_record(record: CorruptionRecord, path: str | os.PathLike) -> None:
  """Writes `record` as JSON, atomically (temporary file + rename)."""
  data = {
      'format': _RECORD_FORMAT, 'task': record.task, 'seed': record.seed,
      'num_examples': record.num_examples, 'num_classes': record.num_classes,
      'class_pair': list(record.class_pair), 'poison_target': record.poison_target,
      'corrupted_ids': record.corrupted_ids.tolist(),
      'clean_labels': record.clean_labels.tolist(),
      'corrupted_labels': record.corrupted_labels.tolist(),
      'forget_ids': {str(p): ids.tolist() for p, ids in sorted(record.forget_ids.items())},
  }
  files.write_json_atomic(path, data)


def load_record(path: str | os.PathLike) -> CorruptionRecord:
  """Reads a record written by `save_record`.

  Raises:
    ValueError: `path` cannot be read or is not such a record (not JSON, fields missing or of
      the wrong type); the message starts with 'corruption file <path>:' and says what is wrong.
  """
  path = pathlib.Path(path).expanduser()
  try:
    content = path.read_bytes()
  except OSError as error:  # Missing, a folder, no permission.
    raise ValueError(f'corruption file {path}: cannot be read ({error.strerror or error}).'
                     ) from error
  try:
    data = json.loads(content)
  except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for a binary file.
    problem = f'not JSON ({type(error).__name__}: {error})'
  else:
    problem = _record_problem(data)
  if problem is not None:
    raise ValueError(f'corruption file {path}: {_NOT_A_RECORD}: {problem}.')
  ids = lambda values: np.asarray(values, np.int32)
  return CorruptionRecord(
      task=data['task'], seed=data['seed'], num_examples=data['num_examples'],
      num_classes=data['num_classes'], class_pair=tuple(data['class_pair']),
      poison_target=data['poison_target'], corrupted_ids=ids(data['corrupted_ids']),
      clean_labels=ids(data['clean_labels']), corrupted_labels=ids(data['corrupted_labels']),
      forget_ids={int(p): ids(v) for p, v in data['forget_ids'].items()})


def _record_problem(data) -> str | None:
  """What makes `data`, parsed JSON, other than a record `save_record` wrote; None if nothing."""
  if not isinstance(data, dict):
    return f'it holds a JSON {_JSON_TYPES.get(type(data), type(data).__name__)}, not an object'
  # The format first: a record from another version is better told so than what it lacks.
  if 'format' in data and (not _is_int32(data['format']) or data['format'] != _RECORD_FORMAT):
    return f'format is {_short(data["format"])}; this rem_jax reads format {_RECORD_FORMAT}'
  missing = [field for field in _RECORD_FIELDS if field not in data]
  if missing:
    return f'fields missing: {", ".join(missing)}'
  if data['task'] not in TASKS:
    return f'task is {_short(data["task"])}, not one of {", ".join(TASKS)}'
  for field in _RECORD_INTS:
    if not _is_int32(data[field]):
      return f'{field} is {_short(data[field])}, not an integer'
  return _record_lists_problem(data)


def _record_lists_problem(data: dict) -> str | None:
  """`_record_problem` for the id and label lists, once the scalar fields are known good."""
  forget_ids = data['forget_ids']
  # Keys are percents written by `save_record`; isascii: int() would also take other digits.
  if not isinstance(forget_ids, dict) or not all(p.isascii() and p.isdigit() for p in forget_ids):
    return f'forget_ids is {_short(forget_ids)}, not an object from percent to ids'
  lists = {field: data[field] for field in ('class_pair', *_RECORD_ID_LISTS)}
  lists.update({f'forget_ids["{p}"]': ids for p, ids in forget_ids.items()})
  for name, values in lists.items():
    if (problem := _int_list_problem(name, values)) is not None:
      return problem
  if len(data['class_pair']) != 2:
    return f'class_pair is {_short(data["class_pair"])}, not two classes'
  lengths = [len(data[field]) for field in _RECORD_ID_LISTS]
  if len(set(lengths)) > 1:
    return (f'{", ".join(_RECORD_ID_LISTS)} have lengths {lengths}; they must have one entry '
            'per corrupted example')
  return None


def _int_list_problem(name: str, values) -> str | None:
  """Why `values` is not a JSON list of int32 integers; None if it is."""
  if not isinstance(values, list):
    return f'{name} is {_short(values)}, not a list of integers'
  bad = next((i for i, value in enumerate(values) if not _is_int32(value)), None)
  return None if bad is None else f'{name}[{bad}] is {_short(values[bad])}, not an integer'


def _is_int32(value) -> bool:
  # JSON true/false arrive as bool, which Python counts as int.
  return isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31


def _short(value, width: int = 40) -> str:
  text = repr(value)
  return text if len(text) <= width else text[:width - 3] + '...'


def _draw(rng: np.random.Generator, pool: np.ndarray, count: int, what: str) -> np.ndarray:
  """`count` ids from `pool` without replacement, or a `ValueError` if the pool is too small."""
  if count > pool.size:
    raise ValueError(f'num_corrupted asks for {count} examples from {what}, which holds only '
                     f'{pool.size}.')
  return rng.choice(pool, count, replace=False)


def _check_class_pair(pair: tuple[int, ...], num_classes: int) -> None:
  if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= c < num_classes for c in pair):
    raise ValueError(f'class_pair={pair} must be two distinct classes in [0, {num_classes}).')


def _percent(rate: float) -> int:
  return int(round(100 * rate))
