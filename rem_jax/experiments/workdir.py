"""A run's folder: checked before anything is written, and claimed by one config at a time.

`usable(workdir)` turns every way a folder can be unusable (an empty flag, a file, a path under a
file, a folder that cannot be written) into one `ValueError` naming it, before any work starts.

`claim(workdir, fields)` records in `<workdir>/config.json` the fields that decide what the
folder's checkpoints hold (for a cell: the data and the trained model, `cell.original_fields`)
and refuses a later run whose fields differ, naming them, unless `overwrite`. Fields that do not
shape the checkpoints (the method, its settings, the discovery rate) are not part of the claim,
so changing them reuses the trained model.
"""

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from rem_jax import checkpoints
from rem_jax import files
from rem_jax import sections

CONFIG_FILE = 'config.json'

_MISSING = object()  # Marks a field one config has and the other lacks.


def usable(workdir) -> pathlib.Path:
  """`workdir` as an absolute path, created and writable; a `ValueError` names what is wrong."""
  if workdir is None or not str(workdir).strip():
    raise ValueError('--workdir is empty: give the directory for the run\'s outputs.')
  path = pathlib.Path(workdir).expanduser().absolute()
  for folder in (path, *path.parents):
    if folder.exists() and not folder.is_dir():
      where = 'is' if folder == path else f'lies under {folder}, which is'
      raise ValueError(f'workdir {path} {where} a file, not a directory.')
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):  # Permissions, read-only or immutable folders.
      pass
  except OSError as error:
    raise ValueError(f'workdir {path} cannot be written: {error.strerror or error}.') from None
  return path


def _json_normalised(value):
  """`value` as JSON would read it back: tuples become lists, keys strings, and so on."""
  return json.loads(json.dumps(value, sort_keys=True))


def _show(value) -> str:
  return '(absent)' if value is _MISSING else json.dumps(value)


def differences(old: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
  """(dotted field, old value, new value) for every field that differs, sorted by field."""
  old_flat, new_flat = sections.flatten(old), sections.flatten(new)
  return [(name, old_flat.get(name, _MISSING), new_flat.get(name, _MISSING))
          for name in sorted(set(old_flat) | set(new_flat))
          if old_flat.get(name, _MISSING) != new_flat.get(name, _MISSING)]


def describe_differences(changed: Sequence[tuple[str, Any, Any]], limit: int = 10) -> str:
  shown = ', '.join(f'{name}: {_show(old)} -> {_show(new)}' for name, old, new in changed[:limit])
  return shown + (f' and {len(changed) - limit} more' if len(changed) > limit else '')


def _project(old: Mapping, new: Mapping) -> dict:
  """`old` restricted to the fields `new` has (a config.json of an earlier version holds more)."""
  return {name: (_project(old[name], value) if isinstance(value, dict)
                 and isinstance(old[name], dict) else old[name])
          for name, value in new.items() if name in old}


def read_config(workdir) -> dict:
  """`<workdir>/config.json`; a `ValueError` names the file when it is missing or not JSON."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  try:
    value = json.loads(path.read_text())
  except FileNotFoundError:
    raise ValueError(f'{path} does not exist.') from None
  except (OSError, UnicodeDecodeError, ValueError) as error:
    raise ValueError(f'{path} is not readable JSON ({error}).') from None
  if not isinstance(value, dict):
    raise ValueError(f'{path} does not hold a config (a JSON object).')
  return value


def claim(workdir, claimed: Mapping, *, overwrite: bool = False,
          owned: Sequence[str] = ()) -> str:
  """Makes sure `workdir` belongs to `claimed` before anything is written there.

  Args:
    workdir: the run's folder (from `usable`).
    claimed: what the folder's contents depend on, as a JSON-serialisable mapping (compared
      after a JSON round trip, so tuples equal lists). A `config.json` written by an earlier
      version with more fields is compared on the fields of `claimed` only.
    overwrite: start afresh even if the folder holds another claim: its checkpoints and the
      `owned` files and folders are deleted and `config.json` rewritten.
    owned: names of the files and folders in `workdir` that derive from the claim (results of
      the trained model), deleted by `overwrite`.

  Returns:
    'new' (an empty or fresh folder), 'resume' (the same claim: its checkpoints may be resumed)
    or 'overwrite'.

  Raises:
    ValueError: the folder holds another claim (the message lists the fields that differ), or
      checkpoints without a config.json, or an unreadable config.json, and not `overwrite`.
  """
  workdir = pathlib.Path(workdir)
  config_path = workdir / CONFIG_FILE
  checkpoint_dir = workdir / checkpoints.CHECKPOINT_DIR
  new = _json_normalised(dict(claimed))
  hint = 'pass --overwrite (it deletes them) or use another workdir'
  if overwrite:
    for name in (checkpoints.CHECKPOINT_DIR, *owned):
      target = workdir / name
      if target.is_dir():
        shutil.rmtree(target)
      else:
        target.unlink(missing_ok=True)
    files.write_json_atomic(config_path, new)
    return 'overwrite'
  if config_path.exists():
    try:
      old = read_config(workdir)
    except ValueError as error:
      raise ValueError(f'workdir {workdir}: {error}; {hint}.') from None
    old = _project(old, new)
    if old == new:
      return 'resume'
    raise ValueError(f'workdir {workdir} holds a run of other settings (fields that differ: '
                     f'{describe_differences(differences(old, new))}); {hint}.')
  if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
    raise ValueError(f'workdir {workdir} holds checkpoints but no {CONFIG_FILE}, so what they '
                     f'hold is unknown; {hint}.')
  os.makedirs(workdir, exist_ok=True)
  files.write_json_atomic(config_path, new)
  return 'new'
