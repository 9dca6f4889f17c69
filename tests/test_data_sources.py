"""Sources: the built-in `shapes`, the offline folder/archive (with its cache), TFDS (mocked)."""

import io
import os
import pathlib
import sys
import tarfile
import time

import numpy as np
import pytest
from PIL import Image

from rem_jax.data import shapes, sources

# A small layout with deliberately unsorted names: (split, class, file) → (height, width, colour).
_FILES = {
    ('train', 'zebra', 'b.png'): 10,
    ('train', 'zebra', 'a.png'): 20,
    ('train', 'ant', 'x.png'): 30,
    ('train', 'mole', 'c.png'): 40,
    ('test', 'mole', 'q.png'): 50,
    ('test', 'ant', 'p.png'): 60,
}


def _write_layout(root: pathlib.Path, files=None, size=(6, 5)) -> pathlib.Path:
  """PNG files (lossless) whose pixels encode their file's value, so order can be checked."""
  for (split, class_name, file_name), value in (files or _FILES).items():
    folder = root / split / class_name
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.full((*size, 3), value, np.uint8)
    pixels[0, 0] = (value, value + 1, value + 2)  # Channels must stay in RGB order.
    Image.fromarray(pixels).save(folder / file_name)
  return root


def _archive(folder: pathlib.Path, archive: pathlib.Path, prefix: str = '') -> pathlib.Path:
  with tarfile.open(archive, 'w:gz') as tar:
    for path in sorted(folder.rglob('*')):
      if path.is_file():
        tar.add(path, arcname=prefix + str(path.relative_to(folder)))
  return archive


# ---------------------------------------------------------------------------------------------
# shapes


def test_shapes_is_deterministic_balanced_and_any_size():
  images, labels = shapes.generate(200, image_size=12, seed=3)
  again, again_labels = shapes.generate(200, image_size=12, seed=3)
  other, _ = shapes.generate(200, image_size=12, seed=4)
  assert images.shape == (200, 12, 12, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 20))
  np.testing.assert_array_equal(images, again)
  np.testing.assert_array_equal(labels, again_labels)
  assert not np.array_equal(images, other)
  assert images.std() > 30  # Not blank: shapes on textured backgrounds.


def test_load_shapes_splits_are_independent():
  splits = sources.load('shapes', image_size=16, num_train=100, num_test=50, seed=1)
  assert splits.train.images.shape == (100, 16, 16, 3)
  assert splits.test.images.shape == (50, 16, 16, 3)
  assert splits.train.class_names == shapes.CLASS_NAMES
  assert (splits.train.split, splits.test.split) == ('train', 'test')
  np.testing.assert_array_equal(splits.train.ids, np.arange(100))
  assert not np.array_equal(splits.train.images[:50], splits.test.images)


@pytest.mark.parametrize('kwargs, field', [
    ({'num_examples': 0}, 'num_examples'),
    ({'num_examples': 10, 'image_size': 4}, 'image_size'),
])
def test_shapes_bad_input(kwargs, field):
  with pytest.raises(ValueError, match=field):
    shapes.generate(**kwargs)


# ---------------------------------------------------------------------------------------------
# load(): names and options


def test_unknown_dataset_name_lists_the_allowed_names():
  with pytest.raises(ValueError, match=r"name='mnist'.*cifar10, svhn_cropped, imagenette, shapes"):
    sources.load('mnist')


def test_bad_load_options():
  with pytest.raises(ValueError, match='path'):
    sources.load('folder')
  with pytest.raises(ValueError, match='path and data_dir'):
    sources.load('shapes', path='/somewhere')
  with pytest.raises(ValueError, match='image_size'):
    sources.load('shapes', image_size=-1)


# ---------------------------------------------------------------------------------------------
# Offline folder / archive


def _check_small_layout(splits, name):
  # Labels from sorted class names; examples by class, then by file name.
  assert splits.train.class_names == ('ant', 'mole', 'zebra')
  assert splits.train.name == name
  np.testing.assert_array_equal(splits.train.labels, [0, 1, 2, 2])
  np.testing.assert_array_equal(splits.train.images[:, 1, 1, 0], [30, 40, 20, 10])
  np.testing.assert_array_equal(splits.train.images[:, 0, 0], [[30, 31, 32], [40, 41, 42],
                                                               [20, 21, 22], [10, 11, 12]])
  np.testing.assert_array_equal(splits.test.labels, [0, 1])
  np.testing.assert_array_equal(splits.test.images[:, 1, 1, 0], [60, 50])
  assert splits.train.images.shape == (4, 6, 5, 3)
  assert splits.train.images.dtype == np.uint8 and splits.train.labels.dtype == np.int32


