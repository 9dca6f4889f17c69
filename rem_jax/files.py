"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def write_atomic(path, write: Callable[[BinaryIO], object]) -> None:
  """Calls `write` on a temporary binary file beside `path`, then renames it onto `path`.

  The rename is atomic on POSIX file systems, so a crash or a concurrent reader never sees a
  torn file; the temporary file is removed if `write` fails.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_json_atomic(path, value) -> None:
  """`value` as indented, key-sorted JSON, written atomically."""
  text = json.dumps(value, indent=2, sort_keys=True) + '\n'
  write_atomic(path, lambda f: f.write(text.encode()))
