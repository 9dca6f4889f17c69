"""Tiny model variants and inputs shared by the tests (fast to compile and run on 2 CPUs)."""

import jax
import jax.numpy as jnp
import numpy as np

from rem_jax.models import ResNet9, ViT

IMAGE_SIZE = 16
BATCH = 8


def tiny_resnet(**overrides) -> ResNet9:
  """Width/8 ResNet-9: trunk (8, 16, 32, 16); capacity 0.5 + expansion 0.5 by default."""
  fields = dict(num_classes=10, capacity=0.5, expansion=0.5, width_multiplier=1 / 8)
  return ResNet9(**{**fields, **overrides})


def tiny_vit(**overrides) -> ViT:
  """dim 32, 2 blocks of 2 heads x 4, MLP 96 (48 base + 48 extra by default), patches 4x4."""
  fields = dict(num_classes=10, image_size=IMAGE_SIZE, patch_size=4, depth=2, num_heads=2,
                width_multiplier=1 / 16, capacity=0.5, expansion=0.5)
  return ViT(**{**fields, **overrides})


def images(key=0, batch=BATCH, size=IMAGE_SIZE):
  return jax.random.normal(jax.random.key(key), (batch, size, size, 3), jnp.float32)


def perturb(variables, key, scale=0.3):
  """Random, non-default values for every parameter and BatchNorm statistic.

  Fresh inits have structure (zero biases, BN scale 1, statistics 0/1) that can hide a bug;
  invariants are checked on perturbed trees instead. Host-side numpy: no XLA compile.
  """
  rng = np.random.default_rng(key)

  def one(path, leaf):
    leaf = np.asarray(leaf)
    noise = rng.standard_normal(leaf.shape).astype(leaf.dtype)
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jnp.asarray(leaf * np.exp(scale * noise))  # Variances must stay positive.
    # Relative to the leaf's own size, so activations (and float error) stay moderate.
    magnitude = max(float(np.abs(leaf).mean()), 0.05)
    return jnp.asarray(leaf + scale * magnitude * noise)

  return jax.tree_util.tree_map_with_path(one, variables)
