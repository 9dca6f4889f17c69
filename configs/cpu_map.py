"""The task space on a CPU: three regularities, three seeds, both bases, every method.

    python launch.py --config=configs/cpu_map.py --workdir=workdirs/cpu_map/plain
    python launch.py --config=configs/cpu_map.py:etd --workdir=workdirs/cpu_map/etd
    python launch.py --config=configs/cpu_map.py:tuned --workdir=workdirs/cpu_map/tuned
    python launch.py --config=configs/cpu_map.py:ablations --workdir=workdirs/cpu_map/ablations
    python launch.py --config=configs/cpu_map.py:proportions --workdir=workdirs/cpu_map/proportions
    python launch.py --config=configs/cpu_map.py:proportions,inter_class \
        --workdir=workdirs/cpu_map/proportions_inter_class
    python launch.py --config=configs/cpu_map.py:proportions,ablations \
        --workdir=workdirs/cpu_map/proportions_ablations
    python launch.py --config=configs/cpu_map.py:proportions,ablations,inter_class \
        --workdir=workdirs/cpu_map/proportions_ablations_inter_class
    python launch.py --config=configs/cpu_map.py:rung --workdir=workdirs/cpu_map/rung
    python launch.py --config=configs/cpu_map.py:rung,inter_class \
        --workdir=workdirs/cpu_map/rung_inter_class
    python -m rem_jax.experiments.reports --outdir=benchmarks/results/cpu_map \
        --results=workdirs/cpu_map/plain/results.jsonl,workdirs/cpu_map/etd/results.jsonl,\
workdirs/cpu_map/tuned/results.jsonl,workdirs/cpu_map/ablations/results.jsonl

Setting (`CELL`; chosen by `benchmarks/map_search.py`, whose table is
`benchmarks/results/map_search.md`): a seeded subset of 3,000 training images of the offline
CIFAR-10 mirror, 150 of them corrupted (5 %; the paper corrupts 2 %), 2,000 test images; a
capacity-0.5 ResNet-9 at width/4 trained 100 epochs (1,200 steps of 256, SGD lr 0.05 with the
paper's schedule and augmentation): 8.2 minutes per training run on 2 CPU cores, the mean of
the 15 runs that trained the map's 9 models (`costs.md`; 307-790 s each in the records). With
2,000 images one seed's poison model ended at test accuracy 0.496, under the 0.5 floor.

Grids:
- no argument, table (a): plain base; poison trigger, inter-class confusion, random label swap;
  discovery rates 0.2, 0.5, 1.0; seeds 0, 1, 2; No UL, Retrain, CF, ascent, NPO, SCRUB, Bad
  Teacher, Potion, REM, each at its defaults (SPEC §7-8, `config_lib.cell_config`);
- `etd`: the ETD base, same tasks, rates and seeds; ETD as trained and REM on it. The CPU
  map's reports cut it (docs/benchmarks.md): it would add about 3.4 h to table (a)'s 6.9 h,
  over the 8 h budget, and its seed-0 models miss the 0.5 test-accuracy floor at this scale;
- `tuned`, table (b): seed 0 of the plain grid again, each method that has a learning rate at ½
  and 2 × its own default (the 1 × runs are table (a)'s), SCRUB also over alpha (0.001, 0.01,
  0.1) at each rate. It trains nothing: link table (a)'s trained models first,
  `ln -s ../plain/originals workdirs/cpu_map/tuned/originals`. The reports choose, per cell,
  the variant with the best training-data proxy (`selection.proxy`, never the test set);
- `ablations`: Table 2's REM without redirection and without the removal term on seed 0 of
  the plain grid (link the originals as for `tuned`);
- `proportions`, table (a) in the paper's proportions (issue 34): the same setting with every
  method's unlearning settings derived from the training recipe by the paper's ratios
  (`config_lib.in_paper_proportions`: 25 epochs, 24.5 % of training's 102.4, every unlearning
  lr 0.01 = 0.2 x the training peak, SCRUB's max epochs 5 of 25), on the poison and the random
  swap; `proportions,inter_class` is its inter-class row, whose task swaps 10 % of each class
  (60 images, `config_lib.inter_class_corrupted`), a grid of its own since |D_c| differs. The
  grid above is the 10 %-budget variant (10 epochs at 0.1 x the peak). Pool both workdirs with
  `bash benchmarks/collect_sweep.sh workdirs/cpu_map/proportions,\
workdirs/cpu_map/proportions_inter_class benchmarks/results/cpu_map_proportions`. The
  `tuned` and `ablations` grids combine with it (`proportions,ablations` and
  `proportions,ablations,inter_class`, their originals linked from the `proportions` and
  `proportions_inter_class` workdirs as for `tuned`) and pool into the same reports;
- `rung` and `rung,inter_class`, one rung up the scale (issue 34 §3): seed 0 of the proportions
  grid at twice the images (6,000, 300 corrupted; the inter-class row 120), the same width and
  epochs (`RUNG`). Check the preconditions first (`--config.only=method=no_ul`), then run the
  cells of the claims that do not hold or cannot be told at the proportions grid, with the
  methods their rules compare (`--config.only`): `bash benchmarks/run_rung.sh` runs these
  steps in order and collects them;
- `runlocal` (combinable): a few-minute smoke run on the built-in shapes data.
"""

