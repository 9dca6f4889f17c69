"""Flax models whose `apply(variables, images, mask, train=...)` takes a per-example mask.

`batch_stats` sets exact BatchNorm running statistics for any such model (ViT: none to set).
"""

from rem_jax.models import batch_stats
from rem_jax.models.common import init_variables
from rem_jax.models.masking import UnitMask, mask_extra_units
from rem_jax.models.registry import build_model, describe
from rem_jax.models.resnet9 import ResNet9
from rem_jax.models.vit import ViT

__all__ = ['ResNet9', 'ViT', 'UnitMask', 'mask_extra_units', 'init_variables', 'build_model',
           'describe', 'batch_stats']
