"""Tests for infojax.activations.bottleneck (Blahut-Arimoto IB) against closed forms and loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import infojax as ij
from infojax.activations import bottleneck

LOG2 = np.log(2.0)


def _binary_entropy_bits(p):
  p = np.clip(p, 1e-300, 1.0)
  q = np.clip(1.0 - p, 1e-300, 1.0)
  return -(p * np.log2(p) + q * np.log2(q))


def _mrs_gerber_bits(i_xt_bits, e):
  """I(T;Y) on the optimal curve of the binary symmetric pair: 1 - h(e * h^{-1}(1 - I(X;T)))."""
  target = 1.0 - i_xt_bits
  delta = 0.5 if target >= 1.0 else brentq(lambda d: _binary_entropy_bits(d) - target, 0.0, 0.5)
  return 1.0 - _binary_entropy_bits(e * (1 - delta) + delta * (1 - e))


def _symmetric_pair(e=0.1):
  return jnp.array([[0.5 * (1 - e), 0.5 * e], [0.5 * e, 0.5 * (1 - e)]])


def _reference_ib(p_xy, q):
  """I(X;T), I(T;Y) in nats from explicit loops (float64 numpy)."""
  p_xy, q = np.asarray(p_xy, np.float64), np.asarray(q, np.float64)
  num_x, num_y = p_xy.shape
  p_x = p_xy.sum(axis=1)
  p_y = p_xy.sum(axis=0)
  p_t = [sum(p_x[x] * q[x, t] for x in range(num_x)) for t in range(q.shape[1])]
  i_xt = sum(p_x[x] * q[x, t] * np.log(q[x, t] / p_t[t])
             for x in range(num_x) for t in range(q.shape[1]) if q[x, t] > 0)
  i_ty = 0.0
  for t in range(q.shape[1]):
    for y in range(num_y):
      p_ty = sum(q[x, t] * p_xy[x, y] for x in range(num_x))
      if p_ty > 0:
        i_ty += p_ty * np.log(p_ty / (p_t[t] * p_y[y]))
  return i_xt, i_ty


def test_binary_symmetric_pair_threshold_and_mrs_gerber_curve(x64):
  p_xy = _symmetric_pair()
  betas = jnp.array([1.5, 1.6, 2.0, 3.0, 10.0])
  curve = jax.jit(lambda b, k: bottleneck.ib_curve(p_xy, b, num_clusters=2, key=k, restarts=5))(
      betas, jax.random.key(0))
  i_xt, i_ty = np.asarray(curve.i_xt) / LOG2, np.asarray(curve.i_ty) / LOG2
  assert i_xt[0] < 1e-6 and i_ty[0] < 1e-6           # trivial below 1 / (1 - 2e)^2 = 1.5625
  np.testing.assert_allclose(i_ty[1:], [0.0814, 0.4072, 0.5166, 0.5310], atol=1e-4)  # §8.5
  for x, y in zip(i_xt[1:], i_ty[1:]):
    assert abs(y - _mrs_gerber_bits(x, 0.1)) < 1e-4
  mutual = float(ij.info.mutual_information(p_xy)) / LOG2
  np.testing.assert_allclose(mutual, 0.531004, atol=1e-6)
  assert np.all(i_ty <= mutual + 1e-9) and abs(i_ty[-1] - mutual) < 1e-4
  assert bool(jnp.all(curve.converged))
  for q, a, b in zip(curve.p_t_given_x, curve.i_xt, curve.i_ty):
    np.testing.assert_allclose(_reference_ib(p_xy, q), (a, b), atol=1e-10)


def test_random_joints_curve_is_monotone_concave_and_more_clusters_help(x64):
  rng = np.random.default_rng(0)
  p_xy = jnp.asarray(rng.dirichlet(np.ones(24)).reshape(8, 3))
  betas = jnp.geomspace(0.5, 50.0, 12)
  curve = bottleneck.ib_curve(p_xy, betas, num_clusters=8, key=jax.random.key(1), restarts=8,
                              anneal=True)
  i_xt, i_ty = np.asarray(curve.i_xt), np.asarray(curve.i_ty)
  assert np.all(np.diff(i_xt) >= -1e-7) and np.all(np.diff(i_ty) >= -1e-7)
  assert np.all(i_ty <= float(ij.info.mutual_information(p_xy)) + 1e-9)
  # Concave: the slope dI(T;Y)/dI(X;T) between points falls (where I(X;T) moves).
  moved = np.diff(i_xt) > 1e-4
  slopes = (np.diff(i_ty) / np.where(moved, np.diff(i_xt), 1.0))[moved]
  assert np.all(np.diff(slopes) <= 1e-3)
  best = [float(bottleneck.blahut_arimoto(p_xy, beta=5.0, num_clusters=k, key=jax.random.key(2),
                                          restarts=10).lagrangian) for k in (1, 2, 3, 4)]
  assert np.all(np.diff(best) <= 1e-8)


def test_log_space_update_is_stable_at_large_beta_and_deterministic_ib_is_hard(x64):
  p_xy = _symmetric_pair()
  result = bottleneck.blahut_arimoto(p_xy, beta=1e4, num_clusters=2, key=jax.random.key(3),
                                     restarts=3)
  assert np.all(np.isfinite(np.asarray(result.p_t_given_x)))
  np.testing.assert_allclose(float(result.i_ty), float(ij.info.mutual_information(p_xy)),
                             atol=1e-8)
  hard = bottleneck.blahut_arimoto(p_xy, beta=5.0, num_clusters=2, key=jax.random.key(4),
                                   restarts=3, method="deterministic")
  assert set(np.unique(np.asarray(hard.p_t_given_x))) <= {0.0, 1.0}
  entropy_t = -float(jnp.sum(jnp.where(hard.p_t > 0, hard.p_t * jnp.log(hard.p_t), 0.0)))
  np.testing.assert_allclose(float(hard.lagrangian), entropy_t - 5.0 * float(hard.i_ty), atol=1e-9)


@pytest.mark.parametrize("p_xy, options, message", [
    ([[0.5, -0.1], [0.3, 0.3]], {}, "non-negative"),
    ([[0.5, 0.1], [0.3, 0.3]], {}, "must sum to 1"),
    ([[0.5, 0.5], [0.0, 0.0]], {}, "p\\(x\\) > 0"),
    ([0.5, 0.5], {}, "shape \\(X, Y\\)"),
    ([[0.5, 0.0], [0.0, 0.5]], {"beta": 0.0}, "beta must be a finite number > 0"),
    ([[0.5, 0.0], [0.0, 0.5]], {"num_clusters": 0}, "num_clusters must be a positive integer"),
    ([[0.5, 0.0], [0.0, 0.5]], {"method": "soft"}, "method must be one of"),
    ([[0.5, 0.0], [0.0, 0.5]], {"tol": -1.0}, "tol must be a finite number >= 0"),
])
def test_bad_input_gets_a_clear_error(p_xy, options, message):
  kwargs = dict(beta=1.0, num_clusters=2, key=jax.random.key(0))
  kwargs.update(options)
  with pytest.raises(ValueError, match=message):
    bottleneck.blahut_arimoto(jnp.asarray(p_xy, jnp.float32), **kwargs)


# ----------------------------------------------------------------------------------------------
# The maximal correlation and the stability of the trivial encoder.
# ----------------------------------------------------------------------------------------------


def _ace_maximal_correlation(p_xy, iterations=2000):
  """rho_m by alternating conditional expectations (Breiman & Friedman 1985), float64 loops."""
  p_xy = np.asarray(p_xy, np.float64)
  p_x, p_y = p_xy.sum(axis=1), p_xy.sum(axis=0)
  f = np.random.default_rng(0).normal(size=p_xy.shape[0])
  rho = 0.0
  for _ in range(iterations):
    f = f - np.dot(p_x, f)
    f = f / np.sqrt(np.dot(p_x, f * f))
    g = np.array([sum(p_xy[x, y] * f[x] for x in range(len(p_x))) / p_y[y]
                  for y in range(len(p_y))])
    rho = np.sqrt(np.dot(p_y, g * g))
    f = np.array([sum(p_xy[x, y] * g[y] for y in range(len(p_y))) / p_x[x]
                  for x in range(len(p_x))])
  return rho


def test_maximal_correlation_against_closed_form_and_alternating_expectations(x64):
  np.testing.assert_allclose(float(bottleneck.maximal_correlation(_symmetric_pair(0.1))), 0.8,
                             atol=1e-12)
  independent = np.outer([0.2, 0.3, 0.5], [0.6, 0.4])
  assert float(bottleneck.maximal_correlation(jnp.asarray(independent))) < 1e-12
  p_xy = np.random.default_rng(5).dirichlet(np.ones(24)).reshape(8, 3)
  rho = float(jax.jit(bottleneck.maximal_correlation)(jnp.asarray(p_xy)))
  np.testing.assert_allclose(rho, _ace_maximal_correlation(p_xy), atol=1e-10)
  # The trivial encoder is a local minimum below 1 / rho^2 and a saddle above: Blahut-Arimoto
  # started next to it returns to it below, and leaves it above.
  near_trivial = jnp.asarray(0.5 + 1e-3 * np.random.default_rng(6).uniform(-1, 1, (8, 1))
                             * np.array([[1.0, -1.0]]))
  solve = jax.jit(lambda beta: bottleneck.blahut_arimoto(
      jnp.asarray(p_xy), beta=beta, num_clusters=2, key=jax.random.key(0),
      p_t_given_x=near_trivial, max_iter=20_000).i_xt)
  assert float(solve(0.97 / rho ** 2)) < 1e-9
  assert float(solve(1.03 / rho ** 2)) > 1e-5


# ----------------------------------------------------------------------------------------------
# The Gaussian information bottleneck, against Gaussian log-determinants in float64 numpy.
# ----------------------------------------------------------------------------------------------


# Jitted once per shape and dtype (the input checks run eagerly in the bad-input test).
_GAUSSIAN_IB = jax.jit(bottleneck.gaussian_ib)
_GAUSSIAN_IB_CURVE = jax.jit(bottleneck.gaussian_ib_curve)


def _gaussian_joint(d_x=4, d_y=3, seed=0):
  rng = np.random.default_rng(seed)
  factor = rng.normal(size=(d_x + d_y, d_x + d_y))
  joint = factor @ factor.T + 0.3 * np.eye(d_x + d_y)
  return joint[:d_x, :d_x], joint[:d_x, d_x:], joint[d_x:, d_x:], joint


def _gaussian_information(projection, cov_x, cov_xy, cov_y):
  """I(X;T), I(T;Y) of T = A X + N(0, I) from log-determinants (float64 numpy)."""
  a = np.asarray(projection, np.float64)
  cov_x_given_y = cov_x - cov_xy @ np.linalg.inv(cov_y) @ cov_xy.T
  identity = np.eye(a.shape[0])
  i_xt = 0.5 * np.linalg.slogdet(a @ cov_x @ a.T + identity)[1]
  return i_xt, i_xt - 0.5 * np.linalg.slogdet(a @ cov_x_given_y @ a.T + identity)[1]


def test_gaussian_ib_matches_log_determinants_eigenvectors_and_is_trivial_below_beta_1(x64):
  cov_x, cov_xy, cov_y, _ = _gaussian_joint()
  cov_x_given_y = cov_x - cov_xy @ np.linalg.inv(cov_y) @ cov_xy.T
  regression = cov_x_given_y @ np.linalg.inv(cov_x)
  expected_lambdas = np.sort(np.real(np.linalg.eigvals(regression)))
  first = _GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=1.0)
  np.testing.assert_allclose(first.eigenvalues, expected_lambdas, atol=1e-10)
  assert expected_lambdas[-1] > 1 - 1e-10        # d_y = 3 < d_x = 4: one direction is irrelevant
  critical = 1.0 / (1.0 - expected_lambdas[:3])
  np.testing.assert_allclose(first.critical_betas[:3], critical, rtol=1e-9)
  assert first.critical_betas[3] > 1e9
  betas = [0.5, 0.99 * critical[0], 1.01 * critical[0], 0.5 * (critical[1] + critical[2]),
           2.0 * critical[2]]
  for beta in betas:
    result = _GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=beta)
    a = np.asarray(result.projection)
    active = beta * (1 - expected_lambdas) > 1
    assert int(result.num_active) == active.sum()
    i_xt, i_ty = _gaussian_information(a, cov_x, cov_xy, cov_y)
    np.testing.assert_allclose([result.i_xt, result.i_ty], [i_xt, i_ty], atol=1e-10)
    np.testing.assert_allclose(result.lagrangian, i_xt - beta * i_ty, atol=1e-9)
    for i, row in enumerate(a):
      if not active[i]:
        assert np.all(row == 0)
        continue
      np.testing.assert_allclose(row @ regression, expected_lambdas[i] * row, atol=1e-9)
      # alpha_i^2 r_i = (beta (1 - lambda_i) - 1) / lambda_i, whatever the scale of v_i.
      np.testing.assert_allclose(row @ cov_x @ row,
                                 (beta * (1 - expected_lambdas[i]) - 1) / expected_lambdas[i],
                                 rtol=1e-9)
    if beta < critical[0]:
      assert np.all(a == 0) and float(result.i_xt) == 0 and float(result.i_ty) == 0


def _gaussian_lagrangian(a, beta, cov_x, cov_xy, cov_y):
  i_xt, i_ty = _gaussian_information(a, cov_x, cov_xy, cov_y)
  return i_xt - beta * i_ty


def test_gaussian_ib_projection_minimises_the_lagrangian(x64):
  cov_x, cov_xy, cov_y, _ = _gaussian_joint(seed=1)
  rng = np.random.default_rng(2)
  for beta in (3.0, 12.0, 60.0):
    a = np.asarray(_GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=beta).projection)
    best = _gaussian_lagrangian(a, beta, cov_x, cov_xy, cov_y)
    for size in (1e-3, 1e-2, 1e-1, 1.0):
      for _ in range(20):
        perturbed = a + size * rng.normal(size=a.shape)
        assert _gaussian_lagrangian(perturbed, beta, cov_x, cov_xy, cov_y) > best
    for scale in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
      assert _gaussian_lagrangian(scale * a, beta, cov_x, cov_xy, cov_y) > best


def test_gaussian_ib_curve_slope_limit_and_scalar_closed_form(x64):
  cov_x, cov_xy, cov_y, joint = _gaussian_joint(seed=3)
  critical = np.asarray(_GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=1.0).critical_betas)
  betas = np.array([1.5 * critical[0], 0.5 * (critical[0] + critical[1]),
                    0.5 * (critical[1] + critical[2]), 3.0 * critical[2]])
  step = 1e-5 * betas
  curve = _GAUSSIAN_IB_CURVE(cov_x, cov_xy, cov_y,
                             np.concatenate([betas - step, betas, betas + step]))
  i_xt, i_ty = np.asarray(curve.i_xt).reshape(3, -1), np.asarray(curve.i_ty).reshape(3, -1)
  slopes = (i_ty[2] - i_ty[0]) / (i_xt[2] - i_xt[0])
  np.testing.assert_allclose(slopes, 1.0 / betas, rtol=1e-7)      # dI(T;Y)/dI(X;T) = 1/beta
  for index, beta in enumerate(betas):
    single = _GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=beta)
    np.testing.assert_allclose(single.projection, curve.projection[len(betas) + index],
                               atol=1e-12)
  mutual = 0.5 * (np.linalg.slogdet(cov_x)[1] + np.linalg.slogdet(cov_y)[1]
                  - np.linalg.slogdet(joint)[1])
  far = _GAUSSIAN_IB(cov_x, cov_xy, cov_y, beta=1e9)
  np.testing.assert_allclose(float(far.i_ty), mutual, atol=1e-7)
  # Scalars of correlation rho: beta_1 = 1 / rho^2, I(T;Y) = -1/2 log(1 - rho^2 (1 - e^-2I(X;T))).
  rho = 0.6
  scalar = _GAUSSIAN_IB_CURVE(np.eye(1), np.full((1, 1), rho), np.eye(1),
                              np.geomspace(1.01 / rho ** 2, 1e3, 9))
  np.testing.assert_allclose(scalar.critical_betas[:, 0], 1 / rho ** 2, rtol=1e-12)
  np.testing.assert_allclose(
      scalar.i_ty, -0.5 * np.log(1 - rho ** 2 * (1 - np.exp(-2 * np.asarray(scalar.i_xt)))),
      atol=1e-12)
  assert np.all(np.diff(scalar.i_xt) > 0) and np.all(np.diff(scalar.i_ty) > 0)


@pytest.mark.parametrize("cov_x, cov_xy, cov_y, message", [
    (np.eye(2), np.zeros((2, 2)), np.eye(3), "cov_xy \\(d_x, d_y\\)"),
    (np.eye(2), np.ones((2, 1)), np.eye(1), "must be positive definite"),
    (np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros((2, 1)), np.eye(1), "symmetric"),
])
def test_gaussian_ib_bad_input_gets_a_clear_error(cov_x, cov_xy, cov_y, message):
  with pytest.raises(ValueError, match=message):
    bottleneck.gaussian_ib(jnp.asarray(cov_x, jnp.float32), jnp.asarray(cov_xy, jnp.float32),
                           jnp.asarray(cov_y, jnp.float32), beta=2.0)
