"""Tests for infojax.dynamics.deep_linear: Saxe et al.'s closed forms (science.md §10, §15 A.9),
gradient descent on deep linear networks against them and against a numpy float64 loop."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax.dynamics import deep_linear

# science.md §10.3: n1 = n2 = 8, n3 = 6, u0 = 1e-3, eta = 1e-3, aligned balanced init.
_S = (3.0, 2.0, 1.0, 0.5, 0.0, 0.0)
_U0 = 1e-3
_TABLE_TIMES = (2.0, 4.0, 8.0)
_TABLE_THEORY = ((2.9457, 1.1972, 0.0518, 0.0073), (3.0000, 1.9996, 0.7490, 0.0493),
                 (3.000, 2.000, 0.9999, 0.4283))
_TABLE_GD = ((2.9457, 1.1946, 0.0517, 0.0073), (3.0000, 1.9996, 0.7486, 0.0493),
             (3.000, 2.000, 0.9999, 0.4283))


def _task(dtype=jnp.float64, key=0):
  return deep_linear.linear_task(jnp.asarray(_S, dtype), input_dim=8, output_dim=6,
                                 key=jax.random.key(key))


def _derivative(f, t, h=1e-6):
  return (f(t + h) - f(t - h)) / (2 * h)


# ----------------------------------------------------------------------------------------------
# Closed forms.
# ----------------------------------------------------------------------------------------------


def test_mode_strength_at_the_a9_points_and_the_table(x64):
  # A.9: at t/tau = 2, s = 3 -> 2.9457, s = 2 -> 1.1972, s = 1 -> 0.0518.
  u = deep_linear.mode_strength(2.0, jnp.array([3.0, 2.0, 1.0]), _U0)
  np.testing.assert_allclose(u, [2.9457, 1.1972, 0.0518], atol=1e-4)
  for time, expected in zip(_TABLE_TIMES, _TABLE_THEORY):
    u = deep_linear.mode_strength(time, jnp.asarray(_S[:4]), _U0)
    np.testing.assert_allclose(u, expected, atol=1e-4)
  # The printed form, evaluated naively where it does not overflow.
  t, s = np.linspace(0.0, 3.0, 7)[:, None], np.array([[3.0, 2.0, 1.0, 0.5]])
  naive = s * np.exp(2 * s * t) / (np.exp(2 * s * t) - 1 + s / _U0)
  np.testing.assert_allclose(deep_linear.mode_strength(t, s, _U0), naive, rtol=1e-12)


def test_mode_strength_solves_its_ode(x64):
  s, u0, tau = 1.7, 0.05, 2.5
  t = np.linspace(0.1, 6.0, 9)
  u = lambda time: np.asarray(deep_linear.mode_strength(time, s, u0, tau=tau))  # noqa: E731
  np.testing.assert_allclose(tau * _derivative(u, t), 2 * u(t) * (s - u(t)), rtol=1e-7)
  assert float(deep_linear.mode_strength(0.0, s, u0, tau=tau)) == pytest.approx(u0, rel=1e-15)
  # A mode started above s relaxes down to it.
  assert 1.0 < float(deep_linear.mode_strength(1.0, 1.0, 2.0)) < 2.0


def test_mode_strength_zero_singular_value_and_stability(x64):
  t = jnp.array([0.0, 0.5, 8.0, 1e6])
  np.testing.assert_allclose(deep_linear.mode_strength(t, 0.0, _U0),
                             _U0 / (1 + 2 * _U0 * np.asarray(t)), rtol=1e-14)
  # Continuous in s at 0, and no overflow for large 2 s t / tau.
  near = deep_linear.mode_strength(t, 1e-12, _U0)
  np.testing.assert_allclose(near, _U0 / (1 + 2 * _U0 * np.asarray(t)), rtol=1e-5)
  large = deep_linear.mode_strength(jnp.array([1e3, 1e8]), 3.0, 1e-30)
  np.testing.assert_allclose(large, 3.0, rtol=1e-12)
  # Finite derivatives at s = 0 (the safe division).
  grad = jax.grad(lambda s: deep_linear.mode_strength(2.0, s, _U0))(0.0)
  assert np.isfinite(grad)


def test_mode_strength_float32_is_finite_and_jits():
  t = jnp.array([0.0, 2.0, 1e4], jnp.float32)
  u = deep_linear.mode_strength(t, jnp.float32(3.0), 1e-3)
  assert u.dtype == jnp.float32
  np.testing.assert_allclose(u, [1e-3, 2.9457, 3.0], rtol=1e-4)
  traced = jax.jit(lambda t, s, u0: deep_linear.mode_strength(t, s, u0))(t, 3.0, 1e-3)
  np.testing.assert_allclose(traced, u, rtol=1e-6)


def test_shallow_mode_strength_has_one_time_constant(x64):
  t = np.linspace(0.2, 5.0, 7)
  for s in (3.0, 0.5, 0.0):
    u = lambda time: np.asarray(deep_linear.shallow_mode_strength(time, s, _U0))  # noqa: E731
    np.testing.assert_allclose(_derivative(u, t), s - u(t), rtol=1e-7, atol=1e-12)
  # Time to half of s: ln(2 (s - u0) / s), the same for every s to O(u0 / s).
  half = deep_linear.learning_time(jnp.asarray(_S[:4]), _U0, jnp.asarray(_S[:4]) / 2, depth=1)
  np.testing.assert_allclose(half, np.log(2 * (np.array(_S[:4]) - _U0) / np.array(_S[:4])),
                             rtol=1e-12)
  assert float(jnp.max(half) - jnp.min(half)) < 3 * _U0


def test_learning_time_inverts_the_closed_forms(x64):
  s = jnp.array([3.0, 2.0, 1.0, 0.5, 0.0])
  u_final = jnp.array([1.5, 1.0, 0.9, 0.2, 5e-4])
  time = deep_linear.learning_time(s, _U0, u_final)
  np.testing.assert_allclose(deep_linear.mode_strength(time, s, _U0), u_final, rtol=1e-10)
  # The s = 0 limit (decay) and a mode above s decaying to it.
  assert float(time[-1]) == pytest.approx(0.5 * (1 / 5e-4 - 1 / _U0), rel=1e-12)
  down = deep_linear.learning_time(1.0, 2.0, 1.5)
  assert float(deep_linear.mode_strength(down, 1.0, 2.0)) == pytest.approx(1.5, rel=1e-10)
  shallow = deep_linear.learning_time(s[:4], _U0, u_final[:4], depth=1, tau=3.0)
  np.testing.assert_allclose(deep_linear.shallow_mode_strength(shallow, s[:4], _U0, tau=3.0),
                             u_final[:4], rtol=1e-10)
  # To half of s from small u0: ~ (1 / 2s) ln(s / u0), so the deep time scales as 1 / s.
  half = deep_linear.learning_time(s[:4], _U0, s[:4] / 2)
  np.testing.assert_allclose(half, np.log(np.array(s[:4]) / _U0) / (2 * np.array(s[:4])),
                             rtol=1e-3)


def test_mode_strength_ode_reproduces_the_closed_forms(x64):
  t = jnp.linspace(0.0, 8.0, 41)
  s = jnp.asarray(_S)
  for depth in (1, 2):
    ode = deep_linear.mode_strength_ode(t, s, _U0, depth=depth, substeps=50)
    closed = deep_linear.predicted_mode_strength(t, s, _U0, depth=depth)
    assert ode.shape == closed.shape == (41, 6)
    np.testing.assert_allclose(ode, closed, rtol=1e-8, atol=1e-12)
  # Depth 3: the right-hand side tau du/dt = 3 u^{4/3} (s - u), by finite differences.
  t = jnp.linspace(1.0, 20.0, 20)
  u = deep_linear.mode_strength_ode(t, 1.0, 0.01, depth=3, substeps=200)
  h = 1e-4
  slope = (deep_linear.mode_strength_ode(t + h, 1.0, 0.01, depth=3, substeps=200) -
           deep_linear.mode_strength_ode(t - h, 1.0, 0.01, depth=3, substeps=200)) / (2 * h)
  np.testing.assert_allclose(slope, 3 * u ** (4 / 3) * (1 - u), rtol=1e-4, atol=1e-9)


def test_crossing_time():
  times = jnp.array([0.0, 1.0, 2.0, 3.0])
  values = jnp.array([[0.0, 5.0, 0.0], [1.0, 5.0, 0.1], [3.0, 5.0, 0.2], [4.0, 5.0, 0.3]])
  crossing = deep_linear.crossing_time(times, values, jnp.array([2.0, 1.0, 1.0]))
  np.testing.assert_allclose(crossing[:2], [1.5, 0.0])
  assert np.isnan(crossing[2])


# ----------------------------------------------------------------------------------------------
# Tasks and initialisations.
# ----------------------------------------------------------------------------------------------


def test_linear_task_data_and_task_from_data(x64):
  task = _task()
  assert task.input_output_correlation.shape == (6, 8)
  np.testing.assert_allclose(task.input_correlation, np.eye(8))
  np.testing.assert_allclose(task.left.T @ task.left, np.eye(6), atol=1e-12)
  np.testing.assert_allclose(task.right.T @ task.right, np.eye(6), atol=1e-12)
  np.testing.assert_allclose(np.linalg.svd(task.input_output_correlation, compute_uv=False), _S,
                             atol=1e-12)
  inputs, targets = deep_linear.task_data(task, num_examples=24, key=jax.random.key(3))
  x, y = np.asarray(inputs), np.asarray(targets)
  assert x.shape == (24, 8) and y.shape == (24, 6)
  np.testing.assert_allclose(x.T @ x / 24, np.eye(8), atol=1e-12)
  np.testing.assert_allclose(y.T @ x / 24, task.input_output_correlation, atol=1e-12)
  again = deep_linear.task_from_data(inputs, targets)
  np.testing.assert_allclose(again.singular_values, _S, atol=1e-12)
  for name in ("input_correlation", "input_output_correlation", "output_correlation"):
    np.testing.assert_allclose(getattr(again, name), getattr(task, name), atol=1e-12)
  # Same modes up to sign (the leading four are distinct).
  np.testing.assert_allclose(np.abs(np.sum(again.left[:, :4] * task.left[:, :4], 0)), 1.0,
                             atol=1e-10)


def test_balanced_init_is_aligned_balanced_and_starts_every_mode_at_u0(x64):
  task = _task()
  for depth in (1, 2, 3):
    weights = deep_linear.balanced_init(task, depth=depth, hidden_dim=8, u0=_U0,
                                        key=jax.random.key(7))
    assert len(weights) == depth
    total = deep_linear.end_to_end(weights)
    np.testing.assert_allclose(total, _U0 * task.left @ task.right.T, atol=1e-15)
    np.testing.assert_allclose(deep_linear.network_mode_strengths(task, weights), _U0, rtol=1e-12)
    for lower, upper in zip(weights[:-1], weights[1:]):
      np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# Gradient descent.
# ----------------------------------------------------------------------------------------------


def _numpy_gradient_descent(inputs, targets, weights, *, learning_rate, num_steps):
  """Full-batch gradient descent of 1/2 mean ||y - W_D ... W_1 x||^2 on the data, float64 loop."""
  x, y = np.asarray(inputs, np.float64), np.asarray(targets, np.float64)
  weights = [np.array(w, np.float64) for w in weights]
  n = x.shape[0]
  for _ in range(num_steps):
    activations = [x]  # rows are examples: h_l = h_{l-1} W_l^T
    for w in weights:
      activations.append(activations[-1] @ w.T)
    delta = (activations[-1] - y) / n  # d loss / d output, per example
    grads = [None] * len(weights)
    for index in reversed(range(len(weights))):
      grads[index] = delta.T @ activations[index]
      delta = delta @ weights[index]
    weights = [w - learning_rate * g for w, g in zip(weights, grads)]
  return weights


def test_simulate_equals_a_numpy_loop_on_the_data(x64):
  task = _task()
  inputs, targets = deep_linear.task_data(task, num_examples=24, key=jax.random.key(5))
  rng = np.random.default_rng(0)
  for depth in (1, 2, 3):
    if depth < 3:
      dims = [8] + [8] * (depth - 1) + [6]
      weights = tuple(jnp.asarray(0.3 * rng.standard_normal((dims[i + 1], dims[i])))
                      for i in range(depth))
    else:
      weights = deep_linear.random_init(task, depth=3, hidden_dim=7, scale=0.3,
                                        key=jax.random.key(3))
      assert [w.shape for w in weights] == [(7, 8), (7, 7), (6, 7)]
      assert np.std(np.concatenate([np.ravel(w) for w in weights])) == pytest.approx(0.3, rel=0.2)
    trajectory = deep_linear.simulate(task, weights, learning_rate=0.05, num_steps=120,
                                      record_every=40, record_map=True)
    reference = _numpy_gradient_descent(inputs, targets, weights, learning_rate=0.05,
                                        num_steps=120)
    for got, want in zip(trajectory.weights, reference):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    history = trajectory.history
    np.testing.assert_array_equal(history["step"], [0, 40, 80, 120])
    np.testing.assert_allclose(history["time"], [0.0, 2.0, 4.0, 6.0])
    total = np.asarray(deep_linear.end_to_end(reference))
    u, v = np.asarray(task.left), np.asarray(task.right)
    np.testing.assert_allclose(history["strength"][-1], np.diag(u.T @ total @ v), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(history["map"][-1], total, rtol=1e-10, atol=1e-12)
    off = total - u @ np.diag(np.diag(u.T @ total @ v)) @ v.T
    assert float(history["off_mode"][-1]) == pytest.approx(np.linalg.norm(off), rel=1e-9)
    residual = np.asarray(targets) - np.asarray(inputs) @ total.T
    data_loss = 0.5 * np.mean(np.sum(residual ** 2, 1))
    assert float(history["loss"][-1]) == pytest.approx(data_loss, rel=1e-9)
    assert float(deep_linear.loss(task, reference)) == pytest.approx(data_loss, rel=1e-9)
    np.testing.assert_allclose(history["strength"][0],
                               deep_linear.network_mode_strengths(task, weights), rtol=1e-12)


def test_gradient_descent_reproduces_the_table(x64):
  task = _task()
  weights = deep_linear.balanced_init(task, depth=2, hidden_dim=8, u0=_U0, key=jax.random.key(1))
  history = deep_linear.simulate(task, weights, learning_rate=1e-3, num_steps=8000,
                                 record_every=1000).history
  np.testing.assert_allclose(history["time"], np.arange(9.0), rtol=1e-12)
  for time, expected in zip(_TABLE_TIMES, _TABLE_GD):
    np.testing.assert_allclose(history["strength"][int(time), :4], expected, atol=1e-4)
  # The s = 0 modes stay at ~u0, as u0 / (1 + 2 u0 t / tau).
  zero = np.asarray(history["strength"][:, 4:])
  expected = np.broadcast_to((_U0 / (1 + 2 * _U0 * np.arange(9.0)))[:, None], zero.shape)
  np.testing.assert_allclose(zero, expected, rtol=1e-5)
  # Aligned: nothing off the modes, ever.
  assert float(np.max(history["off_mode"])) < 1e-12


@pytest.mark.parametrize("depth, u0, duration", [(2, _U0, 6.0), (3, 1e-2, 12.0)])
def test_gradient_descent_converges_to_the_theory_at_first_order(x64, depth, u0, duration):
  """max |GD - theory| halves with the learning rate: the closed forms (depths 1, 2) and the ODE
  tau du/dt = D u^{2 - 2/D} (s - u) (depth 3) are the gradient flow."""
  task = _task()
  weights = deep_linear.balanced_init(task, depth=depth, hidden_dim=8, u0=u0)
  errors = []
  for learning_rate in (4e-3, 2e-3):
    num_steps = int(round(duration / learning_rate))
    history = deep_linear.simulate(task, weights, learning_rate=learning_rate,
                                   num_steps=num_steps, record_every=num_steps // 60).history
    theory = deep_linear.predicted_mode_strength(history["time"], task.singular_values, u0,
                                                 depth=depth, substeps=100)
    errors.append(float(np.max(np.abs(history["strength"] - theory))))
  assert errors[1] < 0.05
  assert 1.9 < errors[0] / errors[1] < 2.1


def test_shallow_half_time_is_the_same_for_every_mode_while_the_deep_one_scales_as_1_over_s(x64):
  task = _task()
  s = np.asarray(_S[:4])
  halves = {}
  for depth in (1, 2):
    weights = deep_linear.balanced_init(task, depth=depth, hidden_dim=8, u0=_U0)
    history = deep_linear.simulate(task, weights, learning_rate=1e-3, num_steps=7000,
                                   record_every=10).history
    if depth == 1:  # the whole path is the shallow closed form, to O(eta)
      theory = deep_linear.shallow_mode_strength(history["time"][:, None],
                                                 task.singular_values[None], _U0)
      error = np.max(np.abs(history["strength"] - theory))
      assert 1e-4 < error < 1e-3 * np.max(_S) / 2
    halves[depth] = np.asarray(deep_linear.crossing_time(history["time"],
                                                         history["strength"][:, :4], s / 2))
    np.testing.assert_allclose(halves[depth], deep_linear.learning_time(s, _U0, s / 2,
                                                                        depth=depth), atol=3e-3)
  assert np.ptp(halves[1]) < 0.01 and halves[1] == pytest.approx(math.log(2), abs=0.01)
  assert np.all(np.diff(halves[2]) > 0)  # stronger modes first
  np.testing.assert_allclose(halves[2] * s, 0.5 * np.log(s / _U0), rtol=0.01)


def test_simulate_vmaps_over_keys_and_initial_scales():
  """float32 (the default) under vmap: the rotations of the init do not matter, the scale does."""
  task = _task(jnp.float32)

  def strengths(key, u0):
    weights = deep_linear.balanced_init(task, depth=2, hidden_dim=8, u0=u0, key=key)
    return deep_linear.simulate(task, weights, learning_rate=1e-3, num_steps=2000,
                                record_every=1000).history["strength"]

  keys = jax.random.split(jax.random.key(0), 3)
  u0s = jnp.array([_U0, _U0, 0.01])
  swept = jax.jit(jax.vmap(strengths))(keys, u0s)
  assert swept.dtype == jnp.float32 and swept.shape == (3, 3, 6)
  np.testing.assert_allclose(swept[0], swept[1], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(swept[2], strengths(keys[2], 0.01), rtol=1e-5, atol=1e-7)
  # float32 still gives the table's gradient-descent values at t/tau = 2.
  np.testing.assert_allclose(swept[0, 2, :4], _TABLE_GD[0], atol=2e-4)
  theory = deep_linear.mode_strength(2.0, jnp.asarray(_S, jnp.float32), 0.01)
  np.testing.assert_allclose(swept[2, 2], theory, atol=0.02)


# ----------------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
  task = _task(jnp.float32)
  weights = deep_linear.balanced_init(task, depth=2, hidden_dim=8, u0=_U0)
  with pytest.raises(ValueError, match="u0"):
    deep_linear.mode_strength(1.0, 1.0, -1e-3)
  with pytest.raises(ValueError, match="s must be"):
    deep_linear.mode_strength(1.0, jnp.array([1.0, -0.5]), 1e-3)
  with pytest.raises(ValueError, match="t must be"):
    deep_linear.mode_strength(-1.0, 1.0, 1e-3)
  with pytest.raises(ValueError, match="tau"):
    deep_linear.mode_strength(1.0, 1.0, 1e-3, tau=0.0)
  with pytest.raises(ValueError, match="u0"):
    deep_linear.balanced_init(task, depth=2, hidden_dim=8, u0=-1e-3)
  with pytest.raises(ValueError, match="depth"):
    deep_linear.balanced_init(task, depth=0, hidden_dim=8, u0=_U0)
  with pytest.raises(ValueError, match="depth"):
    deep_linear.mode_strength_ode(jnp.array([1.0]), 1.0, 1e-3, depth=0)
  with pytest.raises(ValueError, match="hidden_dim"):
    deep_linear.balanced_init(task, depth=2, hidden_dim=4, u0=_U0)
  with pytest.raises(ValueError, match="learning_rate"):
    deep_linear.simulate(task, weights, learning_rate=0.0, num_steps=10)
  with pytest.raises(ValueError, match="learning_rate"):
    deep_linear.simulate(task, weights, learning_rate=-1e-3, num_steps=10)
  with pytest.raises(ValueError, match="record_every"):
    deep_linear.simulate(task, weights, learning_rate=1e-3, num_steps=10, record_every=3)
  with pytest.raises(ValueError, match="weights"):
    deep_linear.simulate(task, weights[::-1], learning_rate=1e-3, num_steps=10)
  with pytest.raises(ValueError, match="u_final"):
    deep_linear.learning_time(1.0, 1e-3, 1.0)
  with pytest.raises(ValueError, match="depth 1 and 2"):
    deep_linear.learning_time(1.0, 1e-3, 0.5, depth=3)
  with pytest.raises(ValueError, match="singular_values"):
    deep_linear.linear_task(jnp.array([1.0, -1.0]), input_dim=4, output_dim=4,
                            key=jax.random.key(0))
  with pytest.raises(ValueError, match="number of singular values"):
    deep_linear.linear_task(jnp.ones(5), input_dim=4, output_dim=8, key=jax.random.key(0))
  with pytest.raises(ValueError, match="non-decreasing"):
    deep_linear.mode_strength_ode(jnp.array([2.0, 1.0]), 1.0, 1e-3, depth=3)


# ----------------------------------------------------------------------------------------------
# Two pathways and a deficit (Kleinman, Achille & Soatto 2024).
# ----------------------------------------------------------------------------------------------


def _numpy_multipath(task, pathways, *, learning_rate, num_steps, onset, length, gated=1):
  """Gradient descent on 1/2 E||y - (W_a + W_b) x||^2 with explicit products per layer, float64;
  pathway ``gated`` takes no step at steps onset <= t < onset + length. Returns the weights after
  every step (index 0: the initialisation)."""
  sigma11 = np.asarray(task.input_correlation, np.float64)
  sigma31 = np.asarray(task.input_output_correlation, np.float64)
  weights = [[np.asarray(w, np.float64) for w in pathway] for pathway in pathways]
  path = [[[w.copy() for w in pathway] for pathway in weights]]
  for step in range(num_steps):
    total = np.zeros_like(sigma31)
    for pathway in weights:
      product = np.eye(sigma11.shape[0])
      for w in pathway:
        product = w @ product
      total += product
    error = total @ sigma11 - sigma31
    new = []
    for index, pathway in enumerate(weights):
      frozen = index == gated and onset <= step < onset + length
      grads = []
      for layer in range(len(pathway)):
        above = np.eye(pathway[-1].shape[0])
        for w in reversed(pathway[layer + 1:]):
          above = above @ w
        below = np.eye(sigma11.shape[0])
        for w in pathway[:layer]:
          below = w @ below
        grads.append(above.T @ error @ below.T)
      new.append([w if frozen else w - learning_rate * g for w, g in zip(pathway, grads)])
    weights = new
    path.append([[w.copy() for w in pathway] for pathway in weights])
  return path


def _strengths_numpy(task, pathways):
  left, right = np.asarray(task.left), np.asarray(task.right)
  out = []
  for pathway in pathways:
    product = np.eye(right.shape[0])
    for w in pathway:
      product = w @ product
    out.append(np.diag(left.T @ product @ right))
  return np.stack(out)


# Saxe's hierarchy written out, (15 features, 8 items): living thing; animal, plant; 4 families;
# one feature per item.
_HIERARCHY_T = np.array([[1] * 8, [1] * 4 + [0] * 4, [0] * 4 + [1] * 4] + [
    [1 if i // 2 == f else 0 for i in range(8)] for f in range(4)] + [
    [1 if i == f else 0 for i in range(8)] for f in range(8)], np.float64)


def test_hierarchical_task_and_pathway_imbalance(x64):
  task = deep_linear.hierarchical_task(jnp.float64)
  np.testing.assert_allclose(task.singular_values, np.sqrt([15, 7, 3, 3, 1, 1, 1, 1]),
                             rtol=1e-12)
  np.testing.assert_allclose(task.input_correlation, np.eye(8), atol=1e-15)
  np.testing.assert_allclose(task.input_output_correlation, _HIERARCHY_T, atol=1e-15)
  # 8 items with 4 features each: the summed loss of the zero map is 32 / 2.
  zero = (jnp.zeros((15, 8)),)
  assert float(deep_linear.loss(task, zero)) == pytest.approx(16.0, rel=1e-12)
  strengths = jnp.array([[3.0, 1.0], [1.0, 1.0]])
  assert float(deep_linear.pathway_imbalance(strengths)) == pytest.approx(1 / 3)
  np.testing.assert_allclose(deep_linear.pathway_imbalance(strengths, per_mode=True), [0.5, 0.0])
  batched = jnp.stack([strengths, strengths[::-1]])
  np.testing.assert_allclose(deep_linear.pathway_imbalance(batched), [1 / 3, -1 / 3])


def _two_pathways(scale=1.0):
  """Pathways of different depths (3 and 2) with random, unaligned weights for the hierarchy's 8
  inputs and 15 outputs: the general gradient."""
  rng = np.random.default_rng(3)
  shapes = (((7, 8), (7, 7), (15, 7)), ((6, 8), (15, 6)))
  return tuple(tuple(jnp.asarray(scale * 0.4 * rng.standard_normal(shape)) for shape in pathway)
               for pathway in shapes)


_STEPS, _LR = 40, 0.05
# (onset, length, gated pathway): a window inside, one ending at the last step, none, the other
# pathway gated.
_WINDOWS = ((10, 15, 1), (25, 15, 1), (0, 0, 1), (2, 5, 0))


def test_simulate_multipath_equals_a_numpy_loop_with_the_deficit_window(x64):
  task = deep_linear.hierarchical_task(jnp.float64)
  pathways = _two_pathways()
  for onset, length, gated in _WINDOWS:
    trajectory = deep_linear.simulate_multipath(
        task, pathways, learning_rate=_LR, num_steps=_STEPS, deficit_onset=onset,
        deficit_length=length, deficit_pathway=gated)
    path = _numpy_multipath(task, pathways, learning_rate=_LR, num_steps=_STEPS, onset=onset,
                            length=length, gated=gated)
    for got, want in zip(jax.tree.leaves(trajectory.weights), jax.tree.leaves(path[-1])):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    strengths = np.stack([_strengths_numpy(task, p) for p in path])
    np.testing.assert_allclose(trajectory.history["strength"], strengths, rtol=1e-9, atol=1e-12)
    # The gated pathway moves at every step but those of the window [onset, onset + length).
    held = np.asarray(trajectory.history["strength"])[:, gated]
    moved = np.any(held[1:] != held[:-1], axis=1)  # moved[t]: step t changed it
    steps = np.arange(_STEPS)
    np.testing.assert_array_equal(moved, (steps < onset) | (steps >= onset + length))
    total = sum(_product(p) for p in path[-1])
    expected_loss = 0.5 * np.sum((_HIERARCHY_T - total) ** 2)  # summed over the 8 items
    assert float(trajectory.history["loss"][-1]) == pytest.approx(expected_loss, rel=1e-10)
    np.testing.assert_allclose(trajectory.history["imbalance"],
                               (strengths[:, 0] - strengths[:, 1]).sum(-1)
                               / (strengths[:, 0] + strengths[:, 1]).sum(-1), rtol=1e-9)


def _product(pathway):
  product = pathway[0]
  for w in pathway[1:]:
    product = w @ product
  return product


def test_deficit_sweep_equals_separate_runs(x64):
  task = deep_linear.hierarchical_task(jnp.float64)
  first, second = _two_pathways(), _two_pathways(scale=0.8)
  batched = jax.tree.map(lambda a, b: np.stack([a, b]), first, second)
  onsets = np.array([w[0] for w in _WINDOWS[:3]])
  lengths = np.array([w[1] for w in _WINDOWS[:3]])
  sweep = jax.tree.map(np.asarray, deep_linear.deficit_sweep(
      task, batched, learning_rate=_LR, num_steps=_STEPS, deficit_onsets=onsets,
      deficit_lengths=lengths))
  assert sweep.history["strength"].shape == (2, 3, _STEPS + 1, 2, 8)
  for seed, pathways in enumerate((first, second)):
    for index, (onset, length) in enumerate(zip(onsets, lengths)):
      alone = deep_linear.simulate_multipath(task, pathways, learning_rate=_LR, num_steps=_STEPS,
                                             deficit_onset=int(onset), deficit_length=int(length))
      for name, values in alone.history.items():
        np.testing.assert_allclose(sweep.history[name][seed, index], values, rtol=1e-12,
                                   atol=1e-14, err_msg=name)
      for got, want in zip(jax.tree.leaves(sweep.weights), jax.tree.leaves(alone.weights)):
        np.testing.assert_allclose(got[seed, index], want, rtol=1e-12, atol=1e-14)


def test_multipath_init_is_the_authors_aligned_balanced_init(x64):
  task = deep_linear.hierarchical_task(jnp.float64)
  u0 = jnp.stack([0.01 * (1 + 0.1 * jnp.arange(8.0))[::-1], jnp.full(8, 0.02)])
  pathways = deep_linear.multipath_init(task, u0, depth=3, hidden_dim=10, key=jax.random.key(2))
  np.testing.assert_allclose(deep_linear.pathway_strengths(task, pathways), u0, rtol=1e-12)
  for p, pathway in enumerate(jax.tree.map(np.asarray, pathways)):
    total = deep_linear.end_to_end(pathway)
    expected = (np.asarray(task.left) * np.asarray(u0[p])[None, :]) @ np.asarray(task.right).T
    np.testing.assert_allclose(total, expected, atol=1e-15)  # nothing off the modes
    for lower, upper in zip(pathway[:-1], pathway[1:]):  # balanced: W_{l+1}^T W_{l+1} = W_l W_l^T
      np.testing.assert_allclose(upper.T @ upper, lower @ lower.T, atol=1e-15)


def test_multipath_bad_input_raises_clear_errors(x64):
  task = deep_linear.hierarchical_task(jnp.float64)
  u0 = jnp.full((2, 8), 0.01)
  pathways = deep_linear.multipath_init(task, u0, depth=3, hidden_dim=10)
  run = functools.partial(deep_linear.simulate_multipath, task, pathways, learning_rate=0.01,
                          num_steps=100)
  with pytest.raises(ValueError, match="inside the run of num_steps = 100"):
    run(deficit_onset=60, deficit_length=41)
  with pytest.raises(ValueError, match="deficit_onset must be integers >= 0"):
    run(deficit_onset=-1, deficit_length=10)
  with pytest.raises(ValueError, match="deficit_onset must be integers"):
    run(deficit_onset=1.5, deficit_length=10)
  with pytest.raises(ValueError, match="deficit_length must be integers >= 0"):
    run(deficit_onset=0, deficit_length=-5)
  with pytest.raises(ValueError, match="deficit_pathway must be 0 or 1"):
    run(deficit_pathway=2)
  with pytest.raises(ValueError, match="record_every must divide"):
    run(record_every=7)
  with pytest.raises(TypeError, match="pathways must be a pair"):
    deep_linear.simulate_multipath(task, pathways[:1], learning_rate=0.01, num_steps=10)
  with pytest.raises(ValueError, match="depth"):
    deep_linear.multipath_init(task, u0, depth=0, hidden_dim=8)
  with pytest.raises(ValueError, match="u0 must have shape"):
    deep_linear.multipath_init(task, u0[0], depth=2, hidden_dim=8)
  with pytest.raises(ValueError, match="u0"):
    deep_linear.multipath_init(task, -u0, depth=2, hidden_dim=8)
  with pytest.raises(ValueError, match="hidden_dim"):
    deep_linear.multipath_init(task, u0, depth=2, hidden_dim=4)
  with pytest.raises(ValueError, match="strengths must have shape"):
    deep_linear.pathway_imbalance(jnp.ones((3, 8)))
  batched = jax.tree.map(lambda w: w[None], pathways)
  with pytest.raises(ValueError, match="inside the run"):
    deep_linear.deficit_sweep(task, batched, learning_rate=0.01, num_steps=100,
                              deficit_onsets=np.array([0, 90]), deficit_lengths=20)
  with pytest.raises(ValueError, match="leading axis"):
    deep_linear.deficit_sweep(task, pathways, learning_rate=0.01, num_steps=100,
                              deficit_onsets=np.array([0]), deficit_lengths=20)
