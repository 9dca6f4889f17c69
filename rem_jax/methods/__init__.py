"""Unlearning methods by name. Each is `method(original, task, config) -> Unlearned`.

`METHODS` maps a name to the method; `default_config(name)` gives its settings section (what
`config.methods.<name>` may override). Every method starts from the same trained model and
never looks at the test set.
"""

import functools
import sys
from collections.abc import Callable

import ml_collections

from rem_jax.methods import ascent
from rem_jax.methods import bad_teacher
from rem_jax.methods import common
from rem_jax.methods import cf
from rem_jax.methods import etd
from rem_jax.methods import no_ul
from rem_jax.methods import npo
from rem_jax.methods import potion
from rem_jax.methods import rem
from rem_jax.methods import retrain
from rem_jax.methods import scrub
from rem_jax.methods.base import Task, TrainedModel, Unlearned

METHODS: dict[str, Callable[..., Unlearned]] = {
    'no_ul': no_ul.no_ul, 'etd': etd.etd, 'retrain': retrain.retrain, 'cf': cf.cf,
    'ascent': ascent.ascent, 'npo': npo.npo, 'scrub': scrub.scrub,
    'bad_teacher': bad_teacher.bad_teacher, 'potion': potion.potion,
    **{variant: functools.partial(rem.rem, variant=variant) for variant in rem.VARIANTS},
}


def get_method(name: str) -> Callable[..., Unlearned]:
  """The method registered as `name`; a ValueError lists the registered names otherwise."""
  if name not in METHODS:
    raise ValueError(f'method={name!r} is not a registered method; allowed: {sorted(METHODS)}.')
  return METHODS[name]


def _module(name: str):
  """The module that defines method `name` (its `default_config` and `check_settings`)."""
  method = get_method(name)
  return sys.modules[getattr(method, 'func', method).__module__]  # Unwraps REM's partials.


def default_config(name: str) -> ml_collections.ConfigDict:
  """The default settings of method `name` (its `config.methods.<name>` section)."""
  return _module(name).default_config()


def check_settings(name: str, config) -> ml_collections.ConfigDict:
  """Method `name`'s settings resolved and checked as the method itself will, without running
  it: a `ValueError` names the section (`methods.<name>`) and the setting."""
  module = _module(name)
  try:
    return common.resolve_settings(config, module.default_config(), name,
                                   getattr(module, 'check_settings', None))
  except ValueError as error:
    raise ValueError(f'methods.{name}: {error}') from None


__all__ = ['METHODS', 'Task', 'TrainedModel', 'Unlearned', 'check_settings', 'default_config',
           'get_method']
