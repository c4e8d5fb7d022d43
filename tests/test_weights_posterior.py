"""Tests of infojax.weights.posterior: closed forms (science.md §2.6, §15 A.2-A.4) and fits."""

import decimal
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from infojax import info
from infojax import weights
from infojax.weights import posterior


def _tree(values):
  """Nested dicts of (nested) lists -> the same dicts of arrays."""
  if isinstance(values, dict):
    return {key: _tree(value) for key, value in values.items()}
  return jnp.asarray(values)


# ----------------------------------------------------------------------------------------------
# Closed forms.
# ----------------------------------------------------------------------------------------------


def test_worked_1d_example_a2(x64):
  """science.md §15 A.2: h = 4, lambda = 1, beta = 0.05, w* = 0."""
  h, w = _tree({"w": [4.0]}), _tree({"w": [0.0]})
  options = dict(beta=0.05, prior_variance=1.0)
  variance = weights.optimal_posterior_variance(h, **options)
  paper_variance = weights.optimal_posterior_variance(h, **options, paper_convention=True)
  np.testing.assert_allclose(variance["w"], [0.0123457], atol=5e-8)
  np.testing.assert_allclose(paper_variance["w"], [0.0062112], atol=5e-8)
  np.testing.assert_allclose(weights.gaussian_information(h, w, **options), 1.7033974, atol=5e-8)
  corrected = weights.quadratic_lagrangian(0.0, h, w, variance, **options)
  paper = weights.quadratic_lagrangian(0.0, h, w, paper_variance, **options)
  np.testing.assert_allclose(corrected, 0.1098612, atol=5e-8)
  np.testing.assert_allclose(paper, 0.1146127, atol=5e-8)
  np.testing.assert_allclose(weights.optimal_lagrangian(0.0, h, w, **options), corrected,
                             rtol=1e-12)
  gradient = jax.grad(lambda v: weights.quadratic_lagrangian(0.0, h, w, v, **options))(variance)
  assert abs(float(gradient["w"][0])) < 1e-12


def _g_reference(s):
  """``g(s) = log(1+s) - s/(1+s)`` in 60-digit decimal arithmetic."""
  with decimal.localcontext() as context:
    context.prec = 60
    s = decimal.Decimal(float(s))
    return float((1 + s).ln() - s / (1 + s))


def test_information_per_direction_a3_and_stability(x64):
  """science.md §15 A.3: Fisher eigenvalues (2, 0.3, 0.004, 0), lambda = 1, N/beta = 1000."""
  s = 1000.0 * np.array([2.0, 0.3, 0.004, 0.0])
  np.testing.assert_allclose(weights.information_per_direction(s), [3.301, 2.355, 0.405, 0.0],
                             atol=5e-4)
  grid = np.concatenate([[0.0, 1e-12, 1e-6, 1e-3], 1e-2 * (1 + np.array([-1e-9, 0, 1e-9])),
                         [0.5, 3.0, 1e3, 1e8, 1e30]])
  expected = np.array([0.5 * _g_reference(x) for x in grid])
  np.testing.assert_allclose(weights.information_per_direction(grid), expected, rtol=1e-13,
                             atol=1e-300)
  # float32: accurate to float32 rounding over the whole range, and finite for huge s.
  values32 = weights.information_per_direction(grid.astype(np.float32))
  assert values32.dtype == jnp.float32
  np.testing.assert_allclose(values32, expected, rtol=2e-5, atol=1e-38)
  # Large s: 1/2 log s - 1/2; the derivative s/(2(1+s)^2) is finite at 0.
  np.testing.assert_allclose(weights.information_per_direction(1e30), 0.5 * math.log(1e30) - 0.5,
                             rtol=1e-12)
  assert float(jax.grad(weights.information_per_direction)(0.0)) == 0.0


