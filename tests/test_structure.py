"""Tests of infojax.weights.structure: S(t) from a beta sweep, its knee and its plot."""

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from infojax import weights

_NUM_WEIGHTS = 16
_RNG = np.random.default_rng(0)
_CURVATURE = np.exp(_RNG.uniform(math.log(0.01), math.log(100.0), _NUM_WEIGHTS))
_MINIMUM = _RNG.normal(size=_NUM_WEIGHTS)


def _quadratic_loss(params, batch):
  del batch
  return 0.5 * jnp.sum(_CURVATURE * (params - _MINIMUM) ** 2)


def _closed_form_point(beta, prior_variance):
  """KL(Q*||P), E_Q* L and the standard deviation of L(w), w ~ Q*, at the exact minimiser.

  For L = 1/2 sum h (w - m)^2 and P = N(0, lambda^2 I) the minimiser is Gaussian (conjugacy).
  """
  h, m = _CURVATURE, _MINIMUM
  variance = beta / (h + beta / prior_variance)
  mean = h * m / (h + beta / prior_variance)
  kl = 0.5 * np.sum(variance / prior_variance + mean ** 2 / prior_variance - 1
                    - np.log(variance / prior_variance))
  offset = mean - m
  expected_loss = 0.5 * np.sum(h * (offset ** 2 + variance))
  # L = sum_j h_j (d_j + s_j z_j)^2 / 2: Var = sum_j h_j^2 (d_j^2 s_j^2 + s_j^4 / 2).
  loss_std = math.sqrt(np.sum(h ** 2 * (offset ** 2 * variance + 0.5 * variance ** 2)))
  return kl, expected_loss, loss_std


def test_sweep_matches_the_closed_form_structure_function():
  """For a quadratic loss every Lagrangian minimiser is known in closed form, so S(t) is too.

  Tolerances: the information is exact for the fitted Q, so its error is the optimisation error
  (measured below 0.6%; allowed 2%). The loss is a Monte-Carlo mean of 512 draws: allowed 4 standard
  errors of that mean (computed exactly) plus 2% for the optimisation error.
  """
  prior_variance, eval_samples = 1.0, 512
  betas = np.logspace(1, -3, 9)
  curve = weights.trace_structure_function(
      _quadratic_loss, weights.gaussian_posterior(jnp.zeros(_NUM_WEIGHTS), prior_variance), None,
      betas[::-1], key=jax.random.key(0), prior_variance=prior_variance, num_steps=1500,
      num_samples=8, eval_samples=eval_samples,
      optimizer=optax.adam(optax.cosine_decay_schedule(3e-2, 1500, alpha=1e-2)))
  np.testing.assert_allclose(curve.beta, betas, rtol=1e-6)  # swept from large beta to small
  for beta, information, loss, lagrangian in zip(betas, curve.information, curve.expected_loss,
                                                 curve.lagrangian):
    kl, expected_loss, loss_std = _closed_form_point(beta, prior_variance)
    np.testing.assert_allclose(information, kl, rtol=0.02)
    assert abs(loss - expected_loss) < 4 * loss_std / math.sqrt(eval_samples) + 0.02 * expected_loss
    np.testing.assert_allclose(lagrangian, loss + beta * information, rtol=1e-5)
  # S is decreasing in t, and its slope between neighbours lies between -beta_left and -beta_right.
  information, loss = np.asarray(curve.information), np.asarray(curve.expected_loss)
  assert np.all(np.diff(information) > 0) and np.all(np.diff(loss) < 0)
  assert curve.information_per_leaf.shape == (9,)
  np.testing.assert_allclose(curve.information_per_leaf, curve.information, rtol=1e-6)


def test_summed_reduction_traces_the_same_points():
  n = 50
  options = dict(key=jax.random.key(1), prior_variance=1.0, num_steps=300, num_samples=4,
                 eval_samples=16, optimizer=optax.adam(1e-2))
  start = weights.gaussian_posterior(jnp.zeros(_NUM_WEIGHTS), 1.0)
  mean_curve = weights.trace_structure_function(_quadratic_loss, start, None, [1.0, 0.1],
                                                **options)
  sum_curve = weights.trace_structure_function(_quadratic_loss, start, None, [n * 1.0, n * 0.1],
                                               reduction="sum", num_examples=n, **options)
  np.testing.assert_allclose(sum_curve.information, mean_curve.information, rtol=1e-4)
  np.testing.assert_allclose(sum_curve.expected_loss, mean_curve.expected_loss, rtol=1e-4)
  np.testing.assert_allclose(sum_curve.beta, [n * 1.0, n * 0.1], rtol=1e-6)


