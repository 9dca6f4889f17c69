"""Build a model from the `model` section of a config, by name."""

from collections.abc import Mapping

import jax.numpy as jnp

from rem_jax import sections
from rem_jax.models.resnet9 import ResNet9
from rem_jax.models.vit import ViT

MODELS = {'resnet9': ResNet9, 'vit': ViT}
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(config: Mapping):
  """A ResNet9 or ViT from a mapping such as `config.model`.

  Args:
    config: `name` ('resnet9' or 'vit'), optional `dtype` ('float32' or 'bfloat16'), and any
      field of the model class (capacity, expansion, width_multiplier, num_classes, ...).

  Raises:
    ValueError: unknown name, dtype or field, naming the allowed values.
  """
  fields = dict(config)
  name = fields.pop('name', None)
  if name not in MODELS:
    raise ValueError(f'model.name={name!r} is not a model; allowed: {sorted(MODELS)}.')
  dtype = fields.pop('dtype', 'float32')
  if dtype not in DTYPES:
    raise ValueError(f'model.dtype={dtype!r} is not supported; allowed: {sorted(DTYPES)}.')
  cls = MODELS[name]
  allowed = sorted(f for f in cls.__dataclass_fields__ if f not in ('parent', 'name', 'dtype'))
  sections.check_fields(fields, allowed, f'model ({name})')
  return cls(dtype=DTYPES[dtype], **fields)


def describe(model) -> dict:
  """A JSON-ready summary of a model's widths, for logs and run records."""
  summary = {'class': type(model).__name__, 'mask_size': model.mask_size,
             'extra_widths': list(model.extra_widths)}
  if isinstance(model, ResNet9):
    summary.update(base_widths=list(model.base_widths), inner_widths=list(model.inner_widths))
  else:
    summary.update(width=model.width, base_hidden=model.base_hidden, depth=model.depth)
  return summary
