"""Information-theoretic primitives: entropy, cross-entropy, KL divergences, mutual information.

Every quantity is in nats (natural logarithm); the ``*_bits`` variants and `to_bits` convert to
bits. Discrete distributions live on the last axis (leading axes are batch axes, broadcast by the
usual rules); a joint table ``p_xy`` lives on the last two axes, rows indexing x and columns y.

Conventions (Cover & Thomas, "Elements of Information Theory", 2nd ed., §2):

* ``0 log 0 = 0`` and ``0 log (0/q) = 0``: zero-probability outcomes contribute nothing;
* ``p log (p/0) = +inf`` for ``p > 0``: ``kl(p, q)`` and ``cross_entropy(p, q)`` are ``inf`` where q
  misses mass of p.

Validation: when the arguments are concrete (not traced), probabilities are checked to be
non-negative and to sum to 1 within ``sqrt(eps)`` of their dtype (3.5e-4 for float32, 1.5e-8 for
float64), variances to be positive and covariances positive definite; a violation raises a
``ValueError`` naming the argument. Under ``jax.jit``/``vmap``/``grad`` the values cannot be
inspected, so nothing is checked: invalid inputs then give meaningless numbers (e.g. NaN for
negative probabilities or variances), never an error. All functions are jit-able and differentiable.
"""

import functools
import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from infojax._validation import host_value

_LOG_2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _as_float_array(x) -> jax.Array:
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  return x


def _sum_tolerance(dtype) -> float:
  return float(np.sqrt(np.finfo(dtype).eps))


def _check_probabilities(name, p, *, event_axes) -> jax.Array:
  """Converts ``p`` to a float array; checks ``p >= 0`` and sums over ``event_axes`` equal to 1."""
  p = _as_float_array(p)
  if p.ndim < len(event_axes):
    raise ValueError(
        f"{name} must have at least {len(event_axes)} axis(es) (the distribution's outcomes); "
        f"got shape {p.shape}.")
  value = host_value(p)
  if value is not None and value.size:
    value = value.astype(np.float64)
    if np.any(np.isnan(value)):
      raise ValueError(f"{name} must hold probabilities; it contains NaN.")
    if np.any(value < 0):
      raise ValueError(f"{name} must hold non-negative probabilities; got a minimum of "
                       f"{value.min()}.")
    worst = float(np.max(np.abs(np.sum(value, axis=event_axes) - 1.0)))
    if not worst <= _sum_tolerance(p.dtype):
      raise ValueError(
          f"{name} must sum to 1 over axis(es) {event_axes} (within {_sum_tolerance(p.dtype):.1e}"
          f" for {p.dtype}); the largest deviation is {worst:.3e}.")
  return p


def _check_unit_interval(name, p) -> jax.Array:
  p = _as_float_array(p)
  value = host_value(p)
  if value is not None and value.size and not np.all((value >= 0) & (value <= 1)):
    raise ValueError(f"{name} must lie in [0, 1]; got values in [{value.min()}, {value.max()}].")
  return p


def _check_positive(name, x) -> jax.Array:
  x = _as_float_array(x)
  value = host_value(x)
  if value is not None and value.size and not np.all(value > 0):
    raise ValueError(f"{name} must be positive (a variance); got a minimum of {value.min()}.")
  return x


def _check_same_events(name_a, a, name_b, b, num_axes) -> None:
  if a.shape[a.ndim - num_axes:] != b.shape[b.ndim - num_axes:]:
    raise ValueError(
        f"{name_a} and {name_b} must have the same outcome axes (the last {num_axes}); got shapes "
        f"{a.shape} and {b.shape}.")


# ----------------------------------------------------------------------------------------------
# Discrete distributions (last axis).
# ----------------------------------------------------------------------------------------------


def to_bits(nats):
  """Converts an information quantity from nats to bits (divides by ``log 2``)."""
  return jnp.asarray(nats) / _LOG_2


def entropy(p) -> jax.Array:
  """Shannon entropy ``H(p) = -sum_i p_i log p_i`` over the last axis, in nats.

  Args:
    p: probabilities ``(..., K)``.

  Returns:
    ``(...)``, the entropy of each distribution.
  """
  return _entropy(_check_probabilities("entropy: p", p, event_axes=(-1,)))


