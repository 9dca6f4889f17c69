r"""Time to load the offline CIFAR-10 mirror: cold (decode the archive) and warm (from the cache).

Cold = the first load on a machine: stream the .tar.gz, decode 60,000 JPEGs, write the `.npz`
cache. Warm = every later load: read the cache. The cache goes to a fresh temporary directory
(outside the repository, removed afterwards) unless --cache_dir is given, so the cold run is
really cold.

  python benchmarks/data_load.py --archive=../shared/data/cifar10-jpeg.tar.gz

Prints a table and writes benchmarks/results/data_load.json.
"""

import json
import os
import pathlib
import platform
import shutil
import tempfile
import time

import numpy as np
import PIL
from absl import app, flags

from rem_jax.data import sources

_ARCHIVE = flags.DEFINE_string(
    'archive', str(pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' /
                   'cifar10-jpeg.tar.gz'), 'The CIFAR-10 mirror (.tar.gz, split/class/*.jpg).')
_CACHE_DIR = flags.DEFINE_string(
    'cache_dir', None, 'Cache directory; default: a fresh temporary one, removed afterwards. '
    'An existing cache entry for the archive makes the "cold" run warm.')
_WARM_REPEATS = flags.DEFINE_integer('warm_repeats', 3, 'How many warm loads to time.')
_OUTPUT = flags.DEFINE_string(
    'output', str(pathlib.Path(__file__).resolve().parent / 'results' / 'data_load.json'),
    'Where to write the JSON results.')


def _timed_load(archive: str, cache_dir: str) -> tuple[float, sources.Splits]:
  start = time.perf_counter()
  splits = sources.load('cifar10', path=archive, cache_dir=cache_dir)
  return time.perf_counter() - start, splits


def main(argv):
  del argv
  archive = pathlib.Path(_ARCHIVE.value).resolve()
  cache_dir = _CACHE_DIR.value or tempfile.mkdtemp(prefix='rem_jax_data_load_')
  try:
    cold_s, splits = _timed_load(str(archive), cache_dir)
    warm_s = [_timed_load(str(archive), cache_dir)[0] for _ in range(_WARM_REPEATS.value)]
    cache_bytes = sum(p.stat().st_size for p in pathlib.Path(cache_dir).glob('*.npz'))
  finally:
    if _CACHE_DIR.value is None:
      shutil.rmtree(cache_dir, ignore_errors=True)

  num_images = splits.train.num_examples + splits.test.num_examples
  result = {
      'archive': archive.name,
      'archive_mb': round(archive.stat().st_size / 2**20, 1),
      'num_images': num_images,
      'train_shape': list(splits.train.images.shape),
      'test_shape': list(splits.test.images.shape),
      'cache_mb': round(cache_bytes / 2**20, 1),
      'cold_s': round(cold_s, 2),
      'warm_s_first': round(warm_s[0], 3),
      'warm_s_median': round(float(np.median(warm_s)), 3),
      'warm_s_all': [round(s, 3) for s in warm_s],
      'cpu_count': os.cpu_count(),
      'python': platform.python_version(),
      'numpy': np.__version__,
      'pillow': PIL.__version__,
      'platform': platform.platform(),
  }
  print(f'CIFAR-10 mirror {archive.name} ({result["archive_mb"]} MB, {num_images} images, '
        f'{os.cpu_count()} CPUs)')
  print('| load | seconds | images/s |\n|---|---|---|')
  print(f'| cold (decode archive, write cache) | {cold_s:.2f} | {num_images / cold_s:,.0f} |')
  for label, seconds in (('warm (read cache, first)', warm_s[0]),
                         (f'warm (read cache, median of {len(warm_s)})', result['warm_s_median'])):
    print(f'| {label} | {seconds:.3f} | {num_images / seconds:,.0f} |')
  output = pathlib.Path(_OUTPUT.value)
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(json.dumps(result, indent=2) + '\n')
  print(f'wrote {output}')


if __name__ == '__main__':
  app.run(main)
