"""The named PRNG streams of a run's seed: every random draw of a run derives from one seed
through one of these (masks derive from the mask seed, `rem_jax.masks`).

The values are fixed: a committed result reproduces only while its streams keep their numbers.
REM's expansion init shares the original model's init stream (0), as it always has; the two
never meet in one model's weights (the expanded base units are overwritten by the trained
ones), so they are not separated at the cost of every committed REM result.
"""

import enum

import jax


class Stream(enum.IntEnum):
  MODEL_INIT = 0  # The original model's initialisation.
  EXPANSION_INIT = 0  # REM's extra units θo2 (an alias of MODEL_INIT: see the docstring).
  AUGMENTATION = 1  # A train state's rng: the augmentation of step t is fold_in(rng, t).
  DATA_ORDER = 2  # Epoch shuffles: epoch e's order is fold_in(key, e).
  RETRAIN_INIT = 3  # Retrain's fresh model.
  BAD_TEACHER_INIT = 4  # Bad Teacher's randomly initialised teacher.
  PROBE_INIT = 5  # A diagnosis's probe models (probe k: fold_in(key, k)).
  DIAGNOSIS = 6  # A diagnosis's folds, calibration halves and bootstrap (numpy).


def key(seed: int, stream: Stream) -> jax.Array:
  """The key of `stream` of `seed`."""
  return jax.random.fold_in(jax.random.key(seed), int(stream))