@jax.jit
def _entropy(p):
  return -jnp.sum(jsp.xlogy(p, p), axis=-1)


def cross_entropy(p, q) -> jax.Array:
  """Cross-entropy ``H(p, q) = -sum_i p_i log q_i`` over the last axis, in nats.

  Equals ``entropy(p) + kl(p, q)``; ``inf`` where ``q_i = 0 < p_i``.

  Args:
    p: the data distribution ``(..., K)``.
    q: the model distribution ``(..., K)`` (leading axes broadcast against p's).

  Returns:
    ``(...)``.
  """
  p = _check_probabilities("cross_entropy: p", p, event_axes=(-1,))
  q = _check_probabilities("cross_entropy: q", q, event_axes=(-1,))
  _check_same_events("cross_entropy: p", p, "q", q, 1)
  return _cross_entropy(p, q)


@jax.jit
def _cross_entropy(p, q):
  return -jnp.sum(jsp.xlogy(p, q), axis=-1)


def kl(p, q) -> jax.Array:
  """Kullback-Leibler divergence ``KL(p || q) = sum_i p_i log(p_i / q_i)`` over the last axis, nats.

  Args:
    p: ``(..., K)``.
    q: ``(..., K)`` (leading axes broadcast against p's).

  Returns:
    ``(...)``, non-negative; ``inf`` where ``q_i = 0 < p_i``.
  """
  p = _check_probabilities("kl: p", p, event_axes=(-1,))
  q = _check_probabilities("kl: q", q, event_axes=(-1,))
  _check_same_events("kl: p", p, "q", q, 1)
  return _kl(p, q)


@jax.jit
def _kl(p, q):
  return jnp.sum(jsp.rel_entr(p, q), axis=-1)


def binary_entropy(p) -> jax.Array:
  """Entropy of a Bernoulli(p) variable, ``-p log p - (1-p) log(1-p)``, element-wise, in nats."""
  return _binary_entropy(_check_unit_interval("binary_entropy: p", p))


@jax.jit
def _binary_entropy(p):
  return -jsp.xlogy(p, p) - jsp.xlog1py(1.0 - p, -p)


def binary_kl(p, q) -> jax.Array:
  """``KL(Bernoulli(p) || Bernoulli(q))``, element-wise, in nats (the ``kl`` of PAC-Bayes bounds).

  Args:
    p, q: probabilities in [0, 1], broadcast against each other.

  Returns:
    ``p log(p/q) + (1-p) log((1-p)/(1-q))``; ``inf`` where q puts zero mass on an outcome of p.
    Written as ``-p log1p((q-p)/p) - (1-p) log1p((p-q)/(1-p))``, whose rounding error scales with
    ``|q - p|``, so that it stays accurate (and positive) as ``q -> p``, as kl-inversion needs.
  """
  p = _check_unit_interval("binary_kl: p", p)
  q = _check_unit_interval("binary_kl: q", q)
  return _binary_kl(p, q)


@jax.jit
def _binary_kl(p, q):
  complement = 1.0 - p
  relative_up = (q - p) / jnp.where(p > 0, p, 1.0)
  relative_down = (p - q) / jnp.where(complement > 0, complement, 1.0)
  return -jsp.xlog1py(p, relative_up) - jsp.xlog1py(complement, relative_down)


# ----------------------------------------------------------------------------------------------
# Joint tables (last two axes: rows x, columns y).
# ----------------------------------------------------------------------------------------------


def mutual_information(p_xy) -> jax.Array:
  """Mutual information ``I(X; Y) = KL(p(x, y) || p(x) p(y))`` of a joint table, in nats.

  Args:
    p_xy: the joint distribution ``(..., |X|, |Y|)``, rows x and columns y, summing to 1.

  Returns:
    ``(...)``, with ``0 <= I <= min(H(X), H(Y))``.
  """
  return _mutual_information(
      _check_probabilities("mutual_information: p_xy", p_xy, event_axes=(-2, -1)))


@jax.jit
def _mutual_information(p_xy):
  p_x = jnp.sum(p_xy, axis=-1, keepdims=True)
  p_y = jnp.sum(p_xy, axis=-2, keepdims=True)
  return jnp.sum(jsp.rel_entr(p_xy, p_x * p_y), axis=(-2, -1))


