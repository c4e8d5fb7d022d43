"""Tests for infojax.dynamics.loops: scanned SGD, Langevin and Euler-Maruyama paths."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import infojax as ij
from infojax.dynamics import loops


def _mlp_problem(num_examples=24, key=0):
  """A tiny softmax MLP and data: (loss_fn, params, data, apply_fn)."""
  keys = jax.random.split(jax.random.key(key), 4)
  inputs = jax.random.normal(keys[0], (num_examples, 3))
  labels = jax.random.randint(keys[1], (num_examples,), 0, 4)
  params = {"w1": 0.5 * jax.random.normal(keys[2], (3, 5)), "b1": jnp.zeros(5),
            "w2": 0.5 * jax.random.normal(keys[3], (5, 4)), "b2": jnp.zeros(4)}

  def apply_fn(p, x):
    return jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None]

  return (loops.per_example_nll(apply_fn, ij.likelihoods.categorical()), params,
          (inputs, labels), apply_fn)


def _replay(loss_fn, params, data, *, learning_rate, momentum, weight_decay, batch_size, num_steps,
            key, sampling):
  """A per-step Python loop of optax's SGD on the minibatches of `minibatch_indices`."""
  optimizer = optax.chain(optax.add_decayed_weights(weight_decay),
                          optax.sgd(learning_rate, momentum=momentum))
  state = optimizer.init(params)
  num_examples = jax.tree.leaves(data)[0].shape[0]
  step = jax.jit(lambda p, s, batch: _sgd_step(optimizer, loss_fn, p, s, batch))
  losses, trajectory = [], []
  for t in range(num_steps):
    indices = loops.minibatch_indices(key, t, num_examples=num_examples, batch_size=batch_size,
                                      sampling=sampling)
    params, state, loss = step(params, state, jax.tree.map(lambda a: a[indices], data))
    losses.append(loss)
    trajectory.append(params)
  return params, np.array(losses), trajectory


def _sgd_step(optimizer, loss_fn, params, state, batch):
  loss, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, batch)))(params)
  updates, state = optimizer.update(grads, state, params)
  return optax.apply_updates(params, updates), state, loss


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
def test_sgd_path_equals_a_per_step_optax_loop(sampling):
  loss_fn, params, data, apply_fn = _mlp_problem()
  key = jax.random.key(3)
  options = dict(learning_rate=0.3, momentum=0.9, weight_decay=1e-2, batch_size=5)
  probe = (data[0][:6], data[1][:6])

  def fisher_trace(p, step):
    return ij.fisher.trace(apply_fn, p, probe, likelihood=ij.likelihoods.categorical(),
                           kind="true")

  path = jax.jit(lambda p, k: loops.sgd_path(
      loss_fn, p, data, num_steps=12, key=k, sampling=sampling, record_every=4,
      metrics={"fisher_trace": fisher_trace, "w2": lambda p, step: p["w2"]}, **options))(
          params, key)
  final, losses, trajectory = _replay(loss_fn, params, data, num_steps=12, key=key,
                                      sampling=sampling, **options)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), path.params, final)
  np.testing.assert_array_equal(path.history["step"], [4, 8, 12])
  np.testing.assert_allclose(path.history["loss"], losses.reshape(3, 4).mean(axis=1), atol=1e-6)
  recorded = np.stack([trajectory[i]["w2"] for i in (3, 7, 11)])
  np.testing.assert_allclose(path.history["w2"], recorded, atol=1e-6)
  expected = [fisher_trace(trajectory[i], None) for i in (3, 7, 11)]
  np.testing.assert_allclose(path.history["fisher_trace"], expected, rtol=1e-5)


def test_shuffle_visits_every_example_once_per_epoch():
  key = jax.random.key(0)
  epochs = [np.concatenate([loops.minibatch_indices(key, e * 3 + i, num_examples=10, batch_size=3)
                            for i in range(3)]) for e in range(2)]
  for indices in epochs:
    assert len(set(indices.tolist())) == 9          # 3 steps of 3; one example left out per epoch
  assert not np.array_equal(epochs[0], epochs[1])   # a fresh order each epoch


