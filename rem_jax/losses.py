"""The losses of REM and the baselines: pure, per-example, float32.

Every function maps per-example inputs to per-example values (shape = the inputs' leading
shape), so callers choose the reduction (mean over a batch, over the forget examples only, a
masked mean with padding weights). They are plain jnp code: they work under `jax.jit`,
`jax.grad` and `jax.vmap` (over examples, or over a leading axis of independent runs), and can
be imported by any JAX code. Inputs are cast to float32 first, so bfloat16 logits are safe.

`npo` and `redirect` are written with log-sigmoid, so they stay finite (values and gradients)
however far ce and ce_ref are apart.
"""

import numbers

import jax
import jax.numpy as jnp


def _check_positive(name: str, value) -> None:
  # Traced values cannot be checked; concrete Python numbers can and should be.
  if isinstance(value, numbers.Real) and not value > 0:
    raise ValueError(f'{name}={value!r} must be > 0.')


def weighted_mean(values, weights):
  """Σ w·v / Σ w: a batch's mean loss, with weight 1 for real examples and 0 for padding."""
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(logits, labels):
  """Per-example softmax cross-entropy with integer labels.

  ce_i = logsumexp(logits_i) - logits_i[labels_i]

  Args:
    logits: (..., num_classes).
    labels: (...) integer class indices.

  Returns:
    (...) float32.
  """
  logits = jnp.asarray(logits, jnp.float32)
  labels = jnp.asarray(labels)
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f'cross_entropy: logits {logits.shape} and labels {labels.shape} do not '
                     'match: expected labels of shape logits.shape[:-1].')
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def npo(ce, ce_ref, beta=1.0):
  """Negative Preference Optimisation loss (Zhang et al. 2024), per example.

  npo = -(2 / beta) * log sigmoid(beta * (ce - ce_ref))

  Minimising it *raises* `ce` relative to the reference's `ce_ref`, with a weight that fades
  once ce is well above ce_ref (unlike gradient ascent, it is bounded below by 0).
  Example: npo(2, 1, beta=1) = 0.6265234; npo(2, 1, beta=2) = 0.1269280.

  Args:
    ce: per-example cross-entropy of the model being trained.
    ce_ref: per-example cross-entropy of the frozen reference model (same shape).
    beta: inverse temperature, > 0.

  Returns:
    Per-example float32 loss, shape of `ce`.
  """
  _check_positive('beta', beta)
  ce = jnp.asarray(ce, jnp.float32)
  ce_ref = jnp.asarray(ce_ref, jnp.float32)
  return -(2.0 / beta) * jax.nn.log_sigmoid(beta * (ce - ce_ref))


def redirect(ce, ce_ref, beta=1.0):
  """REM's redirect loss, per example: the negative of `npo`.

  redirect = (2 / beta) * log sigmoid(beta * (ce - ce_ref))

  Minimising it *lowers* `ce` with weight 2 * sigmoid(beta * (ce_ref - ce)): it keeps learning
  what the model already fits better than the reference. With the mask active it pulls the
  corrupted behaviour into the extra units that are later dropped.

  Args:
    ce: per-example cross-entropy of the model being trained.
    ce_ref: per-example cross-entropy of the frozen reference model (same shape).
    beta: inverse temperature, > 0.

  Returns:
    Per-example float32 loss (always <= 0), shape of `ce`.
  """
  _check_positive('beta', beta)
  ce = jnp.asarray(ce, jnp.float32)
  ce_ref = jnp.asarray(ce_ref, jnp.float32)
  return (2.0 / beta) * jax.nn.log_sigmoid(beta * (ce - ce_ref))


def kl_divergence(teacher_logits, student_logits, temperature=1.0):
  """Per-example KL(teacher || student) between temperature-softened softmaxes.

  kl_i = sum_c p_c (log p_c - log q_c),  p = softmax(teacher / T), q = softmax(student / T)

  The T**2 factor of Hinton-style distillation is NOT included: SCRUB multiplies by
  temperature**2 itself; Bad Teacher (T = 1) averages over classes instead.

  Args:
    teacher_logits: (..., num_classes).
    student_logits: (..., num_classes), same shape.
    temperature: T > 0.

  Returns:
    (...) float32, >= 0.
  """
  _check_positive('temperature', temperature)
  teacher = jnp.asarray(teacher_logits, jnp.float32)
  student = jnp.asarray(student_logits, jnp.float32)
  if teacher.shape != student.shape:
    raise ValueError(f'kl_divergence: teacher_logits {teacher.shape} and student_logits '
                     f'{student.shape} must have the same shape.')
  log_p = jax.nn.log_softmax(teacher / temperature, axis=-1)
  log_q = jax.nn.log_softmax(student / temperature, axis=-1)
  return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