def conditional_entropy(p_xy) -> jax.Array:
  """Conditional entropy ``H(Y | X) = -sum_{x,y} p(x, y) log p(y | x)`` of a joint table, in nats.

  Args:
    p_xy: the joint distribution ``(..., |X|, |Y|)``, rows x and columns y, summing to 1.

  Returns:
    ``(...)``; ``H(Y|X) = H(Y) - I(X; Y)``.
  """
  return _conditional_entropy(
      _check_probabilities("conditional_entropy: p_xy", p_xy, event_axes=(-2, -1)))


@jax.jit
def _conditional_entropy(p_xy):
  p_x = jnp.sum(p_xy, axis=-1, keepdims=True)
  return -jnp.sum(jsp.rel_entr(p_xy, p_x), axis=(-2, -1))


# ----------------------------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------------------------


@jax.jit
def gaussian_kl_elementwise(mean_q, log_var_q, mean_p, log_var_p) -> jax.Array:
  """Per-coordinate terms of ``KL(N(mean_q, diag e^log_var_q) || N(mean_p, diag e^log_var_p))``.

  ``0.5 [e^d - 1 - d + (mean_q - mean_p)^2 e^{-log_var_p}]`` with ``d = log_var_q - log_var_p``,
  written with ``expm1`` so that it stays accurate when the two variances nearly agree and finite
  when a variance under- or overflows. No validation and no summation: the building block of
  `gaussian_kl` and of the information in the weights.

  Args:
    mean_q, log_var_q, mean_p, log_var_p: arrays broadcast against each other.

  Returns:
    The broadcast shape; sum it over the coordinates for the KL.
  """
  log_ratio = log_var_q - log_var_p
  mahalanobis = jnp.square(mean_q - mean_p) * jnp.exp(-log_var_p)
  return 0.5 * (jnp.expm1(log_ratio) - log_ratio + mahalanobis)


def gaussian_kl(mean_q, var_q, mean_p, var_p, *, axis=-1) -> jax.Array:
  """``KL(N(mean_q, diag var_q) || N(mean_p, diag var_p))`` of diagonal Gaussians, in nats.

  ``0.5 sum_j [var_q/var_p + (mean_q - mean_p)^2/var_p - 1 + log var_p - log var_q]`` (science.md
  §0.5), summed over ``axis``.

  Args:
    mean_q, var_q: the first distribution's mean and variances, e.g. ``(..., d)``.
    mean_p, var_p: the second's, broadcast against the first (a scalar ``var_p`` is an isotropic
      prior ``N(mean_p, var_p I)``).
    axis: the coordinate axis or axes summed over: ``-1`` (default: one Gaussian per leading index,
      as for a batch of latent codes), a tuple of axes, or ``None`` for all axes (one Gaussian over
      the whole array, as for a weight tensor). Scalar arguments are one 1-D Gaussian.

  Returns:
    The KL with ``axis`` reduced.
  """
  mean_q = _as_float_array(mean_q)
  mean_p = _as_float_array(mean_p)
  var_q = _check_positive("gaussian_kl: var_q", var_q)
  var_p = _check_positive("gaussian_kl: var_p", var_p)
  ndim = max(x.ndim for x in (mean_q, var_q, mean_p, var_p))
  return _gaussian_kl(mean_q, var_q, mean_p, var_p, axis if ndim else None)


@functools.partial(jax.jit, static_argnums=4)
def _gaussian_kl(mean_q, var_q, mean_p, var_p, axis):
  terms = gaussian_kl_elementwise(mean_q, jnp.log(var_q), mean_p, jnp.log(var_p))
  return jnp.sum(terms, axis=axis)


