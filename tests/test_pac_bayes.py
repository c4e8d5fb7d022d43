"""Tests of infojax.weights.pac_bayes: kl-inverse, bounds (science.md §15 A.10), Dziugaite-Roy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from infojax import weights
from infojax.weights import pac_bayes


def _binary_kl(q, p):
  return scipy.special.rel_entr(q, p) + scipy.special.rel_entr(1 - q, 1 - p)


def _kl_inverse_reference(q, c):
  """sup {p : kl(q||p) <= c} by Brent's method in float64."""
  if q == 1.0:
    return 1.0
  return scipy.optimize.brentq(lambda p: _binary_kl(q, p) - c, q, 1.0 - 1e-300, xtol=1e-15,
                               rtol=4 * np.finfo(float).eps)


# ----------------------------------------------------------------------------------------------
# kl-inverse.
# ----------------------------------------------------------------------------------------------


def test_kl_inverse_reference_values_a10(x64):
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.03, 0.1), 0.1708495, atol=5e-8)
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.028, 0.05), 0.113137, atol=5e-7)


def test_kl_inverse_matches_brent_to_1e_9(x64):
  rng = np.random.default_rng(0)
  q = np.concatenate([rng.uniform(0, 1, 40), [0.0, 1e-6, 0.5, 0.999]])
  c = np.concatenate([rng.uniform(0, 2, 40), [0.3, 1e-3, 5.0, 0.01]])
  got = np.asarray(pac_bayes.kl_inverse(q, c))
  expected = np.array([_kl_inverse_reference(a, b) for a, b in zip(q, c)])
  np.testing.assert_allclose(got, expected, atol=1e-9, rtol=0)
  assert np.all(got >= expected - 1e-15)  # the upper end of the bracket: never below the inverse
  assert np.all(_binary_kl(q, got) >= c - 1e-12)  # got is at or just past the kl budget


def test_kl_inverse_edge_cases(x64):
  c = np.array([0.0, 0.2, 7.0])
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.0, c), -np.expm1(-c), atol=1e-15)
  np.testing.assert_allclose(pac_bayes.kl_inverse(1.0, c), 1.0)
  np.testing.assert_allclose(pac_bayes.kl_inverse(np.array([0.0, 0.3, 0.9]), 0.0), [0, 0.3, 0.9],
                             atol=1e-15)
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.3, np.inf), 1.0)
  # Tiny budgets: p - q ~ sqrt(2 q (1 - q) c).
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.3, 1e-16) - 0.3, math.sqrt(2 * 0.21 * 1e-16),
                             rtol=1e-4)


def test_kl_inverse_float32_jit_vmap_and_errors():
  value = pac_bayes.kl_inverse(np.float32(0.03), np.float32(0.1))
  assert value.dtype == jnp.float32
  np.testing.assert_allclose(value, 0.1708495, atol=2e-7)
  q = jnp.linspace(0.0, 0.9, 5)
  np.testing.assert_allclose(jax.jit(pac_bayes.kl_inverse)(q, 0.1),
                             jax.vmap(pac_bayes.kl_inverse, in_axes=(0, None))(q, 0.1), rtol=1e-6)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    pac_bayes.kl_inverse(1.2, 0.1)
  with pytest.raises(ValueError, match="non-negative"):
    pac_bayes.kl_inverse(0.2, -0.1)


def test_kl_inverse_gradients(x64):
  step = 1e-7
  for q, c in [(0.03, 0.1), (0.4, 0.02), (0.0, 0.5)]:
    grad_q, grad_c = jax.grad(pac_bayes.kl_inverse, argnums=(0, 1))(q, c)
    finite_c = (pac_bayes.kl_inverse(q, c + step) - pac_bayes.kl_inverse(q, c - step)) / (2 * step)
    np.testing.assert_allclose(grad_c, finite_c, rtol=1e-6)
    if q > 0:
      finite_q = (pac_bayes.kl_inverse(q + step, c)
                  - pac_bayes.kl_inverse(q - step, c)) / (2 * step)
      np.testing.assert_allclose(grad_q, finite_q, rtol=1e-6)
  assert float(jax.grad(pac_bayes.kl_inverse, argnums=1)(0.3, 0.0)) == 0.0  # singular: set to 0


# ----------------------------------------------------------------------------------------------
# Bounds.
# ----------------------------------------------------------------------------------------------


