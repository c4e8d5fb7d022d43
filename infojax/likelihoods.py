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

Everything is in nats. The functions are pure and jit-able; the ``validate_targets`` hook checks
concrete (non-traced) targets and raises a clear error for bad ones.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = float(np.log(2.0 * np.pi))


class Likelihood(NamedTuple):
  """A predictive distribution p(y | outputs), as pure functions.

  Attributes:
    name: ``"categorical"``, ``"gaussian"`` or ``"bernoulli"``.
    nll: ``(outputs, targets) -> values``; element-wise negative log-likelihood in nats, with the
      shape of the targets.
    sample: ``(key, outputs, num_samples) -> targets`` of shape ``(num_samples, *target_shape)``.
    fisher_factor: ``outputs -> S`` for one example, ``S.shape == (K, *outputs.shape)``,
      ``sum_k s_k s_k^T`` = Hessian of ``nll(outputs, .).sum()`` in the outputs.
    target_shape: ``outputs_shape -> targets_shape``, the shape targets must have.
    validate_targets: ``(outputs_shape, targets) -> None``; raises ``ValueError``/``TypeError`` for
      targets of the wrong shape, dtype or range (value checks only for concrete arrays).
  """
  name: str
  nll: Callable[[jax.Array, jax.Array], jax.Array]
  sample: Callable[[jax.Array, jax.Array, int], jax.Array]
  fisher_factor: Callable[[jax.Array], jax.Array]
  target_shape: Callable[[tuple], tuple]
  validate_targets: Callable[[tuple, jax.Array], None]


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_shape(name, outputs_shape, targets, expected):
  if tuple(targets.shape) != tuple(expected):
    raise ValueError(
        f"{name} likelihood: targets must have shape {tuple(expected)} for outputs of shape "
        f"{tuple(outputs_shape)}; got targets of shape {tuple(targets.shape)}.")


def _diagonal_factor(root: jax.Array) -> jax.Array:
  """Columns ``root[i] e_i`` for an output Hessian that is diagonal with entries ``root**2``."""
  flat = root.reshape(-1)
  return (jnp.diag(flat)).reshape((flat.size,) + root.shape)


# ----------------------------------------------------------------------------------------------
# Categorical (softmax over the last axis).
# ----------------------------------------------------------------------------------------------


def _categorical_nll(logits, labels):
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


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
  if _is_concrete(targets) and targets.size:
    values = np.asarray(targets)   # host numpy: jnp would trace under an enclosing jit
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= outputs_shape[-1]:
      raise ValueError(
          f"categorical likelihood: targets must lie in [0, {outputs_shape[-1] - 1}] "
          "(the number of classes is the last axis of the outputs); "
          f"got values in [{low}, {high}].")


def categorical() -> Likelihood:
  """Softmax cross-entropy: outputs are logits ``(..., C)``, targets integer labels ``(...)``."""
  return Likelihood(
      name="categorical",
      nll=_categorical_nll,
      sample=_categorical_sample,
      fisher_factor=_categorical_factor,
      target_shape=lambda shape: tuple(shape[:-1]),
      validate_targets=_categorical_validate)


# ----------------------------------------------------------------------------------------------
# Gaussian with fixed scale.
# ----------------------------------------------------------------------------------------------


def gaussian(scale: float = 1.0) -> Likelihood:
  """Gaussian ``N(y; outputs, scale^2)`` element-wise; outputs and targets have the same shape.

  Args:
    scale: the standard deviation ``sigma > 0``. The output Fisher is ``I / sigma^2``.
  """
  if not np.isfinite(scale) or scale <= 0:
    raise ValueError(f"gaussian likelihood: scale must be a finite positive number; got {scale}.")
  scale = float(scale)

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

  return Likelihood("gaussian", nll, sample, fisher_factor, lambda shape: tuple(shape), validate)


# ----------------------------------------------------------------------------------------------
# Bernoulli (sigmoid of logits), element-wise.
# ----------------------------------------------------------------------------------------------


def _bernoulli_nll(logits, targets):
  targets = targets.astype(logits.dtype)
  return jax.nn.softplus(logits) - targets * logits


def _bernoulli_sample(key, logits, num_samples):
  shape = (num_samples,) + logits.shape
  draws = jax.random.bernoulli(key, jnp.broadcast_to(jax.nn.sigmoid(logits), shape), shape)
  return draws.astype(logits.dtype)


def _bernoulli_factor(logits):
  probs = jax.nn.sigmoid(logits)
  return _diagonal_factor(jnp.sqrt(probs * (1.0 - probs)))


def _bernoulli_validate(outputs_shape, targets):
  _check_shape("bernoulli", outputs_shape, targets, outputs_shape)
  if _is_concrete(targets) and targets.size:
    values = np.asarray(targets)
    if not np.all((values == 0) | (values == 1)):
      raise ValueError("bernoulli likelihood: targets must be 0 or 1.")


def bernoulli() -> Likelihood:
  """Independent Bernoulli variables with logits ``outputs``; targets in {0, 1}, same shape."""
  return Likelihood("bernoulli", _bernoulli_nll, _bernoulli_sample, _bernoulli_factor,
                    lambda shape: tuple(shape), _bernoulli_validate)
