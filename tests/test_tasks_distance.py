"""Tests of infojax.tasks.distance: d(D1 -> D2) = I(D1 D2; w) - I(D1; w) (science.md §3.4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import flatten_util

from infojax.tasks import distance

# The linear-Gaussian instance of science.md §3.4: lambda = 3, beta = 1, noise variance 1.
BETA = 1.0
PRIOR_VARIANCE = 9.0


def _direction(num_inputs, angle_degrees=0.0):
  """``cos(angle) e_1 + sin(angle) e_2``, a unit vector of R^k."""
  angle = np.deg2rad(angle_degrees)
  vector = np.zeros(num_inputs)
  vector[0], vector[1] = np.cos(angle), np.sin(angle)
  return vector


def _two_tasks(task_weights, num_examples):
  """``(d(1->2), d(2->1), I1, I2, I12)`` of two linear-Gaussian tasks on tagged inputs."""
  tasks = distance.linear_gaussian_tasks(task_weights, num_examples)
  mean = functools.partial(distance.linear_gaussian_posterior_mean, beta=BETA,
                           prior_variance=PRIOR_VARIANCE)
  information = functools.partial(distance.task_information, beta=BETA,
                                  prior_variance=PRIOR_VARIANCE)
  task_distance = functools.partial(distance.task_distance, beta=BETA,
                                    prior_variance=PRIOR_VARIANCE)
  curvature_1, curvature_2 = tasks.curvature
  correlation_1, correlation_2 = tasks.correlation
  curvature_12 = distance.joint_curvature(curvature_1, curvature_2)
  mean_1 = mean(curvature_1, correlation_1)
  mean_2 = mean(curvature_2, correlation_2)
  mean_12 = mean(curvature_12, correlation_1 + correlation_2)
  return (task_distance(curvature_1, mean_1, curvature_12, mean_12),
          task_distance(curvature_2, mean_2, curvature_12, mean_12),
          information(curvature_1, mean_1), information(curvature_2, mean_2),
          information(curvature_12, mean_12))


# ----------------------------------------------------------------------------------------------
# Float64 references, by explicit loops, sharing no code with the library.
# ----------------------------------------------------------------------------------------------


def _tagged_quadratic(inputs, targets, task, num_tasks, noise_variance):
  """``(H, b)`` of task ``task``'s summed Gaussian loss on tagged inputs, example by example."""
  num_inputs = inputs.shape[1]
  size = (num_tasks + 1) * num_inputs
  curvature = np.zeros((size, size))
  correlation = np.zeros(size)
  for x, y in zip(inputs, targets):
    tagged = np.zeros(size)
    tagged[:num_inputs] = x
    tagged[(task + 1) * num_inputs:(task + 2) * num_inputs] = x
    curvature += np.outer(tagged, tagged) / noise_variance
    correlation += tagged * y / noise_variance
  return curvature, correlation


def _reference_gibbs_information(curvature, correlation, beta, prior_variance):
  """``(KL(Q*||P), mean of Q*)`` for ``Q* propto N(0, lambda^2 I) exp(-L/beta)``, by slogdet.

  ``L(w) = w^T H w / 2 - b^T w``; ``Q*`` is Gaussian with precision ``H/beta + I/lambda^2``.
  """
  size = correlation.shape[0]
  covariance = np.linalg.inv(curvature / beta + np.eye(size) / prior_variance)
  mean = covariance @ correlation / beta
  sign, log_det = np.linalg.slogdet(covariance)
  assert sign > 0
  kl = 0.5 * (np.trace(covariance) / prior_variance + mean @ mean / prior_variance - size
              + size * np.log(prior_variance) - log_det)
  return kl, mean


# ----------------------------------------------------------------------------------------------
# The numbers of science.md §3.4 / §15 B.18.
# ----------------------------------------------------------------------------------------------


def test_distance_to_a_copy(x64):
  # k = 10: an exact copy, copies with 4x and 16x the samples, and a copy at N = 10^4, vmapped.
  counts = np.array([[100, 100], [100, 400], [100, 1600], [10_000, 10_000]], float)
  weights = np.stack([_direction(10)] * 2)
  distances = jax.jit(jax.vmap(lambda count: _two_tasks(weights, count)[0]))(counts)
  np.testing.assert_allclose(distances, [31.058, 37.984, 44.914, 54.075], rtol=0, atol=5e-4)
  # k = 100: ten times the curved directions.
  weights_100 = np.stack([_direction(100)] * 2)
  copy_distance = jax.jit(lambda count: _two_tasks(weights_100, count)[0])(np.array([100.0, 100.0]))
  np.testing.assert_allclose(copy_distance, 310.495, rtol=0, atol=5e-4)


