"""`shapes`: a built-in procedural image dataset, so rem_jax runs anywhere without a download.

Ten classes that differ by *shape* (circle, square, two triangles, diamond, plus, X, ring, frame,
bar), drawn in a random colour on a textured background (a random colour, sinusoidal stripes of
random frequency and orientation, pixel noise), at a random position and scale. Colour and
texture carry no class information, so a model has to learn shapes; every shape is symmetric
under a horizontal flip, so the training augmentation never changes a label.

It is the quickstart's default and the tests' data, not a benchmark. Generation is vectorised
numpy (10,000 images of 32×32 in about a second) and deterministic from the seed.
"""

from collections.abc import Callable, Sequence

import numpy as np

CLASS_NAMES = ('circle', 'square', 'triangle_up', 'triangle_down', 'diamond', 'plus', 'cross',
               'ring', 'frame', 'bar')

# Each shape is a predicate on coordinates (u, v) relative to the shape's centre, in units of its
# half-size; v points down. All are symmetric in u (horizontal flips keep the class).
_Predicate = Callable[[np.ndarray, np.ndarray], np.ndarray]
_SHAPES: tuple[_Predicate, ...] = (
    lambda u, v: u**2 + v**2 <= 1.0,
    lambda u, v: np.maximum(abs(u), abs(v)) <= 0.8,
    lambda u, v: (v <= 0.75) & (abs(u) <= 0.6 * (v + 0.95)),
    lambda u, v: (v >= -0.75) & (abs(u) <= 0.6 * (0.95 - v)),
    lambda u, v: abs(u) + abs(v) <= 1.05,
    lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0)),
    lambda u, v: (((abs(u - v) <= 0.42) | (abs(u + v) <= 0.42))
                  & (np.maximum(abs(u), abs(v)) <= 0.85)),
    lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.55**2),
    lambda u, v: (np.maximum(abs(u), abs(v)) <= 0.85) & (np.maximum(abs(u), abs(v)) >= 0.5),
    lambda u, v: (abs(u) <= 1.0) & (abs(v) <= 0.32),
)
assert len(_SHAPES) == len(CLASS_NAMES)

# Images drawn per vectorised chunk: bounds the float32 working memory (~100 MB at 32×32).
_PIXELS_PER_CHUNK = 1 << 23


def generate(num_examples: int, *, image_size: int = 32,
             seed: int | Sequence[int] = 0) -> tuple[np.ndarray, np.ndarray]:
  """Draws `num_examples` images with balanced labels.

  Args:
    num_examples: how many images (any positive number; labels cycle over the 10 classes).
    image_size: height and width in pixels (at least 8, so the thinnest strokes stay visible).
    seed: an int or a sequence of ints for `np.random.default_rng`; same seed, same images.

  Returns:
    images: uint8 (num_examples, image_size, image_size, 3).
    labels: int32 (num_examples,), the index into `CLASS_NAMES`.
  """
  if num_examples <= 0:
    raise ValueError(f'shapes: num_examples={num_examples} must be positive.')
  if image_size < 8:
    raise ValueError(f'shapes: image_size={image_size} must be at least 8.')
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num_examples) % len(CLASS_NAMES)).astype(np.int32)
  size = float(image_size)
  uniform = lambda low, high, shape=num_examples: rng.uniform(low, high, shape).astype(np.float32)
  half_size = uniform(0.25, 0.38) * size
  centre = uniform(half_size[:, None], size - half_size[:, None], (num_examples, 2))
  foreground = uniform(0, 255, (num_examples, 3))
  # Every channel of the background differs from the shape's by 88 to 168 (mod 256): contrast
  # without making brightness a class cue.
  background = (foreground + 128 + uniform(-40, 40, (num_examples, 3))) % 256
  stripe_angle = uniform(0, np.pi)
  stripe_cycles = uniform(1, 4)
  stripe_phase = uniform(0, 2 * np.pi)
  stripe_amplitude = uniform(10, 35)

  images = np.empty((num_examples, image_size, image_size, 3), np.uint8)
  pixel_centres = np.arange(image_size, dtype=np.float32) + 0.5
  chunk = max(1, _PIXELS_PER_CHUNK // (image_size * image_size))
  for start in range(0, num_examples, chunk):
    part = slice(start, min(start + chunk, num_examples))
    y = pixel_centres[None, :, None]
    x = pixel_centres[None, None, :]
    along = (x * np.cos(stripe_angle[part])[:, None, None]
             + y * np.sin(stripe_angle[part])[:, None, None])
    texture = stripe_amplitude[part, None, None] * np.sin(
        2 * np.pi * stripe_cycles[part, None, None] * along / size
        + stripe_phase[part, None, None])
    canvas = background[part, None, None, :] + texture[..., None]
    u = (x - centre[part, 0, None, None]) / half_size[part, None, None]
    v = (y - centre[part, 1, None, None]) / half_size[part, None, None]
    inside = _draw(labels[part], u, v)
    canvas = np.where(inside[..., None], foreground[part, None, None, :], canvas)
    # Uniform integer pixel noise in [-12, 12]: as good a nuisance as Gaussian, 6x cheaper.
    canvas += rng.integers(0, 25, canvas.shape, dtype=np.uint8) - np.float32(12)
    images[part] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
  return images, labels


def _draw(labels: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Boolean (n, H, W) masks: each image's own class shape, evaluated class by class."""
  inside = np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
  for label, shape in enumerate(_SHAPES):
    rows = np.flatnonzero(labels == label)
    if rows.size:
      inside[rows] = shape(u[rows], v[rows])
  return inside