@pytest.mark.parametrize("batch_size", [3, 12])
def test_float64_paths_and_full_batch_gradient_descent(x64, batch_size):
  """Shuffled minibatches work in float64; B = N is plain gradient descent (an explicit loop)."""
  z = np.linspace(-1.0, 2.0, 12)
  path = loops.sgd_path(lambda w, b: 0.5 * (w - b) ** 2, jnp.float64(0.0), jnp.asarray(z),
                        learning_rate=0.1, batch_size=batch_size, num_steps=8,
                        key=jax.random.key(0))
  assert path.params.dtype == jnp.float64
  if batch_size == 12:
    w = 0.0
    for _ in range(8):
      w -= 0.1 * np.mean(w - z)
    np.testing.assert_allclose(path.params, w, rtol=1e-14)
    np.testing.assert_array_equal(
        loops.minibatch_indices(jax.random.key(0), 5, num_examples=12, batch_size=12),
        np.arange(12))


def test_vmap_over_16_seeds_is_one_compilation_and_equals_single_runs():
  loss_fn, params, data, _ = _mlp_problem()
  traces = []

  def run(key, learning_rate, momentum, initial):
    traces.append(1)
    return loops.sgd_path(loss_fn, initial, data, learning_rate=learning_rate, momentum=momentum,
                          batch_size=4, num_steps=10, key=key, record_every=5)

  sweep = jax.jit(jax.vmap(run))
  keys = jax.random.split(jax.random.key(1), 16)
  rates = jnp.linspace(0.05, 0.4, 16)
  momenta = jnp.linspace(0.0, 0.9, 16)
  initial = jax.tree.map(lambda x: x[None] + 0.1 * jnp.arange(16.0).reshape((16,) + (1,) * x.ndim),
                         params)
  paths = sweep(keys, rates, momenta, initial)
  paths = sweep(keys, rates, momenta, initial)
  assert len(traces) == 1 and sweep._cache_size() == 1
  for i in (0, 7, 15):
    single = run(keys[i], rates[i], momenta[i], jax.tree.map(lambda x: x[i], initial))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a[i], b, atol=2e-6), paths.params,
                 single.params)
    np.testing.assert_allclose(paths.history["loss"][i], single.history["loss"], atol=2e-6)


def _a13_data(num_examples=200, variance=2.90):
  """Targets z_i whose (population) variance is exactly ``variance``: per-example gradients of
  1/2 (w - z_i)^2 then have variance ``variance`` at every w."""
  z = np.asarray(jax.random.normal(jax.random.key(0), (num_examples,)), np.float64)
  return jnp.asarray((z - z.mean()) / z.std() * np.sqrt(variance), jnp.float32)


@pytest.mark.parametrize("batch_size, expected", [(4, 0.0186), (16, 0.00465), (64, 0.00116)])
def test_a13_stationary_variance_of_sgd_and_of_its_langevin_model(batch_size, expected):
  """science.md A.13: Var(w) = eta sigma^2 / (B (2 - eta)) for sampling with replacement; the
  Langevin model with gradient-covariance noise at T = eta / (2B) has the same variance."""
  z = _a13_data()
  eta, variance = 0.05, 2.90
  exact = eta * variance / (batch_size * (2 - eta))
  np.testing.assert_allclose(exact, expected, rtol=3e-3)

  def loss_fn(w, batch):
    return 0.5 * (w - batch) ** 2

  metrics = {"w": lambda w, step: w}
  keys = jax.random.split(jax.random.key(5), 64)
  sgd = jax.jit(jax.vmap(lambda key: loops.sgd_path(
      loss_fn, jnp.float32(0.0), z, learning_rate=eta, batch_size=batch_size, num_steps=3000,
      key=key, sampling="replacement", record_every=10, metrics=metrics).history["w"]))(keys)
  langevin = jax.jit(jax.vmap(lambda key: loops.langevin_path(
      loss_fn, jnp.float32(0.0), z, learning_rate=eta, temperature=eta / (2 * batch_size),
      num_steps=3000, key=key, noise="gradient_covariance", record_every=10,
      metrics=metrics).history["w"]))(keys)
  # Drop the first 200 steps (the relaxation time is 1 / eta = 20 steps).
  for paths in (sgd, langevin):
    np.testing.assert_allclose(np.var(np.asarray(paths[:, 20:], np.float64)), exact, rtol=0.05)


