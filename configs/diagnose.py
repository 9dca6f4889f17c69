"""Diagnose a corrupted set: where the task lies on the map, what was missed, which method.

    python launch.py --config=configs/diagnose.py --workdir=/tmp/rem_diagnosis \\
      --config.checkpoint=/tmp/rem_quickstart \\
      --config.forget_ids=/tmp/rem_quickstart/found_ids.txt \\
      --config.corruption=/tmp/rem_quickstart/corruption.json

Takes what configs/unlearn.py takes (a trained model, the ids found, the training data as you
have it) and writes `report.md`, `diagnosis.json`, `diagnosis.png`, the ranked suspects
(`suspects.json`) and every example's scores (`scores.npz`) to the workdir:
- the found set's regularity score (the share of the gap between its labels predicted without
  it and clean labels that the rest of it closes: `folds` probe models and one without the
  found set, each trained with the checkpoint's recipe or `probe_steps` steps), its row of the
  map and the rows its interval reaches ("cannot tell" where there is no gap to close);
- suspects: corrupted examples not yet found, by co-forgetting (a flush of the found set that
  stops before Acc(D_r) falls more than `flush_margin`) and out-of-sample disagreement
  (cleanlab), with a threshold calibrated on the found set; "cannot tell", and no count,
  where the calibration cannot tell a signal from chance;
- the estimated discovery rate with its interval, and the method with the best H×U in that
  cell of a benchmark (`records`: the packaged CPU map by default, or a sweep's
  results.jsonl); the best at each plausible rate where the rate is uncertain or unknown.
`--config.unlearn=true` then unlearns D_f (and the suspects where the map measured that adding
them helps, or as `add_suspects` says) with the advised method (or
`method`) into `<workdir>/unlearned`.

That command diagnoses the quickstart's model and D_f (`found_ids.txt`; `corruption`
re-creates its poisoned training images, see configs/unlearn.py).
"""

import ml_collections

from rem_jax.experiments import config_lib
from rem_jax.experiments import tiny


def get_config() -> ml_collections.ConfigDict:
  """Every field: `rem_jax.experiments.config_lib.diagnose_config`."""
  return tiny.shrink_if_asked(config_lib.diagnose_config())
