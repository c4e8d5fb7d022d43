"""Tests of infojax.activations.invariance: I(z; n) against closed forms, quadrature, brute force.

Tolerances are a few standard deviations of each estimator at the sample size used (stated at each
check), plus its known bias; every random draw uses a fixed seed.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from infojax import info
from infojax.activations import invariance

mi = invariance.mutual_information_with_nuisance


def _correlated_pair(rng, num_examples, rho):
  """1-D standard Gaussians with correlation rho; I = -1/2 log(1 - rho^2)."""
  n = rng.standard_normal(num_examples)
  z = rho * n + math.sqrt(1 - rho ** 2) * rng.standard_normal(num_examples)
  return z, n, -0.5 * math.log(1 - rho ** 2)


def _linear_channel(rng, num_examples, noise=1.0):
  """z = A n + noise e, n ~ N(0, I_2), z in R^3; I = 1/2 log|I + A^T A / noise^2|."""
  a = np.array([[0.8, 0.1], [-0.3, 0.6], [0.2, 0.4]])
  n = rng.standard_normal((num_examples, 2))
  z = n @ a.T + noise * rng.standard_normal((num_examples, 3))
  true = 0.5 * np.linalg.slogdet(np.eye(2) + a.T @ a / noise ** 2)[1]
  return z, n, true


def _sample_gaussian_mi(z, n):
  """Reference: 1/2 log(|S_z| |S_n| / |S_zn|) of the ML sample covariances, in NumPy."""
  z, n = z.reshape(len(z), -1), n.reshape(len(n), -1)
  cov = np.cov(np.concatenate([z, n], axis=1), rowvar=False, bias=True)
  k = z.shape[1]
  logdet = lambda s: np.linalg.slogdet(s)[1]  # noqa: E731
  return 0.5 * (logdet(cov[:k, :k]) + logdet(cov[k:, k:]) - logdet(cov))


def _mixture_1d(rng, num_examples, means):
  labels = rng.integers(0, len(means), num_examples)
  return np.asarray(means)[labels] + rng.standard_normal(num_examples), labels


def _mixture_1d_true_mi(means):
  """I(z; c) = H(z) - H(z | c) for z | c ~ N(mu_c, 1), c uniform; H(z) by quadrature."""
  means = np.asarray(means)

  def neg_p_log_p(x):
    p = np.mean(scipy.stats.norm.pdf(x, means, 1.0))
    return -p * np.log(p) if p > 0 else 0.0

  h_z = scipy.integrate.quad(neg_p_log_p, means.min() - 12, means.max() + 12, limit=200)[0]
  return h_z - 0.5 * math.log(2 * math.pi * math.e)


# ----------------------------------------------------------------------------------------------
# Continuous nuisance: correlated Gaussians with known MI.
# ----------------------------------------------------------------------------------------------


def test_gaussian_one_dimensional_is_the_sample_correlation_formula(x64):
  z, n, true = _correlated_pair(np.random.default_rng(0), 20000, 0.8)
  value = mi(z, n, estimator="gaussian")
  r = np.corrcoef(z, n)[0, 1]
  np.testing.assert_allclose(value, -0.5 * math.log(1 - r ** 2), rtol=1e-10)
  # Sampling sd ~ rho / sqrt(N) = 0.0057 nats; bias k m / (2N) = 2.5e-5.
  assert abs(float(value) - true) < 0.02


def test_gaussian_multivariate_linear_channel(x64):
  z, n, true = _linear_channel(np.random.default_rng(1), 20000)
  value = mi(z, n, estimator="gaussian")
  np.testing.assert_allclose(value, _sample_gaussian_mi(z, n), rtol=1e-10)
  assert abs(float(value) - true) < 0.02  # sd ~ 0.006 at N = 20000
  # (N, k, ...) inputs are flattened to (N, k).
  np.testing.assert_allclose(mi(z.reshape(-1, 3, 1), n.reshape(-1, 1, 2)), value, rtol=1e-12)


def test_knn_correlated_gaussians(x64):
  rng = np.random.default_rng(2)
  z, n, true = _correlated_pair(rng, 5000, 0.8)
  # KSG at N = 5000, k = 3: sd ~ 0.008, bias ~ 0 for a Gaussian pair; measured error -0.013.
  assert abs(float(mi(z, n, estimator="knn")) - true) < 0.03
  z, n, true = _linear_channel(rng, 5000)
  # 5-D joint space: the KSG bias grows with dimension; measured error -0.013.
  assert abs(float(mi(z, n, estimator="knn")) - true) < 0.05


def test_binned_correlated_gaussians(x64):
  z, n, true = _correlated_pair(np.random.default_rng(3), 20000, 0.8)
  plugin = float(mi(z, n, estimator="binned", num_bins=30))
  corrected = float(mi(z, n, estimator="binned", num_bins=30, bias_correction=True))
  # 30 x 30 bins: the plug-in bias (M_zn - M_z - M_n + 1) / (2N) is ~ +0.02 nats here, the
  # quantisation loss is small; Miller-Madow removes most of the bias.
  assert 0.0 < plugin - corrected < 0.05
  assert abs(corrected - true) < 0.03
  assert abs(plugin - true) < 0.06


# ----------------------------------------------------------------------------------------------
# Discrete nuisance: Gaussian mixtures, true MI by numerical integration.
# ----------------------------------------------------------------------------------------------

MEANS = (-2.0, 0.0, 2.0)


def test_mixture_knn_and_gaussian_bound(x64):
  true = _mixture_1d_true_mi(MEANS)  # 0.619 nats
  z, labels = _mixture_1d(np.random.default_rng(4), 20000, MEANS)
  # Ross (2014) at N = 5000: sd ~ 0.007; measured error 0.005.
  assert abs(float(mi(z[:5000], labels[:5000], estimator="knn")) - true) < 0.03
  # The Gaussian approximation: 1/2 log(Var z / 1) = 1/2 log(1 + 8/3) = 0.650 in the population,
  # an upper bound on I since every class is Gaussian (0.030 nats above it here).
  gaussian = float(mi(z, labels, estimator="gaussian"))
  assert abs(gaussian - 0.5 * math.log(1 + 8 / 3)) < 0.015  # sd ~ 0.005, bias 2/(4N)
  assert gaussian > true + 0.01
  # Labels need not be 0..C-1: any distinct integers are classes.
  np.testing.assert_allclose(mi(z, 10 * labels - 7, estimator="gaussian"), gaussian, rtol=1e-12)


def _quantised_mixture_mi(z, means, num_bins):
  """Exact I(Q(z); c) for the bins the estimator uses (equal width over the sample range)."""
  edges = np.linspace(z.min(), z.max(), num_bins + 1)
  edges[0], edges[-1] = -np.inf, np.inf  # the estimator's end bins also hold what lies beyond
  p_bin_given_c = np.diff(scipy.stats.norm.cdf(edges[None, :] - np.asarray(means)[:, None]), axis=1)
  p_joint = (p_bin_given_c / len(means)).T  # (bins, classes)
  return float(info.mutual_information(p_joint / p_joint.sum()))


def test_mixture_binned_against_exact_quantised_information(x64):
  true = _mixture_1d_true_mi(MEANS)
  z, labels = _mixture_1d(np.random.default_rng(5), 20000, MEANS)
  exact_quantised = _quantised_mixture_mi(z, MEANS, 30)
  assert exact_quantised < true  # data processing: binning loses information
  plugin = float(mi(z, labels, estimator="binned", num_bins=30))
  corrected = float(mi(z, labels, estimator="binned", num_bins=30, bias_correction=True))
  # sd ~ 0.005 at N = 20000; plug-in bias ~ (M_zn - M_z - M_n + 1) / (2N) ~ 0.001.
  assert abs(corrected - exact_quantised) < 0.015
  assert abs(plugin - exact_quantised) < 0.015
  assert plugin > corrected


def test_mixture_two_dimensional_knn(x64):
  means = np.array([[1.5, 0.0], [-0.75, 1.3], [-0.75, -1.3]])
  rng = np.random.default_rng(6)
  labels = rng.integers(0, 3, 5000)
  z = means[labels] + rng.standard_normal((5000, 2))
  # True I = H(z) - H(z|c), H(z) on a grid (spacing 0.04, error far below 1e-4).
  grid = np.arange(-9.0, 9.0, 0.04)
  x, y = np.meshgrid(grid, grid, indexing="ij")
  points = np.stack([x.ravel(), y.ravel()], axis=1)
  density = np.mean([scipy.stats.multivariate_normal.pdf(points, mu) for mu in means], axis=0)
  h_z = -np.sum(scipy.special.xlogy(density, density)) * 0.04 ** 2
  true = h_z - math.log(2 * math.pi * math.e)
  # Ross at N = 5000 in 2-D: sd ~ 0.01; measured error -0.019 (true I = 0.689).
  assert abs(float(mi(z, labels, estimator="knn")) - true) < 0.04
  assert float(mi(z, labels, estimator="gaussian")) > true  # Gaussian classes: an upper bound


# ----------------------------------------------------------------------------------------------
# Brute-force references for the k-NN estimators.
# ----------------------------------------------------------------------------------------------


def _standardise(x):
  x = x.reshape(len(x), -1)
  return (x - x.mean(0)) / x.std(0)


def _max_norm_distances(x):
  return np.max(np.abs(x[:, None, :] - x[None, :, :]), axis=-1)


def _ksg_brute_force(z, n, k):
  z, n = _standardise(z), _standardise(n)
  dz, dn = _max_norm_distances(z), _max_norm_distances(n)
  joint = np.maximum(dz, dn)
  np.fill_diagonal(joint, np.inf)
  radius = np.sort(joint, axis=1)[:, k - 1]
  n_z = np.sum(dz < radius[:, None], axis=1) - 1  # other points strictly within; minus self
  n_n = np.sum(dn < radius[:, None], axis=1) - 1
  psi = scipy.special.digamma
  return psi(k) + psi(len(z)) - np.mean(psi(n_z + 1) + psi(n_n + 1))


def _ross_brute_force(z, labels, k):
  z = _standardise(z)
  d = _max_norm_distances(z)
  total, class_sizes, neighbours, counts = 0, [], [], []
  for i in range(len(z)):
    same = labels == labels[i]
    size = int(same.sum())
    if size < 2:
      continue
    k_i = min(k, size - 1)
    others = np.sort(d[i][same & (np.arange(len(z)) != i)])
    radius = others[k_i - 1]
    class_sizes.append(size)
    neighbours.append(k_i)
    counts.append(int(np.sum(d[i] < radius)))  # self included
    total += 1
  psi = scipy.special.digamma
  return (psi(total) - np.mean(psi(class_sizes)) + np.mean(psi(neighbours))
          - np.mean(psi(counts)))


def test_knn_matches_brute_force(x64):
  rng = np.random.default_rng(7)
  z, n = rng.standard_normal((400, 2)), rng.standard_normal(400)
  z[:, 0] += n
  for k in (1, 3):
    np.testing.assert_allclose(mi(z, n, estimator="knn", num_neighbors=k),
                               _ksg_brute_force(z, n, k), rtol=1e-10)
  labels = rng.integers(0, 4, 400)
  labels[:3] = [7, 8, 8]  # a singleton class (left out) and a class of 2 (k_i = 1)
  z[:, 1] += labels
  for k in (1, 4):
    np.testing.assert_allclose(mi(z, labels, estimator="knn", num_neighbors=k),
                               _ross_brute_force(z, labels, k), rtol=1e-10)


def test_binned_matches_plugin_table(x64):
  rng = np.random.default_rng(8)
  z = rng.standard_normal(3000)
  labels = (z + rng.standard_normal(3000) > 0).astype(np.int32)
  edges = np.linspace(z.min(), z.max(), 11)
  bins = np.clip(np.digitize(z, edges[1:-1]), 0, 9)
  table = np.zeros((10, 2))
  np.add.at(table, (bins, labels), 1.0)
  np.testing.assert_allclose(mi(z, labels, estimator="binned", num_bins=10),
                             info.mutual_information(table / table.sum()), rtol=1e-9)
  # Fixed edges for every coordinate (tanh units in [-1, 1]): values beyond go to the end bins.
  t = np.tanh(z)
  edges = np.linspace(-1, 1, 11)
  table = np.zeros((10, 2))
  np.add.at(table, (np.clip(np.digitize(t, edges[1:-1]), 0, 9), labels), 1.0)
  np.testing.assert_allclose(
      mi(t, labels, estimator="binned", num_bins=10, bin_range=(-1.0, 1.0)),
      info.mutual_information(table / table.sum()), rtol=1e-9)


def test_binned_saturates_at_nuisance_entropy(x64):
  rng = np.random.default_rng(9)
  z = rng.standard_normal((500, 20))  # independent of the labels, yet every binned row is unique
  labels = rng.integers(0, 5, 500)
  h_n = float(info.entropy(np.bincount(labels) / 500))
  np.testing.assert_allclose(mi(z, labels, estimator="binned"), h_n, rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# Independent pairs: near zero, with each estimator's bias.
# ----------------------------------------------------------------------------------------------


def test_independent_pairs_near_zero(x64):
  rng = np.random.default_rng(10)
  num_examples = 20000
  z = rng.standard_normal(num_examples)
  n = rng.standard_normal(num_examples)
  labels = rng.integers(0, 4, num_examples)
  # gaussian: 2N I ~ chi^2 with k m = 1 (continuous) and (C-1) k (k+1) / 2 = 3 (discrete) degrees
  # of freedom; 2N * 0.001 = 40 is far in either tail.
  assert 0 <= float(mi(z, n)) < 0.001
  assert 0 <= float(mi(z, labels)) < 0.001
  # knn at N = 20000: nearly unbiased at I = 0; over seeds KSG gave mean 0.001, sd 0.004, and
  # Ross mean -0.003, sd 0.005 (here 0.002 and 0.007).
  assert abs(float(mi(z, n, estimator="knn"))) < 0.02
  assert abs(float(mi(z, labels, estimator="knn"))) < 0.02
  # binned: 2N I_plugin ~ chi^2 with (M_z - 1)(M_n - 1) degrees of freedom (mean df, sd
  # sqrt(2 df)); Miller-Madow subtracts the mean.
  plugin = float(mi(z, labels, estimator="binned", num_bins=30))
  corrected = float(mi(z, labels, estimator="binned", num_bins=30, bias_correction=True))
  occupied = np.unique(np.floor((z - z.min()) / (np.ptp(z) / 30)).clip(0, 29)).size
  df = (occupied - 1) * 3
  assert abs(2 * num_examples * plugin - df) < 4 * math.sqrt(2 * df)
  assert abs(2 * num_examples * corrected) < 4 * math.sqrt(2 * df)
  assert abs(corrected) < 0.3 * plugin


def _gaussian_replicates(key, num_replicates, num_examples):
  """Jointly Gaussian (z, n) replicates, z in R^2 and n in R^2, with their true MI."""
  a = np.array([[0.9, 0.2], [-0.4, 0.7]])
  n_key, e_key = jax.random.split(key)
  n = jax.random.normal(n_key, (num_replicates, num_examples, 2), jnp.float64)
  z = n @ a.T + jax.random.normal(e_key, n.shape, jnp.float64)
  return z, n, 0.5 * np.linalg.slogdet(np.eye(2) + a.T @ a)[1]


def test_gaussian_bias_correction_removes_the_wishart_bias_under_vmap(x64):
  z, n, true = _gaussian_replicates(jax.random.key(11), 400, 40)
  plain, corrected = jax.vmap(lambda z, n: (mi(z, n), mi(z, n, bias_correction=True)))(z, n)
  np.testing.assert_allclose(plain[3], _sample_gaussian_mi(np.asarray(z[3]), np.asarray(n[3])),
                             rtol=1e-10)
  standard_error = float(jnp.std(plain)) / math.sqrt(400)  # ~ 0.006
  # Upward bias ~ k m / (2N) = 0.05 (0.06 with higher orders at N = 40); removed exactly.
  assert float(jnp.mean(plain)) - true > 0.03
  assert abs(float(jnp.mean(corrected)) - true) < 3.5 * standard_error
  # Discrete nuisance: bias ~ (C - 1) k (k + 1) / (4N) = 0.075 with C = 3, k = 2, N = 40 at I = 0.
  labels = np.arange(40) % 3
  plain, corrected = jax.vmap(lambda z: (mi(z, labels), mi(z, labels, bias_correction=True)))(z)
  standard_error = float(jnp.std(corrected)) / math.sqrt(400)
  assert float(jnp.mean(plain)) > 0.05
  assert abs(float(jnp.mean(corrected))) < 3.5 * standard_error


# ----------------------------------------------------------------------------------------------
# Invariance to reparametrisations of z.
# ----------------------------------------------------------------------------------------------


def test_gaussian_exactly_invariant_to_invertible_linear_maps(x64):
  rng = np.random.default_rng(12)
  z, n, _ = _linear_channel(rng, 2000)
  b = rng.standard_normal((3, 3)) + 2 * np.eye(3)
  c = rng.standard_normal((2, 2)) + 2 * np.eye(2)
  value = mi(z, n)
  np.testing.assert_allclose(mi(z @ b + 5.0, n @ c - 1.0), value, rtol=1e-9)
  labels = rng.integers(0, 4, 2000)
  z = z + labels[:, None]
  np.testing.assert_allclose(mi(z @ b + 5.0, labels), mi(z, labels), rtol=1e-9)
  np.testing.assert_allclose(mi(z, (labels + 1) % 4), mi(z, labels), rtol=1e-12)


def test_knn_invariant_to_per_coordinate_maps(x64):
  z, n, _ = _correlated_pair(np.random.default_rng(13), 5000, 0.8)
  value = float(mi(z, n, estimator="knn"))
  # Per-coordinate affine maps: exact (coordinates are standardised).
  np.testing.assert_allclose(mi(3.0 * z + 2.0, n, estimator="knn"), value, rtol=1e-9)
  # exp is invertible but not affine: the same value up to the estimator's error (measured 0.007).
  assert abs(float(mi(np.exp(z), n, estimator="knn")) - value) < 0.03
  z2, labels = _mixture_1d(np.random.default_rng(14), 5000, MEANS)
  value = float(mi(z2, labels, estimator="knn"))
  assert abs(float(mi(np.exp(z2 / 2), labels, estimator="knn")) - value) < 0.03


# ----------------------------------------------------------------------------------------------
# Transformations, dtypes, degenerate inputs.
# ----------------------------------------------------------------------------------------------


def test_gaussian_under_jit_and_vmap():
  rng = np.random.default_rng(15)
  z, n, _ = _linear_channel(rng, 500)
  z, n = z.astype(np.float32), n.astype(np.float32)
  eager = mi(z, n)
  assert eager.dtype == jnp.float32 and eager.shape == ()
  np.testing.assert_allclose(jax.jit(mi)(z, n), eager, rtol=1e-5)
  stack = np.stack([z, 2 * z, z + rng.standard_normal(z.shape).astype(np.float32)])
  batched = jax.vmap(mi, in_axes=(0, None))(stack, n)
  assert batched.shape == (3,)
  np.testing.assert_allclose(batched[:2], [eager, eager], rtol=1e-4)
  np.testing.assert_allclose(batched[2], mi(stack[2], n), rtol=1e-5)
  # Discrete labels: concrete labels need nothing; traced labels need a static num_classes.
  labels = rng.integers(0, 3, 500)
  eager = mi(z, labels)
  np.testing.assert_allclose(jax.jit(lambda z: mi(z, labels))(z), eager, rtol=1e-5)
  traced = jax.jit(lambda z, c: mi(z, c, num_classes=3))(z, labels)
  np.testing.assert_allclose(traced, eager, rtol=1e-5)
  with pytest.raises(ValueError, match="num_classes"):
    jax.jit(mi)(z, labels)


def test_host_estimators_return_jax_scalars_and_refuse_tracing():
  z, n, _ = _correlated_pair(np.random.default_rng(16), 300, 0.5)
  for estimator in ("binned", "knn"):
    value = mi(z, n, estimator=estimator)
    assert isinstance(value, jax.Array) and value.shape == () and value.dtype == jnp.float32
    with pytest.raises(TypeError, match="host"):
      jax.jit(lambda z: mi(z, n, estimator=estimator))(z)  # noqa: B023


def test_singular_covariances_raise_or_need_ridge(x64):
  rng = np.random.default_rng(17)
  z, n, _ = _linear_channel(rng, 1000)
  dead = np.concatenate([np.maximum(z, 0.0), np.zeros((1000, 1))], axis=1)  # a dead ReLU unit
  with pytest.raises(ValueError, match="singular.*ridge"):
    mi(dead, n)
  with pytest.raises(ValueError, match="singular"):
    mi(np.concatenate([z, np.full((1000, 1), 3.0)], axis=1), n)  # a constant unit
  with pytest.raises(ValueError, match="singular"):
    mi(np.concatenate([z, z[:, :1] - z[:, 1:2]], axis=1), n)  # a linear function of the others
  with pytest.raises(ValueError, match="nuisance.*singular"):
    mi(z[:, :2], z[:, :2] @ np.array([[1.0, 2.0], [0.0, 1.0]]))  # z determines n: infinite MI
  labels = rng.integers(0, 3, 1000)
  labels[:2] = 3  # a class of 2 examples in 3 dimensions
  with pytest.raises(ValueError, match="class 3"):
    mi(z, labels)
  # The ridge is Gaussian noise on z: finite, and below the information of the live units.
  live = float(mi(np.maximum(z, 0.0), n))
  regularised = float(mi(dead, n, ridge=1e-3))
  assert np.isfinite(regularised) and live - 0.01 < regularised < live
  assert np.isfinite(float(mi(z, labels, ridge=1e-3)))
  # Traced: no error can be raised, the result is NaN (never -inf or a meaningless number).
  assert np.isnan(jax.jit(mi)(dead, n))
  assert np.isnan(jax.jit(lambda z: mi(z, labels))(z))


def test_knn_ties_need_jitter(x64):
  rng = np.random.default_rng(18)
  z = np.maximum(rng.standard_normal((1000, 2)), 0.0)  # ReLU: many rows exactly (0, 0)
  labels = rng.integers(0, 2, 1000)
  z[:, 0] += 0.5 * labels * (z[:, 0] > 0)
  with pytest.raises(ValueError, match="jitter"):
    mi(z, labels, estimator="knn")
  with pytest.raises(ValueError, match="jitter"):
    mi(z, rng.standard_normal(1000), estimator="knn")
  key = jax.random.key(0)
  a = mi(z, labels, estimator="knn", jitter=1e-8, key=key)
  b = mi(z, labels, estimator="knn", jitter=1e-8, key=key)
  assert np.isfinite(float(a)) and float(a) == float(b)  # a function of the key alone
  with pytest.raises(ValueError, match="key"):
    mi(z, labels, estimator="knn", jitter=1e-8)


@pytest.mark.parametrize("call, error, match", [
    (lambda z, n: mi(z, n[:-1]), ValueError, "same number of examples"),
    (lambda z, n: mi(z[:1], n[:1]), ValueError, "at least N = 2"),
    (lambda z, n: mi(z[0, 0], n), ValueError, "leading example axis"),
    (lambda z, n: mi(z, n, estimator="kde"), ValueError, "estimator must be one of"),
    (lambda z, n: mi(z, n, estimator="knn", num_neighbors=50), ValueError, "num_neighbors"),
    (lambda z, n: mi(z, n, estimator="knn", num_neighbors=0), ValueError, "num_neighbors"),
    (lambda z, n: mi(z, n, estimator="binned", num_bins=1), ValueError, "num_bins"),
    (lambda z, n: mi(z, n + 0.5, discrete=True), TypeError, "integer labels"),
    (lambda z, n: mi(z, n, discrete="yes"), TypeError, "discrete"),
    (lambda z, n: mi(np.where(z > 1, np.nan, z), n), ValueError, "z must be finite"),
    (lambda z, n: mi(z, np.where(n > 1, np.inf, n), estimator="knn"), ValueError,
     "nuisance must be finite"),
    (lambda z, n: mi(z, n, estimator="binned", ridge=0.1), ValueError, "ridge"),
    (lambda z, n: mi(z, n, ridge=-1.0), ValueError, "ridge"),
    (lambda z, n: mi(z, n, estimator="knn", bias_correction=True), ValueError, "bias_correction"),
    (lambda z, n: mi(z, n, num_classes=3), ValueError, "num_classes"),
    (lambda z, n: mi(z, np.arange(50) % 3, num_classes=2), ValueError, r"\[0, num_classes"),
])
def test_bad_inputs_raise_clear_errors(call, error, match):
  rng = np.random.default_rng(19)
  z, n = rng.standard_normal((50, 2)), rng.standard_normal(50)
  with pytest.raises(error, match=match):
    call(z, n)


# --- the decoder lower bound -------------------------------------------------------------------


def _mixture_information(means, scale=1.0):
  """I(z; c) of z = means[c] + N(0, scale^2), c uniform, by quadrature on a fine grid."""
  grid = np.linspace(min(means) - 10 * scale, max(means) + 10 * scale, 200001)
  step = grid[1] - grid[0]
  densities = np.stack([np.exp(-0.5 * ((grid - m) / scale) ** 2) / (scale * np.sqrt(2 * np.pi))
                        for m in means])
  marginal = densities.mean(0)
  entropy = -np.sum(marginal * np.log(np.maximum(marginal, 1e-300))) * step
  conditional = 0.5 * np.log(2 * np.pi * np.e * scale ** 2)
  return entropy - conditional


def test_decoder_lower_bound_is_tight_for_shared_covariance_classes():
  """Gaussian classes with one covariance: the Bayes posterior is a softmax regression."""
  rng = np.random.default_rng(0)
  means = (-2.0, 0.0, 2.0)
  labels = rng.integers(0, 3, 20000)
  z = np.asarray(means)[labels] + rng.normal(size=labels.size)
  true = _mixture_information(means)
  bound = float(invariance.decoder_lower_bound(z, labels))
  assert abs(bound - true) < 0.02, (bound, true)
  gaussian = float(invariance.mutual_information_with_nuisance(z, labels))
  assert gaussian > true + 0.02          # the Gaussian estimator overstates a mixture


def test_decoder_lower_bound_limits():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 4, 4000)
  independent = float(invariance.decoder_lower_bound(rng.normal(size=(4000, 5)), labels))
  assert -0.02 < independent < 0.01
  determined = np.eye(4)[labels] + 0.01 * rng.normal(size=(4000, 4))
  entropy = -np.sum(np.bincount(labels) / 4000 * np.log(np.bincount(labels) / 4000))
  bound = float(invariance.decoder_lower_bound(determined, labels))
  assert entropy - 0.02 < bound <= entropy + 1e-6


def test_decoder_lower_bound_groups_stop_leaks():
  """Ten noisy draws of 64 random points with random labels: without groups the decoder scores
  draws of points it was fitted on and reports information that is not there."""
  rng = np.random.default_rng(2)
  group = np.repeat(np.arange(64), 10)
  z = rng.normal(size=(64, 64))[group] + 0.01 * rng.normal(size=(640, 64))
  labels = rng.integers(0, 2, 64)[group]
  assert float(invariance.decoder_lower_bound(z, labels)) > 0.3
  assert float(invariance.decoder_lower_bound(z, labels, groups=group, l2=1.0)) < 0.02


def test_decoder_lower_bound_bad_input():
  z = np.zeros((10, 2))
  with pytest.raises(ValueError, match="integer labels of shape"):
    invariance.decoder_lower_bound(z, np.zeros(10))
  with pytest.raises(ValueError, match="num_folds must be an int in"):
    invariance.decoder_lower_bound(z, np.zeros(10, int), num_folds=11)
  with pytest.raises(ValueError, match="groups must have shape"):
    invariance.decoder_lower_bound(z, np.zeros(10, int), groups=np.zeros(3, int))
  with pytest.raises(ValueError, match="l2 must be"):
    invariance.decoder_lower_bound(z, np.zeros(10, int), l2=-1.0)
