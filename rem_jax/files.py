"""Crash-safe file writes: a reader sees the old file or the new one, never half of one.

In a multi-process run (`rem_jax.distributed`) only process 0 writes: every process computes
the same records (metrics come back replicated), and on the shared file system a multi-host
run needs, the others would only write the same files again and append every line N times.
"""

import json
import os
import pathlib
import tempfile
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


class JsonLines:
  """An append-only JSON-lines file: one record per line, flushed to disk on every append.

  A crash can at worst leave a truncated last line, which readers detect and skip; earlier
  lines are never rewritten.
  """

  def __init__(self, path):
    self.path = pathlib.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)

  def append(self, record: dict) -> None:
    """Appends `record` as one line (process 0 only: see the module docstring)."""
    if not is_writer():
      return
    with open(self.path, 'a', encoding='utf-8') as f:
      f.write(json.dumps(record, sort_keys=True) + '\n')
      f.flush()
      os.fsync(f.fileno())

  def read(self) -> list[dict]:
    """Every complete record; a truncated trailing line (a crash mid-append) is skipped."""
    if not self.path.exists():
      return []
    records = []
    for line in self.path.read_text(encoding='utf-8').splitlines():
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
    return records