def test_shuffled_epochs_have_less_stationary_noise_than_sampling_with_replacement():
  """Without replacement the minibatch means of an epoch sum to the full mean, so their errors are
  anti-correlated and the stationary variance falls below the Langevin prediction."""
  z = _a13_data()
  exact = 0.05 * 2.90 / (16 * 1.95)
  keys = jax.random.split(jax.random.key(6), 32)
  paths = jax.jit(jax.vmap(lambda key: loops.sgd_path(
      lambda w, b: 0.5 * (w - b) ** 2, jnp.float32(0.0), z, learning_rate=0.05, batch_size=16,
      num_steps=2000, key=key, record_every=10, metrics={"w": lambda w, s: w}).history["w"]))(keys)
  assert np.var(np.asarray(paths[:, 20:])) < 0.75 * exact


def test_langevin_isotropic_stationary_variance_on_a_quadratic():
  """w <- (1 - eta h) w + sqrt(2 T eta) xi has stationary variance 2 T / (h (2 - eta h))."""
  h, eta, temperature = 4.0, 0.05, 0.3
  data = jnp.zeros((3, 2))

  def loss_fn(w, batch):
    return 0.5 * h * jnp.sum(w ** 2) + 0.0 * batch[:, 0]

  paths = jax.jit(jax.vmap(lambda key: loops.langevin_path(
      loss_fn, jnp.zeros(2), data, learning_rate=eta, temperature=temperature, num_steps=2000,
      key=key, record_every=5, metrics={"w": lambda w, s: w}).history["w"]))(
          jax.random.split(jax.random.key(7), 64))
  exact = 2 * temperature / (h * (2 - eta * h))
  np.testing.assert_allclose(np.var(np.asarray(paths[:, 40:]), axis=(0, 1)), [exact, exact],
                             rtol=0.05)


def test_gradient_covariance_noise_has_the_reference_covariance(x64):
  """One Langevin step from w: (w1 - (w - eta grad)) / sqrt(2 T eta) ~ N(0, D), D the per-example
  gradient covariance (float64 loops)."""
  rng = np.random.default_rng(0)
  inputs, targets = rng.normal(size=(7, 2)), rng.normal(size=(7,))
  w = np.array([0.3, -0.7])

  def loss_fn(p, batch):
    x, y = batch
    return 0.5 * (jnp.tanh(x @ p) - y) ** 2

  eta, temperature = 0.1, 0.02
  steps = jax.jit(jax.vmap(lambda key: loops.langevin_path(
      loss_fn, jnp.asarray(w), (jnp.asarray(inputs), jnp.asarray(targets)), learning_rate=eta,
      temperature=temperature, num_steps=1, key=key, noise="gradient_covariance").params))(
          jax.random.split(jax.random.key(8), 40000))
  grads = []
  for x, y in zip(inputs, targets):
    z = np.tanh(x @ w)
    grads.append((z - y) * (1 - z ** 2) * x)
  grads = np.array(grads)
  mean = grads.mean(axis=0)
  covariance = sum(np.outer(g - mean, g - mean) for g in grads) / len(grads)
  noise = (np.asarray(steps) - (w - eta * mean)) / np.sqrt(2 * temperature * eta)
  np.testing.assert_allclose(noise.mean(axis=0), 0.0, atol=4 * np.sqrt(covariance.max() / 40000))
  np.testing.assert_allclose(np.cov(noise.T, bias=True), covariance, rtol=0.03,
                             atol=0.03 * np.abs(covariance).max())