def test_dziugaite_roy_arithmetic_a10(x64):
  m, delta = 55_000, 0.025
  bre = pac_bayes.dziugaite_roy_bre(5000.0, m, delta=delta, prior_variance=math.exp(-6))
  np.testing.assert_allclose(bre, 0.09140, atol=5e-6)
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.028, bre), 0.1583, atol=5e-5)
  np.testing.assert_allclose(pac_bayes.pinsker_bound(0.028, bre), 0.2418, atol=5e-5)
  bre = pac_bayes.dziugaite_roy_bre(10_000.0, m, delta=delta, prior_variance=1e-3)
  np.testing.assert_allclose(bre, 0.18232, atol=5e-6)
  np.testing.assert_allclose(pac_bayes.kl_inverse(0.028, bre), 0.2429, atol=5e-5)
  # The union-bound term 2 log(b log(c / lambda)) with b = 100, c = 0.1: j = 369.74 at exp(-6).
  np.testing.assert_allclose(pac_bayes.prior_variance_index(math.exp(-6)),
                             100 * (6 + math.log(0.1)))
  np.testing.assert_allclose(pac_bayes.union_bound_term(math.exp(-6)),
                             2 * math.log(100 * (6 + math.log(0.1))), rtol=1e-12)
  np.testing.assert_allclose(pac_bayes.prior_variance_from_index(pac_bayes.prior_variance_index(
      1e-3)), 1e-3, rtol=1e-12)
  with pytest.raises(ValueError, match="at most c exp"):
    pac_bayes.dziugaite_roy_bre(10.0, m, delta=delta, prior_variance=0.1)


def test_mcallester_is_the_pinsker_relaxation_of_the_kl_bound(x64):
  rng = np.random.default_rng(1)
  for _ in range(20):
    error, kl, m = rng.uniform(0, 0.5), rng.uniform(0, 5000), int(rng.integers(100, 100_000))
    kl_bound = float(pac_bayes.kl_bound(error, kl, m, delta=0.05))
    mcallester = float(pac_bayes.mcallester_bound(error, kl, m, delta=0.05))
    budget = (kl + math.log(m / 0.05)) / (m - 1)
    np.testing.assert_allclose(mcallester, error + math.sqrt(budget / 2), rtol=1e-12)
    np.testing.assert_allclose(kl_bound, _kl_inverse_reference(error, budget), atol=1e-9)
    assert error <= kl_bound <= mcallester + 1e-12


def test_catoni_is_above_the_kl_bound_and_touches_it_at_the_best_c(x64):
  """kl(q||p) = sup_C [-C q - log(1 - p + p e^-C)], so every Catoni bound is >= kl^-1(q, B), with
  B = (KL + log(1/delta))/m, and their minimum over C is kl^-1(q, B)."""
  error, kl, m, delta = 0.05, 300.0, 10_000, 0.05
  budget = (kl + math.log(1 / delta)) / m
  reference = _kl_inverse_reference(error, budget)
  trade_offs = np.exp(np.linspace(-3, 6, 4000))
  catoni = np.asarray(pac_bayes.catoni_bound(error, kl, m, delta=delta, trade_off=trade_offs))
  direct = (1 - np.exp(-trade_offs * error - budget)) / (1 - np.exp(-trade_offs))
  np.testing.assert_allclose(catoni, direct, rtol=1e-12)
  assert np.all(catoni >= reference - 1e-12)
  np.testing.assert_allclose(catoni.min(), reference, rtol=1e-5)
  with pytest.raises(ValueError, match="positive"):
    pac_bayes.catoni_bound(error, kl, m, delta=delta, trade_off=0.0)


def test_linear_bound(x64):
  value = pac_bayes.linear_bound(0.1, 200.0, 50_000, beta=2.0, delta=0.05)
  np.testing.assert_allclose(value, (0.1 + 2.0 / 50_000 * (200 + math.log(20))) / (1 - 1 / 4),
                             rtol=1e-12)
  with pytest.raises(ValueError, match="exceed 1/2"):
    pac_bayes.linear_bound(0.1, 200.0, 50_000, beta=0.5, delta=0.05)
  assert np.isnan(jax.jit(lambda b: pac_bayes.linear_bound(0.1, 200.0, 50_000, beta=b,
                                                           delta=0.05))(0.4))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    pac_bayes.linear_bound(1.5, 200.0, 50_000, beta=2.0, delta=0.05)
  with pytest.raises(ValueError, match=r"\(0, 1\)"):
    pac_bayes.linear_bound(0.1, 200.0, 50_000, beta=2.0, delta=0.0)
  with pytest.raises(ValueError, match="integer >= 2"):
    pac_bayes.linear_bound(0.1, 200.0, 1, beta=2.0, delta=0.05)


