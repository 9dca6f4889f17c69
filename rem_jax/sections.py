"""Config sections as nested mappings: one check of their field names, one dotted-path setter,
one flattener.

Every part of the project that takes a section of settings (a cell config, `train`, `model`, a
method's settings, a mask config, a sweep) checks its names with `check_fields`, so an unknown
field always reads the same way and lists what is allowed. Sections may be plain dicts or
`ml_collections.ConfigDict`s.
"""

from collections.abc import Iterable, Mapping
from typing import Any


def _is_section(value) -> bool:
  return isinstance(value, Mapping) or (hasattr(value, 'keys') and hasattr(value, 'items'))


def check_fields(given: Iterable[str], allowed: Iterable[str], section: str, *,
                 kind: str = 'fields', required: bool = False) -> None:
  """Raises one `ValueError` naming the fields of `given` that `section` does not have and
  listing the allowed ones ("train fields ['epochs'] are unknown; allowed: [...]"; `kind` names
  what they are: fields, settings, arguments); with `required`, also the ones `given` lacks."""
  given, allowed = set(given), set(allowed)
  unknown = sorted(given - allowed)
  if unknown:
    raise ValueError(f'{section} {kind} {unknown} are unknown; allowed: {sorted(allowed)}.')
  missing = sorted(allowed - given)
  if required and missing:
    raise ValueError(f'{section} lacks the fields {missing}; start from the config file\'s '
                     'get_config().')


def flatten(tree, prefix: str = '') -> dict[str, Any]:
  """A nested mapping as {'a.b.c': leaf}, in insertion order; an empty mapping is a leaf."""
  flat = {}
  for key, value in tree.items():
    if _is_section(value) and value:
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def set_path(tree, path: str, value, what: str, root: str = 'the config') -> None:
  """Sets the dotted field `path` of a nested config; an unknown section or field, or a value
  of another type than the field's, is an error that starts with `what` and names the allowed
  fields or the expected type (an int is accepted for a float field, as a float); `root` names
  the top of `tree` in the message."""
  *parents, leaf = path.split('.')
  node = tree
  for depth, part in enumerate(parents):
    if part not in node or not _is_section(node[part]):
      where = '.'.join(parents[:depth]) or root
      raise ValueError(f'{what}: {where} has no section {part!r}; sections: '
                       f'{sorted(k for k, v in node.items() if _is_section(v))}.')
    node = node[part]
  if leaf not in node:
    where = '.'.join(parents) or root
    raise ValueError(f'{what}: {where} has no field {leaf!r}; allowed: {sorted(node.keys())}.')
  old = node[leaf]
  sequences = (list, tuple)
  if not (old is None or value is None or isinstance(value, type(old))
          or (isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool))
          or (isinstance(old, sequences) and isinstance(value, sequences))):
    raise ValueError(f'{what}: {path} expects a {type(old).__name__}, got {value!r}.')
  try:
    node[leaf] = float(value) if isinstance(old, float) else value
  except TypeError as error:  # A ConfigDict placeholder's own type check.
    raise ValueError(f'{what}: {path}: {error}') from None
