"""The three corruption tasks, discovery subsets, the saved record and the input checks."""

import json
import re

import numpy as np
import pytest

from rem_jax.data import corruptions

NUM_CLASSES = 10
# 3000 balanced labels in a shuffled order (300 per class).
LABELS = np.random.default_rng(123).permutation(np.arange(3000) % NUM_CLASSES).astype(np.int32)


def _corrupt(task, seed=0, num_corrupted=200, **kwargs):
  return corruptions.corrupt(LABELS, task=task, seed=seed, num_classes=NUM_CLASSES,
                             num_corrupted=num_corrupted, **kwargs)


def _check_common(record, num_corrupted):
  """Exact count, unique sorted ids, clean labels are the dataset's, only D_c changes."""
  ids = record.corrupted_ids
  assert record.num_corrupted == ids.size == num_corrupted
  assert np.all(np.diff(ids) > 0)
  assert ids.dtype == record.clean_labels.dtype == record.corrupted_labels.dtype == np.int32
  np.testing.assert_array_equal(record.clean_labels, LABELS[ids])
  corrupted = record.corrupt_labels(LABELS)
  changed = np.flatnonzero(corrupted != LABELS)
  np.testing.assert_array_equal(changed, ids)  # Every corrupted label differs; nothing else.
  np.testing.assert_array_equal(corrupted[ids], record.corrupted_labels)


def test_random_label_swap_always_changes_the_label_uniformly():
  record = _corrupt('random_label_swap', num_corrupted=1000)
  _check_common(record, 1000)
  offsets = (record.corrupted_labels - record.clean_labels) % NUM_CLASSES
  # Uniform over the 9 other classes: every offset 1..9 occurs, about 1000/9 ≈ 111 times each.
  counts = np.bincount(offsets, minlength=NUM_CLASSES)
  assert counts[0] == 0 and counts[1:].min() > 70
  assert np.unique(record.clean_labels).size == NUM_CLASSES  # Drawn from every class.
  assert not record.triggered


@pytest.mark.parametrize('num_corrupted, pair', [(200, (3, 5)), (101, (1, 7))])
def test_inter_class_confusion_moves_only_the_pair(num_corrupted, pair):
  a, b = pair
  record = _corrupt('inter_class_confusion', num_corrupted=num_corrupted, class_pair=pair)
  _check_common(record, num_corrupted)
  from_a = record.clean_labels == a
  assert from_a.sum() == (num_corrupted + 1) // 2  # Half and half (the first class the odd one).
  assert (record.clean_labels == b).sum() == num_corrupted // 2
  np.testing.assert_array_equal(record.corrupted_labels, np.where(from_a, b, a))
  assert record.class_pair == pair and not record.triggered


def test_poison_ids_are_never_the_target_and_get_the_target_label():
  record = _corrupt('poison_trigger', num_corrupted=500)
  _check_common(record, 500)
  assert (record.clean_labels != 0).all()
  assert (record.corrupted_labels == 0).all()
  assert np.unique(record.clean_labels).size == NUM_CLASSES - 1
  assert record.triggered
  other = _corrupt('poison_trigger', poison_target=4)
  assert (other.clean_labels != 4).all() and (other.corrupted_labels == 4).all()


@pytest.mark.parametrize('task', corruptions.TASKS)
def test_forget_subsets_lie_in_corrupted_set_with_exact_sizes(task):
  record = _corrupt(task, num_corrupted=250)
  assert sorted(record.forget_ids) == list(range(10, 101, 10))
  subsets = {}
  for rate in corruptions.DISCOVERY_RATES:
    forget = record.forget_ids_at(rate)
    assert forget.size == round(rate * 250)  # 25, 50, …, 250 (0.3 → 75, 0.7 → 175).
    assert np.isin(forget, record.corrupted_ids).all()
    assert np.all(np.diff(forget) > 0) and forget.dtype == np.int32
    subsets[rate] = set(forget.tolist())
  np.testing.assert_array_equal(record.forget_ids_at(1.0), record.corrupted_ids)
  # Independent per rate, not nested: a smaller forget set is not inside the next larger one.
  rates = corruptions.DISCOVERY_RATES[:-1]
  assert not all(subsets[r] <= subsets[s] for r, s in zip(rates, rates[1:]))
  assert len({frozenset(s) for s in subsets.values()}) == len(subsets)


def test_discovery_is_seeded_by_seed_and_rate():
  ids = np.arange(0, 1000, 7)
  half = corruptions.discovery_subset(ids, 0.5, seed=3)
  np.testing.assert_array_equal(half, corruptions.discovery_subset(ids, 0.5, seed=3))
  assert not np.array_equal(half, corruptions.discovery_subset(ids, 0.5, seed=4))
  assert half.size == round(0.5 * ids.size)