def test_certify_reports_every_term(x64):
  # j = 370, the grid point next to lambda = exp(-6) (j = 369.74), whose B_RE is 0.09140 (§11.3).
  variance = 0.1 * math.exp(-370 / 100)
  certificate = pac_bayes.certify(0.03, 1000, 5000.0, 55_000, prior_variance=variance)
  mc_bound = _kl_inverse_reference(0.03, math.log(2 / 0.01) / 1000)
  np.testing.assert_allclose(certificate.monte_carlo_error_bound, mc_bound, atol=1e-9)
  np.testing.assert_allclose(certificate.b_re, 0.09140, atol=5e-6)
  np.testing.assert_allclose(
      certificate.b_re, (5000 + 2 * math.log(370) + math.log(math.pi ** 2 * 55_000 / (6 * 0.025)))
      / 54_999, rtol=1e-12)
  assert float(certificate.prior_variance_index) == 370.0
  np.testing.assert_allclose(certificate.bound,
                             _kl_inverse_reference(mc_bound, float(certificate.b_re)), atol=1e-9)
  np.testing.assert_allclose(certificate.pinsker_bound,
                             mc_bound + math.sqrt(float(certificate.b_re) / 2), rtol=1e-12)
  assert certificate.total_delta == pytest.approx(0.035)
  assert certificate.train_error <= certificate.monte_carlo_error_bound <= certificate.bound
  assert certificate.bound <= certificate.pinsker_bound


# ----------------------------------------------------------------------------------------------
# The Dziugaite-Roy procedure on a small logistic regression.
# ----------------------------------------------------------------------------------------------


def _dataset(key, num_examples, *, random_labels):
  inputs_key, noise_key, label_key = jax.random.split(key, 3)
  inputs = jax.random.normal(inputs_key, (num_examples, 2))
  clean = (inputs @ jnp.array([2.0, -1.0]) + 0.3 > 0).astype(jnp.float32)
  flips = jax.random.bernoulli(noise_key, 0.05, (num_examples,))
  labels = jnp.where(flips, 1.0 - clean, clean)
  if random_labels:
    labels = jax.random.bernoulli(label_key, 0.5, (num_examples,)).astype(jnp.float32)
  return inputs, labels


def _logits(params, inputs):
  return inputs @ params["w"] + params["b"]


def _surrogate_loss(params, batch):
  """Logistic loss / log 2, an upper bound on the 0-1 error."""
  inputs, labels = batch
  signs = 2.0 * labels - 1.0
  return jnp.mean(jax.nn.softplus(-signs * _logits(params, inputs))) / math.log(2.0)


def _error(params, batch):
  inputs, labels = batch
  return jnp.mean(((_logits(params, inputs) > 0).astype(jnp.float32) != labels).astype(jnp.float32))


def _certify(random_labels, seed=0):
  keys = jax.random.split(jax.random.key(seed), 6)
  batch = _dataset(keys[0], 2000, random_labels=random_labels)
  init = {"w": 0.1 * jax.random.normal(keys[1], (2,)), "b": jnp.zeros(())}
  # The "SGD" stage: full-batch gradient descent on the logistic loss from the initialisation.
  params = jax.jit(lambda p: jax.lax.fori_loop(
      0, 100, lambda _, q: jax.tree.map(lambda w, g: w - 0.5 * g, q,
                                        jax.grad(_surrogate_loss)(q, batch)), p))(init)
  # A larger step than Dziugaite-Roy's RMSProp(1e-3), and lambda starting at 0.01: three weights
  # converge in 400 steps.
  fit = pac_bayes.dziugaite_roy_fit(_surrogate_loss, num_examples=2000, prior_mean=init,
                                    optimizer=optax.adam(5e-2))
  start = weights.gaussian_posterior(params, jax.tree.map(lambda w: (2 * w) ** 2 + 1e-4, params))
  state = fit.init(start, keys[2], prior_variance=0.01)
  state, metrics = weights.fit(fit.update, state, batch, num_steps=400)
  certificate = pac_bayes.dziugaite_roy_certificate(
      _error, state.posterior, batch, num_examples=2000, prior_mean=init,
      prior_variance=jnp.exp(state.log_prior_variance), key=keys[3], num_mc_samples=1000)
  test_batch = _dataset(keys[4], 10_000, random_labels=random_labels)
  test_error = jnp.mean(weights.sampled_losses(_error, state.posterior, test_batch, key=keys[5],
                                               num_samples=20))
  return certificate, metrics, state, init, float(test_error)


