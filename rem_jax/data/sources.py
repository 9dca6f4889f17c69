"""Where images come from: TFDS, an offline folder or archive, or the built-in `shapes`.

Every source returns the same thing, a `Splits` of two `Dataset`s (train and test) holding uint8
images, int32 labels and class names in a fixed order, so that the dataset id of an example
(its position, 0…N−1) is stable across runs and machines. Ids drive corruption and masks.

- `cifar10`, `svhn_cropped`, `imagenette` are read from a prepared TFDS directory with
  `tfds.data_source` (no TensorFlow needed). Preparing them once needs TensorFlow
  (`pip install 'rem_jax[tfds-prepare]'`) and the internet; without either we fail at once with a
  message that points at the offline source (`--config.data.path=...`), instead of letting TFDS
  retry DNS for minutes, and a download that fails anyway gets the same pointer.
- Offline: a folder or `.tar.gz` laid out as `split/class_name/*.jpg|png` (`path=`). Labels
  follow the sorted class names, examples the sorted file names. The archive is read as a stream
  (nothing is extracted) and the decoded arrays are cached as `.npz` outside the repository, keyed
  by the source's path, size and modification time, so the second load takes about a second.
- `shapes`: procedural, see `rem_jax.data.shapes`.
"""

import dataclasses
import hashlib
import io
import lzma
import os
import pathlib
import socket
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from rem_jax import files
from rem_jax.data import shapes

TFDS_DATASETS = ('cifar10', 'svhn_cropped', 'imagenette')
DATASETS = TFDS_DATASETS + ('shapes', 'folder')
SPLITS = ('train', 'test')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
CACHE_ENV_VAR = 'REM_JAX_CACHE_DIR'

# TFDS split names for our `train` / `test` (Imagenette has no test split: its validation set
# plays that role, as in the paper).
_TFDS_SPLITS = {
    'cifar10': ('train', 'test'),
    'svhn_cropped': ('train', 'test'),
    'imagenette': ('train', 'validation'),
}
# Imagenette images come in many sizes; the reference resizes them to 32×32.
_SHAPES_SIZES = (10_000, 2_000)  # Default train / test sizes of the generated dataset.
_DEFAULT_IMAGE_SIZE = {'imagenette': 32, 'shapes': 32}
# Bump when the cached arrays' layout or decoding changes, to invalidate old caches.
_CACHE_FORMAT = 1
# What reading a damaged archive raises: tarfile's own errors and those of the decompressors
# underneath (a stream cut short, corrupt compressed data).
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)
# What decoding a damaged image raises (PIL's UnidentifiedImageError is an OSError).
_IMAGE_ERRORS = (OSError, SyntaxError, EOFError, Image.DecompressionBombError)

