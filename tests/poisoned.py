"""The shared behaviour fixture: a tiny ResNet-9 trained once on a poisoned `shapes` task.

It is trained on the suite's whole mesh (4 fake devices) and served on one device: the
behaviour tests (REM's, the baselines', the diagnosis's) check what the methods do, and
sharding changes none of it (tests/test_sharding.py and test_train_step.py check that, and
test_launch.py, test_sweep.py and test_practitioner.py run every method on the whole mesh).
One device compiled and ran test_rem_drop_mode.py in 109 s against 126 s on four (2026-12-01,
2 cores).
"""

import dataclasses
import fcntl
import pathlib
import pickle

import jax

from rem_jax import evaluation, optim, sharding, trainer
from rem_jax.data import corruptions, pipeline, sources
from rem_jax.methods import base
from rem_jax.models import init_variables
from tests import tiny

RATE = 0.5
TRAIN_SEED = 3
BATCH = 64
RECIPE = trainer.Recipe(
    optim.OptimizerSettings(learning_rate=0.05, schedule='warmup_linear_decay'),
    steps=320, batch_size=BATCH, checkpoint_every=320)


@dataclasses.dataclass
class Poisoned:
  model: object
  variables: dict
  splits: sources.Splits
  record: corruptions.CorruptionRecord
  mesh: object
  images: dict

  def task(self, rate=RATE, seed=0, images=None, recipe=RECIPE):
    """The cell at discovery `rate`; `images` replaces the device images (e.g. NaN rows)."""
    forget_ids = self.record.forget_ids_at(rate)
    views = pipeline.make_views(self.splits, self.record, forget_ids, images or self.images)
    return base.Task(views, self.record, forget_ids, self.mesh, BATCH, seed, recipe)

  def on(self, mesh) -> 'Poisoned':
    """This fixture with its task on `mesh`."""
    return dataclasses.replace(self, mesh=mesh, images=pipeline.put_images(self.splits, mesh))

  def evaluate(self, model, variables, rate=RATE):
    task = self.task(rate)
    return evaluation.Evaluator(model, task.views, self.record, self.mesh, 256)(variables)


def _served(model, variables, splits, record) -> Poisoned:
  """The fixture on one device (see the module docstring)."""
  return Poisoned(model, variables, splits, record, None, {}).on(
      sharding.make_mesh(jax.devices()[:1]))


def train_poisoned() -> Poisoned:
  """A width/8 capacity-0.5 ResNet-9 trained on 16x16 shapes with 64 of 1024 images poisoned."""
  mesh = sharding.make_mesh()
  splits = sources.load('shapes', image_size=16, num_train=1024, num_test=256, seed=0)
  record = corruptions.corrupt(splits.train.labels, task='poison_trigger', seed=0,
                               num_classes=10, num_corrupted=64, rates=[0.2, RATE, 1.0])
  images = pipeline.put_images(splits, mesh)
  views = pipeline.make_views(splits, record, record.forget_ids_at(RATE), images)
  model = tiny.tiny_resnet(expansion=0.0)
  # Data-order seed 3: with it this tiny run reliably reaches test accuracy 0.89 and poison
  # success 0.94 on D_c (the behaviour tests' preconditions); some orders stall near 0.7.
  variables, _ = trainer.train(model, init_variables(model, jax.random.key(0), (16, 16, 3)),
                               views.train, RECIPE, mesh=mesh, seed=TRAIN_SEED)
  return _served(model, jax.device_get(variables), splits, record)


def shared_poisoned(directory: pathlib.Path) -> Poisoned:
  """`train_poisoned()`, or the model another test process of this run saved.

  Each pytest-xdist worker is a process of its own: without this, each spends half a minute
  training the same model. A worker that asks while another is training trains its own copy
  (the same, bit for bit) rather than wait idle; the first to finish saves it. `directory` is
  common to the run's workers, new for every run.
  """
  path = directory / 'poisoned.pkl'
  if path.is_file():
    return _served(*pickle.loads(path.read_bytes()))
  poisoned = train_poisoned()
  with open(directory / 'poisoned.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # One writer; the rename makes the file appear whole.
    if not path.is_file():
      temporary = path.with_suffix('.tmp')
      temporary.write_bytes(pickle.dumps(
          (poisoned.model, poisoned.variables, poisoned.splits, poisoned.record)))
      temporary.rename(path)
  return poisoned