def test_dziugaite_roy_certificate_is_non_vacuous_and_valid():
  certificate, metrics, state, init, test_error = _certify(random_labels=False)
  assert np.mean(metrics["objective"][-50:]) < np.mean(metrics["objective"][:50])
  index = float(certificate.prior_variance_index)
  assert index == round(index) and index >= 1  # j rounded to an integer on the grid
  np.testing.assert_allclose(certificate.prior_variance, 0.1 * math.exp(-index / 100), rtol=1e-6)
  kl = weights.total(weights.kl_per_weight(state.posterior, prior_mean=init,
                                           prior_variance=certificate.prior_variance))
  np.testing.assert_allclose(certificate.kl, kl, rtol=1e-5)
  assert certificate.train_error <= certificate.monte_carlo_error_bound <= certificate.bound
  assert certificate.bound <= certificate.pinsker_bound
  assert certificate.bound < 0.3  # non-vacuous
  assert test_error <= certificate.bound  # and it holds on fresh data
  assert certificate.total_delta == pytest.approx(0.035)
  assert certificate.num_mc_samples == 1000 and certificate.num_examples == 2000


def test_dziugaite_roy_certificate_is_vacuous_for_random_labels():
  certificate, *_ = _certify(random_labels=True)
  assert certificate.train_error > 0.4
  assert certificate.bound > 0.5


def test_certify_accepts_only_the_union_bound_grid(x64):
  with pytest.raises(ValueError, match="prior_variance must lie on the union-bound grid"):
    pac_bayes.certify(0.03, 1000, 5000.0, 55_000, prior_variance=math.exp(-6))  # j = 369.74
  with pytest.raises(ValueError, match="prior_variance"):
    pac_bayes.certify(0.03, 1000, 5000.0, 55_000, prior_variance=0.1 * math.exp(-2.5 / 100))
  on_grid = pac_bayes.certify(0.03, 1000, 5000.0, 55_000,
                              prior_variance=0.1 * math.exp(-3 / 100), b=100.0, c=0.1)
  assert float(on_grid.prior_variance_index) == 3.0
  # Another grid: j = 7 on b = 10, c = 1 is accepted there and is off the default grid.
  variance = math.exp(-0.7)
  assert float(pac_bayes.certify(0.03, 1000, 50.0, 5000, prior_variance=variance, b=10.0,
                                 c=1.0).prior_variance_index) == 7.0


def test_certify_grid_check_tolerates_float32_rounding():
  for index in [1, 370, 2000]:
    variance = pac_bayes.prior_variance_from_index(jnp.float32(index))
    assert variance.dtype == jnp.float32
    certificate = pac_bayes.certify(0.03, 1000, 5000.0, 55_000, prior_variance=variance)
    assert float(certificate.prior_variance_index) == index


# ----------------------------------------------------------------------------------------------
# Compilation: repeated certificates compile once.
# ----------------------------------------------------------------------------------------------


def test_dziugaite_roy_certificate_compiles_once_for_repeated_calls():
  traces = []

  def error_fn(params, batch):
    traces.append(None)  # runs once per trace of the Monte-Carlo loop
    return _error(params, batch)

  batch = _dataset(jax.random.key(0), 64, random_labels=False)
  params = {"w": jnp.array([2.0, -1.0]), "b": jnp.array(0.3)}
  posterior = weights.gaussian_posterior(params, jax.tree.map(lambda w: jnp.full_like(w, 0.01),
                                                              params))
  certificates = [pac_bayes.dziugaite_roy_certificate(
      error_fn, posterior, batch, num_examples=64, prior_mean=None, prior_variance=variance,
      key=jax.random.key(seed), num_mc_samples=8) for seed, variance in [(1, 0.01), (2, 0.02)]]
  assert len(traces) == 1
  assert certificates[0].prior_variance_index != certificates[1].prior_variance_index


# ----------------------------------------------------------------------------------------------
# The test-set bound.
# ----------------------------------------------------------------------------------------------


