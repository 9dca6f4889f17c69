"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

In a multi-process run (`rem_jax.distributed`) only process 0 writes: every process computes
the same records (metrics come back replicated), and on the shared file system a multi-host
run needs, the others would only write the same files again and append every line N times.
"""

import json
import os
import pathlib
import tempfile
import warnings
from collections.abc import Callable
from typing import BinaryIO

import jax


def is_writer() -> bool:
  """Whether this process writes the run's files: always on one process, else process 0."""
  return jax.process_index() == 0


def write_atomic(path, write: Callable[[BinaryIO], object], *,
                 every_process: bool = False) -> None:
  """Calls `write` on a temporary binary file beside `path`, then renames it onto `path`.

  The rename is atomic on POSIX file systems, so a crash or a concurrent reader never sees a
  torn file; the temporary file is removed if `write` fails. Only process 0 writes unless
  `every_process` (a host's own cache, for example).
  """
  if not (every_process or is_writer()):
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide results from other users.
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_json_atomic(path, value) -> None:
  """`value` as indented, key-sorted JSON, written atomically (process 0 only)."""
  text = json.dumps(value, indent=2, sort_keys=True) + '\n'
  write_atomic(path, lambda f: f.write(text.encode()))


class CorruptRecordWarning(UserWarning):
  """A JSON-lines file holds a line that is not a JSON record (a write cut short by a crash)."""


class JsonLines:
  """An append-only JSON-lines file: one record per line, written with one `write` and fsynced.

  A kill at any moment leaves every earlier record intact and at worst a truncated last line.
  Reading skips such a line with a warning; the next append first cuts it off (it would
  otherwise glue the new record onto it), so a crash never costs more than the record that was
  being written. Earlier lines are never rewritten.
  """

  def __init__(self, path):
    self.path = pathlib.Path(path)

  def append(self, record: dict) -> None:
    """Appends `record` as one line, after removing a truncated last line if there is one
    (process 0 only: see the module docstring)."""
    if not is_writer():
      return
    line = (json.dumps(record, sort_keys=True) + '\n').encode('utf-8')
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.path, 'a+b') as f:
      size = f.seek(0, os.SEEK_END)
      if size:
        f.seek(size - 1)
        if f.read(1) != b'\n':
          f.seek(0)
          keep = f.read().rfind(b'\n') + 1  # Up to and including the last newline.
          warnings.warn(f'{self.path}: removing a truncated last line ({size - keep} bytes) '
                        'before appending.', CorruptRecordWarning, stacklevel=2)
          f.truncate(keep)
      f.seek(0, os.SEEK_END)
      f.write(line)
      f.flush()
      os.fsync(f.fileno())

  def read(self) -> list[dict]:
    """Every complete record, in order; lines that are not JSON objects are skipped with a
    `CorruptRecordWarning` naming the file and line."""
    if not self.path.exists():
      return []
    records = []
    lines = self.path.read_bytes().decode('utf-8', errors='replace').split('\n')
    for number, line in enumerate(lines, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError:
        record = None
      if not isinstance(record, dict):
        where = 'its last line' if number >= len(lines) - 1 else f'line {number}'
        warnings.warn(f'{self.path}: {where} is not a complete JSON record (a write cut short by '
                      'a crash?); ignoring it.', CorruptRecordWarning, stacklevel=2)
        continue
      records.append(record)
    return records
