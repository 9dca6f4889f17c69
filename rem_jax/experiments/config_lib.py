"""The configs' building blocks: the default cell, sweep layouts and the `runlocal` shrink.

`configs/*.py` (the files `launch.py --config=` takes) are thin: they call these. Living in the
package, they import from anywhere (a benchmark script, a notebook, a test) without the
repository root on `sys.path`.

- `cell_config()`: every field of a cell config with its default (the quickstart cell: 5,000
  32x32 `shapes` images, 250 poisoned, a width/8 capacity-0.5 ResNet-9, REM at discovery 0.5);
- `unlearn_config()`: the practitioner's run (configs/unlearn.py);
- `diagnose_config()`: the practitioner's diagnosis (configs/diagnose.py);
- `cell_with(**{'dotted.field': value})`: that cell with overrides;
- `sweep_config(cell, axes, method_axes)`: a sweep (see `rem_jax.experiments.sweep`), with
  `cluster_config()`, where its cells run (`rem_jax.experiments.cluster`);
- `in_paper_proportions(cell)`: that cell's unlearning settings derived from its training recipe
  by the paper's ratios (budget, learning rate, SCRUB's max epochs); `proportions(cell)` reads
  a cell's ratios back, `inter_class_corrupted(cell)` the paper's inter-class |D_c|;
- `runlocal(sweep)`: a few-minute CPU smoke version of any sweep: the built-in `shapes` data at
  16x16, a width/8 model trained for 60 steps, the first two values of each axis but `method`,
  one epoch per method (two for REM);
- `parse_arg(arg, allowed, config_file)`: the `--config=FILE:ARG` argument, checked.
"""

import ml_collections
from ml_collections import config_dict

from rem_jax import methods
from rem_jax import sections


def cell_config() -> ml_collections.ConfigDict:
  """The quickstart cell: every field of a cell config, commented (configs/quickstart.py)."""
  config = ml_collections.ConfigDict()
  config.seed = 0                          # Fixes corruption, forget ids, init, data order, masks.
  config.dataset = 'shapes'                # shapes | cifar10 | svhn_cropped | imagenette | folder
  config.data = ml_collections.ConfigDict()
  config.data.path = config_dict.placeholder(str)      # Offline folder or .tar.gz.
  config.data.data_dir = config_dict.placeholder(str)  # TFDS data directory.
  config.data.image_size = 32
  config.data.num_train = 5000             # shapes: generated; others: a seeded subset (0: all).
  config.data.num_test = 1000              # Likewise.

  config.task = 'poison_trigger'           # random_label_swap | inter_class_confusion | poison_trigger
  config.num_corrupted = 250               # |D_c| (the paper: 1000 of CIFAR-10's 50,000).
  config.class_pair = (3, 5)               # inter_class_confusion only.
  config.discovery_rate = 0.5              # |D_f| / |D_c|, in (0, 1].
  config.method = 'rem'                    # Any of rem_jax.methods.METHODS (listed below).
  config.methods = ml_collections.ConfigDict()  # One section per method, by name: its defaults.
  for name in sorted(methods.METHODS):     # no_ul etd retrain cf ascent npo scrub bad_teacher
    config.methods[name] = methods.default_config(name)  # potion rem (+ its variants)
    if 'eval_batch_size' in config.methods[name]:
      config.methods[name].eval_batch_size = 256
    if name.startswith('rem'):
      del config.methods[name]['p_mem']    # REM's masks are the top-level p_mem's.

  config.base = 'plain'                    # plain | etd (extra units + per-example masks).
  config.p_mem = 0.2                       # The masks' keep probability: ETD's and REM's.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'resnet9'            # resnet9 | vit
  config.model.num_classes = 10
  config.model.capacity = 0.5
  config.model.expansion = 0.5             # Extra units for ETD (and REM's expansion).
  config.model.width_multiplier = 0.125
  config.model.dtype = 'float32'           # float32 | bfloat16

  config.train = ml_collections.ConfigDict()
  config.train.optimizer = 'sgd'
  config.train.learning_rate = 0.05
  config.train.schedule = 'warmup_linear_decay'
  config.train.steps = 600                 # ~15 epochs of 5000 at batch 128 (400 can miss the poison).
  config.train.batch_size = 128
  config.train.momentum = 0.9
  config.train.weight_decay = 5e-4
  config.train.checkpoint_every = 100
  config.eval_batch_size = 256
  return config