def test_test_set_bound_inverts_the_binomial_tail(x64):
  n, delta = 200, 0.05
  k = np.arange(0, n + 1, 7)
  got = np.asarray(pac_bayes.test_set_bound(k, n, delta=delta))
  inner = k < n
  # The one-sided Clopper-Pearson limit (scipy's incomplete-beta inverse, another code path).
  clopper_pearson = scipy.stats.beta.ppf(1 - delta, k[inner] + 1, n - k[inner])
  np.testing.assert_allclose(got[inner], clopper_pearson, atol=1e-10, rtol=0)
  np.testing.assert_allclose(scipy.stats.binom.cdf(k[inner], n, got[inner]), delta, rtol=1e-7)
  assert np.all(scipy.stats.binom.cdf(k[inner], n, got[inner] - 1e-9) >= delta)  # never below
  assert np.all(got >= k / n)
  # Known values: k = 0 gives 1 - delta^(1/n) (about 3/n, "the rule of three"); k = n gives 1.
  np.testing.assert_allclose(pac_bayes.test_set_bound(0, 100, delta=0.05), 1 - 0.05 ** 0.01,
                             rtol=1e-12)
  np.testing.assert_allclose(pac_bayes.test_set_bound(0, 100, delta=0.05), 0.0295130, atol=5e-8)
  assert float(pac_bayes.test_set_bound(30, 30, delta=0.1)) == 1.0


def test_test_set_bound_jit_vmap_and_errors():
  k = jnp.array([0.0, 3.0, 10.0])
  np.testing.assert_allclose(jax.jit(pac_bayes.test_set_bound, static_argnames="delta")(
      k, 50, delta=0.1), jax.vmap(lambda x: pac_bayes.test_set_bound(x, 50, delta=0.1))(k),
      rtol=1e-6)
  np.testing.assert_allclose(pac_bayes.test_set_bound(k, 50, delta=0.1),
                             scipy.stats.beta.ppf(0.9, np.asarray(k) + 1, 50 - np.asarray(k)),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="num_errors must not exceed"):
    pac_bayes.test_set_bound(11, 10, delta=0.1)
  with pytest.raises(ValueError, match="num_errors"):
    pac_bayes.test_set_bound(1.5, 10, delta=0.1)
  with pytest.raises(ValueError, match="num_examples"):
    pac_bayes.test_set_bound(0, 0, delta=0.1)
  with pytest.raises(ValueError, match=r"delta must lie in \(0, 1\)"):
    pac_bayes.test_set_bound(1, 10, delta=1.0)


# ----------------------------------------------------------------------------------------------
# Coverage on simulated problems with a known true risk.
# ----------------------------------------------------------------------------------------------

_DRAWS, _COVERAGE_DELTA = 4000, 0.1
# A correct bound is violated with probability <= delta per draw, so the violation count exceeds
# this with probability < 1e-6.
_MAX_VIOLATIONS = int(scipy.stats.binom.isf(1e-6, _DRAWS, _COVERAGE_DELTA))


def test_kl_bound_coverage_with_a_data_dependent_gibbs_posterior(x64):
  """Five classifiers with known error rates, a uniform prior and Q = the Gibbs posterior of the
  sample (chosen after seeing it: the bound holds for all Q at once)."""
  rates, m = np.array([0.05, 0.1, 0.2, 0.3, 0.5]), 100
  counts = np.random.default_rng(3).binomial(m, rates, size=(_DRAWS, rates.size))
  logits = -0.5 * counts
  q = np.exp(logits - logits.max(axis=1, keepdims=True))
  q /= q.sum(axis=1, keepdims=True)
  empirical, true = (q * counts / m).sum(axis=1), q @ rates
  kl = np.sum(scipy.special.xlogy(q, q * rates.size), axis=1)
  bound = np.asarray(pac_bayes.kl_bound(empirical, kl, m, delta=_COVERAGE_DELTA))
  assert np.sum(true > bound) <= _MAX_VIOLATIONS
  assert np.sum(true > empirical) > _MAX_VIOLATIONS  # the check has power: e_hat alone fails it
  maurer = np.asarray(pac_bayes.maurer_bound(empirical, kl, m, delta=_COVERAGE_DELTA))
  assert np.sum(true > maurer) <= _MAX_VIOLATIONS