def test_kolmogorov_knee_on_known_curves():
  t = np.linspace(0.0, 100.0, 201)
  # Structure then memorisation: slope -5 until the kink at t = 25, then -1 (summed nats).
  structured = np.maximum(300.0 - 5.0 * t, 200.0 - t)
  assert t[int(weights.kolmogorov_knee(t, structured, num_examples=1))] == pytest.approx(25.0)
  # The same curve as a mean loss over N = 200 examples.
  n = 200
  assert t[int(weights.kolmogorov_knee(t, structured / n, num_examples=n))] == pytest.approx(25.0)
  # Random labels: S(t) = N log 2 - t from the start; the knee is the uniform model, t = 0.
  random_labels = n * math.log(2.0) - t
  assert int(weights.kolmogorov_knee(t, random_labels / n, num_examples=n)) == 0
  # Noise in the code length: the tolerance picks the simplest of the near-minimal points.
  noisy = structured + np.where(t > 25.0, -0.3 * (1.0 + np.sin(t)), 0.0)
  assert t[int(weights.kolmogorov_knee(t, noisy, num_examples=1))] == 25.0
  assert t[int(weights.kolmogorov_knee(t, noisy, num_examples=1, tolerance=0.1))] > 25.0
  assert int(jax.jit(lambda a, b: weights.kolmogorov_knee(a, b, num_examples=1))(
      t, structured)) == 50
  with pytest.raises(ValueError, match="1-D"):
    weights.kolmogorov_knee(t, structured[:-1], num_examples=1)


def test_plot_writes_a_png(tmp_path):
  t = np.linspace(0.0, 100.0, 21)
  curve = weights.StructureFunction(
      beta=np.logspace(1, -3, 21), information=t, expected_loss=np.maximum(1.5 - 0.05 * t,
                                                                           1.0 - 0.005 * t),
      lagrangian=np.zeros(21), information_per_leaf={})
  random = curve._replace(expected_loss=math.log(2.0) - t / 200)
  path = weights.plot_structure_functions({"real labels": curve, "random labels": random},
                                          str(tmp_path / "structure.png"), num_examples=200,
                                          title="S(t)")
  with open(path, "rb") as handle:
    assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(ValueError, match="at least one"):
    weights.plot_structure_functions({}, str(tmp_path / "empty.png"))


def test_importing_weights_does_not_import_matplotlib():
  code = "import sys, infojax.weights; assert 'matplotlib' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, env={"JAX_PLATFORMS": "cpu"})


def test_invalid_betas():
  start = weights.gaussian_posterior(jnp.zeros(2), 1.0)
  for betas in ([], [1.0, -0.1], [[1.0]]):
    with pytest.raises(ValueError, match="betas"):
      weights.trace_structure_function(_quadratic_loss, start, None, betas, key=jax.random.key(0),
                                       optimizer=optax.sgd(0.1), prior_variance=1.0, num_steps=1)


def test_repeated_sweeps_with_equal_static_settings_compile_once():
  traces = []

  def counting_loss(params, batch):
    traces.append(None)  # runs only while jax traces the sweep
    return _quadratic_loss(params, batch)

  optimizer = optax.adam(1e-2)
  start = weights.gaussian_posterior(jnp.zeros(_NUM_WEIGHTS), 1.0)
  options = dict(optimizer=optimizer, num_steps=5, eval_samples=4)
  first = weights.trace_structure_function(counting_loss, start, None, [1.0, 0.1],
                                           key=jax.random.key(0), prior_variance=1.0, **options)
  traced = len(traces)
  assert traced > 0
  # New trade-offs, key, prior variance and start: the same program.
  second = weights.trace_structure_function(
      counting_loss, weights.gaussian_posterior(jnp.ones(_NUM_WEIGHTS), 0.5), None, [2.0, 0.5],
      key=jax.random.key(1), prior_variance=0.5, **options)
  assert len(traces) == traced
  np.testing.assert_allclose(second.beta, [2.0, 0.5], rtol=1e-6)
  assert not np.allclose(second.information, first.information)
  # A different static setting compiles anew.
  weights.trace_structure_function(counting_loss, start, None, [1.0, 0.1], key=jax.random.key(0),
                                   prior_variance=1.0, optimizer=optimizer, num_steps=6,
                                   eval_samples=4)
  assert len(traces) > traced