def test_archive_source_reads_labels_from_sorted_class_names(tmp_path):
  archive = _archive(_write_layout(tmp_path / 'src'), tmp_path / 'tiny-set.tar.gz')
  _check_small_layout(sources.load('folder', path=archive, cache_dir=tmp_path / 'cache'),
                      'tiny-set')


def test_folder_source_and_wrapped_archive_read_the_same(tmp_path):
  folder = _write_layout(tmp_path / 'src')
  _check_small_layout(sources.load_image_folder(folder, use_cache=False), 'src')
  wrapped = _archive(folder, tmp_path / 'wrapped.tgz', prefix='./cifar/')
  _check_small_layout(sources.load('cifar10', path=wrapped, cache_dir=tmp_path / 'c'), 'cifar10')


def test_archive_is_cached_and_the_cache_follows_the_archive(tmp_path, monkeypatch):
  archive = _archive(_write_layout(tmp_path / 'src'), tmp_path / 'set.tar.gz')
  cache = tmp_path / 'cache'
  first = sources.load('folder', path=archive, cache_dir=cache)
  assert [p.suffix for p in cache.iterdir()] == ['.npz']  # One entry, no temporary files left.

  def no_decoding(*args, **kwargs):
    raise AssertionError('decoded again instead of reading the cache')

  monkeypatch.setattr(sources, '_read_layout', no_decoding)
  second = sources.load('folder', path=archive, cache_dir=cache)
  np.testing.assert_array_equal(first.train.images, second.train.images)
  np.testing.assert_array_equal(first.test.labels, second.test.labels)
  assert second.train.class_names == first.train.class_names
  # A changed archive (new mtime) is a new cache key: decoded again.
  os.utime(archive, ns=(0, archive.stat().st_mtime_ns + 10**9))
  with pytest.raises(AssertionError, match='decoded again'):
    sources.load('folder', path=archive, cache_dir=cache)


def test_default_cache_dir_is_outside_the_repository(monkeypatch, tmp_path):
  monkeypatch.setenv(sources.CACHE_ENV_VAR, str(tmp_path / 'x'))
  assert sources.default_cache_dir() == tmp_path / 'x'
  monkeypatch.delenv(sources.CACHE_ENV_VAR)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert sources.default_cache_dir() == tmp_path / 'xdg' / 'rem_jax'


def test_mixed_sizes_can_be_resized(tmp_path):
  folder = _write_layout(tmp_path / 'src')
  _write_layout(folder, {('train', 'ant', 'y.png'): 70}, size=(9, 9))
  splits = sources.load_image_folder(folder, image_size=8, use_cache=False)
  assert splits.train.images.shape == (5, 8, 8, 3)
  assert splits.test.images.shape == (2, 8, 8, 3)


def test_offline_source_bad_input(tmp_path):
  empty = tmp_path / 'empty'
  (empty / 'train' / 'a').mkdir(parents=True)
  (empty / 'train' / 'a' / 'notes.txt').write_text('no images here')
  with pytest.raises(ValueError, match='no images'):
    sources.load_image_folder(empty, use_cache=False)
  with pytest.raises(ValueError, match='no images'):
    sources.load_image_folder(_archive(empty, tmp_path / 'empty.tar.gz'), use_cache=False)

  mixed = _write_layout(tmp_path / 'mixed')
  _write_layout(mixed, {('train', 'ant', 'y.png'): 70}, size=(9, 9))
  with pytest.raises(ValueError, match=r'mixed sizes \(train/ant/y.png'):
    sources.load_image_folder(mixed, use_cache=False)

  no_test = _write_layout(tmp_path / 'no_test', {('train', 'a', 'x.png'): 1,
                                                 ('val', 'a', 'y.png'): 2})
  with pytest.raises(ValueError, match=r"no 'test' split; found splits \['train', 'val'\]"):
    sources.load_image_folder(no_test, use_cache=False)

  too_deep = _write_layout(tmp_path / 'deep', {('train', 'a', 'x.png'): 1,
                                               ('test', 'a', 'y.png'): 2})
  _write_layout(too_deep / 'train', {('a', 'b', 'z.png'): 3})
  with pytest.raises(ValueError, match='split/class_name'):
    sources.load_image_folder(too_deep, use_cache=False)

  with pytest.raises(ValueError, match='does not exist'):
    sources.load('folder', path=tmp_path / 'missing.tar.gz')
  (tmp_path / 'data.zip').write_bytes(b'')
  with pytest.raises(ValueError, match='must be a folder or'):
    sources.load('folder', path=tmp_path / 'data.zip')