def test_distance_to_a_rotated_task_under_vmap(x64):
  angles = np.array([0.0, 30.0, 60.0, 90.0, 180.0])
  first = _direction(10)
  second = np.stack([_direction(10, angle) for angle in angles])
  distances = jax.vmap(
      lambda weights: _two_tasks(jnp.stack([jnp.asarray(first), weights]),
                                 np.array([100.0, 100.0]))[0])(jnp.asarray(second))
  np.testing.assert_allclose(distances, [31.0578, 31.0628, 31.0763, 31.0947, 31.1317], rtol=0,
                             atol=5e-5)
  assert np.all(np.diff(distances) > 0)


def test_scaled_task_and_the_asymmetry_identity(x64):
  weights = np.stack([_direction(10), 3.0 * _direction(10)])
  d_12, d_21, information_1, information_2, information_12 = _two_tasks(
      weights, np.array([100.0, 100.0]))
  np.testing.assert_allclose([d_12, d_21], [31.2797, 31.0577], rtol=0, atol=5e-5)
  np.testing.assert_allclose(d_12 - d_21, information_2 - information_1, rtol=1e-12)
  np.testing.assert_allclose(d_12 - d_21, 0.2220, rtol=0, atol=5e-5)
  np.testing.assert_allclose(d_12 + d_21, 2 * information_12 - information_1 - information_2,
                             rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Brute-force references.
# ----------------------------------------------------------------------------------------------


def test_linear_gaussian_tasks_match_tagged_data(x64):
  rng = np.random.default_rng(0)
  num_inputs, num_examples, noise_variance = 3, (7, 12, 5), 0.5
  weights = rng.normal(size=(len(num_examples), num_inputs))
  tasks = distance.linear_gaussian_tasks(weights, np.array(num_examples, float),
                                         noise_variance=noise_variance)
  assert tasks.curvature.shape == (3, 12, 12) and tasks.correlation.shape == (3, 12)
  for task, count in enumerate(num_examples):
    orthonormal, _ = np.linalg.qr(rng.normal(size=(count, num_inputs)))
    inputs = np.sqrt(count) * orthonormal  # X^T X = N I
    curvature, correlation = _tagged_quadratic(inputs, inputs @ weights[task], task,
                                               len(num_examples), noise_variance)
    np.testing.assert_allclose(tasks.curvature[task], curvature, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tasks.correlation[task], correlation, rtol=0, atol=1e-12)


def test_distance_matches_brute_force_gibbs_kl(x64):
  rng = np.random.default_rng(1)
  num_inputs, beta, prior_variance, noise_variance = 3, 0.8, 2.5, 0.7
  quadratics = []
  for task, count in enumerate((6, 9)):
    inputs = rng.normal(size=(count, num_inputs))
    targets = inputs @ rng.normal(size=num_inputs) + rng.normal(size=count)
    quadratics.append(_tagged_quadratic(inputs, targets, task, 2, noise_variance))
  (curvature_1, correlation_1), (curvature_2, correlation_2) = quadratics
  curvature_12, correlation_12 = curvature_1 + curvature_2, correlation_1 + correlation_2
  kl_1, reference_mean_1 = _reference_gibbs_information(curvature_1, correlation_1, beta,
                                                        prior_variance)
  kl_12, reference_mean_12 = _reference_gibbs_information(curvature_12, correlation_12, beta,
                                                          prior_variance)
  options = dict(beta=beta, prior_variance=prior_variance)
  mean_1 = distance.linear_gaussian_posterior_mean(curvature_1, correlation_1, **options)
  mean_12 = distance.linear_gaussian_posterior_mean(curvature_12, correlation_12, **options)
  np.testing.assert_allclose(mean_1, reference_mean_1, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(mean_12, reference_mean_12, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(distance.task_information(curvature_1, mean_1, **options), kl_1,
                             rtol=1e-10)
  np.testing.assert_allclose(
      distance.task_distance(curvature_1, mean_1, curvature_12, mean_12, **options),
      kl_12 - kl_1, rtol=1e-10)


def test_diagonal_and_dense_curvatures_agree(x64):
  rng = np.random.default_rng(2)
  params = {"bias": rng.normal(size=2), "kernel": rng.normal(size=(3, 2))}
  curvature = {"bias": np.array([0.0, 4.0]), "kernel": 50.0 * rng.exponential(size=(3, 2))}
  prior_mean = {"bias": np.zeros(2), "kernel": 0.1 * rng.normal(size=(3, 2))}
  options = dict(beta=0.3, prior_variance=2.0, prior_mean=prior_mean)
  diagonal = distance.task_information(curvature, params, **options)
  flat_curvature, _ = flatten_util.ravel_pytree(curvature)
  dense = distance.task_information(jnp.diag(flat_curvature), params, **options)
  np.testing.assert_allclose(dense, diagonal, rtol=1e-12)
  # Only the spectrum counts: a rotated curvature carries the same information.
  rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
  rotated = rotation @ np.diag(np.asarray(flat_curvature)) @ rotation.T
  np.testing.assert_allclose(distance.task_information(rotated, params, **options), diagonal,
                             rtol=1e-12)
  # Float64 loops over the entries: (w - w0)^2 / (2 lambda^2) + [log(1 + s) - s / (1 + s)] / 2.
  expected = 0.0
  for name in params:
    for w, w0, h in zip(params[name].ravel(), prior_mean[name].ravel(), curvature[name].ravel()):
      s = 2.0 * h / 0.3
      expected += (w - w0) ** 2 / 4.0 + 0.5 * (np.log(1.0 + s) - s / (1.0 + s))
  np.testing.assert_allclose(diagonal, expected, rtol=1e-12)


def test_jit_matches_eager_in_float32():
  tasks = distance.linear_gaussian_tasks(np.stack([_direction(4), _direction(4, 60.0)]),
                                         np.array([20.0, 30.0]))
  curvature_1, curvature_2 = tasks.curvature
  curvature_12 = distance.joint_curvature(curvature_1, curvature_2)
  options = dict(beta=1.0, prior_variance=9.0)
  mean_1 = distance.linear_gaussian_posterior_mean(curvature_1, tasks.correlation[0], **options)
  mean_12 = distance.linear_gaussian_posterior_mean(curvature_12, jnp.sum(tasks.correlation, 0),
                                                    **options)
  for first, joint in ((curvature_1, curvature_12),
                       (jnp.diagonal(curvature_1), jnp.diagonal(curvature_12))):
    eager = distance.task_distance(first, mean_1, joint, mean_12, **options)
    jitted = jax.jit(distance.task_distance)(first, mean_1, joint, mean_12, **options)
    assert eager.dtype == jnp.float32
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    assert eager > 0


def test_vmap_over_beta_matches_eager(x64):
  tasks = distance.linear_gaussian_tasks(np.stack([_direction(4), _direction(4, 45.0)]),
                                         np.array([20.0, 50.0]))
  curvature_12 = distance.joint_curvature(*tasks.curvature)
  betas = np.array([0.3, 1.0, 3.0])
  for first, joint in ((tasks.curvature[0], curvature_12),
                       (jnp.diagonal(tasks.curvature[0]), jnp.diagonal(curvature_12))):

    def at(beta, first=first, joint=joint):
      mean_1 = distance.linear_gaussian_posterior_mean(tasks.curvature[0], tasks.correlation[0],
                                                       beta=beta, prior_variance=9.0)
      mean_12 = distance.linear_gaussian_posterior_mean(
          curvature_12, jnp.sum(tasks.correlation, 0), beta=beta, prior_variance=9.0)
      return distance.task_distance(first, mean_1, joint, mean_12, beta=beta, prior_variance=9.0)

    vmapped = jax.vmap(at)(betas)
    np.testing.assert_allclose(vmapped, [at(beta) for beta in betas], rtol=1e-12)
    assert np.all(np.diff(vmapped) < 0)   # a larger beta keeps less information


def test_bad_inputs():
  params = jnp.zeros(3)
  options = dict(beta=1.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="curvature must be either"):
    distance.task_information(jnp.ones((3, 2)), params, **options)
  with pytest.raises(ValueError, match="symmetric"):
    distance.task_information(jnp.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
                              params, **options)
  with pytest.raises(ValueError, match="positive semi-definite"):
    distance.task_information(jnp.diag(jnp.array([1.0, -0.5, 2.0])), params, **options)
  with pytest.raises(ValueError, match="non-negative"):
    distance.task_information(jnp.array([1.0, -0.5, 2.0]), params, **options)
  with pytest.raises(ValueError, match="beta"):
    distance.task_information(jnp.eye(3), params, beta=0.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="prior_variance"):
    distance.task_information(jnp.eye(3), params, beta=1.0, prior_variance=-1.0)
  with pytest.raises(ValueError, match="params_joint"):
    distance.task_distance(jnp.eye(3), params, jnp.eye(4), jnp.zeros(4), **options)
  with pytest.raises(ValueError, match=r"curvatures\[1\]"):
    distance.joint_curvature(jnp.eye(3), jnp.eye(4))
  with pytest.raises(ValueError, match="at least one"):
    distance.joint_curvature()
  with pytest.raises(ValueError, match="task_weights"):
    distance.linear_gaussian_tasks(jnp.ones(3), jnp.ones(1))
  with pytest.raises(ValueError, match="num_examples must have shape"):
    distance.linear_gaussian_tasks(jnp.ones((2, 3)), jnp.ones(3))
  with pytest.raises(ValueError, match="num_examples must be positive"):
    distance.linear_gaussian_tasks(jnp.ones((2, 3)), jnp.array([1.0, 0.0]))
  with pytest.raises(ValueError, match="noise_variance"):
    distance.linear_gaussian_tasks(jnp.ones((2, 3)), jnp.ones(2), noise_variance=0.0)
  with pytest.raises(ValueError, match="correlation"):
    distance.linear_gaussian_posterior_mean(jnp.eye(3), jnp.ones(2), **options)