def _params_and_curvature(rng):
  params = _tree({"Dense_0": {"kernel": rng.normal(size=(3, 4)), "bias": rng.normal(size=4)},
                  "Conv_0": {"kernel": rng.normal(size=(2, 2, 3, 5))}})
  curvature = jax.tree.map(lambda x: jnp.asarray(rng.exponential(size=x.shape)) * 10.0, params)
  prior_mean = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)) * 0.1, params)
  return params, curvature, prior_mean


def test_gaussian_information_is_the_kl_of_the_optimal_variance(x64):
  rng = np.random.default_rng(0)
  params, curvature, prior_mean = _params_and_curvature(rng)
  options = dict(beta=0.3, prior_variance=0.7, prior_mean=prior_mean)
  variance = weights.optimal_posterior_variance(curvature, beta=0.3, prior_variance=0.7)
  # Independent: the diagonal Gaussian KL of N(w*, Sigma*) to N(w0, lambda^2 I), leaf by leaf.
  kl_per_leaf = jax.tree.map(
      lambda w, v, w0: info.gaussian_kl(w, v, w0, 0.7, axis=None), params, variance, prior_mean)
  per_leaf = weights.gaussian_information(curvature, params, **options, per_leaf=True)
  for got, expected in zip(jax.tree.leaves(per_leaf), jax.tree.leaves(kl_per_leaf)):
    np.testing.assert_allclose(got, expected, rtol=1e-12)
  np.testing.assert_allclose(weights.gaussian_information(curvature, params, **options),
                             sum(jax.tree.leaves(kl_per_leaf)), rtol=1e-12)
  # Where is the information: per filter (output unit), per leaf and per layer agree.
  per_weight = weights.information_per_weight(curvature, params, **options)
  per_filter = weights.sum_per_filter(per_weight)
  assert per_filter["Conv_0"]["kernel"].shape == (5,)
  assert per_filter["Dense_0"]["kernel"].shape == (4,)
  assert per_filter["Dense_0"]["bias"].shape == (4,)
  np.testing.assert_allclose(weights.total(per_filter), weights.total(per_weight), rtol=1e-12)
  layers = weights.per_layer(per_weight)
  np.testing.assert_allclose(layers["Dense_0"], float(per_leaf["Dense_0"]["kernel"])
                             + float(per_leaf["Dense_0"]["bias"]), rtol=1e-12)


def test_paper_convention_is_eq8_as_printed(x64):
  rng = np.random.default_rng(1)
  params, curvature, _ = _params_and_curvature(rng)
  beta, prior_variance = 0.2, 0.5
  h = np.concatenate([np.ravel(x) for x in jax.tree.leaves(curvature)])
  w = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
  k = h.size
  # Eq. (8) as printed, with H diagonal and Sigma* = (beta/2)(H + beta/(2 lambda^2))^-1.
  sigma = 0.5 * beta / (h + beta / (2 * prior_variance))
  printed = (0.5 * np.sum(np.log(h + beta / (2 * prior_variance)))
             + 0.5 * k * math.log(2 * prior_variance / beta) - k
             + (np.sum(w ** 2) + np.sum(sigma)) / (2 * prior_variance))
  got = weights.gaussian_information(curvature, params, beta=beta, prior_variance=prior_variance,
                                     paper_convention=True)
  np.testing.assert_allclose(got, printed, rtol=1e-12)
  # ... which is the true KL of the printed Sigma* minus k/2 (science.md §2.6).
  true_kl = info.gaussian_kl(w, sigma, 0.0, prior_variance)
  np.testing.assert_allclose(got, true_kl - k / 2, rtol=1e-12)


