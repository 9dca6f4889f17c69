"""The method interface: what every unlearning method takes and returns.

A method is a function

    method(original: TrainedModel, task: Task, config: ConfigDict) -> Unlearned

It never reads files, never parses configs beyond its own section (`config`), and never looks
at the test set: `task.views.test` exists for evaluation by the caller only.
"""

import dataclasses
from typing import Any

import numpy as np

from rem_jax import masks
from rem_jax.data import corruptions
from rem_jax.data import pipeline


@dataclasses.dataclass(frozen=True)
class TrainedModel:
  """The model a method starts from.

  Attributes:
    model: the architecture; a plain base has no extra units, an ETD base has them (its
      inference is drop mode).
    variables: {'params', 'batch_stats'} of `model`.
    mask_config: the masks the model was trained with (ETD), else None.
  """
  model: Any
  variables: dict
  mask_config: masks.MaskConfig | None = None


@dataclasses.dataclass(frozen=True)
class Task:
  """The data side of one unlearning cell.

  Attributes:
    views: D_tr, D_f, D_r, D_c, test views (see `rem_jax.data.pipeline.Views`).
    record: the corruption record in the benchmark (the methods use only what a practitioner
      knows, i.e. `forget_ids`, except the IDEAL variants and diagnostics); None for a
      practitioner's run, where D_c is unknown.
    forget_ids: D_f, sorted dataset ids.
    mesh: the device mesh.
    batch_size: the training batch size of the recipe.
    seed: fixes the method's own randomness (data order, augmentation).
    recipe: how the original model was trained (a `rem_jax.trainer.Recipe`): Retrain repeats
      it on D_r. None where it is unknown (Retrain then refuses to run).
  """
  views: pipeline.Views
  record: corruptions.CorruptionRecord | None
  forget_ids: np.ndarray
  mesh: Any
  batch_size: int
  seed: int
  recipe: Any = None


@dataclasses.dataclass(frozen=True)
class Unlearned:
  """What a method returns.

  Attributes:
    model: the architecture of `variables` (evaluated in drop mode).
    variables: the unlearned variables.
    record: JSON-able facts about the run: steps, epochs, wall_time_s and any per-iteration
      metrics the method measures.
  """
  model: Any
  variables: dict
  record: dict = dataclasses.field(default_factory=dict)
