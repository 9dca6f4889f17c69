"""The paper's Imagenette grid: Tables 6 and 7.

    python launch.py --config=configs/paper_imagenette.py --workdir=workdirs/paper_imagenette
    python launch.py --config=configs/paper_imagenette.py:table7 --workdir=workdirs/imagenette90
    python launch.py --config=configs/paper_imagenette.py:runlocal --workdir=/tmp/smoke

ResNet-9 on Imagenette resized to 32x32 (TFDS `imagenette`), 100 corrupted images (inter-class
confusion: 50 + 50), the CIFAR-10 recipe for 40 epochs (9,469 images at batch 512: 740 steps).
Cells: 3 seeds x 3 tasks x 10 discovery rates x every method on the plain capacity-0.5 base;
SCRUB over alpha in {0.001, 0.01, 0.1, 10} (the tables take the best per cell: `table_best`).
`:table7` is the 90 %-capacity ETD base (capacity 0.9, expansion 0.1).

Expected runtime: small next to CIFAR-10 (a fifth of its images, a tenth of its corrupted
ones). The paper's numbers (H×U): Table 6: REM 60.98, SCRUB 54.52, Retrained 51.49, No UL
24.69; Table 7 (90 % + ETD): REM 61.41.
"""

from rem_jax.experiments import config_lib

TASKS = ('poison_trigger', 'inter_class_confusion', 'random_label_swap')
RATES = tuple(round(0.1 * i, 1) for i in range(1, 11))
METHODS = ('no_ul', 'retrain', 'cf', 'ascent', 'npo', 'scrub', 'bad_teacher', 'potion', 'rem')


def get_config(arg: str = ''):
  parts = config_lib.parse_arg(arg, ('table7', 'runlocal'), 'configs/paper_imagenette.py')
  cell = config_lib.cell_with(**{
      'dataset': 'imagenette', 'data.image_size': 32, 'data.num_train': 0,
      'data.num_test': 0, 'num_corrupted': 100, 'model.width_multiplier': 1.0,
      'model.dtype': 'bfloat16', 'train.learning_rate': 0.025, 'train.steps': 740,
      'train.batch_size': 512, 'train.checkpoint_every': 185, 'eval_batch_size': 1024})
  axes = {'seed': (0, 1, 2), 'task': TASKS, 'discovery_rate': RATES, 'method': METHODS}
  if 'table7' in parts:
    cell.base, cell.model.capacity, cell.model.expansion = 'etd', 0.9, 0.1
  config = config_lib.sweep_config(cell, axes, method_axes={'scrub': {'alpha': (0.001, 0.01, 0.1,
                                                                            10.0)}})
  return config_lib.runlocal(config) if 'runlocal' in parts else config