def test_optimal_variance_minimises_the_quadratic_lagrangian(x64):
  rng = np.random.default_rng(2)
  params, curvature, prior_mean = _params_and_curvature(rng)
  options = dict(beta=0.05, prior_variance=2.0, prior_mean=prior_mean)
  variance = weights.optimal_posterior_variance(curvature, beta=0.05, prior_variance=2.0)
  best = weights.quadratic_lagrangian(0.3, curvature, params, variance, **options)
  np.testing.assert_allclose(best, weights.optimal_lagrangian(0.3, curvature, params, **options),
                             rtol=1e-12)
  for factor in (0.9, 1.1):
    worse = jax.tree.map(lambda v: v * factor, variance)
    assert weights.quadratic_lagrangian(0.3, curvature, params, worse, **options) > best
  np.testing.assert_allclose(
      weights.expected_loss_quadratic(0.3, curvature, variance),
      0.3 + 0.5 * sum(float(jnp.sum(h * v)) for h, v in
                      zip(jax.tree.leaves(curvature), jax.tree.leaves(variance))), rtol=1e-12)


def test_beta_conventions(x64):
  np.testing.assert_allclose(
      weights.convert_beta(0.01, num_examples=500, from_reduction="mean", to_reduction="sum"), 5.0)
  np.testing.assert_allclose(
      weights.convert_beta(5.0, num_examples=500, from_reduction="sum", to_reduction="mean"), 0.01)
  assert weights.convert_beta(0.3, from_reduction="sum", to_reduction="sum") == 0.3
  with pytest.raises(ValueError, match="num_examples"):
    weights.convert_beta(0.3, from_reduction="mean", to_reduction="sum")
  with pytest.raises(ValueError, match="from_reduction"):
    weights.convert_beta(0.3, num_examples=5, from_reduction="average", to_reduction="sum")
  # The information is invariant under (h, beta) -> (N h, N beta): mean and summed conventions.
  rng = np.random.default_rng(3)
  params, curvature, _ = _params_and_curvature(rng)
  n = 1000
  mean_form = weights.gaussian_information(curvature, params, beta=0.002, prior_variance=1.0)
  sum_form = weights.gaussian_information(
      jax.tree.map(lambda h: n * h, curvature), params, prior_variance=1.0,
      beta=weights.convert_beta(0.002, num_examples=n, from_reduction="mean", to_reduction="sum"))
  np.testing.assert_allclose(mean_form, sum_form, rtol=1e-12)


def test_invalid_arguments():
  params = {"w": jnp.ones(3)}
  with pytest.raises(ValueError, match="non-negative"):
    weights.gaussian_information({"w": -jnp.ones(3)}, params, beta=1.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="shape"):
    weights.gaussian_information({"w": jnp.ones(4)}, params, beta=1.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="structure"):
    weights.gaussian_information({"v": jnp.ones(3)}, params, beta=1.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="beta must be positive"):
    weights.optimal_posterior_variance(params, beta=0.0, prior_variance=1.0)
  with pytest.raises(ValueError, match="prior_variance must be a scalar"):
    weights.optimal_posterior_variance(params, beta=1.0, prior_variance=jnp.ones(2))
  with pytest.raises(ValueError, match="positive"):
    weights.gaussian_posterior(params, {"w": jnp.zeros(3)})
  with pytest.raises(TypeError, match="optax"):
    weights.information_lagrangian_fit(lambda p, b: 0.0, beta=1.0, optimizer=None)
  with pytest.raises(ValueError, match="num_samples"):
    weights.information_lagrangian_fit(lambda p, b: 0.0, beta=1.0, optimizer=optax.sgd(0.1),
                                       num_samples=0)
  with pytest.raises(ValueError, match="num_examples"):
    weights.information_lagrangian_fit(lambda p, b: 0.0, beta=1.0, optimizer=optax.sgd(0.1),
                                       reduction="sum")


# ----------------------------------------------------------------------------------------------
# The Gibbs minimiser on a 1-D grid (science.md §2.2, §15 A.4).
# ----------------------------------------------------------------------------------------------


def _double_well(w):
  return 0.25 * (w ** 2 - 1.0) ** 2 + 0.1 * w


