"""Diagnosis of a practitioner's corrupted set: where the task lies on the map, which corrupted
examples are still unfound, and which method to use (`rem_jax.experiments.diagnose` runs it).

- `regularity`: held-out agreement of probe models with the found set's given labels;
- `suspects`: co-forgetting and out-of-sample disagreement scores, their combination, and a
  threshold calibrated on the found set alone;
- `advice`: the map's cell for a task and the method with the best H×U there.
"""

from rem_jax.diagnosis import advice
from rem_jax.diagnosis import regularity
from rem_jax.diagnosis import suspects

__all__ = ['advice', 'regularity', 'suspects']
