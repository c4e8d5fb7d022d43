"""Tests for infojax.activations.vae: KL per dimension, reconstruction, the two VAE losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from infojax import likelihoods
from infojax.activations import vae


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def test_kl_per_dimension_matches_a_float64_monte_carlo(x64):
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(3, 4)) * 1.5
  log_variance = rng.normal(size=(3, 4))
  kl = np.asarray(vae.kl_per_dimension(jnp.asarray(mean), jnp.asarray(log_variance)))
  assert kl.shape == (3, 4) and kl.dtype == np.float64
  num = 400_000
  for b in range(3):
    for k in range(4):
      std = math.exp(0.5 * log_variance[b, k])
      eps = rng.standard_normal(num)
      z = mean[b, k] + std * eps
      # log q(z) - log p(z) with q = N(mean, std^2) and p = N(0, 1); the 2 pi terms cancel.
      log_ratio = -0.5 * eps * eps - math.log(std) + 0.5 * z * z
      error = 5.0 * log_ratio.std() / math.sqrt(num)
      assert abs(kl[b, k] - log_ratio.mean()) < error, (b, k)
  # The prior itself carries nothing; the KL grows with |mean|.
  zero = vae.kl_per_dimension(jnp.zeros((2, 3)), jnp.zeros((2, 3)))
  np.testing.assert_array_equal(np.asarray(zero), 0.0)


def test_reconstruction_nll_matches_scipy_log_densities_in_loops(x64):
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, 5)) * 3.0
  binary = (rng.uniform(size=(3, 4, 5)) < 0.4).astype(np.float64)
  got = np.asarray(vae.reconstruction_nll(jnp.asarray(logits), jnp.asarray(binary),
                                          likelihood=likelihoods.bernoulli()))
  means = rng.normal(size=(3, 2, 3, 1))
  targets = rng.normal(size=(3, 2, 3, 1))
  got_gaussian = np.asarray(vae.reconstruction_nll(jnp.asarray(means), jnp.asarray(targets),
                                                   likelihood=likelihoods.gaussian(0.7)))
  for b in range(3):
    expected = 0.0
    for i in range(4):
      for j in range(5):
        expected -= scipy.stats.bernoulli.logpmf(binary[b, i, j], _sigmoid(logits[b, i, j]))
    np.testing.assert_allclose(got[b], expected, rtol=1e-10)
    expected = 0.0
    for i in range(2):
      for j in range(3):
        expected -= scipy.stats.norm.logpdf(targets[b, i, j, 0], loc=means[b, i, j, 0],
                                            scale=0.7)
    np.testing.assert_allclose(got_gaussian[b], expected, rtol=1e-10)


def test_beta_vae_loss_is_nll_plus_beta_times_the_summed_kl():
  rng = np.random.default_rng(2)
  nll = rng.uniform(1.0, 5.0, size=(4,)).astype(np.float32)
  kl = rng.uniform(0.0, 2.0, size=(4, 3)).astype(np.float32)
  for beta in (0.0, 1.0, 4.0):
    got = np.asarray(vae.beta_vae_loss(jnp.asarray(nll), jnp.asarray(kl), beta=beta))
    expected = [nll[b] + beta * sum(kl[b, k] for k in range(3)) for b in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
  # vmap over beta (a traced beta is not checked, and is used as given).
  betas = jnp.array([0.5, 2.0])
  mapped = jax.vmap(lambda b: vae.beta_vae_loss(jnp.asarray(nll), jnp.asarray(kl), beta=b))(betas)
  np.testing.assert_allclose(np.asarray(mapped[1]), nll + 2.0 * kl.sum(1), rtol=1e-6)


@pytest.mark.parametrize("capacity", [0.5, 12.0])
def test_capacity_loss_gradient_pushes_the_kl_towards_the_capacity(capacity):
  batch, latent, gamma = 3, 4, 10.0

  def loss(a):
    # Every posterior N(a, 1) in every dimension: KL = 0.5 a^2 per dimension, 2 a^2 in all.
    kl = vae.kl_per_dimension(jnp.full((batch, latent), a), jnp.zeros((batch, latent)))
    return vae.capacity_loss(jnp.zeros((batch,)), kl, gamma=gamma, capacity=capacity)

  a = 1.5   # KL = 4.5 nats: above the first capacity, below the second
  total = 0.5 * a * a * latent
  grad = float(jax.grad(loss)(a))
  np.testing.assert_allclose(grad, gamma * np.sign(total - capacity) * a * latent, rtol=1e-6)
  np.testing.assert_allclose(float(loss(a)), gamma * abs(total - capacity), rtol=1e-6)
  stepped = a - 1e-3 * grad
  assert abs(0.5 * stepped * stepped * latent - capacity) < abs(total - capacity)


def test_capacity_loss_reduces_the_batch_inside_the_constraint():
  nll = jnp.array([1.0, 3.0])
  kl = jnp.array([[1.0, 0.0], [3.0, 2.0]])    # totals 1 and 5, mean 3
  np.testing.assert_allclose(float(vae.capacity_loss(nll, kl, gamma=2.0, capacity=3.0)), 2.0)
  np.testing.assert_allclose(float(vae.capacity_loss(nll, kl, gamma=2.0, capacity=1.0)),
                             2.0 + 2.0 * 2.0)


def test_linear_capacity_ramps_then_stays():
  steps = np.array([-5, 0, 250, 500, 1000, 2000])
  expected = [0.0, 0.0, 6.25, 12.5, 25.0, 25.0]
  eager = [float(vae.linear_capacity(int(s), max_capacity=25.0, num_steps=1000)) for s in steps]
  np.testing.assert_allclose(eager, expected, rtol=1e-6)
  jitted = jax.jit(jax.vmap(lambda s: vae.linear_capacity(s, max_capacity=25.0, num_steps=1000)))
  np.testing.assert_allclose(np.asarray(jitted(jnp.asarray(steps))), expected, rtol=1e-6)


def test_active_units_and_posterior_mean_activity():
  mask = vae.active_units(jnp.array([0.0, 0.005, 0.02, 1.0]))
  np.testing.assert_array_equal(np.asarray(mask), [False, False, True, True])
  assert int(vae.active_units(jnp.array([0.2, 0.6]), threshold=0.5).sum()) == 1
  rng = np.random.default_rng(3)
  mean = rng.normal(size=(50, 3)) * np.array([0.01, 1.0, 3.0])
  activity = np.asarray(vae.posterior_mean_activity(jnp.asarray(mean, jnp.float32)))
  for k in range(3):
    column = mean[:, k]
    expected = sum((v - column.mean()) ** 2 for v in column) / len(column)
    np.testing.assert_allclose(activity[k], expected, rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(vae.active_units(activity)), [False, True, True])


def test_traversal_codes_move_one_coordinate_at_a_time():
  code = jnp.array([0.5, -1.0, 2.0])
  offsets = jnp.array([-2.0, 0.0, 3.0])
  codes = np.asarray(vae.traversal_codes(code, offsets))
  assert codes.shape == (3, 3, 3)
  for k in range(3):
    for t in range(3):
      expected = np.array([0.5, -1.0, 2.0])
      expected[k] += float(offsets[t])
      np.testing.assert_allclose(codes[k, t], expected)


def test_vae_passes_and_halves_agree():
  model = vae.VAE(3, (4, 4, 1), hidden_sizes=(16,))
  x = jnp.asarray(np.random.default_rng(4).uniform(size=(5, 4, 4, 1)) < 0.5, jnp.float32)
  key = jax.random.key(2)

  @jax.jit
  def passes(x):
    params = model.init(jax.random.key(0), x, jax.random.key(1))
    out = model.apply(params, x, key)
    mean, log_variance = model.apply(params, x, method=vae.VAE.encode)
    decoded = model.apply(params, out.z, method=vae.VAE.decode)
    return out, mean, log_variance, decoded

  out, mean, log_variance, decoded = passes(x)
  assert out.mean.shape == out.log_variance.shape == out.z.shape == (5, 3)
  assert out.decoder_outputs.shape == (5, 4, 4, 1)
  np.testing.assert_allclose(np.asarray(out.mean), np.asarray(mean), rtol=1e-5, atol=1e-6)
  eps = np.asarray(jax.random.normal(key, (5, 3)))
  np.testing.assert_allclose(np.asarray(out.z),
                             np.asarray(mean) + np.exp(0.5 * np.asarray(log_variance)) * eps,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(decoded), np.asarray(out.decoder_outputs), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(vae.decoder_mean(decoded, likelihood=model.likelihood)),
      _sigmoid(np.asarray(decoded, np.float64)), rtol=1e-5)
  # The convolutional encoder and decoder (shapes only: flax's Conv and ConvTranspose).
  conv = vae.VAE(3, (8, 8, 1), hidden_sizes=(16,), conv_channels=(2, 4))
  images = jax.ShapeDtypeStruct((5, 8, 8, 1), jnp.float32)
  variables = jax.eval_shape(conv.init, jax.random.key(0), images, jax.random.key(1))
  shapes = jax.eval_shape(conv.apply, variables, images, jax.random.key(1))
  assert shapes.z.shape == (5, 3) and shapes.decoder_outputs.shape == (5, 8, 8, 1)
  params = variables["params"]
  assert params["encoder_network"]["Conv_1"]["kernel"].shape == (4, 4, 2, 4)
  assert params["decoder_network"]["ConvTranspose_1"]["kernel"].shape == (4, 4, 2, 1)
  gaussian = vae.VAE(2, (4,), hidden_sizes=(8,), decoder="gaussian", decoder_scale=0.3)
  assert gaussian.likelihood is likelihoods.gaussian(0.3)
  np.testing.assert_array_equal(
      np.asarray(vae.decoder_mean(jnp.full((1, 4), 0.7), likelihood=gaussian.likelihood)),
      np.float32(0.7))


def test_losses_under_jit_and_vmap():
  rng = np.random.default_rng(5)
  mean = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  log_variance = jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
  direct = vae.kl_per_dimension(mean, log_variance)
  mapped = jax.vmap(jax.jit(vae.kl_per_dimension))(mean, log_variance)
  np.testing.assert_allclose(np.asarray(mapped), np.asarray(direct), rtol=1e-6)
  logits = jnp.asarray(rng.normal(size=(2, 6, 4, 4)), jnp.float32)
  x = jnp.asarray(rng.uniform(size=(2, 6, 4, 4)) < 0.5, jnp.float32)
  nll_fn = jax.jit(jax.vmap(lambda o, t: vae.reconstruction_nll(
      o, t, likelihood=likelihoods.bernoulli())))
  nll = nll_fn(logits, x)
  np.testing.assert_allclose(
      np.asarray(nll[1]), np.asarray(vae.reconstruction_nll(logits[1], x[1],
                                                            likelihood=likelihoods.bernoulli())),
      rtol=1e-6)
  capacity = jax.jit(jax.vmap(lambda n, k, c: vae.capacity_loss(n, k, gamma=100.0, capacity=c)))
  values = capacity(nll, direct, jnp.array([0.0, 5.0]))
  for i, c in enumerate((0.0, 5.0)):
    expected = np.mean(nll[i]) + 100.0 * abs(np.mean(np.sum(direct[i], axis=1)) - c)
    np.testing.assert_allclose(float(values[i]), expected, rtol=1e-5)


def test_a_tiny_vae_improves_its_elbo_on_toy_data():
  rng = np.random.default_rng(6)
  prototypes = (rng.uniform(size=(4, 16)) < 0.5).astype(np.float32)
  x = jnp.asarray(np.repeat(prototypes, 16, axis=0))      # 64 examples, 4 distinct patterns
  model = vae.VAE(2, (16,), hidden_sizes=(32,))
  optimizer = optax.adam(1e-2)

  def negative_elbo(params, key):
    out = model.apply(params, x, key)
    nll = vae.reconstruction_nll(out.decoder_outputs, x, likelihood=model.likelihood)
    return jnp.mean(vae.beta_vae_loss(nll, vae.kl_per_dimension(out.mean, out.log_variance),
                                      beta=1.0))

  @jax.jit
  def train():
    params = model.init(jax.random.key(0), x, jax.random.key(1))

    def step(carry, key):
      params, state = carry
      loss, grads = jax.value_and_grad(negative_elbo)(params, key)
      updates, state = optimizer.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), loss

    _, losses = jax.lax.scan(step, (params, optimizer.init(params)),
                             jax.random.split(jax.random.key(2), 200))
    return losses

  losses = np.asarray(train())     # the full-batch negative ELBO before each step, one z each
  before, after = losses[0], losses[-20:].mean()
  # Four equally likely patterns need log 4 = 1.39 nats of code; the untrained decoder pays
  # about 16 log 2 = 11 nats per example.
  assert after < 0.5 * before, (before, after)


def test_bad_inputs_raise():
  nll, kl = jnp.ones((2,)), jnp.ones((2, 3))
  with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
    vae.beta_vae_loss(nll, kl, beta=-1.0)
  with pytest.raises(ValueError, match="gamma must be a finite number >= 0"):
    vae.capacity_loss(nll, kl, gamma=-1.0, capacity=1.0)
  with pytest.raises(ValueError, match="capacity must be a finite number >= 0"):
    vae.capacity_loss(nll, kl, gamma=1.0, capacity=-0.5)
  with pytest.raises(ValueError, match=r"nll must have shape \(B,\)"):
    vae.beta_vae_loss(nll, jnp.ones((3, 3)), beta=1.0)
  with pytest.raises(ValueError, match="num_steps must be a positive integer"):
    vae.linear_capacity(3, max_capacity=1.0, num_steps=0)
  with pytest.raises(ValueError, match="max_capacity must be a finite number >= 0"):
    vae.linear_capacity(3, max_capacity=-1.0, num_steps=10)
  with pytest.raises(ValueError, match="decoder must be one of"):
    vae.decoder_likelihood("poisson")
  with pytest.raises(ValueError, match="decoder must be one of"):
    vae.VAE(2, (4,), decoder="poisson")
  with pytest.raises(ValueError, match="likelihood must be"):
    vae.reconstruction_nll(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32),
                           likelihood=likelihoods.categorical())
  with pytest.raises(ValueError, match="targets must be 0 or 1"):
    vae.reconstruction_nll(jnp.zeros((2, 3)), jnp.full((2, 3), 0.5),
                           likelihood=likelihoods.bernoulli())
  with pytest.raises(ValueError, match="divisible by 4"):
    vae.VAE(2, (6, 6, 1), conv_channels=(4, 4))
  with pytest.raises(ValueError, match="latent_dim must be a positive int"):
    vae.VAE(0, (4,))
  with pytest.raises(ValueError, match="x must have shape"):
    vae.VAE(2, (4,)).init(jax.random.key(0), jnp.zeros((1, 5)), jax.random.key(1))
  with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
    vae.active_units(jnp.ones(3), threshold=-1.0)
