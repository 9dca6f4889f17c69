"""The sweep's result store: one JSON record per finished cell, keyed by its 'cell' field.

A sweep run in one process appends to `results.jsonl` (a `files.JsonLines`: a kill costs at most
the cell being written). Tasks of a sweep on a cluster (`rem_jax.experiments.cluster`) run at
once on many hosts, over a shared file system where appends from several hosts can interleave
and file locks are unreliable (NFS), so each writes every record to a file of its own,
`results.d/<hash of the cell>.json`, renamed into place (`files.write_json_atomic`): a reader
sees a whole record or none, and no two writers ever touch one file. `read` and
`finished_cells` see both; `merge` appends the per-cell records to `results.jsonl` and removes
their files, so `results.jsonl` stays the merged view that reports and tools read (the cluster's
reports task and every in-process run merge). A record both merged and still in its file (a merge
killed halfway) is read once.
"""

import hashlib
import json
import pathlib
import warnings

from rem_jax import files

RESULTS_FILE = 'results.jsonl'
CELLS_DIR = 'results.d'  # Beside results.jsonl: one file per cell recorded by a cluster task.
CorruptRecordWarning = files.CorruptRecordWarning


def _cell_file(cell: str) -> str:
  return hashlib.sha256(cell.encode()).hexdigest()[:20] + '.json'


class ResultStore(files.JsonLines):
  """Records of a sweep, keyed by their 'cell' field: `results.jsonl` and `results.d/`."""

  @property
  def cells_dir(self) -> pathlib.Path:
    return self.path.parent / CELLS_DIR

  def _cell_records(self) -> list[tuple[pathlib.Path, dict]]:
    """(file, record) of every per-cell file, oldest record first."""
    found = []
    # Temporary files of a write in flight end in .tmp, so the pattern skips them.
    for path in sorted(self.cells_dir.glob('*.json')) if self.cells_dir.is_dir() else ():
      try:
        record = json.loads(path.read_text())
      except (OSError, ValueError):  # Removed by a merge since the listing, or not a record.
        record = None
      if isinstance(record, dict) and 'cell' in record:
        found.append((path, record))
      elif path.exists():
        warnings.warn(f'{path} is not a JSON record; ignoring it.', CorruptRecordWarning,
                      stacklevel=3)
    return sorted(found, key=lambda item: (item[1].get('finished_at', ''), item[1]['cell']))

  def read(self) -> list[dict]:
    """`results.jsonl`'s records, in order, then those only in `results.d/`."""
    records = super().read()
    merged = {record.get('cell') for record in records}
    return records + [record for _, record in self._cell_records()
                      if record['cell'] not in merged]

  def finished_cells(self) -> set[str]:
    return {record['cell'] for record in self.read() if 'cell' in record}

  def write_cell(self, record: dict) -> None:
    """`record` in its own file, renamed into place: safe with any number of other writers."""
    files.write_json_atomic(self.cells_dir / _cell_file(record['cell']), record)

  def merge(self) -> int:
    """Appends the records only in `results.d/` to `results.jsonl`, then removes every merged
    file; returns how many records it appended (process 0 only)."""
    cell_records = self._cell_records()
    if not cell_records or not files.is_writer():
      return 0
    merged = {record.get('cell') for record in super().read()}
    appended = 0
    for path, record in cell_records:
      if record['cell'] not in merged:
        self.append(record)
        merged.add(record['cell'])
        appended += 1
      path.unlink(missing_ok=True)
    return appended
