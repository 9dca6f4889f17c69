"""The sweep's result store: `results.jsonl`, one JSON record per finished cell, keyed by its
'cell' field (a `files.JsonLines`: a kill costs at most the cell being written)."""

from rem_jax import files

RESULTS_FILE = 'results.jsonl'
CorruptRecordWarning = files.CorruptRecordWarning


class ResultStore(files.JsonLines):
  """Records of a sweep, keyed by their 'cell' field."""

  def finished_cells(self) -> set[str]:
    return {record['cell'] for record in self.read() if 'cell' in record}
