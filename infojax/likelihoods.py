"""Likelihoods p(y | outputs): negative log-likelihood, sampling and the output-space Fisher factor.

A likelihood turns a network's outputs into a predictive distribution. The curvature engine needs
three things from it:

* ``nll(outputs, targets)``: the negative log-likelihood in nats, element-wise over the leading axes
  (one value per prediction; the engine sums the values of one example);
* ``sample(key, outputs, num_samples)``: targets drawn from the predictive distribution, with a new
  leading axis of size ``num_samples`` (the ``"mc"`` Fisher);
* ``fisher_factor(outputs)``: for the outputs of ONE example, a stack of K output-space columns
  ``S`` (shape ``(K, *outputs.shape)``) with ``sum_k s_k s_k^T = d^2 nll / d outputs^2``, the
  Hessian of the negative log-likelihood in the outputs. For an exponential family in its natural
  parameters this equals the Fisher information of the outputs,
  ``E_{y ~ p(y|z)}[grad_z nll grad_z nll^T]``, so the exact ("true") Fisher of the weights is
  ``(1/N) sum_n sum_k (J_n^T s_nk)(J_n^T s_nk)^T`` (Martens 2020, "New insights and perspectives on
  the natural gradient method", JMLR 21(146), §9).

For the categorical likelihood with softmax probabilities ``p`` the factor is
``S = diag(sqrt(p)) - p sqrt(p)^T``, since ``S S^T = diag(p) - p p^T``.

The constructors ``categorical()``, ``bernoulli()`` and ``gaussian(scale)`` are cached: equal
arguments give the same (hashable, equal) object, so a likelihood can be a static argument of
``jax.jit`` without a recompilation per call of the constructor.

Everything is in nats. The functions are pure and jit-able. The ``validate_targets`` hook checks
concrete (non-traced) targets and raises a clear error for bad ones; where the values cannot be
checked (under ``jit``), a target out of range (a label outside ``[0, C)`` for ``C`` classes, a
Bernoulli target other than 0 or 1) gives a NaN negative log-likelihood for that prediction and NaN
gradients in its outputs, never a finite number. Valid targets are unaffected, bit for bit.
"""

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from infojax._validation import is_concrete

_LOG_2PI = float(np.log(2.0 * np.pi))


class Likelihood(NamedTuple):
  """A predictive distribution p(y | outputs), as pure functions.

  Attributes:
    name: ``"categorical"``, ``"gaussian"`` or ``"bernoulli"``.
    nll: ``(outputs, targets) -> values``; element-wise negative log-likelihood in nats, with the
      shape of the targets; NaN (value and gradient) for a prediction whose target is out of range.
    sample: ``(key, outputs, num_samples) -> targets`` of shape ``(num_samples, *targets.shape)``,
      targets having the shape that ``validate_targets`` asks for.
    fisher_factor: ``outputs -> S`` for one example, ``S.shape == (K, *outputs.shape)``,
      ``sum_k s_k s_k^T`` = Hessian of ``nll(outputs, .).sum()`` in the outputs.
    validate_targets: ``(outputs_shape, targets) -> None``; raises ``ValueError``/``TypeError`` for
      targets of the wrong shape, dtype or range (value checks only for concrete arrays).
    scale: the standard deviation ``sigma`` of ``gaussian(sigma)``; ``None`` for the others.
  """
  name: str
  nll: Callable[[jax.Array, jax.Array], jax.Array]
  sample: Callable[[jax.Array, jax.Array, int], jax.Array]
  fisher_factor: Callable[[jax.Array], jax.Array]
  validate_targets: Callable[[tuple, jax.Array], None]
  scale: Optional[float] = None


def _check_shape(name, outputs_shape, targets, expected):
  if tuple(targets.shape) != tuple(expected):
    raise ValueError(
        f"{name} likelihood: targets must have shape {tuple(expected)} for outputs of shape "
        f"{tuple(outputs_shape)}; got targets of shape {tuple(targets.shape)}.")


