"""Per-example masks from (mask_seed, id) and REM's shared forget mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rem_jax import masks

SIZE = 64  # Large enough that two independent masks coincide with negligible probability.


def _own(ids, seed=0, p=0.2, size=SIZE):
  return np.asarray(masks.example_masks(jnp.asarray(ids), mask_seed=seed, p_mem=p,
                                        mask_size=size))


def test_masks_are_a_function_of_seed_and_id_only():
  a = _own([5, 9, 5, 100])
  np.testing.assert_array_equal(a[0], a[2])  # Same id, same mask, wherever it appears.
  np.testing.assert_array_equal(_own([9])[0], a[1])  # Independent of the batch around it.
  assert set(np.unique(a)) <= {0.0, 1.0}
  assert a.shape == (4, SIZE) and a.dtype == np.float32
  # Under jit with a traced seed: the same values.
  jitted = jax.jit(lambda ids, seed: masks.example_masks(ids, mask_seed=seed, p_mem=0.2,
                                                         mask_size=SIZE))
  np.testing.assert_array_equal(jitted(jnp.array([5, 9, 5, 100]), 0), a)


def test_masks_differ_across_ids_and_seeds():
  ids = np.arange(200)
  seed0, seed1 = _own(ids, seed=0), _own(ids, seed=1)
  assert len({row.tobytes() for row in seed0}) == len(ids)
  assert not any(np.array_equal(a, b) for a, b in zip(seed0, seed1))


@pytest.mark.parametrize('p', [0.05, 0.2, 0.5])
def test_keep_rate_is_p_over_many_ids(p):
  sample = _own(np.arange(2000), seed=3, p=p)  # 128,000 Bernoulli draws.
  # 5 standard errors of a 128k-draw proportion.
  assert abs(sample.mean() - p) < 5 * np.sqrt(p * (1 - p) / sample.size)


def test_shared_mask_is_identical_for_forget_examples_and_no_examples_own():
  ids = np.arange(1000)
  in_forget = ids % 3 == 0
  assigned = np.asarray(masks.assign_masks(ids, in_forget, mask_seed=0, p_mem=0.2,
                                           mask_size=SIZE))
  shared = np.asarray(masks.shared_forget_mask(mask_seed=0, p_mem=0.2, mask_size=SIZE))
  np.testing.assert_array_equal(assigned[in_forget], np.broadcast_to(shared, (334, SIZE)))
  own = _own(ids)
  np.testing.assert_array_equal(assigned[~in_forget], own[~in_forget])
  assert not any(np.array_equal(shared, row) for row in own)
  assert 0 < shared.sum() < SIZE
  other_seed = masks.shared_forget_mask(mask_seed=1, p_mem=0.2, mask_size=SIZE)
  assert not np.array_equal(shared, other_seed)


def test_zero_sized_masks():
  assert _own([1, 2], size=0).shape == (2, 0)


def test_mask_config_round_trip_and_validation():
  config = masks.MaskConfig(mask_seed=4, p_mem=0.05)
  assert masks.MaskConfig.from_dict(config.to_dict()) == config
  assert masks.MaskConfig(mask_seed=1).p_mem == 0.2
  with pytest.raises(ValueError, match=r'p_mem=1.5 must be a probability in \[0, 1\]'):
    masks.MaskConfig(mask_seed=0, p_mem=1.5)
  with pytest.raises(ValueError, match='mask_seed=.* must be an integer'):
    masks.MaskConfig(mask_seed=0.5)
  with pytest.raises(ValueError, match=r"MaskConfig fields \['p'\] are unknown"):
    masks.MaskConfig.from_dict({'mask_seed': 0, 'p': 0.2})


def test_bad_arguments():
  with pytest.raises(ValueError, match='p_mem=-0.1'):
    masks.example_masks(jnp.arange(3), mask_seed=0, p_mem=-0.1, mask_size=4)
  with pytest.raises(ValueError, match='mask_size=-1 must be a non-negative integer'):
    masks.shared_forget_mask(mask_seed=0, p_mem=0.2, mask_size=-1)
  with pytest.raises(ValueError, match=r'in_forget has shape \(2,\), expected the shape of ids'):
    masks.assign_masks(jnp.arange(3), jnp.zeros(2, bool), mask_seed=0, p_mem=0.2, mask_size=4)
