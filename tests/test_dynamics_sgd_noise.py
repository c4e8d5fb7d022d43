"""Tests for infojax.dynamics.sgd_noise against dense float64 references."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij
from infojax.dynamics import sgd_noise


def _problem(dtype=jnp.float32):
  keys = jax.random.split(jax.random.key(0), 4)
  inputs = jax.random.normal(keys[0], (12, 3), dtype)
  labels = jax.random.randint(keys[1], (12,), 0, 3)
  params = {"w1": jax.random.normal(keys[2], (3, 4), dtype), "b1": jnp.zeros(4, dtype),
            "w2": jax.random.normal(keys[3], (4, 3), dtype)}

  def apply_fn(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"]

  return apply_fn, params, (inputs, labels)


def _flat(vectors):
  return np.stack([np.asarray(jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: x[i],
                                                                         vectors))[0])
                   for i in range(jax.tree.leaves(vectors)[0].shape[0])])


def test_noise_statistics_match_dense_references(x64):
  apply_fn, params, batch = _problem(jnp.float64)
  lik = ij.likelihoods.categorical()
  size = 3 * 4 + 4 + 4 * 3
  stats = jax.jit(lambda p, key: sgd_noise.noise_statistics(
      apply_fn, p, batch, likelihood=lik, k=3, num_iterations=size, key=key))(
          params, jax.random.key(1))
  covariance = np.asarray(ij.fisher.reference.gradient_covariance(apply_fn, params, batch,
                                                                  likelihood=lik))
  hessian = np.asarray(ij.fisher.reference.hessian(apply_fn, params, batch, likelihood=lik))
  values, vectors = np.linalg.eigh(covariance)
  h_values, h_vectors = np.linalg.eigh(hessian)
  top, h_top = values[::-1][:3], h_values[::-1][:3]
  np.testing.assert_allclose(stats.noise.trace, np.trace(covariance), rtol=1e-10)
  np.testing.assert_allclose(stats.noise.eigenvalues, top, rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(stats.hessian.eigenvalues, h_top, rtol=1e-8, atol=1e-12)
  np.testing.assert_allclose(stats.stable_rank, np.trace(covariance) / top[0], rtol=1e-8)
  np.testing.assert_allclose(stats.captured_fraction, np.cumsum(top) / np.trace(covariance),
                             rtol=1e-8)
  np.testing.assert_allclose(stats.anisotropy, top[0] * size / np.trace(covariance), rtol=1e-8)
  reference_overlap = np.sum((vectors[:, ::-1][:, :3].T @ h_vectors[:, ::-1][:, :3]) ** 2) / 3
  np.testing.assert_allclose(stats.overlap, reference_overlap, rtol=1e-6)
  fisher = ij.fisher.reference.trace(apply_fn, params, batch, likelihood=lik, kind="true")
  np.testing.assert_allclose(stats.fisher_trace, fisher, rtol=1e-10)
  # The eigenvectors are those of D: D u = lambda u.
  flat = _flat(stats.noise.eigenvectors)
  np.testing.assert_allclose(flat @ covariance, top[:, None] * flat, atol=1e-8)


def test_noise_spectrum_vmaps_over_parameters_and_keys():
  apply_fn, params, batch = _problem()
  lik = ij.likelihoods.categorical()
  stacked = jax.tree.map(lambda x: jnp.stack([x, 0.5 * x]), params)
  keys = jax.random.split(jax.random.key(2), 2)

  def spectrum(p, key):
    return sgd_noise.noise_spectrum(apply_fn, p, batch, likelihood=lik, k=2, num_iterations=8,
                                    key=key)

  spectra = jax.jit(jax.vmap(spectrum))(stacked, keys)
  for i in range(2):
    single = jax.jit(spectrum)(jax.tree.map(lambda x: x[i], stacked), keys[i])
    np.testing.assert_allclose(spectra.eigenvalues[i], single.eigenvalues, rtol=1e-4)
    np.testing.assert_allclose(spectra.trace[i], single.trace, rtol=1e-5)


def test_closed_form_geometry():
  eye = {"a": jnp.eye(4)[:2], "b": jnp.zeros((2, 2))}        # e1, e2 of R^6
  other = {"a": jnp.zeros((1, 4)), "b": jnp.array([[1.0, 0.0]])}  # e5
  half = {"a": jnp.array([[1.0, 0.0, 0.0, 0.0]]) / np.sqrt(2), "b": jnp.array([[1.0, 0.0]])
          / np.sqrt(2)}
  assert float(sgd_noise.subspace_overlap(eye, eye)) == pytest.approx(1.0)
  assert float(sgd_noise.subspace_overlap(eye, other)) == pytest.approx(0.0)
  assert float(sgd_noise.subspace_overlap(eye, half)) == pytest.approx(0.5)
  isotropic = sgd_noise.NoiseSpectrum(jnp.float32(6.0), jnp.ones(3), None, 6)
  assert float(sgd_noise.anisotropy(isotropic)) == pytest.approx(1.0)
  assert float(sgd_noise.stable_rank(isotropic)) == pytest.approx(6.0)
  rank_one = sgd_noise.NoiseSpectrum(jnp.float32(2.0), jnp.array([2.0, 0.0]), None, 6)
  assert float(sgd_noise.anisotropy(rank_one)) == pytest.approx(6.0)
  np.testing.assert_allclose(sgd_noise.captured_fraction(rank_one), [1.0, 1.0])
  assert sgd_noise.sgd_temperature(0.1, 20) == pytest.approx(0.0025)


def test_sgd_temperature_rejects_bad_arguments():
  with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
    sgd_noise.sgd_temperature(0.0, 4)
  with pytest.raises(ValueError, match="batch_size must be a positive integer"):
    sgd_noise.sgd_temperature(0.1, 0)


def test_gradient_covariance_product_fn_equals_the_dense_covariance(x64):
  apply_fn, params, batch = _problem(jnp.float64)
  lik = ij.likelihoods.categorical()
  product = ij.fisher.gradient_covariance_product_fn(apply_fn, params, batch, likelihood=lik)
  covariance = ij.fisher.reference.gradient_covariance(apply_fn, params, batch, likelihood=lik)
  v = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape), params)
  flat_v, _ = jax.flatten_util.ravel_pytree(v)
  np.testing.assert_allclose(jax.flatten_util.ravel_pytree(product(v))[0], covariance @ flat_v,
                             rtol=1e-10, atol=1e-12)
  with pytest.raises(ValueError, match="v must have the pytree structure of params"):
    product({"w1": params["w1"]})