def _noise(count: int) -> bytes:
  return np.random.default_rng(0).integers(0, 256, count, np.uint8).tobytes()


def _truncated_png() -> bytes:
  """The first half of a noise PNG: PIL identifies it, then runs out of pixel data."""
  noise = np.frombuffer(_noise(32 * 32 * 3), np.uint8).reshape(32, 32, 3)
  with io.BytesIO() as buffer:
    Image.fromarray(noise).save(buffer, 'PNG')
    return buffer.getvalue()[:len(buffer.getvalue()) // 2]


def _not_an_archive(tmp_path, content):
  (tmp_path / 'x.tar.gz').write_bytes(content)
  return tmp_path / 'x.tar.gz'


def _cut_archive(tmp_path):
  # Many noise images, so that half the compressed stream ends inside the tar data.
  files = {('train', f'c{i % 2}', f'{i}.png'): i for i in range(8)} | {('test', 'c0', 't.png'): 9}
  folder = _write_layout(tmp_path / 'src', files, size=(32, 32))
  for image in folder.rglob('*.png'):
    Image.fromarray(np.frombuffer(_noise(32 * 32 * 3), np.uint8).reshape(32, 32, 3)).save(image)
  archive = _archive(folder, tmp_path / 'cut.tar.gz')
  archive.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])
  return archive


def _with_file(tmp_path, name, content, archive=False):
  """The small layout with `name` (split/class/file) holding `content`, as a folder or .tgz."""
  folder = _write_layout(tmp_path / 'src')
  (folder / name).parent.mkdir(parents=True, exist_ok=True)
  (folder / name).write_bytes(content)
  return _archive(folder, tmp_path / 'set.tgz', prefix='./cifar/') if archive else folder


def _one_class(tmp_path, archive=False):
  folder = _write_layout(tmp_path / 'src', {('train', 'cat', 'a.png'): 1,
                                            ('train', 'cat', 'b.png'): 2,
                                            ('test', 'cat', 'c.png'): 3})
  return _archive(folder, tmp_path / 'one.tar.gz') if archive else folder


# Each case builds a bad source in tmp_path and names the one-line error it must give.
_BAD_SOURCES = {
    'random bytes as .tar.gz': (
        lambda tmp: _not_an_archive(tmp, _noise(3000)),
        r"path='[^']*x\.tar\.gz' is not a readable \.tar\.gz/\.tar archive \(its content is not "
        r'gzip, bzip2, xz or tar data\)\.$'),
    'text as .tar.gz': (
        lambda tmp: _not_an_archive(tmp, b'train/cat/1.png\n' * 100),
        r"x\.tar\.gz' is not a readable \.tar\.gz/\.tar archive \(its content is not gzip"),
    'truncated .tar.gz': (
        _cut_archive,
        r"cut\.tar\.gz' is not a readable \.tar\.gz/\.tar archive \(it is truncated or damaged: "
        r'EOFError: Compressed file ended'),
    'random bytes as .png in a folder': (
        lambda tmp: _with_file(tmp, 'train/zebra/0003.png', _noise(300)),
        r"src': 'train/zebra/0003\.png' cannot be decoded as an image \(not a format PIL "
        r'recognises\)\.$'),
    'truncated .png in a folder': (
        lambda tmp: _with_file(tmp, 'test/ant/0003.png', _truncated_png()),
        r"'test/ant/0003\.png' cannot be decoded as an image \(OSError: image file is "
        'truncated'),
    'random bytes as .jpg in an archive': (
        lambda tmp: _with_file(tmp, 'train/zebra/0003.jpg', _noise(300), archive=True),
        r"set\.tgz': 'cifar/train/zebra/0003\.jpg' cannot be decoded as an image"),
    'empty .png in an archive': (
        lambda tmp: _with_file(tmp, 'train/ant/empty.png', b'', archive=True),
        r"'cifar/train/ant/empty\.png' cannot be decoded as an image"),
    'one train class in a folder': (
        _one_class,
        r"src': the train split has 1 class folder, 'cat'; a classifier needs at least 2 "
        'classes'),
    'one train class in an archive': (
        lambda tmp: _one_class(tmp, archive=True),
        r"one\.tar\.gz': the train split has 1 class folder, 'cat'; a classifier needs at"),
    'a test class train lacks': (
        lambda tmp: _write_layout(_write_layout(tmp / 'src'), {('test', 'Zebra', 'z.png'): 5}),
        r"test class folders \['Zebra'\] are not train classes; the test split may only use "
        r"the train split's class names \['ant', 'mole', 'zebra'\]\.$"),
}


