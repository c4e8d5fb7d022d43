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
  convention (see ``infojax.weights.convert_beta``).

Dziugaite & Roy, "Computing nonvacuous generalization bounds for deep (stochastic) neural networks
with many more parameters than training data" (UAI 2017; code gkdziugaite/pacbayes-opt), science.md
§11: the prior is ``N(w0, lambda I)`` (``lambda`` a variance, ``w0`` the initialisation) with
``lambda = c exp(-j/b)`` on a grid, paid for by a union bound over ``j``;
`dziugaite_roy_fit` optimises the mean, the per-weight variances and ``lambda`` on the Pinsker
surrogate ``surrogate_loss + sqrt(B_RE / 2)``; `dziugaite_roy_certificate` rounds ``j``, estimates
the stochastic network's error by Monte Carlo, bounds that estimate with a Chernoff (kl) bound and
inverts the kl once more: ``e(Q) <= kl^-1(kl^-1(e_mc, log(2/delta')/n), B_RE)``.

Validation: concrete (non-traced) arguments out of range raise a ``ValueError``; under ``jax.jit``
nothing is checked (`linear_bound` returns NaN for ``beta <= 1/2``).
"""

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


@jax.custom_jvp
def _kl_inverse(q, c):
  def bisect(_, bracket):
    low, high = bracket
    middle = 0.5 * (low + high)
    inside = info.binary_kl(q, middle) <= c
    return jnp.where(inside, middle, low), jnp.where(inside, high, middle)

  _, high = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (q, jnp.ones_like(q)))
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
    prior_variance_index: ``j`` (an integer after `dziugaite_roy_certificate`'s rounding).
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

  Valid as a bound when ``b log(c / prior_variance)`` is an integer (`dziugaite_roy_certificate`
  rounds it); with a non-integer index it reproduces the numbers of a continuous ``lambda``.

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
  mc_bound = monte_carlo_error_bound(train_error, num_mc_samples, delta=delta_monte_carlo)
  bre = dziugaite_roy_bre(kl, num_examples, delta=delta, prior_variance=prior_variance, b=b, c=c)
  return Certificate(
      train_error=_float(train_error), monte_carlo_error_bound=mc_bound, kl=_float(kl),
      prior_variance=_float(prior_variance),
      prior_variance_index=prior_variance_index(prior_variance, b=b, c=c), b_re=bre,
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

  Cost: ``num_mc_samples`` evaluations of ``error_fn`` (sequential, memory of one).
  """
  index = float(prior_variance_index(prior_variance, b=b, c=c))
  best = None
  for rounded in sorted({max(1, math.floor(index)), max(1, math.ceil(index))}):
    variance = prior_variance_from_index(rounded, b=b, c=c)
    kl = posterior_lib.total(posterior_lib.kl_per_weight(posterior, prior_variance=variance,
                                                         prior_mean=prior_mean))
    bre = dziugaite_roy_bre(kl, num_examples, delta=delta, prior_variance=variance, b=b, c=c)
    if best is None or float(bre) < best[0]:
      best = (float(bre), rounded, variance, kl)
  _, index, variance, kl = best
  errors = jax.jit(lambda p, d, k: posterior_lib.sampled_losses(
      error_fn, p, d, key=k, num_samples=num_mc_samples))(posterior, batch, key)
  certificate = certify(jnp.mean(errors), num_mc_samples, kl, num_examples,
                        prior_variance=variance, delta=delta, delta_monte_carlo=delta_monte_carlo,
                        b=b, c=c)
  return certificate._replace(prior_variance_index=jnp.asarray(index))
