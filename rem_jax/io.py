"""Crash-safe file writes: a reader sees the old file or the new one, never half of one."""

import json
import os
import pathlib
import tempfile


def write_bytes_atomic(path, data: bytes) -> None:
  """Writes `data` to `path` via a temporary file in the same folder and `os.replace`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_json_atomic(path, value) -> None:
  """`value` as indented, key-sorted JSON, written atomically."""
  text = json.dumps(value, indent=2, sort_keys=True) + '\n'
  write_bytes_atomic(path, text.encode())