@pytest.mark.parametrize('task', corruptions.TASKS)
def test_same_seed_same_ids_different_seed_different_ids(task):
  first, again, other = _corrupt(task, seed=7), _corrupt(task, seed=7), _corrupt(task, seed=8)
  _assert_records_equal(first, again)
  assert not np.array_equal(first.corrupted_ids, other.corrupted_ids)
  assert not np.array_equal(first.forget_ids[50], other.forget_ids[50])


def _assert_records_equal(a, b):
  for field in ('task', 'seed', 'num_examples', 'num_classes', 'class_pair', 'poison_target'):
    assert getattr(a, field) == getattr(b, field), field
  for field in ('corrupted_ids', 'clean_labels', 'corrupted_labels'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert getattr(a, field).dtype == getattr(b, field).dtype
  assert a.forget_ids.keys() == b.forget_ids.keys()
  for percent in a.forget_ids:
    np.testing.assert_array_equal(a.forget_ids[percent], b.forget_ids[percent])
    assert a.forget_ids[percent].dtype == b.forget_ids[percent].dtype


@pytest.mark.parametrize('task', corruptions.TASKS)
def test_record_round_trip_is_identical(task, tmp_path):
  record = _corrupt(task, seed=2, rates=(0.1, 0.25, 1.0))
  path = tmp_path / 'results' / 'corruption.json'
  corruptions.save_record(record, path)
  assert [p.name for p in path.parent.iterdir()] == ['corruption.json']  # No temporary left.
  saved = json.loads(path.read_text())
  assert saved['task'] == task and saved['forget_ids'].keys() == {'10', '25', '100'}
  loaded = corruptions.load_record(path)
  _assert_records_equal(record, loaded)
  np.testing.assert_array_equal(loaded.corrupt_labels(LABELS), record.corrupt_labels(LABELS))


def test_with_forget_ids_replaces_one_rate_only():
  record = _corrupt('poison_trigger', rates=(0.2, 0.5))
  found = record.forget_ids_at(0.5).copy()
  extra = np.setdiff1d(np.arange(10), found)[[1, 0, 0]].astype(np.int64)
  union = np.concatenate([record.forget_ids_at(0.5), extra])
  changed = record.with_forget_ids(0.5, union)
  np.testing.assert_array_equal(changed.forget_ids_at(0.5), np.unique(union))
  assert changed.forget_ids_at(0.5).dtype == np.int32
  np.testing.assert_array_equal(changed.forget_ids_at(0.2), record.forget_ids_at(0.2))
  np.testing.assert_array_equal(changed.corrupted_ids, record.corrupted_ids)
  np.testing.assert_array_equal(record.forget_ids_at(0.5), found)  # The original is untouched.
  with pytest.raises(ValueError, match='not in this record'):
    record.with_forget_ids(1.0, union)


def test_record_refuses_other_labels_and_unknown_rates(tmp_path):
  record = _corrupt('random_label_swap', rates=(0.5,))
  with pytest.raises(ValueError, match='do not match this corruption record'):
    record.corrupt_labels(LABELS[:-1])
  with pytest.raises(ValueError, match='do not match this corruption record'):
    record.corrupt_labels((LABELS + 1) % NUM_CLASSES)
  with pytest.raises(ValueError, match=r'rate=0.3 is not in this record; it has rates \[0.5\]'):
    record.forget_ids_at(0.3)
  (tmp_path / 'other.json').write_text('{"task": "x"}')
  with pytest.raises(ValueError, match='not a corruption record'):
    corruptions.load_record(tmp_path / 'other.json')


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize('kwargs, message', [
    ({'task': 'label_noise'}, r"task='label_noise' is unknown; allowed: random_label_swap, "
                              r'inter_class_confusion, poison_trigger'),
    ({'task': 'random_label_swap', 'num_corrupted': 3001}, r'asks for 3001 .* holds only 3000'),
    ({'task': 'random_label_swap', 'num_corrupted': 0}, 'num_corrupted=0 must be positive'),
    ({'task': 'inter_class_confusion', 'num_corrupted': 601}, r'301 examples from class 3.*300'),
    ({'task': 'poison_trigger', 'num_corrupted': 2701}, r'other than the poison target 0.*2700'),
    ({'task': 'inter_class_confusion', 'class_pair': (3, 10)},
     r'class_pair=\(3, 10\) must be two distinct classes in \[0, 10\)'),
    ({'task': 'inter_class_confusion', 'class_pair': (4, 4)}, 'class_pair=.*distinct'),
    ({'task': 'inter_class_confusion', 'class_pair': (-1, 2)}, r'class_pair=\(-1, 2\)'),
    ({'task': 'poison_trigger', 'poison_target': 10}, r'poison_target=10 .* \[0, 10\)'),
    ({'task': 'poison_trigger', 'rates': (0.5, 0.0)}, r'rate=0.0 must lie in \(0, 1\]'),
    ({'task': 'poison_trigger', 'rates': (1.5,)}, r'rate=1.5 must lie in \(0, 1\]'),
    ({'task': 'poison_trigger', 'rates': (0.5, 0.5)}, 'distinct'),
])
def test_corrupt_bad_input(kwargs, message):
  arguments = {'num_corrupted': 200, **kwargs}
  with pytest.raises(ValueError, match=message):
    corruptions.corrupt(LABELS, seed=0, num_classes=NUM_CLASSES, **arguments)


def test_inter_class_confusion_needs_enough_of_each_class():
  labels = np.array([3] * 10 + [5] * 4 + [0] * 20)
  with pytest.raises(ValueError, match=r'asks for 5 examples from class 5, which holds only 4'):
    corruptions.corrupt(labels, task='inter_class_confusion', seed=0, num_classes=10,
                        num_corrupted=10)


@pytest.mark.parametrize('rate', [0.0, -0.1, 1.01, float('nan')])
def test_discovery_rate_outside_unit_interval(rate):
  with pytest.raises(ValueError, match=r'discovery rate=.* must lie in \(0, 1\]'):
    corruptions.check_discovery_rate(rate)
  with pytest.raises(ValueError, match='rate'):
    corruptions.discovery_subset(np.arange(10), rate, seed=0)


def test_discovery_rate_selecting_nothing():
  with pytest.raises(ValueError, match='selects none'):
    corruptions.discovery_subset(np.arange(10), 0.01, seed=0)


@pytest.mark.parametrize('forget_ids, message', [
    ([], 'non-empty 1-D array of integer ids; got an empty list'),
    (np.zeros(0, np.int32), 'got an empty list'),
    ([1.0, 2.0], r'integer ids; got float64 values \[1.0, 2.0\]; write ids as integers '
                 r'\(3, not 3.0\)'),  # Integer-valued floats are refused too.
    ([1.5, 2.0], 'integer ids; got non-integer values, e.g. 1.5'),
    (np.array([np.nan, 1.0]), 'got non-integer values, e.g. nan'),
    ([[1, 2]], r'non-empty 1-D array of integer ids; got shape \(1, 2\)'),
    (np.arange(6).reshape(2, 3), r'got shape \(2, 3\)'),
    ([[1, 2], [3]], 'got nested lists of different lengths'),
    (7, 'got a single value 7'),
    (np.array([True, False, True]), r'got booleans \(a mask\? its ids are np.flatnonzero'),
    (['1', '2'], r"got strings \['1', '2'\]"),
    (np.array(['a', 'b'], object), r"got object values \['a', 'b'\]"),
    ([1, None], r'got object values \[1, None\]'),
    ([str(i) for i in range(9)], r"got strings \['0', '1', '2', '3', '4', ...\]"),
    ([4, 9, 4], r'must not repeat; duplicated: \[4\]'),
    ([3, 100], r'must lie in \[0, 100\); out of range: \[100\]'),
    ([-1, 3], r'out of range: \[-1\]'),
])
def test_forget_ids_bad_input(forget_ids, message):
  with pytest.raises(ValueError, match=f'forget_ids {message}|forget_ids.*{message}') as raised:
    corruptions.check_forget_ids(forget_ids, num_examples=100)
  assert '\n' not in str(raised.value)


@pytest.mark.parametrize('dtype', [np.int8, np.uint16, np.int32, np.int64, np.uint64])
def test_forget_ids_of_any_integer_dtype_pass(dtype):
  ids = corruptions.check_forget_ids(np.array([7, 3], dtype), num_examples=100)
  np.testing.assert_array_equal(ids, [3, 7])
  assert ids.dtype == np.int32


def test_forget_ids_must_be_corrupted_in_the_benchmark():
  corrupted = np.array([2, 5, 9])
  np.testing.assert_array_equal(
      corruptions.check_forget_ids([9, 2], 100, corrupted_ids=corrupted), [2, 9])
  with pytest.raises(ValueError, match=r'subset of D_c\); 1 are not, e.g. \[3\]'):
    corruptions.check_forget_ids([2, 3], 100, corrupted_ids=corrupted)
  # Without D_c (a user's own forget set) any valid ids pass.
  np.testing.assert_array_equal(corruptions.check_forget_ids([3], 100), [3])


# ---------------------------------------------------------------------------------------------
# A corruption file that save_record did not write


def _saved_record(tmp_path):
  """What save_record writes (parsed), to break one field at a time."""
  path = tmp_path / 'saved.json'
  corruptions.save_record(_corrupt('random_label_swap', num_corrupted=20, rates=(0.5, 1.0)), path)
  return json.loads(path.read_text())


_NOT_A_RECORD = r'not a corruption record written by rem_jax \(save_record\)'
def _where(path):
  """The start of every load_record error, as a pattern."""
  return re.escape(f'corruption file {path}')


_ALL_FIELDS = ('format, task, seed, num_examples, num_classes, poison_target, class_pair, '
               'corrupted_ids, clean_labels, corrupted_labels, forget_ids')


@pytest.mark.parametrize('content, message', [
    (np.random.default_rng(0).bytes(300), r'not JSON \((UnicodeDecodeError|JSONDecodeError): '),
    (b'\x89PNG\r\n\x1a\n\x00\x00', r"not JSON \(UnicodeDecodeError: 'utf-8' codec can't decode "
                                  'byte 0x89 in position 0'),
    (b'', r'not JSON \(JSONDecodeError: Expecting value: line 1 column 1'),
    (b'{"format": 1, "task": ', r'not JSON \(JSONDecodeError: Expecting value'),
    (b'task: random_label_swap\n', r'not JSON \(JSONDecodeError'),
    (b'[1, 2, 3]', 'it holds a JSON array, not an object'),
    (b'"corrupted_ids"', 'it holds a JSON string, not an object'),
    (b'null', 'it holds a JSON null, not an object'),
    (b'3.5', 'it holds a JSON number, not an object'),
    (b'{}', f'fields missing: {_ALL_FIELDS}'),
    (b'{"format": 1}', 'fields missing: task, seed, .*, forget_ids'),
    (b'{"format": 2}', 'format is 2; this rem_jax reads format 1'),
    (b'{"format": "1"}', "format is '1'; this rem_jax reads format 1"),
])
def test_load_record_refuses_a_file_that_is_not_a_record(tmp_path, content, message):
  path = tmp_path / 'corruption.json'
  path.write_bytes(content)
  with pytest.raises(ValueError, match=f'^{_where(path)}: {_NOT_A_RECORD}: {message}') as raised:
    corruptions.load_record(path)
  assert '\n' not in str(raised.value)


@pytest.mark.parametrize('change, message', [
    ({'corrupted_ids': [1.5, 2]}, r'corrupted_ids\[0\] is 1.5, not an integer'),
    ({'corrupted_ids': [1.0, 2]}, r'corrupted_ids\[0\] is 1.0, not an integer'),
    ({'clean_labels': 'abc'}, "clean_labels is 'abc', not a list of integers"),
    ({'corrupted_labels': [[1], [2]]}, r'corrupted_labels\[0\] is \[1\], not an integer'),
    ({'corrupted_ids': [2**40]}, r'corrupted_ids\[0\] is 1099511627776, not an integer'),
    ({'corrupted_ids': [True]}, r'corrupted_ids\[0\] is True, not an integer'),
    ({'forget_ids': {'50': [1, None]}}, r'forget_ids\["50"\]\[1\] is None, not an integer'),
    ({'forget_ids': [1, 2]}, r'forget_ids is \[1, 2\], not an object from percent to ids'),
    ({'forget_ids': {'half': [1]}}, "forget_ids is {'half': .*, not an object from percent"),
    ({'class_pair': [3]}, r'class_pair is \[3\], not two classes'),
    ({'class_pair': None}, 'class_pair is None, not a list of integers'),
    ({'clean_labels': [1]},
     r'corrupted_ids, clean_labels, corrupted_labels have lengths \[20, 1, 20\]'),
    ({'seed': '0'}, "seed is '0', not an integer"),
    ({'num_examples': 3000.0}, 'num_examples is 3000.0, not an integer'),
    ({'task': 'label_noise'}, "task is 'label_noise', not one of random_label_swap, "),
])
def test_load_record_refuses_fields_of_the_wrong_type(tmp_path, change, message):
  path = tmp_path / 'corruption.json'
  path.write_text(json.dumps({**_saved_record(tmp_path), **change}))
  with pytest.raises(ValueError, match=f'^{_where(path)}: {_NOT_A_RECORD}: {message}'):
    corruptions.load_record(path)


def test_load_record_of_a_missing_file_or_a_folder(tmp_path):
  missing = tmp_path / 'missing.json'
  with pytest.raises(ValueError,
                     match=rf'^{_where(missing)}: cannot be read \(No such file or directory\)'):
    corruptions.load_record(missing)
  with pytest.raises(ValueError, match=rf'^{_where(tmp_path)}: cannot be read \(Is a directory\)'):
    corruptions.load_record(tmp_path)
