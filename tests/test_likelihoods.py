"""Likelihoods: nll against scipy.stats, sampling moments, the output Fisher factor against the
Hessian, NaN for out-of-range targets under jit, caching, and bad arguments."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import infojax as ij

likelihoods = ij.likelihoods


def _softmax(logits):
  shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return shifted / shifted.sum(axis=-1, keepdims=True)


def _sigmoid(logits):
  return 1.0 / (1.0 + np.exp(-logits))


# ----------------------------------------------------------------------------------------------
# nll against scipy.stats (float64).
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 5)], ids=["single", "sequence"])
def test_categorical_nll_matches_scipy(shape, x64):
  rng = np.random.default_rng(0)
  logits = 2.0 * rng.standard_normal(shape)
  labels = rng.integers(0, shape[-1], shape[:-1])
  actual = likelihoods.categorical().nll(jnp.asarray(logits), jnp.asarray(labels))
  assert actual.shape == shape[:-1] and actual.dtype == jnp.float64
  probs = _softmax(logits).reshape(-1, shape[-1])
  onehot = np.eye(shape[-1])[labels.reshape(-1)]
  expected = [-scipy.stats.multinomial(1, p).logpmf(y) for p, y in zip(probs, onehot)]
  np.testing.assert_allclose(np.ravel(actual), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scale", [0.1, 0.7, 1.0, 3.0])
def test_gaussian_nll_matches_scipy(scale, x64):
  rng = np.random.default_rng(1)
  outputs = rng.standard_normal((5, 3))
  targets = outputs + scale * rng.standard_normal((5, 3))
  actual = likelihoods.gaussian(scale).nll(jnp.asarray(outputs), jnp.asarray(targets))
  expected = -scipy.stats.norm(outputs, scale).logpdf(targets)
  np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)


def test_bernoulli_nll_matches_scipy(x64):
  rng = np.random.default_rng(2)
  logits = 2.0 * rng.standard_normal((4, 6))
  targets = rng.integers(0, 2, (4, 6))
  for dtype in (np.float64, np.int32, np.bool_):
    actual = likelihoods.bernoulli().nll(jnp.asarray(logits), jnp.asarray(targets.astype(dtype)))
    expected = -scipy.stats.bernoulli(_sigmoid(logits)).logpmf(targets)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Sampling: moments within a few standard errors (fixed keys).
# ----------------------------------------------------------------------------------------------

_DRAWS = 20000
_SIGMAS = 4.0   # every check allows 4 standard errors


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_gaussian_samples_have_the_right_mean_and_variance(scale):
  outputs = jnp.array([-1.0, 0.0, 0.5, 2.0])
  draws = likelihoods.gaussian(scale).sample(jax.random.key(0), outputs, _DRAWS)
  assert draws.shape == (_DRAWS, 4) and draws.dtype == outputs.dtype
  draws = np.asarray(draws, np.float64)
  mean_error = scale / np.sqrt(_DRAWS)
  np.testing.assert_array_less(np.abs(draws.mean(axis=0) - outputs), _SIGMAS * mean_error)
  variance_error = scale ** 2 * np.sqrt(2.0 / (_DRAWS - 1))
  np.testing.assert_array_less(np.abs(draws.var(axis=0, ddof=1) - scale ** 2),
                               _SIGMAS * variance_error)


def test_bernoulli_sample_frequencies():
  logits = jnp.array([[-2.0, 0.0], [1.5, 3.0]])
  draws = likelihoods.bernoulli().sample(jax.random.key(1), logits, _DRAWS)
  assert draws.shape == (_DRAWS, 2, 2) and draws.dtype == logits.dtype
  draws = np.asarray(draws, np.float64)
  assert set(np.unique(draws)) <= {0.0, 1.0}
  probs = _sigmoid(np.asarray(logits, np.float64))
  errors = np.sqrt(probs * (1 - probs) / _DRAWS)
  np.testing.assert_array_less(np.abs(draws.mean(axis=0) - probs), _SIGMAS * errors)


def test_categorical_sample_frequencies():
  logits = jnp.array([[0.0, 1.0, -1.0, 0.5], [2.0, -2.0, 0.0, 0.0]])     # a sequence (T, C)
  draws = likelihoods.categorical().sample(jax.random.key(2), logits, _DRAWS)
  assert draws.shape == (_DRAWS, 2) and jnp.issubdtype(draws.dtype, jnp.integer)
  draws = np.asarray(draws)
  assert draws.min() >= 0 and draws.max() < 4
  frequencies = np.stack([np.bincount(d, minlength=4) for d in draws.T]) / _DRAWS
  probs = _softmax(np.asarray(logits, np.float64))
  errors = np.sqrt(probs * (1 - probs) / _DRAWS)
  np.testing.assert_array_less(np.abs(frequencies - probs), _SIGMAS * errors)


# ----------------------------------------------------------------------------------------------
# The output Fisher factor: S S^T equals the Hessian of the nll in the outputs.
# ----------------------------------------------------------------------------------------------


def _outputs_and_targets(likelihood, shape, seed):
  keys = jax.random.split(jax.random.key(seed), 2)
  outputs = 1.5 * jax.random.normal(keys[0], shape, jnp.float64)
  if likelihood.name == "categorical":
    targets = jax.random.randint(keys[1], shape[:-1], 0, shape[-1])
  elif likelihood.name == "bernoulli":
    targets = jax.random.bernoulli(keys[1], 0.5, shape).astype(jnp.float64)
  else:
    targets = outputs + jax.random.normal(keys[1], shape, jnp.float64)
  return outputs, targets


@pytest.mark.parametrize("shape", [(4,), (3, 4)], ids=["single", "sequence"])
@pytest.mark.parametrize("name", ["categorical", "bernoulli", "gaussian_0.4", "gaussian_2"])
def test_fisher_factor_squares_to_the_hessian(name, shape, x64):
  likelihood = {"categorical": likelihoods.categorical(), "bernoulli": likelihoods.bernoulli(),
                "gaussian_0.4": likelihoods.gaussian(0.4),
                "gaussian_2": likelihoods.gaussian(2.0)}[name]
  outputs, targets = _outputs_and_targets(likelihood, shape, seed=3)
  factor = likelihood.fisher_factor(outputs)
  assert factor.shape[1:] == shape and factor.dtype == jnp.float64
  size = outputs.size
  columns = factor.reshape(-1, size)
  hessian = jax.hessian(lambda z: likelihood.nll(z, targets).sum())(outputs).reshape(size, size)
  np.testing.assert_allclose(columns.T @ columns, hessian, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# Out-of-range targets under jit: NaN values and NaN gradients, only where they are.
# ----------------------------------------------------------------------------------------------


def _old_categorical_nll(logits, labels):
  """The formula before the NaN guard, for the bit-for-bit comparison on valid labels."""
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _old_bernoulli_nll(logits, targets):
  targets = targets.astype(logits.dtype)
  return jax.nn.softplus(logits) - targets * logits


def _value_and_grad(nll, jit=True):
  fn = jax.value_and_grad(lambda z, y: jnp.sum(nll(z, y)), argnums=0)
  fn = jax.jit(fn) if jit else fn
  values_fn = jax.jit(nll) if jit else nll
  return lambda z, y: (values_fn(z, y), fn(z, y)[1])


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 3)], ids=["single", "sequence"])
def test_out_of_range_labels_give_nan_under_jit(shape):
  logits = jax.random.normal(jax.random.key(0), shape)
  labels = jnp.array([0, -1, 2, 3, 1, 100]).reshape(shape[:-1])
  bad = np.asarray((labels < 0) | (labels >= 3))
  values, grads = _value_and_grad(likelihoods.categorical().nll)(logits, labels)
  values, grads = np.asarray(values), np.asarray(grads)
  assert np.all(np.isnan(values[bad])) and np.all(np.isfinite(values[~bad]))
  assert np.all(np.isnan(grads[bad])) and np.all(np.isfinite(grads[~bad]))
  # The other predictions are untouched: the same as with in-range labels there.
  fixed = jnp.where(jnp.asarray(bad), 0, labels)
  fixed_values, fixed_grads = _value_and_grad(likelihoods.categorical().nll)(logits, fixed)
  np.testing.assert_array_equal(values[~bad], np.asarray(fixed_values)[~bad])
  np.testing.assert_array_equal(grads[~bad], np.asarray(fixed_grads)[~bad])


def test_out_of_range_bernoulli_targets_give_nan_under_jit():
  logits = jax.random.normal(jax.random.key(1), (2, 3))
  targets = jnp.array([[0.0, 1.0, 0.5], [2.0, -1.0, 1.0]])
  bad = np.array([[False, False, True], [True, True, False]])
  values, grads = _value_and_grad(likelihoods.bernoulli().nll)(logits, targets)
  values, grads = np.asarray(values), np.asarray(grads)
  assert np.all(np.isnan(values[bad])) and np.all(np.isfinite(values[~bad]))
  assert np.all(np.isnan(grads[bad])) and np.all(np.isfinite(grads[~bad]))


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_valid_targets_keep_their_values_and_gradients_bit_for_bit(precision, jit, x64):
  dtype = jnp.float64 if precision == "float64" else jnp.float32
  keys = jax.random.split(jax.random.key(2), 4)
  logits = 3.0 * jax.random.normal(keys[0], (2, 5, 4), dtype)
  labels = jax.random.randint(keys[1], (2, 5), 0, 4)
  for new, old, targets in [
      (likelihoods.categorical().nll, _old_categorical_nll, labels),
      (likelihoods.bernoulli().nll, _old_bernoulli_nll,
       jax.random.bernoulli(keys[2], 0.5, logits.shape).astype(dtype))]:
    new_values, new_grads = _value_and_grad(new, jit)(logits, targets)
    old_values, old_grads = _value_and_grad(old, jit)(logits, targets)
    assert new_values.dtype == dtype and new_grads.dtype == dtype
    np.testing.assert_array_equal(new_values, old_values)
    np.testing.assert_array_equal(new_grads, old_grads)


def test_concrete_bad_targets_still_raise():
  with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
    likelihoods.categorical().validate_targets((4, 3), jnp.array([0, 1, 2, -1]))
  with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
    likelihoods.categorical().validate_targets((4, 3), jnp.array([0, 1, 2, 3]))
  with pytest.raises(ValueError, match="0 or 1"):
    likelihoods.bernoulli().validate_targets((2,), jnp.array([0.0, 0.5]))


# ----------------------------------------------------------------------------------------------
# Caching, hashing, constructor arguments.
# ----------------------------------------------------------------------------------------------


def test_constructors_are_cached_equal_and_hashable():
  assert likelihoods.categorical() is likelihoods.categorical()
  assert likelihoods.bernoulli() is likelihoods.bernoulli()
  half = likelihoods.gaussian(0.5)
  for same in (0.5, np.float32(0.5), np.float64(0.5), jnp.asarray(0.5)):
    assert likelihoods.gaussian(same) is half
  assert likelihoods.gaussian() is likelihoods.gaussian(1) is likelihoods.gaussian(1.0)
  assert half.scale == 0.5 and isinstance(half.scale, float)
  assert likelihoods.categorical().scale is None and likelihoods.bernoulli().scale is None
  assert likelihoods.gaussian(0.7) != half
  assert hash(likelihoods.gaussian(0.5)) == hash(half)
  assert len({likelihoods.categorical(), likelihoods.categorical(), likelihoods.bernoulli(),
              likelihoods.gaussian(0.5), likelihoods.gaussian(0.5)}) == 3
  assert "target_shape" not in likelihoods.Likelihood._fields


@pytest.mark.parametrize("make", [likelihoods.categorical, likelihoods.bernoulli,
                                  lambda: likelihoods.gaussian(0.5)],
                         ids=["categorical", "bernoulli", "gaussian"])
def test_fresh_likelihoods_do_not_retrace_a_jitted_function(make):
  traces = []

  @functools.partial(jax.jit, static_argnames="likelihood")
  def total_nll(outputs, targets, likelihood):
    traces.append(likelihood.name)
    return jnp.sum(likelihood.nll(outputs, targets))

  outputs = jnp.array([[0.5, -1.0, 2.0]])
  targets = jnp.array([1]) if make().name == "categorical" else jnp.array([[0.0, 1.0, 1.0]])
  values = [total_nll(outputs, targets, likelihood=make()) for _ in range(5)]
  assert len(traces) == 1
  assert len({float(v) for v in values}) == 1


@pytest.mark.parametrize("scale", [0, 0.0, -1.0, float("nan"), float("inf"), -float("inf"), "1",
                                   True, None, [1.0, 2.0], np.ones(2)])
def test_bad_gaussian_scale_raises(scale):
  with pytest.raises(ValueError, match="scale must be a finite positive number"):
    likelihoods.gaussian(scale)


def test_traced_gaussian_scale_raises():
  with pytest.raises(ValueError, match="scale must be a finite positive number"):
    jax.jit(lambda s: likelihoods.gaussian(s).scale)(1.0)
