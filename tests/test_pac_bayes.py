"""Tests of infojax.weights.pac_bayes: kl-inverse, bounds (science.md §15 A.10), Dziugaite-Roy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import scipy.special

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
  certificate = pac_bayes.certify(0.03, 1000, 5000.0, 55_000, prior_variance=math.exp(-6))
  mc_bound = _kl_inverse_reference(0.03, math.log(2 / 0.01) / 1000)
  np.testing.assert_allclose(certificate.monte_carlo_error_bound, mc_bound, atol=1e-9)
  np.testing.assert_allclose(certificate.b_re, 0.09140, atol=5e-6)
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