_T = TypeVar('_T')


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One split of a dataset, in its fixed order.

  Attributes:
    name: dataset name, e.g. 'cifar10'.
    split: 'train' or 'test'.
    images: uint8 (N, H, W, C).
    labels: int32 (N,), indices into `class_names`.
    class_names: the label names; `len(class_names)` is the number of classes.
  """
  name: str
  split: str
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]

  def __post_init__(self):
    where = f'{self.name}/{self.split}'
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError(f'{where}: images must be uint8 (N, H, W, C), got {self.images.dtype} '
                       f'{self.images.shape}.')
    if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
      raise ValueError(f'{where}: labels must be int32 ({len(self.images)},) to match the '
                       f'images, got {self.labels.dtype} {self.labels.shape}.')
    if self.labels.size and not 0 <= self.labels.min() <= self.labels.max() < self.num_classes:
      raise ValueError(f'{where}: labels must lie in [0, {self.num_classes}), got '
                       f'[{self.labels.min()}, {self.labels.max()}].')

  def subset(self, count: int, seed: int) -> 'Dataset':
    """`count` examples drawn uniformly (seeded), kept in dataset order; ids become 0..count-1.

    For CPU-sized experiments on real data. `count` >= N returns the split unchanged.
    """
    if count <= 0:
      raise ValueError(f'subset size count={count} must be positive.')
    if count >= self.num_examples:
      return self
    rng = np.random.default_rng([seed, 2, SPLITS.index(self.split)])
    keep = np.sort(rng.choice(self.num_examples, count, replace=False))
    return dataclasses.replace(self, images=self.images[keep], labels=self.labels[keep])

  @property
  def ids(self) -> np.ndarray:
    """int32 (N,): each example's dataset id, which is its position."""
    return np.arange(len(self.labels), dtype=np.int32)

  @property
  def num_examples(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class Splits:
  """The two splits every experiment uses."""
  train: Dataset
  test: Dataset


def load(name: str, *, path: str | os.PathLike | None = None,
         data_dir: str | os.PathLike | None = None, image_size: int | None = None,
         cache_dir: str | os.PathLike | None = None, seed: int = 0,
         num_train: int | None = None, num_test: int | None = None) -> Splits:
  """Loads a dataset's train and test splits by name.

  Args:
    name: one of `DATASETS`. A TFDS name reads TFDS unless `path` is given; 'folder' needs `path`.
    path: an offline folder or `.tar.gz` archive (`split/class_name/*.jpg|png`).
    data_dir: the TFDS data directory (TFDS's default when None).
    image_size: resize every image to this square size; None keeps the source's size (Imagenette
      and shapes: 32).
    cache_dir: where offline sources cache decoded arrays (see `default_cache_dir`).
    seed: `shapes`: the generator seed (the test split uses an independent stream); other
      sources: the subset draw.
    num_train: training set size: `shapes` generates this many; other sources keep a seeded
      random subset of this size (None: the whole split).
    num_test: test set size, likewise.

  Returns:
    The train and test `Dataset`s.
  """
  if name not in DATASETS:
    raise ValueError(f'dataset name={name!r} is unknown; allowed: {", ".join(DATASETS)}.')
  if image_size is not None and image_size <= 0:
    raise ValueError(f'image_size={image_size} must be a positive number of pixels (or None).')
  image_size = image_size or _DEFAULT_IMAGE_SIZE.get(name)
  if name == 'shapes':
    if path is not None or data_dir is not None:
      raise ValueError("dataset 'shapes' is generated: path and data_dir must be None.")
    counts = (num_train or _SHAPES_SIZES[0], num_test or _SHAPES_SIZES[1])
    return Splits(*(
        Dataset('shapes', split, *shapes.generate(count, image_size=image_size, seed=(seed, i)),
                shapes.CLASS_NAMES)
        for i, (split, count) in enumerate(zip(SPLITS, counts))))
  if path is not None:
    splits = load_image_folder(path, name=None if name == 'folder' else name,
                               image_size=image_size, cache_dir=cache_dir)
  elif name == 'folder':
    raise ValueError("dataset 'folder' needs path= (a folder or .tar.gz laid out as "
                     'split/class_name/*.jpg|png).')
  else:
    splits = load_tfds(name, data_dir=data_dir, image_size=image_size)
  return Splits(*(dataset.subset(count, seed) if count else dataset
                  for dataset, count in zip((splits.train, splits.test),
                                            (num_train, num_test))))


# ---------------------------------------------------------------------------------------------
# TFDS


def load_tfds(name: str, *, data_dir: str | os.PathLike | None = None,
              image_size: int | None = None) -> Splits:
  """Reads a prepared TFDS dataset through its array_record data source (no TensorFlow).

  Prepares it first when TensorFlow and the internet are both available; otherwise raises a
  `RuntimeError` within seconds explaining how to prepare it or use an offline source.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(f'TFDS dataset name={name!r} is unknown; allowed: '
                     f'{", ".join(TFDS_DATASETS)}.')
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (slow import)
  except ImportError as error:
    raise RuntimeError(f'reading TFDS dataset {name!r} needs tensorflow-datasets ({error}; '
                       'pip install tensorflow-datasets). ' + offline_hint(name)) from error
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  if not _tfds_is_prepared(builder):
    _prepare_tfds(builder, name)
  class_names = tuple(builder.info.features['label'].names)
  datasets = []
  for split, tfds_split in zip(SPLITS, _TFDS_SPLITS[name]):
    source = builder.as_data_source(split=tfds_split)
    images, labels = [], []
    # Item by item (batched `__getitems__` fails under `tfds.testing.mock_data`), resizing as we
    # go so that full-size Imagenette never sits in memory whole.
    for index in range(len(source)):
      example = source[index]
      images.append(_fit(example['image'], image_size))
      labels.append(example['label'])
    datasets.append(Dataset(name, split, _stack_images(images, origin=f'TFDS {name}/{tfds_split}'),
                            np.asarray(labels, np.int32), class_names))
  return Splits(*datasets)


def _tfds_is_prepared(builder) -> bool:
  """Whether the array_record files exist (a seam: tests under `mock_data` replace it)."""
  return builder.is_prepared()


def offline_hint(name: str) -> str:
  """How to run without TFDS: the offline source, on the command line and in Python."""
  return (f'Without TFDS, use an offline copy of {name!r}: --config.data.path=/path/to/'
          f'folder-or-archive on the command line (rem_jax.data.load({name!r}, path=P) in '
          'Python), a folder or .tar.gz laid out as train/<class_name>/*.jpg|png and '
          'test/<class_name>/... (e.g. a CIFAR-10 JPEG mirror; see docs/data.md), '
          "or the built-in dataset 'shapes' (--config.dataset=shapes).")


def _prepare_tfds(builder, name: str) -> None:
  """Downloads and prepares `builder`, or explains at once why that cannot work here."""
  if not _tensorflow_installed():
    raise RuntimeError(
        f'TFDS dataset {name!r} is not prepared in {builder.data_dir}, and preparing it needs '
        "TensorFlow (pip install 'rem_jax[tfds-prepare]') and internet access. "
        + offline_hint(name))
  if not _internet_reachable():
    raise RuntimeError(
        f'TFDS dataset {name!r} is not prepared in {builder.data_dir}, and its download server '
        'cannot be reached (offline?). Prepare it on a machine with internet access and copy '
        'the data directory here (data_dir=...). ' + offline_hint(name))
  try:
    builder.download_and_prepare(file_format='array_record')
  except Exception as error:  # pylint: disable=broad-except
    # The server answered the connection check, yet the download failed (a proxy, a firewall,
    # a moved file, a full disk): TFDS's own error comes from deep inside, so say what to do.
    raise RuntimeError(
        f'TFDS could not download and prepare {name!r} into {builder.data_dir} '
        f'({type(error).__name__}: {_first_line(error)}). ' + offline_hint(name)) from error


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else 'no message'


def _tensorflow_installed() -> bool:
  import importlib.util  # pylint: disable=g-import-not-at-top
  return importlib.util.find_spec('tensorflow') is not None


def _internet_reachable(host: str = 'storage.googleapis.com', port: int = 443,
                        timeout_s: float = 3.0) -> bool:
  """A single TCP connect, bounded in time even where name resolution hangs."""
  reachable = threading.Event()

  def connect():
    try:
      socket.create_connection((host, port), timeout=timeout_s).close()
      reachable.set()
    except OSError:
      pass

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s)
  return reachable.is_set()


# ---------------------------------------------------------------------------------------------
# Offline folder or archive


def default_cache_dir() -> pathlib.Path:
  """`$REM_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/rem_jax`, else `~/.cache/rem_jax`."""
  if os.environ.get(CACHE_ENV_VAR):
    return pathlib.Path(os.environ[CACHE_ENV_VAR]).expanduser()
  base = os.environ.get('XDG_CACHE_HOME') or pathlib.Path.home() / '.cache'
  return pathlib.Path(base) / 'rem_jax'


def load_image_folder(path: str | os.PathLike, *, name: str | None = None,
                      image_size: int | None = None, cache_dir: str | os.PathLike | None = None,
                      use_cache: bool = True) -> Splits:
  """Loads `train` and `test` from a folder or `.tar.gz` laid out as `split/class_name/file`.

  Labels are positions in the sorted union of class names; examples are ordered by class, then
  file name. A single top-level folder wrapping the splits is allowed.

  Args:
    path: the folder or archive.
    name: the dataset name to record (default: the folder or archive name).
    image_size: resize every image to this square size; None requires all images to share one
      size.
    cache_dir: where to cache decoded arrays (default `default_cache_dir()`).
    use_cache: read and write the cache.

  Raises:
    ValueError: in one line naming the path (and the file inside it, if one is at fault): the
      path is missing, not a folder or readable archive, holds an image that cannot be decoded,
      lacks a split, has fewer than 2 train classes or test classes train lacks, or mixes image
      sizes without `image_size`.
  """
  path = pathlib.Path(path).expanduser().resolve()
  if not path.exists():
    raise ValueError(f'offline dataset path={str(path)!r} does not exist.')
  name = name or path.name.split('.')[0]
  cache_file = (_cache_file(path, image_size, cache_dir or default_cache_dir())
                if use_cache else None)
  if cache_file is not None and cache_file.exists():
    arrays = _read_cache(cache_file)
  else:
    arrays = _arrange(_read_layout(path, image_size), origin=str(path))
    if cache_file is not None:
      _write_cache(cache_file, arrays)
  class_names = tuple(str(c) for c in arrays['class_names'])
  return Splits(*(Dataset(name, split, arrays[f'{split}_images'], arrays[f'{split}_labels'],
                          class_names) for split in SPLITS))


def _read_layout(path: pathlib.Path, image_size: int | None) -> dict[tuple[str, str, str],
                                                                    np.ndarray]:
  """Decodes the images of a folder or archive, keyed by (split, class_name, file_name).

  Images are decoded (and resized) as they are read, so memory holds the small decoded arrays,
  never a whole archive's worth of encoded files at once.
  """
  if path.is_dir():
    files = ((p.relative_to(path).parts, p) for p in path.rglob('*') if p.is_file())
  elif path.name.endswith(('.tar.gz', '.tgz', '.tar')):
    files = _archive_files(path)
  else:
    raise ValueError(f'offline dataset path={str(path)!r} must be a folder or a .tar.gz/.tgz/.tar '
                     'archive.')
  found = {parts: _fit(_decode_image(content, '/'.join(parts), path), image_size)
           for parts, content in files
           if parts[-1].lower().endswith(IMAGE_SUFFIXES) and not parts[-1].startswith('.')}
  if not found:
    raise ValueError(f'offline dataset path={str(path)!r} holds no images '
                     f'({"|".join(IMAGE_SUFFIXES)}); expected split/class_name/<image files>.')
  if all(len(parts) == 4 for parts in found) and len({parts[0] for parts in found}) == 1:
    found = {parts[1:]: image for parts, image in found.items()}  # One wrapping folder.
  for parts in found:
    if len(parts) != 3:
      raise ValueError(f'offline dataset path={str(path)!r}: image {"/".join(parts)!r} is not at '
                       'split/class_name/<file>.')
  present = sorted({split for split, _, _ in found})
  for split in SPLITS:
    if split not in present:
      raise ValueError(f'offline dataset path={str(path)!r} has no {split!r} split; found splits '
                       f'{present}, required {list(SPLITS)}.')
  found = {key: image for key, image in found.items() if key[0] in SPLITS}
  _check_classes(found, path)
  return found


def _check_classes(keys: Iterable[tuple[str, str, str]], path: pathlib.Path) -> None:
  """Raises `ValueError` unless train has 2+ classes and test only classes train has.

  The labels index the union of class names: a test class without training examples would be a
  class the model can never predict, most often a misspelt folder name.
  """
  train = sorted({class_name for split, class_name, _ in keys if split == 'train'})
  test = sorted({class_name for split, class_name, _ in keys if split == 'test'})
  if len(train) < 2:
    raise ValueError(f'offline dataset path={str(path)!r}: the train split has {len(train)} '
                     f'class folder, {", ".join(map(repr, train))}; a classifier needs at least 2 '
                     'classes, one folder each: train/<class_name>/<image files>.')
  unknown = sorted(set(test) - set(train))
  if unknown:
    raise ValueError(f'offline dataset path={str(path)!r}: test class folders {unknown} are not '
                     f'train classes; the test split may only use the train split\'s class names '
                     f'{train}.')


def _archive_files(path: pathlib.Path) -> Iterator[tuple[tuple[str, ...], bytes]]:
  """Streams the regular files of a tar archive: (path parts, bytes), never touching disk.

  Raises `ValueError` naming `path` if it is not a tar archive, or is cut short or damaged.
  """
  with _read_archive(path, lambda: tarfile.open(path, 'r:*')) as archive:
    while (member := _read_archive(path, archive.next)) is not None:
      if member.isfile():
        parts = tuple(part for part in member.name.split('/') if part not in ('', '.'))
        yield parts, _read_archive(path, archive.extractfile(member).read)


def _read_archive(path: pathlib.Path, read: Callable[[], _T]) -> _T:
  """`read()`, one step of reading the archive at `path`, its failure as one `ValueError`."""
  try:
    return read()
  except _ARCHIVE_ERRORS as error:
    if isinstance(error, tarfile.ReadError) and str(error).startswith('file could not be opened'):
      # tarfile.open lists every compression it tried, over several lines.
      detail = 'its content is not gzip, bzip2, xz or tar data'
    else:
      detail = f'it is truncated or damaged: {type(error).__name__}: {_first_line(error)}'
    raise ValueError(f'offline dataset path={str(path)!r} is not a readable .tar.gz/.tar '
                     f'archive ({detail}).') from error


def _arrange(images: Mapping[tuple[str, str, str], np.ndarray],
             origin: str) -> dict[str, np.ndarray]:
  """Both splits as arrays in class-then-file-name order; labels index the sorted class names."""
  class_names = sorted({class_name for _, class_name, _ in images})
  label_of = {class_name: label for label, class_name in enumerate(class_names)}
  arrays = {'class_names': np.asarray(class_names)}
  for split in SPLITS:
    keys = sorted(key for key in images if key[0] == split)
    arrays[f'{split}_images'] = _stack_images([images[key] for key in keys], origin=origin,
                                              names=['/'.join(key) for key in keys])
    arrays[f'{split}_labels'] = np.asarray(
        [label_of[class_name] for _, class_name, _ in keys], np.int32)
  return arrays


def _decode_image(content: bytes | pathlib.Path, name: str, origin: pathlib.Path) -> np.ndarray:
  """uint8 (H, W, 3) from an encoded image (grey and RGBA images become RGB).

  Args:
    content: the encoded bytes, or the image file.
    name: the image's path inside the folder or archive `origin`, for the error message.
    origin: the dataset folder or archive.

  Raises:
    ValueError: the image cannot be decoded (not an image, truncated, damaged).
  """
  try:
    with Image.open(io.BytesIO(content) if isinstance(content, bytes) else content) as image:
      # Decoding is lazy: the pixels are read, and a truncated file found, by asarray/convert.
      return np.asarray(image if image.mode == 'RGB' else image.convert('RGB'))
  except _IMAGE_ERRORS as error:
    # PIL's "cannot identify image file <_io.BytesIO object at 0x...>" names no file.
    detail = ('not a format PIL recognises' if isinstance(error, UnidentifiedImageError)
              else f'{type(error).__name__}: {_first_line(error)}')
    raise ValueError(f'offline dataset path={str(origin)!r}: {name!r} cannot be decoded as an '
                     f'image ({detail}).') from error


def _stack_images(images: list[np.ndarray], origin: str,
                  names: list[str] | None = None) -> np.ndarray:
  """One uint8 (N, H, W, C) array, or a `ValueError` naming an image of a different size."""
  first = images[0].shape
  odd = next((i for i, image in enumerate(images) if image.shape != first), None)
  if odd is not None:
    label = names[odd] if names else f'example {odd}'
    raise ValueError(f'{origin}: images have mixed sizes ({label} is {images[odd].shape}, the '
                     f'first is {first}); pass image_size= to resize them all.')
  return np.stack(images).astype(np.uint8, copy=False)


def _fit(image: np.ndarray, size: int | None) -> np.ndarray:
  """Bilinear (antialiased) resize to size×size; unchanged when `size` is None or already met."""
  if size is None or image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def _cache_file(path: pathlib.Path, image_size: int | None,
                cache_dir: str | os.PathLike) -> pathlib.Path:
  """The cache entry of this exact source: path, size and mtime (of every file in a folder)."""
  files = [path] if path.is_file() else sorted(p for p in path.rglob('*') if p.is_file())
  stats = [(str(f.relative_to(path)) if f != path else '', f.stat()) for f in files]
  fingerprint = repr((_CACHE_FORMAT, str(path), image_size,
                      [(name, s.st_size, s.st_mtime_ns) for name, s in stats]))
  digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
  return pathlib.Path(cache_dir).expanduser() / f'{path.name.split(".")[0]}-{digest}.npz'


def _read_cache(cache_file: pathlib.Path) -> dict[str, np.ndarray]:
  with np.load(cache_file) as cached:
    return {key: cached[key] for key in cached.files}


def _write_cache(cache_file: pathlib.Path, arrays: dict[str, np.ndarray]) -> None:
  # Every process caches: each host decodes (and may keep) its own copy of the data.
  files.write_atomic(cache_file, lambda f: np.savez(f, **arrays), every_process=True)
