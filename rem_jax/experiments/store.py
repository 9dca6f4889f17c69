"""The sweep's result store: `results.jsonl`, one JSON record per finished cell.

Appends are whole lines written with one `write` and fsynced, so a kill at any moment leaves
every earlier record intact and at worst a truncated last line. Reading skips such a line with a
warning; the next append first cuts it off (it would otherwise glue the new record onto it), so
a crash never costs more than the cell that was being written.
"""

import json
import os
import pathlib
import warnings

from rem_jax import files

RESULTS_FILE = 'results.jsonl'


class CorruptRecordWarning(UserWarning):
  """A results file holds a line that is not a JSON record (a write cut short by a crash)."""


def _complete_prefix(data: bytes) -> int:
  """The length of `data` up to and including its last newline (0 if there is none)."""
  return data.rfind(b'\n') + 1


def _last_byte(f, size: int) -> bytes:
  f.seek(size - 1)
  return f.read(1)


class ResultStore:
  """Records of a sweep, keyed by their 'cell' field."""

  def __init__(self, path):
    self.path = pathlib.Path(path)

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

  def finished_cells(self) -> set[str]:
    return {record['cell'] for record in self.read() if 'cell' in record}

  def append(self, record: dict) -> None:
    """Adds one record as one line; first removes a truncated trailing line, if any.

    In a multi-process run only process 0 appends: every process computed the same record.
    """
    if not files.is_writer():
      return
    line = (json.dumps(record, sort_keys=True) + '\n').encode('utf-8')
    self.path.parent.mkdir(parents=True, exist_ok=True)
    with open(self.path, 'a+b') as f:
      size = f.seek(0, os.SEEK_END)
      if size and _last_byte(f, size) != b'\n':
        f.seek(0)
        keep = _complete_prefix(f.read())
        warnings.warn(f'{self.path}: removing a truncated last line ({size - keep} bytes) '
                      'before appending.', CorruptRecordWarning, stacklevel=2)
        f.truncate(keep)
      f.seek(0, os.SEEK_END)
      f.write(line)
      f.flush()
      os.fsync(f.fileno())
