"""PAC-Bayes generalisation bounds, and the Dziugaite-Roy procedure that makes them non-vacuous.

For a prior P chosen before the data, a loss in [0, 1], m training examples and any
post-distribution Q, each bound holds with probability at least ``1 - delta`` over the draw of the
training set, simultaneously for all Q. ``kl`` is ``KL(Q || P)`` in nats;
``train_error``/``train_loss`` is the empirical risk of the stochastic predictor Q (a mean over the
m examples):

* `kl_bound`, Langford & Seeger (2001) in the form used by Dziugaite & Roy (2017):
  ``kl(e_hat || e) <= (KL + log(m/delta)) / (m - 1)``, inverted with `kl_inverse`;
* `mcallester_bound`: its Pinsker relaxation ``e_hat + sqrt((KL + log(m/delta)) / (2(m - 1)))``
  (McAllester 1999; Shalev-Shwartz & Ben-David 2014, Theorem 31.1);
* `catoni_bound`: ``(1 - exp(-C e_hat - (KL + log(1/delta))/m)) / (1 - exp(-C))`` for a fixed
  ``C > 0`` (Catoni 2007, Theorem 1.2.6);
* `linear_bound`: Achille & Soatto's form (science.md §2.3, §4.3),
  ``[1 / (1 - 1/(2 beta))] [e_hat + (beta/m)(KL + log(1/delta))]`` for ``beta > 1/2`` fixed in
  advance. This ``beta`` is the PAC one, ``N beta_mean`` in the information Lagrangian's mean-loss
  convention (see ``infojax.weights.convert_beta``); `clipped_loss_bound`: the same for a loss in
  ``[0, L_max]`` (clipped cross-entropy, ``beta > L_max/2``; science.md §3.2, Thm 5.5);
* `maurer_bound`: ``kl(e_hat || e) <= (KL + log(2 sqrt(m)/delta)) / m`` (Maurer 2004), the
  certificate of Perez-Ortiz et al. (2021, "Tighter risk certificates for neural networks"), with
  their smooth training relaxations `f_quad` and `f_lambda` (and `f_lambda_trade_off`).

`test_set_bound` is the reference every certificate is compared with: the binomial-tail bound on
the error of a fixed classifier from its held-out error count (Langford 2005).

Dziugaite & Roy, "Computing nonvacuous generalization bounds for deep (stochastic) neural networks
with many more parameters than training data" (UAI 2017; code gkdziugaite/pacbayes-opt), science.md
§11: the prior is ``N(w0, lambda I)`` (``lambda`` a variance, ``w0`` the initialisation) with
``lambda = c exp(-j/b)`` on a grid, paid for by a union bound over ``j``;
`dziugaite_roy_fit` optimises the mean, the per-weight variances and ``lambda`` on the Pinsker
surrogate ``surrogate_loss + sqrt(B_RE / 2)``; `dziugaite_roy_certificate` rounds ``j``, estimates
the stochastic network's error by Monte Carlo, bounds that estimate with a Chernoff (kl) bound and
inverts the kl once more: ``e(Q) <= kl^-1(kl^-1(e_mc, log(2/delta')/n), B_RE)``; `certify` does
that arithmetic for a ``lambda`` on the grid. `data_dependent_prior_certificate` is the same
certificate with a prior mean learned on a held-out part of the training set (`split_batch`;
Parrado-Hernandez et al. 2012, Dziugaite & Roy 2018, Perez-Ortiz et al. 2021), computed on the
rest only.

Validation: concrete (non-traced) arguments out of range raise a ``ValueError``; under ``jax.jit``
nothing is checked (`linear_bound` returns NaN for ``beta <= 1/2``).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infojax import info
from infojax._validation import host_value
from infojax.weights import posterior as posterior_lib

_BISECTION_STEPS = 64  # [q, 1] shrinks to 2**-64 < float64 resolution


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _float(x) -> jax.Array:
  x = jnp.asarray(x)
  return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check(name, x, condition, requirement) -> jax.Array:
  """Converts ``x`` to a float array; raises unless ``condition(host value)`` holds everywhere."""
  x = _float(x)
  host = host_value(x)
  if host is not None and host.size and not np.all(condition(host)):
    raise ValueError(f"{name} must {requirement}; got values in [{host.min()}, {host.max()}].")
  return x


def _in_unit_interval(name, x) -> jax.Array:
  return _check(name, x, lambda v: (v >= 0) & (v <= 1), "lie in [0, 1] (a bounded loss or error)")


def _non_negative(name, x) -> jax.Array:
  return _check(name, x, lambda v: v >= 0, "be non-negative")


def _confidence(name, delta) -> jax.Array:
  return _check(name, delta, lambda v: (v > 0) & (v < 1), "lie in (0, 1)")


def _count(name, value, minimum=1):
  host = host_value(value)
  if host is not None and (isinstance(value, bool) or host.ndim or int(host) != host
                           or host < minimum):
    raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
  return value


# ----------------------------------------------------------------------------------------------
# The inverse of the binary kl.
# ----------------------------------------------------------------------------------------------


def _largest_inside(inside, low, high):
  """The top of the final bracket of bisecting ``[low, high]`` for the largest ``p`` with
  ``inside(p)``, for a predicate true below a threshold and false above it (errs upward)."""

  def bisect(_, bracket):
    low, high = bracket
    middle = 0.5 * (low + high)
    ok = inside(middle)
    return jnp.where(ok, middle, low), jnp.where(ok, high, middle)

  return jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (low, high))[1]


@jax.custom_jvp
def _kl_inverse(q, c):
  high = _largest_inside(lambda p: info.binary_kl(q, p) <= c, q, jnp.ones_like(q))
  return jnp.where(c > 0, high, q)


@_kl_inverse.defjvp
def _kl_inverse_jvp(primals, tangents):
  q, c = primals
  dq, dc = tangents
  p = _kl_inverse(q, c)
  # Implicit differentiation of kl(q || p) = c: d kl/dp dp + d kl/dq dq = dc.
  regular = (c > 0) & (p > q) & (p < 1)
  interior = regular & (q > 0)
  p_safe = jnp.where(regular, p, 0.75)
  q_safe = jnp.where(interior, q, 0.5)
  p_for_q = jnp.where(interior, p, 0.75)
  dkl_dp = (p_safe - jnp.where(regular, q, 0.5)) / (p_safe * (1.0 - p_safe))
  dkl_dq = jnp.log(q_safe * (1.0 - p_for_q)) - jnp.log(p_for_q * (1.0 - q_safe))
  dp = jnp.where(regular, (dc - jnp.where(interior, dkl_dq * dq, 0.0)) / dkl_dp, 0.0)
  return p, dp


def kl_inverse(q, c) -> jax.Array:
  """``kl^-1(q, c) = sup {p in [q, 1] : kl(q || p) <= c}``, the upper inverse of the binary kl.

  ``kl(q || p) = q log(q/p) + (1-q) log((1-q)/(1-p))``. Solved by 64 bisection steps on ``[q, 1]``
  (``kl(q || .)`` increases there), returning the upper end of the final bracket, so that the
  remaining error errs upward (a bound stays a bound): within 1e-9 in float64 (tested against
  Brent's method), within float32 rounding in float32. ``kl^-1(q, 0) = q``,
  ``kl^-1(0, c) = 1 - exp(-c)``, ``kl^-1(1, c) = 1``, ``kl^-1(q, inf) = 1``.

  Differentiable by the implicit-function theorem: ``dp/dc = 1 / (d kl/dp)`` and
  ``dp/dq = -(d kl/dq) / (d kl/dp)``. Where ``c = 0``, ``p = 1`` or (for ``dq``) ``q = 0`` the
  derivative is singular or infinite, and the tangent is set to 0.

  Args:
    q: an empirical risk in [0, 1], any shape.
    c: a kl budget >= 0, broadcast against ``q``.

  Returns:
    The broadcast shape, in [q, 1].

  Cost: 64 evaluations of the binary kl per element.
  """
  q = _in_unit_interval("kl_inverse: q", q)
  c = _non_negative("kl_inverse: c", c)
  dtype = jnp.result_type(q, c)
  return _broadcast_kl_inverse(q.astype(dtype), c.astype(dtype))


@jax.jit
def _broadcast_kl_inverse(q, c):
  shape = jnp.broadcast_shapes(q.shape, c.shape)
  return _kl_inverse(jnp.broadcast_to(q, shape), jnp.broadcast_to(c, shape))


# ----------------------------------------------------------------------------------------------
# Bounds.
# ----------------------------------------------------------------------------------------------


def _bound_inputs(train_loss, kl, num_examples, delta):
  return (_in_unit_interval("train_loss", train_loss), _non_negative("kl", kl),
          _count("num_examples", num_examples, minimum=2), _confidence("delta", delta))


def kl_bound(train_error, kl, num_examples, *, delta) -> jax.Array:
  """The PAC-Bayes-kl bound ``kl^-1(e_hat, (KL + log(m/delta)) / (m - 1))`` on the risk of Q.

  Langford & Seeger (2001), as used by Dziugaite & Roy (2017) before their union bound (§11.1).

  Args:
    train_error: ``e_hat``, the empirical risk of Q in [0, 1].
    kl: ``KL(Q || P)``, nats.
    num_examples: m >= 2.
    delta: the confidence parameter in (0, 1).

  Returns:
    The bound, in [e_hat, 1].
  """
  train_error, kl, m, delta = _bound_inputs(train_error, kl, num_examples, delta)
  return kl_inverse(train_error, (kl + jnp.log(m / delta)) / (m - 1))


def mcallester_bound(train_loss, kl, num_examples, *, delta) -> jax.Array:
  """McAllester's bound ``e_hat + sqrt((KL + log(m/delta)) / (2(m - 1)))``.

  The Pinsker relaxation of `kl_bound` (McAllester 1999; Shalev-Shwartz & Ben-David 2014, Thm 31.1).

  Args:
    train_loss: the empirical risk of Q in [0, 1].
    kl, num_examples, delta: as in `kl_bound`.

  Returns:
    The bound (may exceed 1, i.e. be vacuous).
  """
  train_loss, kl, m, delta = _bound_inputs(train_loss, kl, num_examples, delta)
  return train_loss + jnp.sqrt((kl + jnp.log(m / delta)) / (2.0 * (m - 1)))


def catoni_bound(train_loss, kl, num_examples, *, delta, trade_off) -> jax.Array:
  """Catoni's bound ``(1 - exp(-C e_hat - (KL + log(1/delta))/m)) / (1 - exp(-C))``.

  Catoni (2007), "PAC-Bayesian supervised classification", Theorem 1.2.6; ``C`` must be fixed before
  seeing the data (or paid for with a union bound).

  Args:
    train_loss: the empirical risk of Q in [0, 1].
    kl, num_examples, delta: as in `kl_bound`.
    trade_off: Catoni's ``C > 0``.

  Returns:
    The bound, in [0, 1].
  """
  train_loss, kl, m, delta = _bound_inputs(train_loss, kl, num_examples, delta)
  trade_off = _check("trade_off (Catoni's C)", trade_off, lambda v: v > 0, "be positive")
  exponent = -trade_off * train_loss - (kl + jnp.log(1.0 / delta)) / m
  return jnp.expm1(exponent) / jnp.expm1(-trade_off)


def linear_bound(train_loss, kl, num_examples, *, beta, delta) -> jax.Array:
  """Achille & Soatto's linear PAC-Bayes bound, ``beta > 1/2`` fixed in advance.

  ``L_test(Q) <= [1 / (1 - 1/(2 beta))] [E_Q L_D + (beta/N)(KL(Q||P) + log(1/delta))]``
  ("Where is the information in a deep neural network?", Theorem 2.2; science.md §2.3). Minimising
  the right-hand side over Q is the information Lagrangian with ``beta_mean = beta / N``.

  Args:
    train_loss: ``E_Q L_D``, the empirical risk of Q (mean loss) in [0, 1].
    kl: ``KL(Q || P)``, nats.
    num_examples: N >= 2.
    beta: the PAC trade-off, > 1/2 (the summed-loss ``beta``).
    delta: the confidence parameter in (0, 1).

  Returns:
    The bound; NaN where ``beta <= 1/2`` under jit.
  """
  train_loss, kl, n, delta = _bound_inputs(train_loss, kl, num_examples, delta)
  beta = _check("linear_bound: beta", beta, lambda v: v > 0.5,
                "exceed 1/2 (the factor 1/(1 - 1/(2 beta)) is undefined or negative otherwise)")
  value = (train_loss + beta / n * (kl + jnp.log(1.0 / delta))) / (1.0 - 0.5 / beta)
  return jnp.where(beta > 0.5, value, jnp.nan)


def clipped_loss_bound(train_loss, kl, num_examples, *, beta, delta, max_loss) -> jax.Array:
  """The linear bound for a loss in ``[0, L_max]``, e.g. cross-entropy clipped at ``L_max``.

  ``L_test(Q) <= [1 / (1 - L_max/(2 beta))] [E_Q L_D + (beta/N)(KL(Q||P) + log(1/delta))]`` for
  ``beta > L_max / 2`` fixed in advance (science.md §3.2, Thm 5.5 with the clipped cross-entropy):
  `linear_bound` applied to ``L / L_max`` at ``beta / L_max``, times ``L_max``. So the quantity the
  information Lagrangian minimises (summed-loss ``beta``) is certified for the clipped loss.

  Args:
    train_loss: ``E_Q L_D``, the mean clipped loss of Q, in ``[0, max_loss]``.
    kl: ``KL(Q || P)``, nats.
    num_examples: N >= 2.
    beta: the PAC trade-off, > ``max_loss / 2``.
    delta: the confidence parameter in (0, 1).
    max_loss: ``L_max > 0``, the clipping level (nats for cross-entropy).

  Returns:
    The bound on the expected clipped loss; NaN where ``beta <= max_loss / 2`` under jit.
  """
  max_loss = _check("clipped_loss_bound: max_loss", max_loss, lambda v: v > 0, "be positive")
  scaled = _check("train_loss", _float(train_loss) / max_loss, lambda v: (v >= 0) & (v <= 1),
                  "lie in [0, max_loss] (divided by max_loss, the values must lie in [0, 1])")
  beta = _check("clipped_loss_bound: beta", _float(beta) / max_loss, lambda v: v > 0.5,
                "exceed max_loss / 2 (divided by max_loss, the values must exceed 1/2)")
  return max_loss * linear_bound(scaled, kl, num_examples, beta=beta, delta=delta)


# ----------------------------------------------------------------------------------------------
# Perez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvari (2021), "Tighter risk certificates for neural
# networks" (JMLR 2021): the Maurer kl bound and its two training relaxations.
# ----------------------------------------------------------------------------------------------


def _maurer_budget(kl, num_examples, delta):
  """``(KL + log(2 sqrt(n) / delta)) / n``."""
  return (kl + jnp.log(2.0 * jnp.sqrt(num_examples) / delta)) / num_examples


def _maurer_inputs(train_error, kl, num_examples, delta):
  return (_in_unit_interval("train_error", train_error), _non_negative("kl", kl),
          _count("num_examples", num_examples, minimum=8), _confidence("delta", delta))


def maurer_bound(train_error, kl, num_examples, *, delta) -> jax.Array:
  """The PAC-Bayes-kl bound ``kl^-1(e_hat, (KL + log(2 sqrt(n)/delta)) / n)`` (Maurer 2004).

  The certificate of Perez-Ortiz et al. (2021; Maurer's form, valid for ``n >= 8``), tighter than
  `kl_bound`'s ``log(n/delta) / (n - 1)`` for large n. Differentiable through `kl_inverse`.

  Args:
    train_error: ``e_hat``, the empirical risk of Q in [0, 1].
    kl: ``KL(Q || P)``, nats.
    num_examples: n >= 8.
    delta: the confidence parameter in (0, 1).

  Returns:
    The bound, in [e_hat, 1].
  """
  train_error, kl, n, delta = _maurer_inputs(train_error, kl, num_examples, delta)
  return kl_inverse(train_error, _maurer_budget(kl, n, delta))


def f_quad(train_loss, kl, num_examples, *, delta) -> jax.Array:
  """``(sqrt(e_hat + B/2) + sqrt(B/2))^2``, ``B = (KL + log(2 sqrt(n)/delta)) / n``.

  Perez-Ortiz et al. (2021), the ``f_quad`` training objective: an upper bound on
  `maurer_bound` (from ``kl(q||p) >= (p - q)^2 / (2p)``), smooth in all arguments, tighter than
  the Pinsker form ``e_hat + sqrt(B/2)`` when ``e_hat`` is small.

  Args:
    train_loss: the empirical risk of Q in [0, 1] (a surrogate in training).
    kl, num_examples, delta: as in `maurer_bound`.

  Returns:
    The objective (may exceed 1).
  """
  train_loss, kl, n, delta = _maurer_inputs(train_loss, kl, num_examples, delta)
  half_budget = _maurer_budget(kl, n, delta) / 2.0
  return (jnp.sqrt(train_loss + half_budget) + jnp.sqrt(half_budget)) ** 2


def f_lambda(train_loss, kl, num_examples, *, delta, trade_off) -> jax.Array:
  """``e_hat / (1 - l/2) + B / (l (1 - l/2))`` for ``l`` in (0, 2): the ``f_lambda`` objective.

  Perez-Ortiz et al. (2021; Thiemann et al. 2017): with ``B = (KL + log(2 sqrt(n)/delta)) / n``
  it upper-bounds `maurer_bound` for every ``l`` in (0, 2), so ``l`` may be optimised jointly
  with Q (no union bound needed: only the final `maurer_bound` is the certificate). Its minimiser
  over ``l`` is `f_lambda_trade_off`.

  Args:
    train_loss: the empirical risk of Q in [0, 1].
    kl, num_examples, delta: as in `maurer_bound`.
    trade_off: ``l`` in (0, 2).

  Returns:
    The objective; NaN where ``l`` is outside (0, 2) under jit.
  """
  train_loss, kl, n, delta = _maurer_inputs(train_loss, kl, num_examples, delta)
  trade_off = _check("f_lambda: trade_off", trade_off, lambda v: (v > 0) & (v < 2),
                     "lie in (0, 2)")
  shrink = 1.0 - trade_off / 2.0
  value = train_loss / shrink + _maurer_budget(kl, n, delta) / (trade_off * shrink)
  return jnp.where((trade_off > 0) & (trade_off < 2), value, jnp.nan)


def f_lambda_trade_off(train_loss, kl, num_examples, *, delta) -> jax.Array:
  """``l* = 2 / (sqrt(2 e_hat / B + 1) + 1)``, the minimiser of `f_lambda` over ``l``.

  Thiemann et al. (2017), the closed-form step of the alternating minimisation (Perez-Ortiz et al.
  2021 optimise ``l`` by gradient instead); ``B`` as in `f_lambda`.
  """
  train_loss, kl, n, delta = _maurer_inputs(train_loss, kl, num_examples, delta)
  return 2.0 / (jnp.sqrt(2.0 * train_loss / _maurer_budget(kl, n, delta) + 1.0) + 1.0)


# ----------------------------------------------------------------------------------------------
# The test-set bound (Langford 2005): the reference for every certificate.
# ----------------------------------------------------------------------------------------------


def _binomial_cdf(k, n, p):
  """``P[Binomial(n, p) <= k] = I_{1-p}(n - k, k + 1)``; 1 where ``k >= n``."""
  below = k < n
  return jnp.where(below, jax.scipy.special.betainc(jnp.where(below, n - k, 1.0), k + 1.0, 1.0 - p),
                   1.0)


@jax.jit
def _test_set_bound(k, n, delta):
  shape = jnp.broadcast_shapes(k.shape, n.shape, delta.shape)
  k, n, delta = (jnp.broadcast_to(x, shape) for x in (k, n, delta))

  # At k = n the CDF is 1 for every p, so the bracket's top stays at 1.
  return _largest_inside(lambda p: _binomial_cdf(k, n, p) >= delta, jnp.zeros_like(k),
                         jnp.ones_like(k))


def test_set_bound(num_errors, num_examples, *, delta) -> jax.Array:
  """The binomial-tail bound ``sup {p : P[Binomial(n, p) <= k] >= delta}`` on the true error.

  Langford (2005), "Tutorial on practical prediction theory for classification" (JMLR): for
  a classifier fixed before ``n`` i.i.d. held-out examples on which it makes ``k`` errors, the
  true error is at most this with probability >= ``1 - delta`` (the one-sided Clopper-Pearson
  limit). The binomial CDF decreases in ``p``; 64 bisection steps on [0, 1] return the upper end
  of the final bracket (errs upward). ``k = 0`` gives ``1 - delta^(1/n)``; ``k = n`` gives 1.

  Args:
    num_errors: k, integers in [0, num_examples], any shape.
    num_examples: n >= 1, broadcast against ``num_errors``.
    delta: the confidence parameter in (0, 1), broadcast.

  Returns:
    The broadcast shape, in [k/n, 1]; float64 under x64 (float32 resolves the CDF to ~1e-7).

  Cost: 64 regularised incomplete beta evaluations per element.
  """
  k = _check("num_errors", num_errors, lambda v: (v >= 0) & (v == np.round(v)),
             "be non-negative integers (error counts)")
  n = _check("num_examples", num_examples, lambda v: (v >= 1) & (v == np.round(v)),
             "be integers >= 1")
  host_k, host_n = host_value(k), host_value(n)
  if host_k is not None and host_n is not None and np.any(host_k > host_n):
    raise ValueError("num_errors must not exceed num_examples.")
  delta = _confidence("delta", delta)
  dtype = jnp.result_type(k, n, delta)
  return _test_set_bound(k.astype(dtype), n.astype(dtype), delta.astype(dtype))


# ----------------------------------------------------------------------------------------------
# Dziugaite & Roy (2017): the union bound over the prior variance and the certificate.
# ----------------------------------------------------------------------------------------------


def prior_variance_index(prior_variance, *, b: float = 100.0, c: float = 0.1) -> jax.Array:
  """``j = b log(c / lambda)``, the (continuous) grid index of the prior variance ``lambda``."""
  return b * (math.log(c) - jnp.log(_float(prior_variance)))


def prior_variance_from_index(index, *, b: float = 100.0, c: float = 0.1) -> jax.Array:
  """``lambda = c exp(-j / b)``, the prior variance on the Dziugaite-Roy grid."""
  return c * jnp.exp(-_float(index) / b)


def _check_grid(prior_variance, b, c) -> jax.Array:
  """The grid index of ``prior_variance``, checked to be >= 1 (the union bound starts at j = 1)."""
  largest = c * math.exp(-1.0 / b)
  prior_variance = _check(
      "prior_variance", prior_variance, lambda v: (v > 0) & (v <= largest * (1 + 1e-6)),
      f"be positive and at most c exp(-1/b) = {largest:.6g} (grid index j = b log(c / lambda) >= 1 "
      "for the union bound over j; 1e-6 relative slack for rounding)")
  return jnp.maximum(prior_variance_index(prior_variance, b=b, c=c), 1.0)


_GRID_TOLERANCE = 1e-3  # |j - round(j)| accepted as on the grid (float32 rounding of j)


def _check_on_grid(prior_variance, b, c) -> jax.Array:
  """The rounded grid index of ``prior_variance``; raises unless it is an integer j >= 1."""
  index = _check_grid(prior_variance, b, c)
  host = host_value(index)
  if host is not None and np.any(np.abs(host - np.round(host)) > _GRID_TOLERANCE):
    raise ValueError(
        "prior_variance must lie on the union-bound grid c exp(-j/b) with j = 1, 2, ... (b = "
        f"{b}, c = {c}); got grid indices j = b log(c / prior_variance) in [{host.min()}, "
        f"{host.max()}]. Round j (prior_variance_from_index(round(j))) and recompute the KL.")
  return jnp.round(index)


def _bre_from_index(kl, num_examples, delta, index):
  union = 2.0 * jnp.log(index)
  return (kl + union + jnp.log(math.pi ** 2 * num_examples / (6.0 * delta))) / (num_examples - 1)


def union_bound_term(prior_variance, *, b: float = 100.0, c: float = 0.1) -> jax.Array:
  """``2 log(b log(c / lambda)) = 2 log j``, the union bound's price for choosing ``lambda``.

  Choosing ``lambda = c exp(-j/b)`` after seeing the data is paid for by a union bound that spends
  ``6 delta / (pi^2 j^2)`` on grid point ``j``.

  Args:
    prior_variance: ``lambda`` (a variance), at most ``c exp(-1/b)``.
    b, c: the grid's resolution and largest variance (Dziugaite & Roy: 100 and 0.1).

  Returns:
    Nats, the shape of ``prior_variance``.
  """
  return 2.0 * jnp.log(_check_grid(prior_variance, b, c))


def dziugaite_roy_bre(kl, num_examples, *, delta, prior_variance, b: float = 100.0,
                      c: float = 0.1) -> jax.Array:
  """``B_RE = [KL + 2 log(b log(c/lambda)) + log(pi^2 m/(6 delta))] / (m-1)`` (science.md §11.1).

  The right-hand side of the union-bounded PAC-Bayes-kl bound ``kl(e_hat || e) <= B_RE``, with
  ``KL`` to the prior ``N(w0, lambda I)`` (code gkdziugaite/pacbayes-opt, ``PACB_objective``). The
  union bound holds for integer grid indices ``j``; the certificate rounds ``j``.

  Args:
    kl: ``KL(Q || N(w0, lambda I))``, nats.
    num_examples: m >= 2.
    delta: the confidence parameter in (0, 1).
    prior_variance: ``lambda``, at most ``c exp(-1/b)``.
    b, c: the grid.

  Returns:
    ``B_RE``.
  """
  kl = _non_negative("kl", kl)
  num_examples = _count("num_examples", num_examples, minimum=2)
  delta = _confidence("delta", delta)
  return _bre_from_index(kl, num_examples, delta, _check_grid(prior_variance, b, c))


def pinsker_bound(train_error, bre) -> jax.Array:
  """``e_hat + sqrt(B_RE / 2)``: the Pinsker relaxation of ``kl^-1(e_hat, B_RE)`` (never below)."""
  return (_in_unit_interval("train_error", train_error)
          + jnp.sqrt(_non_negative("bre", bre) / 2.0))


def monte_carlo_error_bound(estimated_error, num_samples, *, delta) -> jax.Array:
  """A high-probability upper bound on ``e_hat(Q)`` from ``n`` sampled networks (Chernoff, kl form).

  ``kl^-1(e_mc, log(2/delta') / n)`` (Dziugaite & Roy, §11.1; Langford & Caruana 2002).

  Args:
    estimated_error: ``e_mc``, the mean training error of ``n`` networks drawn from Q.
    num_samples: n.
    delta: ``delta'``, the confidence spent on the Monte-Carlo estimate.

  Returns:
    The bound on the empirical risk of Q.
  """
  estimated_error = _in_unit_interval("estimated_error", estimated_error)
  n = _count("num_samples", num_samples)
  delta = _confidence("delta", delta)
  return kl_inverse(estimated_error, jnp.log(2.0 / delta) / n)


def dziugaite_roy_objective(surrogate_loss, kl, num_examples, *, delta, prior_variance,
                            b: float = 100.0, c: float = 0.1) -> jax.Array:
  """The optimised objective ``surrogate_loss + sqrt(B_RE / 2)`` (science.md §11.1).

  ``B_RE`` uses the continuous grid index ``j = b log(c/lambda)``, clipped at 1 from below, so that
  the objective stays defined wherever the optimiser moves ``lambda``.

  Args:
    surrogate_loss: a differentiable upper bound on the 0-1 error (e.g. logistic loss / log 2).
    kl, num_examples, delta, prior_variance, b, c: as in `dziugaite_roy_bre`.

  Returns:
    A scalar.
  """
  index = jnp.maximum(prior_variance_index(prior_variance, b=b, c=c), 1.0)
  return surrogate_loss + jnp.sqrt(_bre_from_index(kl, num_examples, delta, index) / 2.0)


def dziugaite_roy_fit(surrogate_loss_fn, *, num_examples: int,
                      optimizer: optax.GradientTransformation, prior_mean, delta=0.025,
                      num_samples: int = 1, b: float = 100.0,
                      c: float = 0.1) -> posterior_lib.PosteriorFit:
  """Optimises a Gaussian Q and the prior variance on the Dziugaite-Roy PAC-Bayes objective.

  Dziugaite & Roy (2017): minimise `dziugaite_roy_objective`, ``E_Q surrogate + sqrt(B_RE/2)``, over
  the mean, the log-variances and ``log lambda`` (projected onto ``lambda <= c exp(-1/b)``, the top
  of the grid, after each step), with one reparameterised weight draw per step. Their defaults:
  RMSProp, learning rate 1e-3; the mean starts at the SGD solution, the standard deviations at
  ``2|w|`` (``gaussian_posterior(w, (2 w)**2 + tiny)``), ``lambda`` at ``exp(-6)``; their objective
  used ``delta = 0.05``. This is `infojax.weights.posterior.gaussian_posterior_fit` with the
  PAC-Bayes penalty; run it with ``infojax.weights.fit``.

  Args:
    surrogate_loss_fn: ``surrogate_loss_fn(params, batch) -> scalar``, the mean surrogate loss.
    num_examples: m, the size of the training set.
    optimizer: an optax transformation, e.g. ``optax.rmsprop(1e-3)``.
    prior_mean: ``w0``, the initialisation (a pytree like the weights; ``None`` for zero).
    delta: the confidence parameter in the objective.
    num_samples: weight draws per step.
    b, c: the prior-variance grid.

  Returns:
    A `PosteriorFit` (``init(posterior, key, prior_variance=...)``, ``update``, ``information``).
  """
  num_examples = _count("num_examples", num_examples, minimum=2)
  delta = _confidence("delta", delta)

  def penalty(kl, prior_variance):
    return dziugaite_roy_objective(0.0, kl, num_examples, delta=delta,
                                   prior_variance=prior_variance, b=b, c=c)

  return posterior_lib.gaussian_posterior_fit(
      surrogate_loss_fn, penalty, optimizer=optimizer, prior_mean=prior_mean,
      num_samples=num_samples, learn_prior_variance=True,
      max_prior_variance=prior_variance_from_index(1.0, b=b, c=c))


class Certificate(NamedTuple):
  """Every term of a Dziugaite-Roy PAC-Bayes certificate (nats for KL; rates in [0, 1]).

  Attributes:
    train_error: ``e_mc``, the mean training error of the sampled networks.
    monte_carlo_error_bound: ``kl^-1(e_mc, log(2/delta')/n)`` >= the empirical risk of Q.
    kl: ``KL(Q || N(w0, lambda I))`` at the certified ``lambda``.
    prior_variance: the certified ``lambda = c exp(-j/b)``.
    prior_variance_index: ``j``, the integer grid index of ``prior_variance`` (see `certify`).
    b_re: `dziugaite_roy_bre`.
    bound: ``kl^-1(monte_carlo_error_bound, b_re)``, the certified bound on the risk of Q.
    pinsker_bound: ``monte_carlo_error_bound + sqrt(b_re / 2)`` (looser; for comparison).
    delta: the confidence spent on the PAC-Bayes bound.
    delta_monte_carlo: ``delta'``, spent on the Monte-Carlo estimate.
    total_delta: ``delta + delta'``; the bound holds with probability >= ``1 - total_delta``.
    num_examples: m.
    num_mc_samples: n.
  """
  train_error: jax.Array
  monte_carlo_error_bound: jax.Array
  kl: jax.Array
  prior_variance: jax.Array
  prior_variance_index: jax.Array
  b_re: jax.Array
  bound: jax.Array
  pinsker_bound: jax.Array
  delta: float
  delta_monte_carlo: float
  total_delta: float
  num_examples: int
  num_mc_samples: int


def certify(train_error, num_mc_samples: int, kl, num_examples: int, *, prior_variance,
            delta=0.025, delta_monte_carlo=0.01, b: float = 100.0, c: float = 0.1) -> Certificate:
  """The certificate's arithmetic from its ingredients (no sampling).

  The union bound behind ``B_RE`` covers only the grid ``lambda = c exp(-j/b)``, ``j = 1, 2, ...``,
  so ``prior_variance`` must lie on it: an index ``j = b log(c / prior_variance)`` more than 1e-3
  from an integer (the slack covers float32 rounding of ``j`` down to ``lambda = c e^-20``) raises
  a ``ValueError`` (round ``j`` first, as `dziugaite_roy_certificate` does, and recompute the KL
  there). A traced ``prior_variance`` cannot be checked: the caller vouches for it.

  Args:
    train_error: ``e_mc``, the mean 0-1 training error of ``num_mc_samples`` networks drawn from Q.
    num_mc_samples: n.
    kl: ``KL(Q || N(w0, prior_variance I))``.
    num_examples: m.
    prior_variance: ``lambda``.
    delta, delta_monte_carlo: the confidence split.
    b, c: the grid.

  Returns:
    A `Certificate`.
  """
  index = _check_on_grid(prior_variance, b, c)
  mc_bound = monte_carlo_error_bound(train_error, num_mc_samples, delta=delta_monte_carlo)
  bre = _bre_from_index(_non_negative("kl", kl), _count("num_examples", num_examples, minimum=2),
                        _confidence("delta", delta), index)
  return Certificate(
      train_error=_float(train_error), monte_carlo_error_bound=mc_bound, kl=_float(kl),
      prior_variance=_float(prior_variance), prior_variance_index=index, b_re=bre,
      bound=kl_inverse(mc_bound, bre), pinsker_bound=pinsker_bound(mc_bound, bre), delta=delta,
      delta_monte_carlo=delta_monte_carlo, total_delta=delta + delta_monte_carlo,
      num_examples=num_examples, num_mc_samples=num_mc_samples)


def dziugaite_roy_certificate(error_fn, posterior: posterior_lib.GaussianPosterior, batch, *,
                              num_examples: int, prior_mean, prior_variance, key: jax.Array,
                              num_mc_samples: int, delta=0.025, delta_monte_carlo=0.01,
                              b: float = 100.0, c: float = 0.1) -> Certificate:
  """Certifies the risk of a Gaussian Q with the Dziugaite-Roy procedure (science.md §11.1).

  1. Round the grid index ``j = b log(c/lambda)`` of the optimised prior variance down and up
     (at least 1) and keep the one with the smaller ``B_RE`` (the union bound covers every integer
     ``j``); the KL is recomputed at that ``lambda``.
  2. Estimate the training error of Q with ``num_mc_samples`` sampled networks.
  3. Bound it with the Chernoff kl bound at ``delta_monte_carlo`` and invert ``B_RE``.

  Args:
    error_fn: ``error_fn(params, batch) -> scalar``, the 0-1 error of one network on the whole
      training set (a mean in [0, 1]).
    posterior: the optimised `GaussianPosterior` (e.g. ``state.posterior``).
    batch: the training set, passed to ``error_fn``.
    num_examples: m, the number of training examples in ``batch``.
    prior_mean: ``w0`` (the initialisation), a pytree like the weights; ``None`` for zero.
    prior_variance: the optimised ``lambda`` (e.g. ``jnp.exp(state.log_prior_variance)``).
    key: a PRNG key for the network draws.
    num_mc_samples: n, the number of sampled networks.
    delta, delta_monte_carlo: the confidence split (Dziugaite & Roy: 0.025 and 0.01).
    b, c: the grid.

  Returns:
    A `Certificate`.

  Cost: ``num_mc_samples`` evaluations of ``error_fn`` (sequential, memory of one). The sampling
  loop compiles once per ``error_fn`` object, ``num_mc_samples`` and batch shape: repeated calls
  with the same ``error_fn`` reuse it (a new lambda per call would recompile).
  """
  index = float(prior_variance_index(prior_variance, b=b, c=c))
  best = None
  for rounded in sorted({max(1, math.floor(index)), max(1, math.ceil(index))}):
    variance = prior_variance_from_index(rounded, b=b, c=c)
    kl = posterior_lib.total(posterior_lib.kl_per_weight(posterior, prior_variance=variance,
                                                         prior_mean=prior_mean))
    bre = dziugaite_roy_bre(kl, num_examples, delta=delta, prior_variance=variance, b=b, c=c)
    if best is None or float(bre) < best[0]:
      best = (float(bre), variance, kl)
  _, variance, kl = best
  errors = _sampled_errors(error_fn, posterior, batch, key, num_samples=num_mc_samples)
  return certify(jnp.mean(errors), num_mc_samples, kl, num_examples, prior_variance=variance,
                 delta=delta, delta_monte_carlo=delta_monte_carlo, b=b, c=c)


@functools.partial(jax.jit, static_argnums=0, static_argnames="num_samples")
def _sampled_errors(error_fn, posterior, batch, key, *, num_samples):
  """`posterior_lib.sampled_losses`, compiled once per ``error_fn`` (hashed by identity)."""
  return posterior_lib.sampled_losses(error_fn, posterior, batch, key=key, num_samples=num_samples)


# ----------------------------------------------------------------------------------------------
# Data-dependent priors (Parrado-Hernandez et al. 2012; Dziugaite & Roy 2018; Perez-Ortiz et al.
# 2021): the prior is learned on one part of the training set, the bound computed on the rest.
# ----------------------------------------------------------------------------------------------


def split_batch(batch, num_prior_examples: int):
  """Splits a training set into the prior's part (the first examples) and the bound's part.

  The split must be fixed before the data are seen (e.g. after a shuffle with a fixed key): it is
  not paid for by any union bound. Learn the prior mean on the first part only; the bound then
  holds for any Q (which may use the whole set) with the empirical risk of the second part.

  Args:
    batch: a pytree whose leaves share the leading (example) axis N.
    num_prior_examples: the number of examples the prior may see, in [1, N - 2].

  Returns:
    ``(prior_batch, bound_batch)``: the leaves' first ``num_prior_examples`` and remaining
    ``N - num_prior_examples`` rows.
  """
  sizes = {leaf.shape[0] for leaf in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(f"batch: every leaf must share its leading (example) axis; got sizes {sizes}.")
  (size,) = sizes
  num_prior_examples = _count("num_prior_examples", num_prior_examples)
  if num_prior_examples > size - 2:
    raise ValueError(f"num_prior_examples must leave at least 2 examples for the bound; got "
                     f"{num_prior_examples} of {size}.")
  return (jax.tree.map(lambda leaf: leaf[:num_prior_examples], batch),
          jax.tree.map(lambda leaf: leaf[num_prior_examples:], batch))


def data_dependent_prior_certificate(error_fn, posterior: posterior_lib.GaussianPosterior, batch,
                                     *, num_prior_examples: int, prior_mean, prior_variance,
                                     key: jax.Array, num_mc_samples: int, delta=0.025,
                                     delta_monte_carlo=0.01, b: float = 100.0,
                                     c: float = 0.1) -> Certificate:
  """The Dziugaite-Roy certificate with a prior mean learned on held-out training examples.

  Parrado-Hernandez et al. (2012), Dziugaite & Roy (2018), Perez-Ortiz et al. (2021): the prior
  ``N(prior_mean, lambda I)`` may depend on ``split_batch(batch, num_prior_examples)[0]``; the
  bound is `dziugaite_roy_certificate` on the other part only, with ``m = N - num_prior_examples``
  (the examples the prior did not see), so that a closer prior (smaller KL) is paid for by a
  smaller m. ``lambda`` is still chosen on the Dziugaite-Roy grid under its union bound.

  Args:
    error_fn: ``error_fn(params, batch) -> scalar``, the mean 0-1 error of one network on a batch.
    posterior: the `GaussianPosterior` Q (trained on any part of ``batch``).
    batch: the whole training set, a pytree with leading axis N; its first ``num_prior_examples``
      examples are the prior's.
    num_prior_examples: the size of the prior's part, in [1, N - 2].
    prior_mean: the prior mean, learned on the prior's part only (a pytree like the weights).
    prior_variance, key, num_mc_samples, delta, delta_monte_carlo, b, c: as in
      `dziugaite_roy_certificate`.

  Returns:
    A `Certificate` whose ``num_examples`` is ``N - num_prior_examples``.

  Cost: as `dziugaite_roy_certificate` on ``N - num_prior_examples`` examples.
  """
  _, bound_batch = split_batch(batch, num_prior_examples)
  return dziugaite_roy_certificate(
      error_fn, posterior, bound_batch, num_examples=jax.tree.leaves(bound_batch)[0].shape[0],
      prior_mean=prior_mean, prior_variance=prior_variance, key=key,
      num_mc_samples=num_mc_samples, delta=delta, delta_monte_carlo=delta_monte_carlo, b=b, c=c)