def _gibbs_on_grid(grid, prior_variance, beta):
  """Prior restricted to the grid, Gibbs minimiser, and min C = -beta log E_P exp(-L/beta)."""
  prior = np.exp(-0.5 * grid ** 2 / prior_variance)
  prior /= prior.sum()
  loss = _double_well(grid)
  tilted = prior * np.exp(-(loss - loss.min()) / beta)
  lagrangian = loss.min() - beta * math.log(tilted.sum())
  return prior, tilted / tilted.sum(), loss, lagrangian


def test_gibbs_variational_principle_a4(x64):
  """Tilted double well, P = N(0, 1.5^2), beta = 0.2.

  science.md's 0.16372 / 0.53714 are for the prior restricted to [-4, 4] (and renormalised); the
  untruncated prior gives 0.16525 / 0.54483 (computed the same way on [-10, 10]).
  """
  prior_variance, beta = 1.5 ** 2, 0.2
  for (low, high), (lagrangian_ref, kl_ref) in {(-4.0, 4.0): (0.16372, 0.53714),
                                                (-10.0, 10.0): (0.16525, 0.54483)}.items():
    grid = np.linspace(low, high, 8001)
    prior, gibbs, loss, lagrangian = _gibbs_on_grid(grid, prior_variance, beta)
    kl = float(info.kl(gibbs, prior))
    np.testing.assert_allclose(lagrangian, lagrangian_ref, atol=1e-5)
    np.testing.assert_allclose(kl, kl_ref, atol=1e-5)
    # The variational identity C(Gibbs) = E_Q L + beta KL, and the envelope d/dbeta min C = KL.
    np.testing.assert_allclose(np.sum(gibbs * loss) + beta * kl, lagrangian, rtol=1e-10)
    step = 1e-5
    slope = (_gibbs_on_grid(grid, prior_variance, beta + step)[3]
             - _gibbs_on_grid(grid, prior_variance, beta - step)[3]) / (2 * step)
    np.testing.assert_allclose(slope, kl, rtol=1e-6)
    # Any other distribution does worse: perturb the Gibbs law.
    for bump in (np.exp(-(grid - 1.0) ** 2), np.exp(-grid ** 2)):
      other = gibbs * (1.0 + 0.3 * bump / bump.max())
      other /= other.sum()
      assert np.sum(other * loss) + beta * float(info.kl(other, prior)) > lagrangian


def _best_gaussian_on_grid(grid, prior_variance, beta):
  """min of E_Q L + beta KL(Q || P) over a grid of Gaussians (mean, log-variance), by quadrature."""
  means = np.linspace(-1.5, 1.5, 61)[:, None, None]
  variances = np.exp(np.linspace(-5.0, 1.0, 61))[None, :, None]
  density = np.exp(-0.5 * (grid - means) ** 2 / variances) / np.sqrt(2 * np.pi * variances)
  expected_loss = np.sum(density * _double_well(grid), axis=-1) * (grid[1] - grid[0])
  kl = 0.5 * (variances[..., 0] / prior_variance + means[..., 0] ** 2 / prior_variance - 1.0
              + np.log(prior_variance / variances[..., 0]))
  lagrangian = expected_loss + beta * kl
  row, column = np.unravel_index(np.argmin(lagrangian), lagrangian.shape)
  return lagrangian[row, column], means[row, 0, 0]


