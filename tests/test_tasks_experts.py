"""Tests of infojax.tasks.experts against float64 loops (science.md §6.4-6.5, §3.4)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from infojax.tasks import experts
from infojax.tasks import task2vec


def _loop_sym(a, b):
  """``1 - cos(a/(a+b), b/(a+b))`` by explicit loops in float64."""
  u = [x / (x + y) for x, y in zip(a, b)]
  v = [y / (x + y) for x, y in zip(a, b)]
  dot = sum(p * q for p, q in zip(u, v))
  return 1.0 - dot / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))


def test_select_expert_matches_loops(x64):
  rng = np.random.default_rng(0)
  bank = rng.gamma(2.0, size=(6, 20))
  target = rng.gamma(2.0, size=20)
  trivial = np.ones(20)
  for alpha in (0.0, 0.15, 2.0):
    want = [_loop_sym(bank[k], target) - alpha * _loop_sym(bank[k], trivial) for k in range(6)]
    index, distances = experts.select_expert(target, bank, trivial, alpha=alpha)
    np.testing.assert_allclose(distances, want, rtol=1e-12)
    assert int(index) == int(np.argmin(want))
  # A large alpha prefers the expert farthest from trivial; alpha = 0 the nearest to the target.
  near = target * 3.0  # d_sym(near, target) = 0
  far = rng.gamma(0.3, size=20) + 1e-3
  stacked = np.stack([near, far])
  assert int(experts.select_expert(target, stacked, trivial, alpha=0.0)[0]) == 0
  big = 1.0 / max(_loop_sym(far, trivial) - _loop_sym(near, trivial), 1e-6) * 2.0
  assert _loop_sym(far, trivial) > _loop_sym(near, trivial)
  assert int(experts.select_expert(target, stacked, trivial, alpha=big)[0]) == 1
  # Embedding inputs (with the trivial embedding of the library), jit and vmap over targets.
  bank_embedding = task2vec.Embedding(jnp.asarray(bank), jnp.ones_like(jnp.asarray(bank)))
  fn = jax.jit(jax.vmap(lambda t: experts.select_expert(
      t, bank_embedding, task2vec.trivial_embedding(trivial))[0]))
  np.testing.assert_array_equal(
      fn(jnp.asarray(bank)), [int(experts.select_expert(b, bank, trivial)[0]) for b in bank])


def test_select_expert_errors():
  bank, target = np.ones((3, 4)), np.ones(4)
  with pytest.raises(ValueError, match="experts: expected a non-empty"):
    experts.select_expert(target, np.ones(4), target)
  with pytest.raises(ValueError, match="same shape"):
    experts.select_expert(np.ones(5), bank, np.ones(5))
  with pytest.raises(ValueError, match=r"experts\[1\].*non-negative"):
    experts.select_expert(target, np.array([[1.0] * 4, [1.0, -1.0, 1.0, 1.0], [1.0] * 4]), target)
  with pytest.raises(ValueError, match="alpha"):
    experts.select_expert(target, bank, target, alpha=math.nan)


def test_selection_gaps_match_loops():
  errors = np.array([0.3, 0.1, 0.25, 0.1, 0.5])
  for chosen in range(5):
    gap, rank = experts.selection_gap(errors, chosen)
    np.testing.assert_allclose(gap, errors[chosen] - 0.1, atol=1e-7)
    assert int(rank) == sum(1 for e in errors if e < errors[chosen])
  gap, rank = experts.random_selection_gap(errors)
  np.testing.assert_allclose(gap, np.mean(errors) - 0.1, atol=1e-7)
  ranks = [sum(1 for e in errors if e < x) for x in errors]
  np.testing.assert_allclose(rank, sum(ranks) / 5, atol=1e-6)
  # vmap over targets (rows of errors and chosen indices).
  table = np.array([[0.2, 0.1, 0.3], [0.5, 0.6, 0.4]])
  gaps, ranks = jax.vmap(experts.selection_gap)(table, jnp.array([0, 1]))
  np.testing.assert_allclose(gaps, [0.1, 0.2], atol=1e-7)
  np.testing.assert_array_equal(ranks, [1, 2])
  with pytest.raises(ValueError, match="chosen must be in"):
    experts.selection_gap(errors, 5)
  with pytest.raises(TypeError, match="chosen"):
    experts.selection_gap(errors, 1.0)
  with pytest.raises(ValueError, match="errors: entries must be finite"):
    experts.random_selection_gap([0.1, math.inf])


def test_steps_to_accuracy_matches_loop():
  steps = np.array([0, 5, 10, 15, 20])
  rng = np.random.default_rng(1)
  accuracies, thresholds = rng.uniform(size=(30, 5)), rng.uniform(0.3, 1.0, size=30)
  want = []
  for accuracy, threshold in zip(accuracies, thresholds):
    first = (steps[-1], True)
    for s, a in zip(steps, accuracy):
      if a >= threshold:
        first = (s, False)
        break
    want.append(first)
  costs, flags = jax.vmap(experts.steps_to_accuracy, in_axes=(None, 0, 0))(
      steps, accuracies, thresholds)
  np.testing.assert_array_equal(costs, [w[0] for w in want])
  np.testing.assert_array_equal(flags, [w[1] for w in want])
  assert 0 < sum(w[1] for w in want) < 30  # both outcomes occur
  cost, censored = experts.steps_to_accuracy(steps, accuracies[0], thresholds[0])
  assert (int(cost), bool(censored)) == want[0]
  with pytest.raises(ValueError, match="strictly increasing"):
    experts.steps_to_accuracy([0, 5, 5], [0.1, 0.2, 0.3], 0.5)
  with pytest.raises(ValueError, match="one shape"):
    experts.steps_to_accuracy([0, 5], [0.1, 0.2, 0.3], 0.5)


def _numpy_softmax_sgd(weights, bias, x, y, *, lr, steps, batch_size, orders, eval_x, eval_y,
                       eval_every):
  """Plain SGD on a linear softmax classifier by hand (float64): gradients X^T (p - onehot)/B."""
  num_classes = weights.shape[1]

  def scores(w, b, inputs, labels):
    logits = inputs @ w + b
    logits = logits - logits.max(1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    return np.mean(np.argmax(logits, 1) == labels), -np.mean(log_p[np.arange(len(labels)), labels])

  curve = [scores(weights, bias, eval_x, eval_y)]
  for step in range(steps):
    index = orders[step, :batch_size]
    xb, yb = x[index], y[index]
    logits = xb @ weights + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = (p - np.eye(num_classes)[yb]) / batch_size
    weights = weights - lr * xb.T @ delta
    bias = bias - lr * delta.sum(0)
    if (step + 1) % eval_every == 0:
      curve.append(scores(weights, bias, eval_x, eval_y))
  return weights, bias, np.array(curve)


def test_fine_tune_matches_numpy_sgd_and_vmaps(x64):
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, size=30)
  eval_x, eval_y = rng.normal(size=(12, 4)), rng.integers(0, 3, size=12)
  params = {"w": rng.normal(size=(4, 3)) * 0.3, "b": np.zeros(3)}

  def apply_fn(p, inputs):
    return inputs @ p["w"] + p["b"][None, :]

  key = jax.random.key(3)
  fine_tune = experts.make_fine_tune(apply_fn, optax.sgd(0.5), num_steps=12, batch_size=7,
                                     eval_every=4)
  train_data = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
  eval_data = {"image": jnp.asarray(eval_x), "label": jnp.asarray(eval_y)}
  # A bank of two starting points at once (as the experiments run it): each row is its own run.
  other = {"w": params["w"][::-1] * 2.0, "b": params["b"] + 0.1}
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), params, other)
  both = jax.vmap(fine_tune, in_axes=(0, None, None, None))(stacked, train_data, eval_data, key)
  # Step s draws permutation(fold_in(key, s), N)[:batch_size] (experts.sample_batch).
  orders = np.asarray(jax.vmap(lambda s: jax.random.permutation(jax.random.fold_in(key, s), 30))(
      jnp.arange(12)))
  for row, start in enumerate((params, other)):
    w, b, want = _numpy_softmax_sgd(start["w"], start["b"], x, y, lr=0.5, steps=12, batch_size=7,
                                    orders=orders, eval_x=eval_x, eval_y=eval_y, eval_every=4)
    np.testing.assert_array_equal(both.steps[row], [0, 4, 8, 12])
    np.testing.assert_allclose(both.params["w"][row], w, rtol=1e-10)
    np.testing.assert_allclose(both.params["b"][row], b, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(both.accuracy[row], want[:, 0], rtol=1e-6)  # a float32 0/1 mean
    np.testing.assert_allclose(both.loss[row], want[:, 1], rtol=1e-10)
  with pytest.raises(ValueError, match="multiple of eval_every"):
    experts.make_fine_tune(apply_fn, optax.sgd(0.1), num_steps=10, batch_size=2, eval_every=4)
  with pytest.raises(ValueError, match="batch_size must be a positive integer"):
    experts.make_fine_tune(apply_fn, optax.sgd(0.1), num_steps=8, batch_size=0, eval_every=4)


def test_spearman_and_rank_correlation_against_scipy(x64):
  rng = np.random.default_rng(4)
  x = rng.normal(size=15)
  y = np.round(x + rng.normal(size=15), 0)  # ties on y, as censored costs give
  y[:4] = y.max()
  np.testing.assert_allclose(experts.spearman(x, y), scipy.stats.spearmanr(x, y).statistic,
                             rtol=1e-12)
  key = jax.random.key(5)
  result = experts.rank_correlation(x, y, key=key, num_resamples=100)
  np.testing.assert_allclose(result.correlation, scipy.stats.spearmanr(x, y).statistic,
                             rtol=1e-12)
  # The bootstrap: the same resampled indices, scipy's rho on each.
  uniforms = np.asarray(jax.random.uniform(key, (2, 100, 15), dtype=jnp.float64))
  index = np.minimum(np.floor(uniforms[0] * 15).astype(int), 14)
  boot = [scipy.stats.spearmanr(x[i], y[i]).statistic for i in index]
  np.testing.assert_allclose(result.bootstrap_std, np.nanstd(boot), rtol=1e-9)
  # The permutation p-value: the same permutations, counted by a loop.
  orders = np.argsort(uniforms[1], axis=1)
  rho = scipy.stats.spearmanr(x, y).statistic
  extreme = sum(abs(scipy.stats.spearmanr(x, y[order]).statistic) >= abs(rho) * (1 - 1e-6)
                for order in orders)
  np.testing.assert_allclose(result.p_value, (1 + extreme) / 101, rtol=1e-12)
  # A monotone relation: rho = 1 and a p-value at its floor; independent data: a large p-value.
  monotone = experts.rank_correlation(x, np.exp(x), key=key, num_resamples=100)
  assert float(monotone.correlation) == pytest.approx(1.0)
  assert float(monotone.p_value) == pytest.approx(1 / 101)
  independent = experts.rank_correlation(x, rng.normal(size=15), key=key, num_resamples=100)
  assert float(independent.p_value) > 0.05
  assert math.isnan(float(experts.spearman(x, np.ones(15))))
  with pytest.raises(ValueError, match="one shape"):
    experts.spearman(x, y[:3])
  with pytest.raises(ValueError, match="num_resamples"):
    experts.rank_correlation(x, y, key=key, num_resamples=0)
