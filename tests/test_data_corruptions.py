"""The three corruption tasks, discovery subsets, the saved record and the input checks."""

import json

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
    ([], 'non-empty 1-D array of integer ids'),
    ([1.0, 2.0], 'integer ids'),
    ([[1, 2]], 'non-empty 1-D'),
    ([4, 9, 4], r'must not repeat; duplicated: \[4\]'),
    ([3, 100], r'must lie in \[0, 100\); out of range: \[100\]'),
    ([-1, 3], r'out of range: \[-1\]'),
])
def test_forget_ids_bad_input(forget_ids, message):
  with pytest.raises(ValueError, match=f'forget_ids {message}|forget_ids.*{message}'):
    corruptions.check_forget_ids(forget_ids, num_examples=100)


def test_forget_ids_must_be_corrupted_in_the_benchmark():
  corrupted = np.array([2, 5, 9])
  np.testing.assert_array_equal(
      corruptions.check_forget_ids([9, 2], 100, corrupted_ids=corrupted), [2, 9])
  with pytest.raises(ValueError, match=r'subset of D_c\); 1 are not, e.g. \[3\]'):
    corruptions.check_forget_ids([2, 3], 100, corrupted_ids=corrupted)
  # Without D_c (a user's own forget set) any valid ids pass.
  np.testing.assert_array_equal(corruptions.check_forget_ids([3], 100), [3])