def test_gaussian_fit_on_the_double_well_is_the_best_gaussian(x64):
  """The variational fit finds the best Gaussian Q (brute force over a grid of Gaussians), whose
  C_beta lies above the Gibbs minimum over all Q (0.2435 vs 0.1653: one Gaussian cannot cover both
  wells)."""
  prior_variance, beta = 1.5 ** 2, 0.2
  grid = np.linspace(-10.0, 10.0, 2001)
  *_, gibbs_lagrangian = _gibbs_on_grid(grid, prior_variance, beta)
  grid_lagrangian, grid_mean = _best_gaussian_on_grid(grid, prior_variance, beta)
  fit = weights.information_lagrangian_fit(
      lambda params, batch: _double_well(params[0]), beta=beta, num_samples=16,
      optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, 2000, alpha=1e-2)))
  state = fit.init(weights.gaussian_posterior(jnp.array([-1.0]), 0.05), jax.random.key(0),
                   prior_variance=prior_variance)
  state, metrics = weights.fit(fit.update, state, None, num_steps=2000)
  mean = float(state.posterior.mean[0])
  variance = float(jnp.exp(state.posterior.log_variance[0]))
  density = np.exp(-0.5 * (grid - mean) ** 2 / variance) / math.sqrt(2 * math.pi * variance)
  kl = float(weights.total(fit.information(state)))
  np.testing.assert_allclose(kl, float(info.gaussian_kl(mean, variance, 0.0, prior_variance)),
                             rtol=1e-10)
  lagrangian = np.sum(density * _double_well(grid)) * (grid[1] - grid[0]) + beta * kl
  assert gibbs_lagrangian + 0.05 < lagrangian < grid_lagrangian + 1e-3
  assert abs(mean - grid_mean) < 0.05
  assert metrics["objective"].shape == (2000,)


# ----------------------------------------------------------------------------------------------
# Variational fits on a quadratic loss, against the exact Gaussian optimum.
# ----------------------------------------------------------------------------------------------

_CURVATURE = _tree({"a": [4.0, 1.0, 0.25], "b": [[9.0, 0.5], [2.0, 0.05]]})
_MINIMUM = _tree({"a": [1.0, -0.5, 0.3], "b": [[0.2, 1.0], [-1.0, 0.4]]})
_PRIOR_MEAN = _tree({"a": [0.2, 0.0, -0.1], "b": [[0.0, 0.0], [0.0, 0.0]]})


def _quadratic_loss(params, batch):
  del batch
  terms = jax.tree.map(lambda h, w, m: jnp.asarray(h) * (w - jnp.asarray(m)) ** 2, _CURVATURE,
                       params, _MINIMUM)
  return 0.5 * weights.total(terms)


def _exact_optimum(beta, prior_variance):
  """For L = 1/2 sum h (w - m)^2 the Lagrangian's minimiser is Gaussian (conjugacy):
  variance beta / (h + beta/lambda^2), mean w0 + h (m - w0) / (h + beta/lambda^2)."""
  curvature = _CURVATURE
  variance = jax.tree.map(lambda h: beta / (h + beta / prior_variance), curvature)
  mean = jax.tree.map(lambda h, m, w0: w0 + h * (m - w0) / (h + beta / prior_variance), curvature,
                      _MINIMUM, _PRIOR_MEAN)
  kl = weights.total(weights.kl_per_weight(weights.gaussian_posterior(mean, variance),
                                           prior_variance=prior_variance,
                                           prior_mean=_PRIOR_MEAN))
  return mean, variance, float(kl)


def _run_quadratic_fit(beta, prior_variance, seed, *, num_steps=2500, reduction="mean",
                       num_examples=None):
  fit = weights.information_lagrangian_fit(
      _quadratic_loss, beta=beta, prior_mean=_PRIOR_MEAN, num_samples=8,
      reduction=reduction, num_examples=num_examples,
      optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, num_steps, alpha=1e-2)))
  start = weights.gaussian_posterior(_PRIOR_MEAN, prior_variance)
  state = fit.init(start, jax.random.key(seed), prior_variance=prior_variance)
  return fit, *weights.fit(fit.update, state, None, num_steps=num_steps)