def _diagonal_factor(root: jax.Array) -> jax.Array:
  """Columns ``root[i] e_i`` for an output Hessian that is diagonal with entries ``root**2``."""
  flat = root.reshape(-1)
  return (jnp.diag(flat)).reshape((flat.size,) + root.shape)


def _nan_where_invalid(values: jax.Array, valid: jax.Array) -> jax.Array:
  """``values`` where ``valid`` and NaN elsewhere, as a product so that gradients are NaN too.

  Multiplying by exactly 1 leaves the valid values and their gradients unchanged bit for bit.
  """
  return values * jnp.where(valid, 1.0, jnp.nan).astype(values.dtype)


# ----------------------------------------------------------------------------------------------
# Categorical (softmax over the last axis).
# ----------------------------------------------------------------------------------------------


def _categorical_nll(logits, labels):
  """``-log softmax(logits)[label]`` per prediction; NaN where the label is not in ``[0, C)``."""
  labels = jnp.asarray(labels)
  if labels.dtype == jnp.bool_:
    labels = labels.astype(jnp.int32)
  num_classes = logits.shape[-1]
  valid = (labels >= 0) & (labels < num_classes)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    valid = valid & (labels == jnp.floor(labels))
  # A valid class index everywhere (the invalid ones are masked to NaN below): without it a
  # negative label would silently pick class C + label and one >= C would give a zero gradient.
  index = jnp.where(valid, labels, 0).astype(jnp.int32)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  picked = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]
  return _nan_where_invalid(-picked, valid)


def _categorical_sample(key, logits, num_samples):
  return jax.random.categorical(key, logits, axis=-1, shape=(num_samples,) + logits.shape[:-1])


def _categorical_factor(logits):
  """``S = diag(sqrt p) - p sqrt(p)^T`` per prediction, block-diagonal over the leading axes."""
  num_classes = logits.shape[-1]
  events = int(np.prod(logits.shape[:-1], dtype=np.int64))
  probs = jax.nn.softmax(logits, axis=-1).reshape(events, num_classes)
  sqrt_probs = jnp.sqrt(probs)
  # block[e, i, c] = sqrt(p_i) delta_ic - p_i sqrt(p_c): column c of S for prediction e.
  block = (jnp.eye(num_classes, dtype=logits.dtype)[None] * sqrt_probs[:, None, :]
           - probs[:, :, None] * sqrt_probs[:, None, :])
  # Column (e, c) is non-zero only on prediction e: shape (events, C_cols, events, C_rows).
  columns = jnp.einsum("eic,ef->ecfi", block, jnp.eye(events, dtype=logits.dtype))
  return columns.reshape((events * num_classes,) + logits.shape)


def _categorical_validate(outputs_shape, targets):
  if len(outputs_shape) < 1:
    raise ValueError("categorical likelihood: outputs (logits) need a class axis; got a scalar.")
  _check_shape("categorical", outputs_shape, targets, outputs_shape[:-1])
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise TypeError(
        f"categorical likelihood: targets must be integer class labels; got dtype {targets.dtype}.")
  if is_concrete(targets) and targets.size:
    values = np.asarray(targets)   # host numpy: jnp would trace under an enclosing jit
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= outputs_shape[-1]:
      raise ValueError(
          f"categorical likelihood: targets must lie in [0, {outputs_shape[-1] - 1}] "
          "(the number of classes is the last axis of the outputs); "
          f"got values in [{low}, {high}].")


@functools.lru_cache(maxsize=None)
def categorical() -> Likelihood:
  """Softmax cross-entropy: outputs are logits ``(..., C)``, targets integer labels ``(...)``.

  A label outside ``[0, C)`` raises in ``validate_targets`` when concrete and gives a NaN nll (and
  NaN gradients in that prediction's logits) under ``jit``. Cached: every call returns the same
  object.
  """
  return Likelihood(
      name="categorical",
      nll=_categorical_nll,
      sample=_categorical_sample,
      fisher_factor=_categorical_factor,
      validate_targets=_categorical_validate)


