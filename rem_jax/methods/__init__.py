"""Unlearning methods by name. Each is `method(original, task, config) -> Unlearned`."""

import functools
from collections.abc import Callable

from rem_jax.methods.base import Task, TrainedModel, Unlearned
from rem_jax.methods.no_ul import no_ul
# The module, not its function: `rem_jax.methods.rem` must stay importable as the module.
from rem_jax.methods import rem as rem_module

METHODS: dict[str, Callable[..., Unlearned]] = {
    'no_ul': no_ul,
    **{name: functools.partial(rem_module.rem, variant=name) for name in rem_module.VARIANTS},
}


def get_method(name: str) -> Callable[..., Unlearned]:
  """The method registered as `name`; a ValueError lists the registered names otherwise."""
  if name not in METHODS:
    raise ValueError(f'method={name!r} is not a registered method; allowed: {sorted(METHODS)}.')
  return METHODS[name]


__all__ = ['METHODS', 'Task', 'TrainedModel', 'Unlearned', 'get_method']
