"""Information Dropout and Deep VIB layers: the KL terms' closed forms (science.md §15 A.12),
float64 quadrature and Monte Carlo references, the noise distribution, shapes, jit/vmap, gradients.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from infojax.activations import layers


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
  return np.log1p(np.exp(x))


def _dense(params, x):
  return np.asarray(x, np.float64) @ np.asarray(params["kernel"], np.float64) + np.asarray(
      params["bias"], np.float64)


def _random_variables(module, x, scale=0.5, seed=2):
  """Variables of ``module``'s structure with N(0, scale^2) values drawn by NumPy (the zero biases
  of a fresh initialisation would make alpha too regular; NumPy compiles nothing)."""
  shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, deterministic=True), x)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype),
                      shapes)


def _inputs(*shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# The Monte Carlo tests draw with "rbg" keys: under jax_threefry_partitionable (jax 0.10's default)
# threefry's bit generation compiles several times slower on XLA:CPU.
def _mc_key(seed):
  return jax.random.key(seed, impl="rbg")


# ----------------------------------------------------------------------------------------------
# Elementwise terms: science.md §15 A.12.
# ----------------------------------------------------------------------------------------------


def test_alpha_from_logits_range_and_formula():
  logits = jnp.linspace(-30.0, 30.0, 13)
  alpha = np.asarray(layers.alpha_from_logits(logits, alpha_max=0.7))
  np.testing.assert_allclose(alpha, 0.001 + 0.7 * _sigmoid(np.asarray(logits, np.float64)),
                             rtol=1e-6)
  assert alpha.min() >= 0.001 and alpha.max() <= 0.701


def test_log_uniform_kl_zero_point_and_growth():
  alpha_max = 0.7
  # Exactly zero at the top of alpha's range, alpha = alpha_max + 0.001 (not at alpha_max).
  assert float(layers.log_uniform_kl(jnp.float32(alpha_max + 0.001), alpha_max=alpha_max)) == 0.0
  at_alpha_max = float(layers.log_uniform_kl(jnp.float32(alpha_max), alpha_max=alpha_max))
  np.testing.assert_allclose(at_alpha_max, math.log1p(0.001 / alpha_max), rtol=1e-3)
  # Strictly increasing as alpha decreases to 0.001, where it is log(1000 alpha_max + 1).
  grid = jnp.linspace(0.001, alpha_max + 0.001, 50)[::-1]
  kl = np.asarray(layers.log_uniform_kl(grid, alpha_max=alpha_max))
  assert np.all(np.diff(kl) > 0)
  np.testing.assert_allclose(kl[-1], math.log(1000 * alpha_max + 1), rtol=1e-6)
  # On the layer's own alpha it is never negative.
  alpha = layers.alpha_from_logits(jnp.linspace(-20.0, 20.0, 41), alpha_max=alpha_max)
  assert np.all(np.asarray(layers.log_uniform_kl(alpha, alpha_max=alpha_max)) >= 0)


def test_log_normal_kl_zero_at_prior():
  f = jnp.asarray([0.3, 1.0, 2.5])
  alpha = jnp.asarray([0.2, 0.5, 0.9])
  kl = layers.log_normal_kl(f, alpha, prior_mean=jnp.log(f), prior_scale=alpha)
  np.testing.assert_array_equal(np.asarray(kl), 0.0)
  # Any other mean or scale gives a positive KL.
  assert np.all(np.asarray(layers.log_normal_kl(f, alpha, prior_mean=jnp.log(f) + 0.1,
                                                prior_scale=alpha)) > 0)
  assert np.all(np.asarray(layers.log_normal_kl(f, alpha, prior_mean=jnp.log(f),
                                                prior_scale=1.1 * alpha)) > 0)


def _lognormal_density(z, log_mean, scale):
  return np.exp(-0.5 * ((np.log(z) - log_mean) / scale) ** 2) / (z * scale * math.sqrt(2 * math.pi))


@pytest.mark.parametrize("f, alpha, mu1, sigma1", [(0.8, 0.3, 0.0, 1.0), (2.0, 0.9, -0.5, 0.6),
                                                   (1e-6, 0.5, -3.0, 2.0)])
def test_log_normal_kl_against_quadrature(x64, f, alpha, mu1, sigma1):
  """KL of the two log-normal densities in z-space, by adaptive quadrature (float64)."""
  log_mean = math.log(max(f, 1e-4))   # the code's clamp at 1e-4

  def integrand(z):
    p = _lognormal_density(z, log_mean, alpha)
    return 0.0 if p == 0 else p * (np.log(p) - np.log(_lognormal_density(z, mu1, sigma1)))

  centre = math.exp(log_mean)
  points = [centre * math.exp(k * alpha) for k in (-12, -4, 0, 4, 12)]
  expected = sum(scipy.integrate.quad(integrand, a, b, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
                 for a, b in zip([0.0] + points, points + [np.inf]))
  kl = layers.log_normal_kl(jnp.float64(f), jnp.float64(alpha), prior_mean=jnp.float64(mu1),
                            prior_scale=jnp.float64(sigma1))
  assert kl.dtype == jnp.float64
  np.testing.assert_allclose(float(kl), expected, rtol=1e-8, atol=1e-10)


def test_log_normal_noise_mean_by_monte_carlo():
  alpha = jnp.asarray([0.1, 0.5, 1.0])
  n = 200_000
  noise = np.asarray(layers.log_normal_noise(_mc_key(0), jnp.broadcast_to(alpha, (n, 3))),
                     np.float64)
  assert noise.shape == (n, 3)
  a = np.asarray(alpha, np.float64)
  mean = np.exp(a ** 2 / 2)
  standard_error = np.sqrt((np.exp(a ** 2) - 1) * np.exp(a ** 2) / n)
  assert np.all(np.abs(noise.mean(0) - mean) < 5 * standard_error)   # 5 standard errors
  # Log-mean 0: E[noise] = e^{alpha^2/2} > 1 is distinguishable from 1 at these sample sizes.
  assert np.all(noise.mean(0) - 1 > 5 * standard_error)


# ----------------------------------------------------------------------------------------------
# InformationDropout.
# ----------------------------------------------------------------------------------------------


def _dense_layer(prior="log_uniform", features=5, dim=3, alpha_max=0.7):
  module = layers.InformationDropout(features, prior=prior, alpha_max=alpha_max)
  x = _inputs(4, dim)
  variables = _random_variables(module, x)
  return module, variables, x


@pytest.mark.parametrize("prior", layers.PRIORS)
def test_deterministic_is_f_and_kl_matches_formula(prior):
  module, variables, x = _dense_layer(prior)
  z, kl = jax.jit(lambda v: module.apply(v, x, deterministic=True))(variables)   # no rng needed
  params = variables["params"]
  pre = _dense(params["f"], x)
  f = np.maximum(pre, 0) if prior == "log_uniform" else _softplus(pre)
  alpha = 0.001 + 0.7 * _sigmoid(_dense(params["alpha"], x))
  np.testing.assert_allclose(np.asarray(z), f, rtol=1e-5, atol=1e-6)
  if prior == "log_uniform":
    expected = -np.log(alpha / 0.701)
  else:
    mu1 = float(params["prior_mean"])
    sigma1 = math.exp(float(params["prior_log_scale"]))
    log_f = np.log(np.maximum(f, 1e-4))
    expected = (alpha ** 2 + (log_f - mu1) ** 2) / (2 * sigma1 ** 2) + np.log(sigma1 / alpha) - 0.5
  assert kl.shape == z.shape
  np.testing.assert_allclose(np.asarray(kl), expected, rtol=1e-4, atol=1e-5)


def test_log_normal_prior_parameters_initialised_at_standard_normal():
  module = layers.InformationDropout(4, prior="log_normal")
  init = lambda m: jax.jit(lambda x: m.init(_mc_key(0), x, deterministic=True))  # noqa
  params = init(module)(jnp.ones((2, 3)))["params"]
  assert float(params["prior_mean"]) == 0.0 and float(params["prior_log_scale"]) == 0.0
  assert "prior_mean" not in jax.eval_shape(init(layers.InformationDropout(4)),
                                            jnp.ones((2, 3)))["params"]


def test_training_noise_is_log_normal_with_alpha():
  """log(z / f) ~ N(0, alpha^2): standardised draws have mean 0 and variance 1."""
  module, variables, x = _dense_layer("log_normal")   # softplus: f > 0 everywhere
  n = 20_000
  tiled = jnp.tile(x, (n, 1))                          # n independent draws for every example
  draws = jax.jit(lambda v: module.apply(v, tiled, deterministic=False,
                                         rngs={"dropout": _mc_key(3)})[0])(variables)
  draws = np.asarray(draws, np.float64).reshape((n,) + x.shape[:1] + draws.shape[1:])
  f = np.asarray(jax.jit(lambda v: module.apply(v, x, deterministic=True)[0])(variables),
                 np.float64)
  alpha = 0.001 + 0.7 * _sigmoid(_dense(variables["params"]["alpha"], x))
  standardised = np.log(draws / f) / alpha
  assert np.all(np.abs(standardised.mean(0)) < 5 / math.sqrt(n))
  assert np.all(np.abs(standardised.var(0) - 1) < 5 * math.sqrt(2 / n))
  # Different units and examples draw independent noise.
  assert abs(np.corrcoef(standardised[:, 0, 0], standardised[:, 1, 1])[0, 1]) < 5 / math.sqrt(n)


def test_conv_and_dense_shapes():
  images = jax.ShapeDtypeStruct((2, 12, 12, 3), jnp.float32)
  key = jax.random.key(0)
  cases = [(dict(kernel_size=(3, 3), strides=2), images, (2, 6, 6, 8)),
           (dict(kernel_size=(3, 3), padding="VALID"), images, (2, 10, 10, 8)),
           (dict(kernel_size=(3, 3), strides=(2, 1)), images, (2, 6, 12, 8)),
           (dict(), jax.ShapeDtypeStruct((2, 7, 3), jnp.float32), (2, 7, 8))]
  for kwargs, inputs, shape in cases:
    module = layers.InformationDropout(8, **kwargs)
    variables = jax.eval_shape(lambda x: module.init(key, x, deterministic=True), inputs)
    z, kl = jax.eval_shape(lambda v, x: module.apply(v, x, deterministic=False,
                                                     rngs={"dropout": key}), variables, inputs)
    assert z.shape == kl.shape == shape
    expected_kernel = (3, 3, 3, 8) if kwargs else (3, 8)
    assert variables["params"]["alpha"]["kernel"].shape == expected_kernel
    assert variables["params"]["f"]["kernel"].shape == expected_kernel
  # One conv information pool evaluated: at test time z is the ReLU of the conv (no noise).
  module = layers.InformationDropout(4, kernel_size=(3, 3), strides=2)
  x = _inputs(1, 6, 6, 2)
  variables = _random_variables(module, x)
  z, _ = jax.jit(lambda v, x: module.apply(v, x, deterministic=True))(variables, x)
  kernel, bias = variables["params"]["f"]["kernel"], variables["params"]["f"]["bias"]
  conv = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  expected = np.maximum(np.asarray(conv) + np.asarray(bias), 0)
  assert 0 < np.mean(expected > 0) < 1
  np.testing.assert_allclose(np.asarray(z), expected, rtol=1e-5, atol=1e-6)


def test_jit_and_vmap_over_keys():
  module, variables, x = _dense_layer()
  apply = lambda k: module.apply(variables, x, deterministic=False, rngs={"dropout": k})  # noqa
  keys = jax.random.split(jax.random.key(4), 3)
  batched_z, batched_kl = jax.jit(jax.vmap(apply))(keys)
  single = jax.jit(apply)
  for i in range(3):
    z, kl = single(keys[i])
    np.testing.assert_allclose(np.asarray(batched_z[i]), np.asarray(z), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(batched_kl[i]), np.asarray(kl), rtol=1e-6)
  positive = np.asarray(jax.jit(lambda v: module.apply(v, x, deterministic=True))(
      variables)[0]) > 0
  assert positive.any()
  assert not np.allclose(np.asarray(batched_z[0])[positive], np.asarray(batched_z[1])[positive])


def test_gradient_reaches_alpha_through_reparameterisation(x64):
  module = layers.InformationDropout(4, prior="log_normal")
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2)), jnp.float64)
  variables = _random_variables(module, x)
  key = jax.random.key(5)

  def output(alpha_kernel):   # the noisy output only: the KL's gradient is not involved
    params = {**variables["params"], "alpha": {**variables["params"]["alpha"],
                                               "kernel": alpha_kernel}}
    z, _ = module.apply({"params": params}, x, deterministic=False, rngs={"dropout": key})
    return jnp.sum(jnp.square(z))

  output = jax.jit(output)
  kernel = variables["params"]["alpha"]["kernel"]
  gradient = np.asarray(jax.jit(jax.grad(output))(kernel))
  assert np.abs(gradient).max() > 1e-3
  step = 1e-6
  finite_difference = np.zeros(kernel.shape)
  for index in np.ndindex(kernel.shape):
    delta = np.zeros(kernel.shape)
    delta[index] = step
    finite_difference[index] = (float(output(kernel + delta)) - float(output(kernel - delta))) / (
        2 * step)
  np.testing.assert_allclose(gradient, finite_difference, rtol=1e-6, atol=1e-9)
  # At test time the output does not depend on alpha.
  no_noise = jax.jit(jax.grad(lambda k: jnp.sum(module.apply(
      {"params": {**variables["params"], "alpha": {**variables["params"]["alpha"], "kernel": k}}},
      x, deterministic=True)[0])))(kernel)
  np.testing.assert_array_equal(np.asarray(no_noise), 0.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(features=0), "features"), (dict(features=2.0), "features"),
    (dict(features=3, alpha_max=0.0), "alpha_max"), (dict(features=3, alpha_max=-1.0), "alpha_max"),
    (dict(features=3, alpha_max=float("nan")), "alpha_max"),
    (dict(features=3, prior="gaussian"), "prior"),
    (dict(features=3, kernel_size=(0, 3)), "kernel_size"),
    (dict(features=3, kernel_size=(3, 3), strides=0), "strides"),
    (dict(features=3, strides=2), "strides")])
def test_information_dropout_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    layers.InformationDropout(**kwargs)


def test_elementwise_validation():
  with pytest.raises(ValueError, match="alpha_max"):
    layers.alpha_from_logits(jnp.zeros(3), alpha_max=0.0)
  with pytest.raises(ValueError, match="alpha_max"):
    layers.log_uniform_kl(jnp.ones(3), alpha_max=-0.5)
  # Traced alpha_max is accepted (no check possible).
  assert jax.jit(lambda a: layers.alpha_from_logits(jnp.zeros(()), alpha_max=a))(0.5) == 0.251


# ----------------------------------------------------------------------------------------------
# VariationalBottleneck and average_log_probs.
# ----------------------------------------------------------------------------------------------


def _vib(features=3, dim=4, batch=2, scale_bias=-5.0):
  module = layers.VariationalBottleneck(features, scale_bias=scale_bias)
  x = _inputs(batch, dim)
  variables = _random_variables(module, x, scale=1.0)
  raw = _dense(variables["params"]["Dense_0"], x)
  mean, scale = raw[:, :features], _softplus(raw[:, features:] + scale_bias)
  return module, variables, x, mean, scale


def test_vib_deterministic_mean_and_closed_form_kl():
  module, variables, x, mean, scale = _vib()
  z, kl = jax.jit(lambda v: module.apply(v, x, deterministic=True))(variables)
  np.testing.assert_allclose(np.asarray(z), mean, rtol=1e-5, atol=1e-6)
  expected = 0.5 * np.sum(scale ** 2 + mean ** 2 - 1 - np.log(scale ** 2), axis=-1)
  assert kl.shape == (2,)
  np.testing.assert_allclose(np.asarray(kl), expected, rtol=1e-5)


@pytest.mark.parametrize("scale_bias", [-5.0, 1.0])
def test_vib_samples_and_kl_by_monte_carlo(scale_bias):
  """z ~ N(mean, scale^2), and kl = E_q[log q(z) - log p(z)] over the layer's own samples."""
  module, variables, x, mean, scale = _vib(scale_bias=scale_bias)
  n = 50_000
  tiled = jnp.tile(x, (n, 1))                          # n independent codes for every example
  z = jax.jit(lambda v: module.apply(v, tiled, deterministic=False,
                                     rngs={"dropout": _mc_key(6)})[0])(variables)
  z = np.asarray(z, np.float64).reshape((n,) + mean.shape)
  eps = (z - mean) / scale
  assert np.all(np.abs(eps.mean(0)) < 5 / math.sqrt(n))
  assert np.all(np.abs(eps.var(0) - 1) < 5 * math.sqrt(2 / n))
  log_q = np.sum(-0.5 * eps ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi), axis=-1)
  log_p = np.sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), axis=-1)
  samples = log_q - log_p
  standard_error = samples.std(0) / math.sqrt(n)
  kl = np.asarray(jax.jit(lambda v: module.apply(v, x, deterministic=True)[1])(variables))
  assert np.all(np.abs(samples.mean(0) - kl) < 5 * standard_error)


def test_vib_validation():
  for kwargs in (dict(features=0), dict(features=True)):
    with pytest.raises(ValueError, match="features"):
      layers.VariationalBottleneck(**kwargs)
  with pytest.raises(ValueError, match="scale_bias"):
    layers.VariationalBottleneck(3, scale_bias=float("inf"))


def test_average_log_probs_against_loop():
  logits = np.random.default_rng(0).normal(size=(5, 3, 4)) * 3
  expected = np.zeros((3, 4))
  for b in range(3):
    for c in range(4):
      expected[b, c] = math.log(sum(
          math.exp(logits[s, b, c]) / sum(math.exp(v) for v in logits[s, b]) for s in range(5)) / 5)
  result = layers.average_log_probs(jnp.asarray(logits, jnp.float32))
  np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scipy.special.logsumexp(np.asarray(result), axis=-1), 0.0, atol=1e-6)
  with pytest.raises(ValueError, match="logits"):
    layers.average_log_probs(jnp.zeros((3, 4)))