def test_euler_maruyama_on_an_ornstein_uhlenbeck_process():
  """dx = -k x dt + sqrt(2 T) dW: E x_t = x0 e^{-k t} and the discrete stationary variance
  T / (k (1 - k h / 2))."""
  k, h, temperature = 2.0, 0.01, 0.5
  paths = jax.jit(jax.vmap(lambda key: loops.euler_maruyama(
      lambda x: -k * x, jnp.float32(1.0), step_size=h, temperature=temperature, num_steps=1000,
      key=key, record_every=10, metrics={"x": lambda x, s: x}).history))(
          jax.random.split(jax.random.key(9), 4000))
  x = np.asarray(paths["x"])
  np.testing.assert_array_equal(paths["step"][0], np.arange(10, 1001, 10))
  mean_at_half = (1 - k * h) ** 50
  np.testing.assert_allclose(x[:, 4].mean(), mean_at_half, atol=4 * np.sqrt(0.25 / 4000))
  np.testing.assert_allclose(x[:, 50:].var(), temperature / (k * (1 - k * h / 2)), rtol=0.03)


def test_sgd_path_on_sharded_data_equals_the_unsharded_path():
  loss_fn, params, data, _ = _mlp_problem(num_examples=32)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.device_put(data, jax.sharding.NamedSharding(mesh, jax.P("data")))
  run = jax.jit(lambda d: loops.sgd_path(loss_fn, params, d, learning_rate=0.2, batch_size=8,
                                         num_steps=6, key=jax.random.key(0)))
  a, b = run(data), run(sharded)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), a.params, b.params)


@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=25), "batch_size must be at most the number of examples N = 24"),
    (dict(learning_rate=0.0), "learning_rate must be a finite number > 0"),
    (dict(learning_rate=-1.0), "learning_rate must be a finite number > 0"),
    (dict(momentum=1.0), "momentum must be a finite number >= 0 and < 1"),
    (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
    (dict(num_steps=10, record_every=3), "record_every must divide num_steps"),
    (dict(num_steps=0), "num_steps must be a positive integer"),
    (dict(sampling="bootstrap"), "sampling must be one of"),
    (dict(metrics={"loss": lambda p, s: 0.0}), "'loss' is recorded by the path itself"),
    (dict(metrics=[lambda p, s: 0.0]), "metrics must be a dict"),
])
def test_sgd_path_rejects_bad_arguments(overrides, message):
  loss_fn, params, data, _ = _mlp_problem()
  options = dict(learning_rate=0.1, batch_size=4, num_steps=4, key=jax.random.key(0))
  options.update(overrides)
  with pytest.raises((ValueError, TypeError), match=message):
    loops.sgd_path(loss_fn, params, data, **options)


def test_paths_reject_a_loss_that_is_not_per_example():
  loss_fn, params, data, _ = _mlp_problem()

  def mean_loss(p, batch):
    return jnp.mean(loss_fn(p, batch))

  with pytest.raises(ValueError, match=r"per-example losses, shape \(batch_size,\) = \(4,\)"):
    loops.sgd_path(mean_loss, params, data, learning_rate=0.1, batch_size=4, num_steps=2,
                   key=jax.random.key(0))
  with pytest.raises(ValueError, match=r"= \(24,\)"):
    loops.langevin_path(mean_loss, params, data, learning_rate=0.1, temperature=0.1,
                        num_steps=2, key=jax.random.key(0))


@pytest.mark.parametrize("overrides, message", [
    (dict(temperature=0.0), "temperature must be a finite number > 0"),
    (dict(noise="anisotropic"), "noise must be one of"),
    (dict(batch_size=30), "batch_size must be at most"),
])
def test_langevin_path_rejects_bad_arguments(overrides, message):
  loss_fn, params, data, _ = _mlp_problem()
  options = dict(learning_rate=0.1, temperature=0.01, num_steps=2, key=jax.random.key(0))
  options.update(overrides)
  with pytest.raises(ValueError, match=message):
    loops.langevin_path(loss_fn, params, data, **options)


def test_data_leaves_must_share_the_example_axis():
  loss_fn, params, (inputs, labels), _ = _mlp_problem()
  with pytest.raises(ValueError, match="same leading example axis"):
    loops.sgd_path(loss_fn, params, (inputs, labels[:5]), learning_rate=0.1, batch_size=4,
                   num_steps=2, key=jax.random.key(0))