import pathlib

from rem_jax.experiments import config_lib
from rem_jax.methods import rem

MIRROR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'cifar10-jpeg.tar.gz'
TASKS = ('poison_trigger', 'inter_class_confusion', 'random_label_swap')
RATES = (0.2, 0.5, 1.0)
SEEDS = (0, 1, 2)
PLAIN_METHODS = ('no_ul', 'retrain', 'cf', 'ascent', 'npo', 'scrub', 'bad_teacher', 'potion',
                 'rem')
ETD_METHODS = ('etd', 'rem_etd')
# The grids (which methods and axes) and the settings they run in (the 10 %-budget setting when
# no setting is named); a grid combines with a setting: `proportions,ablations`.
GRIDS = ('etd', 'tuned', 'ablations')
SETTINGS = ('proportions', 'rung')
# The learning-rate multipliers of table (b); 1 x is table (a).
TUNED_FACTORS = (0.5, 2.0)
SCRUB_ALPHAS = (0.001, 0.01, 0.1)
# The setting, picked by benchmarks/map_search.py (its candidates change four of these).
CELL = {
    'dataset': 'cifar10', 'data.path': str(MIRROR), 'data.num_train': 3_000,
    'data.num_test': 2_000, 'num_corrupted': 150, 'model.width_multiplier': 0.25,
    'train.steps': 1200, 'train.batch_size': 256, 'train.learning_rate': 0.05,
    'train.checkpoint_every': 200, 'eval_batch_size': 500,
}


# One rung up the scale (issue 34 §3): twice the images, the same share corrupted (5 %), the same
# epochs (2,400 steps of 256 = 102.4 epochs of 6,000) and width, in the paper's proportions.
RUNG = {'data.num_train': 6_000, 'num_corrupted': 300, 'train.steps': 2400}


def cell(**overrides):
  return config_lib.cell_with(**{**CELL, **overrides})


def tuned_axes(settings) -> dict:
  """Table (b)'s method axes: ½ and 2 x each method's own learning rate; SCRUB also alpha."""
  axes = {}
  for name in PLAIN_METHODS:
    if 'learning_rate' not in settings.methods[name]:
      continue
    default = settings.methods[name].learning_rate
    axes[name] = {'learning_rate': tuple(factor * default for factor in TUNED_FACTORS)}
  default = settings.methods.scrub.learning_rate
  axes['scrub'] = {'learning_rate': tuple(f * default for f in (0.5, 1.0, 2.0)),
                   'alpha': SCRUB_ALPHAS}
  return axes


def get_config(arg: str = ''):
  parts = config_lib.parse_arg(arg, GRIDS + SETTINGS + ('inter_class', 'runlocal'),
                               'configs/cpu_map.py')
  for group, kind in ((GRIDS, 'grids'), (SETTINGS, 'settings')):
    if len(parts & set(group)) > 1:
      raise ValueError(f'configs/cpu_map.py: {sorted(parts & set(group))} are separate '
                       f'{kind}; pick one.')
  if 'inter_class' in parts and not parts & set(SETTINGS):
    raise ValueError("configs/cpu_map.py: 'inter_class' is the inter-class row of the "
                     "proportions grid or the rung; use 'proportions,inter_class' or "
                     "'rung,inter_class'.")
  if 'etd' in parts and parts & set(SETTINGS):
    raise ValueError("configs/cpu_map.py: 'etd' runs at the 10 % budget only (its originals "
                     "miss the preconditions at this scale, docs/benchmarks.md); drop "
                     f"{sorted(parts & set(SETTINGS))}.")
  settings = cell(**RUNG) if 'rung' in parts else cell()
  axes = {'seed': SEEDS, 'base': ('plain',), 'task': TASKS, 'discovery_rate': RATES,
          'method': PLAIN_METHODS}
  if 'rung' in parts:
    axes.update(seed=(0,))
  if parts & set(SETTINGS):
    settings = config_lib.in_paper_proportions(settings)
    if 'inter_class' in parts:  # Its own |D_c|: 10 % of each class, not the others' 150.
      settings.num_corrupted = config_lib.inter_class_corrupted(settings)
      axes.update(task=('inter_class_confusion',))
    else:
      axes.update(task=tuple(t for t in TASKS if t != 'inter_class_confusion'))
  method_axes = {}
  if 'etd' in parts:
    axes.update(base=('etd',), method=ETD_METHODS)
  if 'ablations' in parts:
    axes.update(seed=(0,), method=rem.ABLATIONS)
  if 'tuned' in parts:
    axes.update(seed=(0,), method=tuple(m for m in PLAIN_METHODS
                                        if 'learning_rate' in settings.methods[m]))
    method_axes = tuned_axes(settings)
  config = config_lib.sweep_config(settings, axes, method_axes)
  return config_lib.runlocal(config) if 'runlocal' in parts else config