def test_tolerance_stops_each_fit_and_reports_its_criterion():
  """The criterion, recomputed from an explicit step loop with the same keys, and the distance
  term, recomputed from the returned posterior."""
  optimizer = optax.adam(3e-2)
  prior_variance, check_every, num_steps = 1.0, 25, 1000
  start = weights.gaussian_posterior(jnp.zeros(_NUM_WEIGHTS), prior_variance)
  key = jax.random.key(2)
  curve, last = weights.trace_structure_function(
      _quadratic_loss, start, None, [1.0], key=key, optimizer=optimizer,
      prior_variance=prior_variance, num_steps=num_steps, check_every=check_every,
      tolerance=5e-2, num_samples=16, eval_samples=4, return_posterior=True)
  steps = int(curve.steps[0])
  assert 2 * check_every <= steps < num_steps and steps % check_every == 0
  # The same fit step by step: chunk means of the objective, stopping at the first small change.
  fit = weights.information_lagrangian_fit(_quadratic_loss, beta=1.0, optimizer=optimizer,
                                           num_samples=16)
  fit_key = jax.random.split(key, 2)[0]
  state = fit.init(start, fit_key, prior_variance=prior_variance)
  means, update = [], jax.jit(fit.update)
  while True:
    values = []
    for _ in range(check_every):
      state, metrics = update(state, None)
      values.append(float(metrics["objective"]))
    means.append(np.mean(values))
    change = (abs(means[-1] - means[-2]) / abs(means[-2]) if len(means) > 1 else math.nan)
    if change <= 5e-2 or len(means) * check_every == num_steps:
      break
  assert len(means) * check_every == steps
  np.testing.assert_allclose(float(curve.relative_change[0]), change, rtol=1e-3)
  np.testing.assert_allclose(np.asarray(last.mean), np.asarray(state.posterior.mean), rtol=1e-5,
                             atol=1e-7)
  distance = float(np.sum(np.asarray(last.mean, np.float64) ** 2) / (2 * prior_variance))
  np.testing.assert_allclose(float(curve.distance[0]), distance, rtol=1e-5)
  assert 0 < float(curve.distance[0]) < float(curve.information[0])
  # Without a tolerance every step runs and the criterion is still reported; one chunk: nan.
  full = weights.trace_structure_function(
      _quadratic_loss, start, None, [1.0], key=key, optimizer=optimizer,
      prior_variance=prior_variance, num_steps=num_steps, check_every=check_every, eval_samples=4)
  assert int(full.steps[0]) == num_steps and np.isfinite(float(full.relative_change[0]))
  single = weights.trace_structure_function(
      _quadratic_loss, start, None, [1.0], key=key, optimizer=optimizer,
      prior_variance=prior_variance, num_steps=25, eval_samples=4)
  assert int(single.steps[0]) == 25 and math.isnan(float(single.relative_change[0]))
  for options, match in ((dict(check_every=30), "divide"), (dict(tolerance=0.0), "tolerance"),
                         (dict(check_every=0), "check_every")):
    with pytest.raises(ValueError, match=match):
      weights.trace_structure_function(_quadratic_loss, start, None, [1.0], key=key,
                                       optimizer=optimizer, prior_variance=1.0, num_steps=1000,
                                       **options)


def _brute_force_hull_knee(t, loss):
  """The lower hull by definition: vertex i is on it when no segment between two other points
  passes strictly below it; the knee from the slopes of consecutive vertices."""
  order = np.argsort(t)
  t, loss = t[order], loss[order]
  vertices = []
  for i in range(len(t)):
    below = any(t[a] < t[i] < t[b] and loss[a] + (loss[b] - loss[a]) * (t[i] - t[a])
                / (t[b] - t[a]) <= loss[i] for a in range(len(t)) for b in range(len(t)))
    if not below:
      vertices.append(i)
  slopes = [(loss[j] - loss[i]) / (t[j] - t[i]) for i, j in zip(vertices, vertices[1:])]
  knee = next((v for v, s in zip(vertices, slopes) if s >= -1.0), vertices[-1])
  return order[vertices], np.asarray(slopes), order[knee]


def test_hull_knee_matches_a_brute_force_hull_on_random_curves():
  rng = np.random.default_rng(4)
  for _ in range(30):
    k = int(rng.integers(2, 12))
    t = rng.permutation(rng.uniform(0.0, 50.0, k))
    loss = 200.0 - 3.0 * np.minimum(t, 20.0) - 0.5 * t + rng.normal(0.0, 5.0, k)
    knee = weights.hull_knee(t, loss / 100.0, num_examples=100)
    hull, slopes, index = _brute_force_hull_knee(t, loss)
    np.testing.assert_array_equal(knee.hull, hull)
    np.testing.assert_allclose(knee.slopes, slopes, rtol=1e-9)
    assert knee.index == index
    assert np.all(np.diff(knee.slopes) > 0)   # convex
  # Known curves: the kink of max(300 - 5t, 200 - t) at t = 25; random labels: the first point.
  t = np.linspace(0.0, 100.0, 201)
  assert t[weights.hull_knee(t, np.maximum(300.0 - 5.0 * t, 200.0 - t),
                             num_examples=1).index] == pytest.approx(25.0)
  assert weights.hull_knee(t, 100.0 - t + 1e-3 * t ** 2, num_examples=1).index == 0
  assert weights.hull_knee(t, 100.0 - 2.0 * t, num_examples=1).index == 200
  with pytest.raises(ValueError, match="1-D"):
    weights.hull_knee(t, t[:-1], num_examples=1)
  with pytest.raises(ValueError, match="finite"):
    weights.hull_knee(t, np.where(t > 50, np.nan, t), num_examples=1)