# ----------------------------------------------------------------------------------------------
# Gaussian with fixed scale.
# ----------------------------------------------------------------------------------------------


def _check_scale(scale) -> float:
  """``float(scale)`` for a finite positive number; ``ValueError`` for anything else."""
  message = f"gaussian likelihood: scale must be a finite positive number; got {scale!r}."
  if isinstance(scale, (str, bytes, bool, np.bool_)):
    raise ValueError(message)
  try:
    value = float(scale)    # a tracer raises a ConcretizationTypeError, a TypeError
  except (TypeError, ValueError) as error:
    raise ValueError(message) from error
  if not np.isfinite(value) or value <= 0:
    raise ValueError(message)
  return value


def gaussian(scale: float = 1.0) -> Likelihood:
  """Gaussian ``N(y; outputs, scale^2)`` element-wise; outputs and targets have the same shape.

  Args:
    scale: the standard deviation ``sigma > 0``, a concrete number. The output Fisher is
      ``I / sigma^2``.

  Returns:
    A ``Likelihood`` with ``scale == float(scale)``, cached on that float: equal scales give the
    same object.
  """
  return _gaussian(_check_scale(scale))


@functools.lru_cache(maxsize=None)
def _gaussian(scale: float) -> Likelihood:
  def nll(outputs, targets):
    z = (targets - outputs) / scale
    return 0.5 * z * z + np.log(scale) + 0.5 * _LOG_2PI

  def sample(key, outputs, num_samples):
    noise = jax.random.normal(key, (num_samples,) + outputs.shape, outputs.dtype)
    return outputs[None] + scale * noise

  def fisher_factor(outputs):
    return _diagonal_factor(jnp.full(outputs.shape, 1.0 / scale, outputs.dtype))

  def validate(outputs_shape, targets):
    _check_shape("gaussian", outputs_shape, targets, outputs_shape)
    if not jnp.issubdtype(targets.dtype, jnp.floating):
      raise TypeError(f"gaussian likelihood: targets must be floating point; got {targets.dtype}.")

  return Likelihood("gaussian", nll, sample, fisher_factor, validate, scale=scale)


# ----------------------------------------------------------------------------------------------
# Bernoulli (sigmoid of logits), element-wise.
# ----------------------------------------------------------------------------------------------


def _bernoulli_nll(logits, targets):
  """``softplus(z) - y z`` element-wise; NaN where the target is not 0 or 1."""
  targets = jnp.asarray(targets)
  valid = (targets == 0) | (targets == 1)
  targets = targets.astype(logits.dtype)
  return _nan_where_invalid(jax.nn.softplus(logits) - targets * logits, valid)


def _bernoulli_sample(key, logits, num_samples):
  shape = (num_samples,) + logits.shape
  draws = jax.random.bernoulli(key, jnp.broadcast_to(jax.nn.sigmoid(logits), shape), shape)
  return draws.astype(logits.dtype)


def _bernoulli_factor(logits):
  probs = jax.nn.sigmoid(logits)
  return _diagonal_factor(jnp.sqrt(probs * (1.0 - probs)))


def _bernoulli_validate(outputs_shape, targets):
  _check_shape("bernoulli", outputs_shape, targets, outputs_shape)
  if is_concrete(targets) and targets.size:
    values = np.asarray(targets)
    if not np.all((values == 0) | (values == 1)):
      raise ValueError("bernoulli likelihood: targets must be 0 or 1.")


@functools.lru_cache(maxsize=None)
def bernoulli() -> Likelihood:
  """Independent Bernoulli variables with logits ``outputs``; targets in {0, 1}, same shape.

  A target other than 0 or 1 raises in ``validate_targets`` when concrete and gives a NaN nll (and
  NaN gradient) for that element under ``jit``. Cached: every call returns the same object.
  """
  return Likelihood("bernoulli", _bernoulli_nll, _bernoulli_sample, _bernoulli_factor,
                    _bernoulli_validate)