@pytest.mark.parametrize('case', list(_BAD_SOURCES))
def test_bad_offline_data_is_one_value_error_naming_the_file(case, tmp_path):
  build, message = _BAD_SOURCES[case]
  source = build(tmp_path)
  with pytest.raises(ValueError, match=message) as raised:
    sources.load('folder', path=source, cache_dir=tmp_path / 'cache')
  assert '\n' not in str(raised.value)
  assert not (tmp_path / 'cache').exists()  # Nothing cached from a failed read.
  with pytest.raises(ValueError, match=message):
    sources.load_image_folder(source, use_cache=False)


# ---------------------------------------------------------------------------------------------
# TFDS (mocked: no download, no TensorFlow)


@pytest.mark.parametrize('name', sources.TFDS_DATASETS)
def test_tfds_source_under_mock_data(name, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sources, '_tfds_is_prepared', lambda builder: True)
  with tfds.testing.mock_data(num_examples=12):
    splits = sources.load(name)
  for dataset in (splits.train, splits.test):
    # Imagenette's images come in many sizes: resized to 32×32 by default.
    assert dataset.images.shape == (12, 32, 32, 3) and dataset.images.dtype == np.uint8
    assert dataset.labels.dtype == np.int32 and dataset.num_classes == 10
    assert dataset.labels.max() < 10 and dataset.name == name
  assert splits.test.split == 'test'


def test_tfds_not_prepared_fails_fast_with_the_offline_recipe(tmp_path, monkeypatch):
  start = time.perf_counter()
  monkeypatch.setattr(sources, '_tensorflow_installed', lambda: False)
  with pytest.raises(RuntimeError, match=r"tfds-prepare.*path=P"):
    sources.load('cifar10', data_dir=tmp_path)
  monkeypatch.setattr(sources, '_tensorflow_installed', lambda: True)
  monkeypatch.setattr(sources, '_internet_reachable', lambda: False)
  with pytest.raises(RuntimeError, match=r"cannot be reached.*path=P.*'shapes'") as raised:
    sources.load('svhn_cropped', data_dir=tmp_path)
  assert time.perf_counter() - start < 10
  # The command line's way is named too, and the docs page that describes the layout.
  assert '--config.data.path=/path/to/folder-or-archive' in str(raised.value)
  assert 'see docs/data.md' in str(raised.value)


def test_a_failed_tfds_download_says_how_to_use_an_offline_copy(tmp_path, monkeypatch):
  # The server answered the connection check, but the download itself failed (a proxy, say).
  class Builder:
    data_dir = str(tmp_path)

    def download_and_prepare(self, **kwargs):
      raise ConnectionError('HTTPSConnectionPool: Max retries exceeded\n(a long trace)')

  monkeypatch.setattr(sources, '_tensorflow_installed', lambda: True)
  monkeypatch.setattr(sources, '_internet_reachable', lambda: True)
  with pytest.raises(RuntimeError, match=r"could not download and prepare 'cifar10' .*"
                     r"\(ConnectionError: HTTPSConnectionPool: Max retries exceeded\)\. "
                     r'Without TFDS, use an offline copy .*--config\.data\.path='):
    sources._prepare_tfds(Builder(), 'cifar10')


def test_missing_tensorflow_datasets_is_a_readable_error(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorflow_datasets', None)  # `import` raises ImportError.
  with pytest.raises(RuntimeError, match=r"reading TFDS dataset 'cifar10' needs "
                     r'tensorflow-datasets.*--config\.data\.path='):
    sources.load('cifar10')


def test_internet_check_is_bounded_in_time(monkeypatch):
  # Name resolution can hang far beyond a socket timeout; the check gives up after its own.
  def hang(*args, **kwargs):
    time.sleep(5)
    raise OSError('timed out')

  monkeypatch.setattr(sources.socket, 'create_connection', hang)
  start = time.perf_counter()
  assert not sources._internet_reachable(timeout_s=0.3)
  assert time.perf_counter() - start < 2


def test_subset_is_seeded_in_order_and_reindexed():
  train = sources.load('shapes', image_size=16, num_train=50, num_test=10).train
  part = train.subset(20, seed=0)
  assert part.num_examples == 20 and list(part.ids) == list(range(20))
  positions = [int(np.flatnonzero((train.images == image).all(axis=(1, 2, 3)))[0])
               for image in part.images]
  assert positions == sorted(positions)  # Kept in dataset order.
  np.testing.assert_array_equal(part.labels, train.labels[positions])
  np.testing.assert_array_equal(train.subset(20, seed=0).images, part.images)
  assert not np.array_equal(train.subset(20, seed=1).images, part.images)
  assert train.subset(100, seed=0) is train
  with pytest.raises(ValueError, match='count=0 must be positive'):
    train.subset(0, seed=0)
