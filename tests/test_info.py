"""Tests of infojax.info against scipy, brute force and closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from infojax import info


def _dirichlet(rng, shape, num_outcomes):
  return rng.dirichlet(np.ones(num_outcomes), size=shape)


# ----------------------------------------------------------------------------------------------
# Discrete distributions.
# ----------------------------------------------------------------------------------------------


def test_entropy_cross_entropy_kl_match_scipy(x64):
  rng = np.random.default_rng(0)
  p = _dirichlet(rng, (5,), 7)
  q = _dirichlet(rng, (5,), 7)
  np.testing.assert_allclose(info.entropy(p), scipy.stats.entropy(p, axis=-1), rtol=1e-12)
  np.testing.assert_allclose(info.kl(p, q), scipy.stats.entropy(p, q, axis=-1), rtol=1e-12)
  np.testing.assert_allclose(info.kl(p, q), scipy.special.rel_entr(p, q).sum(-1), rtol=1e-12)
  np.testing.assert_allclose(info.cross_entropy(p, q), -(p * np.log(q)).sum(-1), rtol=1e-12)


def test_float32_agrees_with_float64_reference():
  rng = np.random.default_rng(1)
  p = _dirichlet(rng, (3,), 10).astype(np.float32)
  q = _dirichlet(rng, (3,), 10).astype(np.float32)
  assert info.entropy(p).dtype == jnp.float32
  np.testing.assert_allclose(info.entropy(p), scipy.stats.entropy(p.astype(np.float64), axis=-1),
                             rtol=1e-5)
  np.testing.assert_allclose(
      info.kl(p, q), scipy.stats.entropy(p.astype(np.float64), q.astype(np.float64), axis=-1),
      rtol=1e-4)


def test_zero_probabilities(x64):
  p = np.array([0.5, 0.5, 0.0])
  q = np.array([0.25, 0.25, 0.5])
  np.testing.assert_allclose(info.entropy(p), math.log(2.0), rtol=1e-14)  # 0 log 0 = 0
  np.testing.assert_allclose(info.kl(p, q), math.log(2.0), rtol=1e-14)  # p = 0 adds nothing
  assert np.isinf(info.kl(q, p))  # q puts mass where p has none
  assert np.isinf(info.cross_entropy(q, p))
  np.testing.assert_allclose(info.cross_entropy(p, q), info.entropy(p) + info.kl(p, q), rtol=1e-14)
  np.testing.assert_allclose(info.entropy(np.array([1.0, 0.0])), 0.0, atol=0)
  assert np.all(np.isfinite(jax.grad(lambda x: info.kl(p, x))(jnp.asarray(q))))


def test_cross_entropy_is_entropy_plus_kl_in_batches(x64):
  rng = np.random.default_rng(2)
  p = _dirichlet(rng, (4, 3), 5)
  q = _dirichlet(rng, (4, 3), 5)
  np.testing.assert_allclose(info.cross_entropy(p, q), info.entropy(p) + info.kl(p, q), rtol=1e-12)
  assert info.kl(p, q).shape == (4, 3)
  assert np.all(np.asarray(info.kl(p, q)) >= 0)


def test_binary_entropy_and_binary_kl(x64):
  p = np.array([0.0, 1e-3, 0.3, 0.5, 0.9, 1.0])
  reference = np.array([scipy.stats.entropy([x, 1 - x]) for x in p])
  np.testing.assert_allclose(info.binary_entropy(p), reference, rtol=1e-12, atol=1e-300)
  q = np.array([0.2, 0.5, 0.3, 0.7, 0.999, 0.4])
  expected = scipy.special.rel_entr(p, q) + scipy.special.rel_entr(1 - p, 1 - q)
  np.testing.assert_allclose(info.binary_kl(p, q), expected, rtol=1e-12)
  assert np.isinf(info.binary_kl(0.3, 0.0)) and np.isinf(info.binary_kl(0.3, 1.0))
  np.testing.assert_allclose(info.binary_kl(0.0, 0.4), -math.log(0.6), rtol=1e-13)
  # Accurate (positive) as q -> p, where kl ~ (q - p)^2 / (2 p (1 - p)).
  close = info.binary_kl(0.3, 0.3 + 1e-9)
  np.testing.assert_allclose(close, 1e-18 / (2 * 0.3 * 0.7), rtol=1e-5)


def _brute_force_mutual_information(p_xy):
  p_x, p_y = p_xy.sum(1), p_xy.sum(0)
  total = 0.0
  for i in range(p_xy.shape[0]):
    for j in range(p_xy.shape[1]):
      if p_xy[i, j] > 0:
        total += p_xy[i, j] * math.log(p_xy[i, j] / (p_x[i] * p_y[j]))
  return total


def test_mutual_information_and_conditional_entropy(x64):
  rng = np.random.default_rng(3)
  p_xy = rng.random((4, 6)) * (rng.random((4, 6)) > 0.3)
  p_xy /= p_xy.sum()
  np.testing.assert_allclose(info.mutual_information(p_xy), _brute_force_mutual_information(p_xy),
                             rtol=1e-12)
  h_xy = scipy.stats.entropy(p_xy.ravel())
  h_x = scipy.stats.entropy(p_xy.sum(1))
  h_y = scipy.stats.entropy(p_xy.sum(0))
  np.testing.assert_allclose(info.conditional_entropy(p_xy), h_xy - h_x, rtol=1e-12)
  np.testing.assert_allclose(info.conditional_entropy(p_xy), h_y - info.mutual_information(p_xy),
                             rtol=1e-12)
  # Independence gives 0; a deterministic, invertible channel gives H(X).
  independent = np.outer([0.2, 0.8], [0.1, 0.3, 0.6])
  np.testing.assert_allclose(info.mutual_information(independent), 0.0, atol=1e-15)
  diagonal = np.diag([0.1, 0.2, 0.7])
  np.testing.assert_allclose(info.mutual_information(diagonal), scipy.stats.entropy([.1, .2, .7]))
  np.testing.assert_allclose(info.conditional_entropy(diagonal), 0.0, atol=1e-15)
  batched = np.stack([p_xy, np.full((4, 6), 1 / 24)])
  np.testing.assert_allclose(info.mutual_information(batched),
                             [_brute_force_mutual_information(p_xy), 0.0], atol=1e-12)


def test_proposition_2_3_shannon_is_the_best_code(x64):
  """E_D KL(Q(w|D) || P) = I(w; D) + KL(Q_bar || P) (science.md §2.4, §15 A.5)."""
  rng = np.random.default_rng(4)
  for _ in range(5):
    p_data = rng.dirichlet(np.ones(5))
    q_w_given_d = rng.dirichlet(np.ones(6), size=5)
    prior = rng.dirichlet(np.ones(6))
    expected_kl = np.sum(p_data * np.asarray(info.kl(q_w_given_d, prior[None])))
    joint = p_data[:, None] * q_w_given_d
    marginal = joint.sum(0)
    np.testing.assert_allclose(expected_kl,
                               info.mutual_information(joint) + info.kl(marginal, prior),
                               rtol=1e-12)
    # ... so the marginal is the best prior, and then the expected KL is I(w; D).
    assert expected_kl >= float(info.mutual_information(joint))


def test_bits():
  np.testing.assert_allclose(info.to_bits(math.log(2.0)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(info.entropy_bits(np.full(8, 0.125)), 3.0, rtol=1e-6)
  np.testing.assert_allclose(info.binary_entropy_bits(0.5), 1.0, rtol=1e-6)
  p_xy = np.diag([0.25, 0.25, 0.25, 0.25])
  np.testing.assert_allclose(info.mutual_information_bits(p_xy), 2.0, rtol=1e-6)
  np.testing.assert_allclose(info.kl_bits(np.array([1.0, 0.0]), np.array([0.5, 0.5])), 1.0,
                             rtol=1e-6)
  assert info.kl_bits.__name__ == "kl_bits"


# ----------------------------------------------------------------------------------------------
# Gaussians.
# ----------------------------------------------------------------------------------------------


def _monte_carlo_kl(rng, mean_q, cov_q, mean_p, cov_p, num_samples):
  """E_q[log q - log p] by sampling, and the standard error of the estimate."""
  samples = rng.multivariate_normal(mean_q, cov_q, size=num_samples)
  log_ratio = (scipy.stats.multivariate_normal(mean_q, cov_q).logpdf(samples)
               - scipy.stats.multivariate_normal(mean_p, cov_p).logpdf(samples))
  return log_ratio.mean(), log_ratio.std() / math.sqrt(num_samples)


def test_gaussian_kl_matches_monte_carlo(x64):
  """science.md §15 A.1: the closed form agrees with sampling, within 5 standard errors."""
  rng = np.random.default_rng(5)
  mean_q, mean_p = rng.normal(size=4), rng.normal(size=4)
  var_q, var_p = rng.uniform(0.2, 2.0, 4), rng.uniform(0.2, 2.0, 4)
  closed = float(info.gaussian_kl(mean_q, var_q, mean_p, var_p))
  estimate, error = _monte_carlo_kl(rng, mean_q, np.diag(var_q), mean_p, np.diag(var_p), 200_000)
  assert error < 1e-2
  assert abs(closed - estimate) < 5 * error


def test_gaussian_kl_full_matches_monte_carlo_and_formula(x64):
  rng = np.random.default_rng(6)
  dim = 4
  a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
  cov_q, cov_p = a @ a.T + 0.5 * np.eye(dim), b @ b.T + 0.5 * np.eye(dim)
  mean_q, mean_p = rng.normal(size=dim), rng.normal(size=dim)
  closed = float(info.gaussian_kl_full(mean_q, cov_q, mean_p, cov_p))
  # Independent dense formula with an explicit inverse and slogdet.
  inverse_p = np.linalg.inv(cov_p)
  diff = mean_p - mean_q
  dense = 0.5 * (np.trace(inverse_p @ cov_q) + diff @ inverse_p @ diff - dim
                 + np.linalg.slogdet(cov_p)[1] - np.linalg.slogdet(cov_q)[1])
  np.testing.assert_allclose(closed, dense, rtol=1e-10)
  estimate, error = _monte_carlo_kl(rng, mean_q, cov_q, mean_p, cov_p, 100_000)
  assert abs(closed - estimate) < 5 * error
  np.testing.assert_allclose(info.gaussian_kl_full(mean_q, cov_q, mean_q, cov_q), 0.0, atol=1e-12)


def test_gaussian_kl_diagonal_equals_full_and_axis_semantics(x64):
  rng = np.random.default_rng(7)
  mean_q, var_q = rng.normal(size=(3, 5)), rng.uniform(0.1, 3.0, (3, 5))
  per_example = info.gaussian_kl(mean_q, var_q, 0.0, 1.0)
  assert per_example.shape == (3,)
  full = info.gaussian_kl_full(mean_q, jax.vmap(jnp.diag)(var_q), np.zeros(5), np.eye(5))
  np.testing.assert_allclose(per_example, full, rtol=1e-10)
  np.testing.assert_allclose(info.gaussian_kl(mean_q, var_q, 0.0, 1.0, axis=None),
                             per_example.sum(), rtol=1e-12)
  # Nearly equal variances: the expm1 form keeps the tiny KL accurate.
  np.testing.assert_allclose(info.gaussian_kl(0.0, 1.0 + 1e-7, 0.0, 1.0, axis=None),
                             0.25 * 1e-14, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Validation and transformations.
# ----------------------------------------------------------------------------------------------


def test_invalid_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="non-negative"):
    info.entropy(np.array([1.2, -0.2]))
  with pytest.raises(ValueError, match="sum to 1"):
    info.kl(np.array([0.5, 0.6]), np.array([0.5, 0.5]))
  with pytest.raises(ValueError, match="same outcome axes"):
    info.kl(np.array([0.5, 0.5]), np.array([0.2, 0.3, 0.5]))
  with pytest.raises(ValueError, match="sum to 1"):
    info.mutual_information(np.full((2, 2), 0.3))
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    info.binary_entropy(1.5)
  with pytest.raises(ValueError, match="positive"):
    info.gaussian_kl(np.zeros(2), np.array([1.0, 0.0]), 0.0, 1.0)
  with pytest.raises(ValueError, match="positive definite"):
    info.gaussian_kl_full(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), np.zeros(2), np.eye(2))
  with pytest.raises(ValueError, match=r"\(\.\.\., d, d\)"):
    info.gaussian_kl_full(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_jit_and_vmap_skip_checks_and_agree():
  rng = np.random.default_rng(8)
  p = _dirichlet(rng, (6,), 4).astype(np.float32)
  q = _dirichlet(rng, (6,), 4).astype(np.float32)
  np.testing.assert_allclose(jax.jit(info.kl)(p, q), info.kl(p, q), rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(info.entropy)(p), info.entropy(p), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(info.mutual_information)(p / p.sum()),
                             info.mutual_information(p / p.sum()), rtol=1e-5)
  # Under jit nothing is checked: an invalid input gives a meaningless value, not an error.
  assert np.isnan(jax.jit(info.entropy)(jnp.array([1.5, -0.5])))
  np.testing.assert_allclose(
      jax.grad(lambda x: info.entropy(jax.nn.softmax(x)))(jnp.zeros(3)), np.zeros(3), atol=1e-7)