def unlearn_config() -> ml_collections.ConfigDict:
  """The practitioner's run (configs/unlearn.py): a trained model, the ids found, the data."""
  base = cell_config()
  config = ml_collections.ConfigDict()
  config.experiment = 'unlearn'
  config.seed = base.seed                  # The method's randomness (and the data, as trained).
  config.checkpoint = config_dict.placeholder(str)  # launch.py workdir or .msgpack variables.
  config.forget_ids = config_dict.placeholder(str)  # .npy, .json or one id per line.
  # Data as you have it. `corruption` (a corruption.json) re-creates a benchmark's corrupted
  # training set from clean data; leave it unset when your data is corrupted on disk.
  config.dataset = base.dataset
  config.data = base.data
  config.corruption = config_dict.placeholder(str)
  config.method = base.method
  config.methods = base.methods
  config.base = base.base                  # plain | etd (an ETD checkpoint brings its masks).
  config.p_mem = base.p_mem
  config.model = base.model
  config.batch_size = base.train.batch_size
  config.eval_batch_size = base.eval_batch_size
  return config


def diagnose_config() -> ml_collections.ConfigDict:
  """A practitioner's diagnosis (configs/diagnose.py): what `unlearn_config` takes, and more."""
  config = unlearn_config()
  config.experiment = 'diagnose'
  config.method = config_dict.placeholder(str)  # With unlearn: unset runs the advised method.
  config.folds = 2                         # Probe models, each holding out 1/folds of the data.
  config.probe_steps = config_dict.placeholder(int)  # Unset: the training recipe's steps.
  config.bootstrap = 1000                  # Resamples of the regularity score's interval.
  config.records = config_dict.placeholder(str)  # results.jsonl or a summary; unset: packaged.
  config.unlearn = False                   # Then unlearn D_f (and the suspects: add_suspects).
  config.add_suspects = 'auto'             # 'auto': where the map measured that adding helps.
  config.flush_margin = 0.1                # Acc(D_r) may fall this much in the flush.
  # The probes' recipe when the checkpoint is a .msgpack (a launch.py workdir records its own).
  config.train = cell_config().train
  return config


def parse_arg(arg: str, allowed, config_file: str) -> set[str]:
  """The comma-separated arguments of `--config=FILE:ARG`; an unknown one is an error."""
  parts = {part for part in arg.split(',') if part}
  sections.check_fields(parts, allowed, config_file, kind='arguments')
  return parts


def cell_with(**overrides) -> ml_collections.ConfigDict:
  """The quickstart cell with dotted-field `overrides` (`{'model.capacity': 1.0}`)."""
  config = cell_config()
  for path, value in overrides.items():
    sections.set_path(config, path, value, 'cell_with')
  return config