def gaussian_kl_full(mean_q, cov_q, mean_p, cov_p) -> jax.Array:
  """``KL(N(mean_q, cov_q) || N(mean_p, cov_p))`` of full-covariance Gaussians, in nats.

  ``0.5 [tr(cov_p^-1 cov_q) + (m_p - m_q)^T cov_p^-1 (m_p - m_q) - d + log|cov_p| - log|cov_q|]``,
  computed from Cholesky factors (triangular solves, no explicit inverse).

  Args:
    mean_q: ``(..., d)``.
    cov_q: ``(..., d, d)``, symmetric positive definite.
    mean_p: ``(..., d)``.
    cov_p: ``(..., d, d)``, symmetric positive definite. Leading axes of all four broadcast.

  Returns:
    ``(...)``.

  Cost: two Cholesky factorisations and one triangular solve, ``O(d^3)`` per distribution pair.
  """
  mean_q = _as_float_array(mean_q)
  mean_p = _as_float_array(mean_p)
  cov_q = _as_float_array(cov_q)
  cov_p = _as_float_array(cov_p)
  dim = mean_q.shape[-1] if mean_q.ndim else None
  for name, mean, cov in (("q", mean_q, cov_q), ("p", mean_p, cov_p)):
    if mean.ndim < 1 or cov.ndim < 2 or mean.shape[-1] != dim or cov.shape[-2:] != (dim, dim):
      raise ValueError(
          f"gaussian_kl_full: mean_{name} must be (..., d) and cov_{name} (..., d, d) with one d; "
          f"got mean_q {mean_q.shape}, mean_{name} {mean.shape}, cov_{name} {cov.shape}.")
  divergence, factorised = _gaussian_kl_full(mean_q, cov_q, mean_p, cov_p)
  for name, ok in zip(("cov_q", "cov_p"), factorised):
    value = host_value(ok)
    if value is not None and not bool(value):
      raise ValueError(f"gaussian_kl_full: {name} must be symmetric positive definite.")
  return divergence


@jax.jit
def _gaussian_kl_full(mean_q, cov_q, mean_p, cov_p):
  """The KL, and whether each Cholesky factorisation succeeded (finite)."""
  dim = mean_q.shape[-1]
  chol_q = jnp.linalg.cholesky(cov_q)
  chol_p = jnp.linalg.cholesky(cov_p)
  factorised = (jnp.all(jnp.isfinite(chol_q)), jnp.all(jnp.isfinite(chol_p)))
  batch_shape = jnp.broadcast_shapes(chol_q.shape[:-2], chol_p.shape[:-2], mean_q.shape[:-1],
                                     mean_p.shape[:-1])
  chol_q = jnp.broadcast_to(chol_q, batch_shape + (dim, dim))
  chol_p = jnp.broadcast_to(chol_p, batch_shape + (dim, dim))
  difference = (jnp.broadcast_to(mean_p, batch_shape + (dim,))
                - jnp.broadcast_to(mean_q, batch_shape + (dim,)))
  # Columns of chol_p^-1 [chol_q, m_p - m_q] give the trace term and the Mahalanobis term at once.
  stacked = jnp.concatenate([chol_q, difference[..., None]], axis=-1)
  solved = jax.scipy.linalg.solve_triangular(chol_p, stacked, lower=True)
  trace_term = jnp.sum(jnp.square(solved[..., :dim]), axis=(-2, -1))
  mahalanobis = jnp.sum(jnp.square(solved[..., dim]), axis=-1)
  log_det_p = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_p, axis1=-2, axis2=-1)), axis=-1)
  log_det_q = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol_q, axis1=-2, axis2=-1)), axis=-1)
  return 0.5 * (trace_term + mahalanobis - dim + log_det_p - log_det_q), factorised


# ----------------------------------------------------------------------------------------------
# The same quantities in bits.
# ----------------------------------------------------------------------------------------------


def _in_bits(function):
  @functools.wraps(function)
  def function_in_bits(*args, **kwargs):
    return to_bits(function(*args, **kwargs))

  function_in_bits.__name__ = function_in_bits.__qualname__ = f"{function.__name__}_bits"
  function_in_bits.__doc__ = (f"`{function.__name__}` in bits (its value in nats divided by "
                              "log 2); same arguments.")
  return function_in_bits


entropy_bits = _in_bits(entropy)
cross_entropy_bits = _in_bits(cross_entropy)
kl_bits = _in_bits(kl)
binary_entropy_bits = _in_bits(binary_entropy)
binary_kl_bits = _in_bits(binary_kl)
mutual_information_bits = _in_bits(mutual_information)
conditional_entropy_bits = _in_bits(conditional_entropy)
gaussian_kl_bits = _in_bits(gaussian_kl)
gaussian_kl_full_bits = _in_bits(gaussian_kl_full)