def test_variational_fit_converges_to_the_closed_form():
  """Tolerances: over seeds the fitted variances land within 3% of the optimum and the means within
  0.008 (the Monte-Carlo gradient noise of 8 draws at the final learning rate 3e-4); the checks
  allow about three times that."""
  beta, prior_variance = 0.3, 0.5
  mean, variance, kl = _exact_optimum(beta, prior_variance)
  fit, state, metrics = _run_quadratic_fit(beta, prior_variance, seed=0)
  fitted_variance = jax.tree.map(jnp.exp, state.posterior.log_variance)
  for got, expected in zip(jax.tree.leaves(fitted_variance), jax.tree.leaves(variance)):
    np.testing.assert_allclose(got, expected, rtol=0.08)
  for got, expected in zip(jax.tree.leaves(state.posterior.mean), jax.tree.leaves(mean)):
    np.testing.assert_allclose(got, expected, atol=0.025)
  information = fit.information(state)
  np.testing.assert_allclose(weights.total(information), kl, atol=0.05)
  assert weights.sum_per_leaf(information)["b"].shape == ()
  # The metrics are exact in KL and unbiased in the loss; the objective went down.
  np.testing.assert_allclose(metrics["kl"][-1], kl, atol=0.05)
  expected_loss = 0.5 * weights.total(jax.tree.map(
      lambda h, m, mu, v: h * ((mu - m) ** 2 + v), _CURVATURE, _MINIMUM, mean, variance))
  np.testing.assert_allclose(np.mean(metrics["expected_loss"][-500:]), expected_loss, rtol=0.1)
  assert np.mean(metrics["objective"][-100:]) < np.mean(metrics["objective"][:100])
  assert int(state.step) == 2500


def test_summed_convention_gives_the_same_fit():
  """beta_sum = N beta_mean is the same Lagrangian: same key, same trajectory (to rounding)."""
  n = 200
  _, mean_state, _ = _run_quadratic_fit(0.3, 0.5, seed=1, num_steps=300)
  _, sum_state, _ = _run_quadratic_fit(0.3 * n, 0.5, seed=1, num_steps=300, reduction="sum",
                                       num_examples=n)
  for got, expected in zip(jax.tree.leaves(sum_state.posterior),
                           jax.tree.leaves(mean_state.posterior)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_fit_driver_matches_python_loop_and_stacked_batches():
  targets = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)  # three "batches" of four targets

  def loss_fn(params, batch):
    return 0.5 * jnp.mean((params["w"] - batch) ** 2)

  fit = weights.information_lagrangian_fit(loss_fn, beta=0.1, optimizer=optax.sgd(0.1),
                                           num_samples=2)
  state = fit.init(weights.gaussian_posterior({"w": jnp.zeros(4)}, 0.1), jax.random.key(3),
                   prior_variance=1.0)
  scanned, metrics = weights.fit(fit.update, state, targets)
  looped = state
  update = jax.jit(fit.update)
  for batch in targets:
    looped, step_metrics = update(looped, batch)
  for got, expected in zip(jax.tree.leaves(scanned.posterior), jax.tree.leaves(looped.posterior)):
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["kl"][-1], step_metrics["kl"], rtol=1e-5)
  assert metrics["objective"].shape == (3,)


def test_learned_prior_variance_is_the_mean_second_moment():
  """With beta KL and a learned lambda^2, the optimum has lambda^2 = mean_j (sigma_j^2 + mu_j^2)."""
  fit = posterior.gaussian_posterior_fit(
      _quadratic_loss, lambda kl, prior_variance: 0.3 * kl, num_samples=8,
      optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, 2500, alpha=1e-2)),
      learn_prior_variance=True)
  start = weights.gaussian_posterior(jax.tree.map(jnp.zeros_like, _MINIMUM), 0.5)
  state = fit.init(start, jax.random.key(4), prior_variance=0.5)
  state, metrics = weights.fit(fit.update, state, None, num_steps=2500)
  second_moments = jax.tree.map(lambda m, lv: jnp.exp(lv) + m ** 2, *state.posterior)
  second_moment = weights.total(second_moments) / 7  # 7 weights
  np.testing.assert_allclose(float(jnp.exp(state.log_prior_variance)), second_moment, rtol=0.05)
  np.testing.assert_allclose(metrics["prior_variance"][-1], jnp.exp(state.log_prior_variance),
                             rtol=0.01)