def sweep_config(cell: ml_collections.ConfigDict, axes: dict,
                 method_axes: dict | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.experiment = 'sweep'
  config.cell = cell
  config.axes = ml_collections.ConfigDict(axes)
  config.method_axes = ml_collections.ConfigDict(method_axes or {})
  config.only = ''  # E.g. 'method=rem,npo;seed=0': a subset of the cells.
  config.parallel_cells = 1
  config.cluster = cluster_config()
  return config


def cluster_config() -> ml_collections.ConfigDict:
  """Where a sweep's cells run (`rem_jax.experiments.cluster`; docs/devices.md): in this
  process by default, or as Slurm job arrays (`executor='slurm'`) or local processes."""
  config = ml_collections.ConfigDict()
  config.executor = 'none'                 # none | local | slurm
  config.partition = ''                    # Empty: the cluster's defaults, likewise below.
  config.account = ''
  config.qos = ''
  config.gpus_per_task = 1
  config.cpus_per_task = 4
  config.time_minutes = 240                # Per task; a task past it is requeued and resumes.
  config.cells_per_task = 4                # Cells of one original model per task.
  config.max_concurrent = 64               # Tasks of one array at once (sbatch --array=...%N).
  config.extra = ml_collections.ConfigDict()  # More sbatch options: {'mem': '32G', ...}.
  return config


# The paper's proportions (SPEC §5-§8, ResNet-9 on CIFAR-10): unlearning gets 10 epochs of
# D_tr = 980 steps at batch 512 against training's 4,000 steps, at lr 0.005 against the
# training peak 0.025; SCRUB maximises on D_f in 2 of its 10 epochs; the inter-class task
# swaps 500 of each class's 5,000 images.
PAPER_BUDGET_FRACTION = 980 / 4000
PAPER_LEARNING_RATE_FRACTION = 0.005 / 0.025
PAPER_SCRUB_MAX_FRACTION = 2 / 10
PAPER_INTER_CLASS_FRACTION = 500 / 5000
# Methods whose budget is not an epoch count of their own: Retrain runs the training recipe,
# Potion and the untrained ones have none.
_NO_BUDGET = ('no_ul', 'etd', 'retrain', 'potion')


def training_epochs(cell: ml_collections.ConfigDict) -> float:
  """The original model's training epochs: steps · batch / |D_tr| (`data.num_train` set)."""
  if not cell.data.num_train:
    raise ValueError('data.num_train=0 (the whole dataset): set it to derive proportions.')
  return cell.train.steps * cell.train.batch_size / cell.data.num_train


def in_paper_proportions(cell: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`cell` with every method's unlearning settings derived from its training recipe by the
  paper's ratios (a new config; `cell` is left unchanged).

  - Every epoch budget and epoch cap (`epochs`: CF, SCRUB, Bad Teacher, REM's iterations; the
    cap of ascent's and NPO's stop rule) = round(0.245 · training epochs).
  - Every unlearning learning rate = 0.2 · the training peak, equal for all methods (and
    Retrain's `unlearn_learning_rate`, read only with retrain_lr='unlearn'; Retrain itself keeps
    the training recipe).
  - SCRUB's `msteps` (max epochs on D_f) = round(0.2 · epochs), the paper's 2 of 10.
  - REM's `max_flush_epochs` stays: a safety cap on flush epochs that stop at γ, which do not
    count towards the budget (SPEC §7).
  The inter-class task's |D_c| is the task's own: see `inter_class_corrupted`.
  """
  cell = ml_collections.ConfigDict(cell.to_dict())
  epochs = max(1, round(PAPER_BUDGET_FRACTION * training_epochs(cell)))
  learning_rate = PAPER_LEARNING_RATE_FRACTION * cell.train.learning_rate
  for name, settings in cell.methods.items():
    if 'unlearn_learning_rate' in settings:
      settings.unlearn_learning_rate = learning_rate
    if name in _NO_BUDGET:
      continue
    settings.epochs = epochs
    settings.learning_rate = learning_rate
    if 'msteps' in settings:
      settings.msteps = max(1, round(PAPER_SCRUB_MAX_FRACTION * epochs))
  return cell


def inter_class_corrupted(cell: ml_collections.ConfigDict) -> int:
  """The paper's inter-class |D_c| for `cell`'s data: 10 % of each of the two classes, whose
  expected size is num_train / num_classes (half of D_c comes from each)."""
  per_class = cell.data.num_train / cell.model.num_classes
  return 2 * round(PAPER_INTER_CLASS_FRACTION * per_class)


def proportions(cell: ml_collections.ConfigDict) -> dict:
  """A cell's ratios the paper fixes, read from its settings: {'budget': (method, epochs /
  training epochs) for each budgeted method, 'learning_rate': (method, lr / training peak) ...,
  'scrub_max': msteps / epochs, 'inter_class': |D_c| / expected images of the two classes (for
  an inter-class cell)}."""
  trained = training_epochs(cell)
  budgeted = [name for name in cell.methods if name not in _NO_BUDGET]
  ratios = {
      'budget': {name: cell.methods[name].epochs / trained for name in budgeted},
      'learning_rate': {name: cell.methods[name].learning_rate / cell.train.learning_rate
                        for name in budgeted},
      'scrub_max': cell.methods.scrub.msteps / cell.methods.scrub.epochs,
  }
  if cell.task == 'inter_class_confusion':
    ratios['inter_class'] = cell.num_corrupted / (2 * cell.data.num_train
                                                  / cell.model.num_classes)
  return ratios


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few-minute CPU smoke version of a sweep config."""
  cell = config.cell
  cell.dataset = 'shapes'
  cell.data.path = None
  cell.data.data_dir = None
  cell.data.image_size = 16
  cell.data.num_train = 512
  cell.data.num_test = 128
  cell.num_corrupted = 32
  cell.model.name = 'resnet9'
  cell.model.width_multiplier = 0.125
  cell.model.dtype = 'float32'
  cell.train.steps = 60
  cell.train.batch_size = 64
  cell.train.checkpoint_every = 30
  cell.eval_batch_size = 128
  for name in cell.methods:
    settings = cell.methods[name]
    if 'epochs' in settings:
      settings.epochs = 2 if name.startswith('rem') else 1
    if 'eval_batch_size' in settings:
      settings.eval_batch_size = 128
    if name == 'scrub':
      settings.msteps = 1
  for name in list(config.axes):
    if name != 'method' and not isinstance(config.axes[name], ml_collections.ConfigDict):
      config.axes[name] = tuple(config.axes[name])[:2]
  return config