def test_test_set_bound_coverage(x64):
  rate, n = 0.1, 200
  errors = np.random.default_rng(4).binomial(n, rate, size=_DRAWS)
  bound = np.asarray(pac_bayes.test_set_bound(errors, n, delta=_COVERAGE_DELTA))
  assert np.sum(rate > bound) <= _MAX_VIOLATIONS
  # Exactly: the violation probability is P[k <= k*], k* the largest count whose bound is < rate.
  table = np.asarray(pac_bayes.test_set_bound(np.arange(n + 1), n, delta=_COVERAGE_DELTA))
  violation = scipy.stats.binom.cdf(np.flatnonzero(table < rate).max(), n, rate)
  assert violation <= _COVERAGE_DELTA
  assert violation > _COVERAGE_DELTA / 2  # and nearly tight: the test-set bound is the reference


# ----------------------------------------------------------------------------------------------
# Perez-Ortiz et al. (2021): the Maurer bound, f_quad and f_lambda.
# ----------------------------------------------------------------------------------------------


def _central_difference(fn, x, step=1e-6):
  return (fn(x + step) - fn(x - step)) / (2 * step)


def test_maurer_bound_f_quad_and_f_lambda_values(x64):
  error, kl, n, delta = 0.03, 5000.0, 55_000, 0.025
  budget = (kl + math.log(2 * math.sqrt(n) / delta)) / n
  maurer = float(pac_bayes.maurer_bound(error, kl, n, delta=delta))
  np.testing.assert_allclose(maurer, _kl_inverse_reference(error, budget), atol=1e-9)
  quad = float(pac_bayes.f_quad(error, kl, n, delta=delta))
  np.testing.assert_allclose(quad, (math.sqrt(error + budget / 2) + math.sqrt(budget / 2)) ** 2,
                             rtol=1e-12)
  trade_offs = np.linspace(0.01, 1.99, 2000)
  lam = np.asarray(pac_bayes.f_lambda(error, kl, n, delta=delta, trade_off=trade_offs))
  np.testing.assert_allclose(lam, error / (1 - trade_offs / 2)
                             + budget / (trade_offs * (1 - trade_offs / 2)), rtol=1e-12)
  # Both relax the kl bound: never below it; f_lambda's best trade-off is the closed form.
  assert maurer <= quad and np.all(maurer <= lam)
  best = pac_bayes.f_lambda_trade_off(error, kl, n, delta=delta)
  at_best = float(pac_bayes.f_lambda(error, kl, n, delta=delta, trade_off=best))
  assert at_best <= lam.min() + 1e-12
  np.testing.assert_allclose(at_best, lam.min(), rtol=1e-6)
  with pytest.raises(ValueError, match=r"trade_off must lie in \(0, 2\)"):
    pac_bayes.f_lambda(error, kl, n, delta=delta, trade_off=2.0)
  with pytest.raises(ValueError, match="integer >= 8"):
    pac_bayes.f_quad(error, kl, 7, delta=delta)


def test_maurer_f_quad_f_lambda_gradients_match_finite_differences(x64):
  n, delta = 10_000, 0.05
  objectives = {
      "maurer": lambda e, k, t: pac_bayes.maurer_bound(e, k, n, delta=delta),
      "f_quad": lambda e, k, t: pac_bayes.f_quad(e, k, n, delta=delta),
      "f_lambda": lambda e, k, t: pac_bayes.f_lambda(e, k, n, delta=delta, trade_off=t),
  }
  for name, fn in objectives.items():
    for error, kl, trade_off in [(0.05, 300.0, 0.3), (0.2, 2000.0, 1.1)]:
      grads = jax.jit(jax.grad(fn, argnums=(0, 1, 2)))(error, kl, trade_off)
      finite = [_central_difference(lambda e: fn(e, kl, trade_off), error),
                _central_difference(lambda k: fn(error, k, trade_off), kl, step=1e-3),
                _central_difference(lambda t: fn(error, kl, t), trade_off)]
      for grad, reference in zip(grads, finite):
        np.testing.assert_allclose(grad, reference, rtol=1e-6, atol=1e-12, err_msg=name)
    assert float(jax.grad(objectives["maurer"], argnums=1)(0.05, 300.0, 0.3)) > 0


# ----------------------------------------------------------------------------------------------
# The clipped-loss linear bound (science.md §3.2, L_max).
# ----------------------------------------------------------------------------------------------


