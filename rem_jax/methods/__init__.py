"""Unlearning methods by name. Each is `method(original, task, config) -> Unlearned`."""

from collections.abc import Callable

from rem_jax.methods.base import Task, TrainedModel, Unlearned
from rem_jax.methods.no_ul import no_ul

METHODS: dict[str, Callable[..., Unlearned]] = {
    'no_ul': no_ul,
}


def get_method(name: str) -> Callable[..., Unlearned]:
  """The method registered as `name`; a ValueError lists the registered names otherwise."""
  if name not in METHODS:
    raise ValueError(f'method={name!r} is not a registered method; allowed: {sorted(METHODS)}.')
  return METHODS[name]


__all__ = ['METHODS', 'Task', 'TrainedModel', 'Unlearned', 'get_method']
