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
])
def test_bad_input_gets_a_clear_error(p_xy, options, message):
  kwargs = dict(beta=1.0, num_clusters=2, key=jax.random.key(0))
  kwargs.update(options)
  with pytest.raises(ValueError, match=message):
    bottleneck.blahut_arimoto(jnp.asarray(p_xy, jnp.float32), **kwargs)