def test_clipped_loss_bound(x64):
  loss, kl, n, delta, max_loss = 1.2, 200.0, 50_000, 0.05, 4.0
  for beta in [2.5, 8.0, 100.0]:
    expected = (loss + beta / n * (kl + math.log(1 / delta))) / (1 - max_loss / (2 * beta))
    np.testing.assert_allclose(pac_bayes.clipped_loss_bound(
        loss, kl, n, beta=beta, delta=delta, max_loss=max_loss), expected, rtol=1e-12)
  np.testing.assert_allclose(
      pac_bayes.clipped_loss_bound(0.1, kl, n, beta=2.0, delta=delta, max_loss=1.0),
      pac_bayes.linear_bound(0.1, kl, n, beta=2.0, delta=delta), rtol=1e-12)
  with pytest.raises(ValueError, match="exceed max_loss / 2"):
    pac_bayes.clipped_loss_bound(loss, kl, n, beta=2.0, delta=delta, max_loss=max_loss)
  with pytest.raises(ValueError, match=r"lie in \[0, max_loss\]"):
    pac_bayes.clipped_loss_bound(4.5, kl, n, beta=8.0, delta=delta, max_loss=max_loss)
  with pytest.raises(ValueError, match="max_loss must be positive"):
    pac_bayes.clipped_loss_bound(loss, kl, n, beta=8.0, delta=delta, max_loss=0.0)


# ----------------------------------------------------------------------------------------------
# Data-dependent priors: the split's accounting.
# ----------------------------------------------------------------------------------------------


def test_data_dependent_prior_certificate_bounds_only_the_unseen_part(x64):
  num_prior, size = 20, 50
  inputs = jax.random.normal(jax.random.key(5), (size, 2))
  inputs = inputs + jnp.sign(inputs @ jnp.array([1.0, 0.0]))[:, None] * jnp.array([[1.0, 0.0]])
  params = {"w": jnp.array([1.0, 0.0]), "b": jnp.array(0.0)}
  correct = (_logits(params, inputs) > 0).astype(jnp.float64)
  # The prior's part is all wrong, the bound's part all right: the bound must see only the latter.
  labels = jnp.concatenate([1.0 - correct[:num_prior], correct[num_prior:]])
  posterior = weights.gaussian_posterior(params, jax.tree.map(lambda w: jnp.full_like(w, 1e-6),
                                                              params))
  prior_mean = {"w": jnp.array([0.8, 0.1]), "b": jnp.array(0.05)}
  certificate = pac_bayes.data_dependent_prior_certificate(
      _error, posterior, (inputs, labels), num_prior_examples=num_prior, prior_mean=prior_mean,
      prior_variance=0.01, key=jax.random.key(6), num_mc_samples=50)
  assert certificate.num_examples == size - num_prior
  assert float(certificate.train_error) == 0.0
  index = float(certificate.prior_variance_index)
  variance = 0.1 * math.exp(-index / 100)
  mean, var = np.array([1.0, 0.0, 0.0]), 1e-6
  mean0 = np.array([0.8, 0.1, 0.05])
  kl = 0.5 * np.sum(var / variance + (mean - mean0) ** 2 / variance - 1 - np.log(var / variance))
  np.testing.assert_allclose(certificate.kl, kl, rtol=1e-9)
  m = size - num_prior
  bre = (kl + 2 * math.log(index) + math.log(math.pi ** 2 * m / (6 * 0.025))) / (m - 1)
  np.testing.assert_allclose(certificate.b_re, bre, rtol=1e-9)
  chernoff = _kl_inverse_reference(0.0, math.log(2 / 0.01) / 50)
  np.testing.assert_allclose(certificate.bound, _kl_inverse_reference(chernoff, bre), atol=1e-9)
  prior_part, bound_part = pac_bayes.split_batch((inputs, labels), num_prior)
  assert prior_part[0].shape == (num_prior, 2) and bound_part[1].shape == (size - num_prior,)
  np.testing.assert_array_equal(bound_part[1], labels[num_prior:])


def test_split_batch_errors():
  batch = (jnp.zeros((10, 3)), jnp.zeros(10))
  with pytest.raises(ValueError, match="at least 2 examples"):
    pac_bayes.split_batch(batch, 9)
  with pytest.raises(ValueError, match="num_prior_examples must be an integer >= 1"):
    pac_bayes.split_batch(batch, 0)
  with pytest.raises(ValueError, match="leading"):
    pac_bayes.split_batch((jnp.zeros((10, 3)), jnp.zeros(9)), 4)
