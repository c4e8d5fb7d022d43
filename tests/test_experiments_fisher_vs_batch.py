"""Tests for the fisher_vs_batch experiment (infojax.experiments.fisher_vs_batch,
configs/fisher_vs_batch.py, scripts/fisher_vs_batch.py).

References share no code with the module: the zigzag by ``np.interp`` through its kink values and
``brentq`` for the minimisers, SGD as an explicit float64 loop, the KL integrals by
``scipy.integrate.quad``, the piece probabilities by Python loops; closed forms: disjoint Gaussians
(``log M``), the chain rule ``I(theta; D, seed) = I(theta; D) + I(theta; seed | D)``, and the
science.md numbers (slopes 93 -> 4.5, 1.51 nats inside one piece).
"""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize

from infojax.dynamics import loops
from infojax.experiments import fisher_vs_batch as fvb

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _config(arg="smoke"):
  module = _configs.config_module("fisher_vs_batch")
  return module.get_config(arg)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


# ---------------------------------------------------------------------------------------------
# Float64 numpy references.
# ---------------------------------------------------------------------------------------------


class _Reference:
  """The zigzag in float64 numpy: ``phi`` interpolates the kink values ``(-1)^j``."""

  def __init__(self, num_pieces=10, growth=1.4, half_width=1.5):
    widths = np.array([growth ** j for j in range(num_pieces)], np.float64)
    widths *= half_width / widths.sum()
    self.kinks = np.concatenate([[0.0], np.cumsum(widths)])
    self.values = np.array([(-1.0) ** j for j in range(num_pieces + 1)])
    self.half_width = half_width
    self.num_pieces = num_pieces

  def fold(self, theta):
    while theta > self.half_width or theta < -self.half_width:
      theta = (2 * self.half_width - theta if theta > self.half_width
               else -2 * self.half_width - theta)
    return theta

  def phi(self, theta):
    return float(np.interp(abs(self.fold(theta)), self.kinks, self.values))

  def piece(self, theta):
    folded = self.fold(theta)
    for j in range(self.num_pieces):
      if self.kinks[j] <= abs(folded) < self.kinks[j + 1] or j == self.num_pieces - 1:
        return j if folded >= 0 else -j - 1

  def slope(self, theta):
    """``d phi / d theta`` (away from the kinks)."""
    folded = self.fold(theta)
    j = self.piece(folded)
    j = j if j >= 0 else -j - 1
    along = (self.values[j + 1] - self.values[j]) / (self.kinks[j + 1] - self.kinks[j])
    mirror = 1.0 if folded == theta or abs(theta) <= self.half_width else -1.0
    # One reflection (all the tests stay within [-3H, 3H]) flips the derivative.
    return along * np.sign(folded) * mirror

  def minimiser(self, piece, target):
    j = piece if piece >= 0 else -piece - 1
    low, high = self.kinks[j], self.kinks[j + 1]
    root = scipy.optimize.brentq(lambda a: np.interp(a, self.kinks, self.values) - target, low,
                                 high, xtol=1e-14)
    return root if piece >= 0 else -root


def _kl_quad(density_p, density_q, low, high, points):
  value, _ = scipy.integrate.quad(
      lambda t: density_p(t) * (math.log(density_p(t)) - math.log(density_q(t)))
      if density_p(t) > 1e-300 else 0.0, low, high, points=points, limit=500)
  return value


def _gaussian(t, mean, variance):
  return math.exp(-0.5 * (t - mean) ** 2 / variance) / math.sqrt(2 * math.pi * variance)


# ---------------------------------------------------------------------------------------------
# The zigzag.
# ---------------------------------------------------------------------------------------------


def test_zigzag_matches_the_reference_and_science_md(x64):
  zig = fvb.zigzag(dtype=jnp.float64)
  ref = _Reference()
  slopes = np.asarray(zig.slopes)
  # science.md §2.10: 10 pieces per side, slopes 93 -> 4.5, GD just stable (2 eta s^2 = 1.73).
  assert slopes.shape == (10,)
  np.testing.assert_allclose([slopes[0], slopes[-1]], [93.1, 4.50], atol=0.05)
  np.testing.assert_allclose(slopes[:-1] / slopes[1:], 1.4, rtol=1e-5)
  assert 2 * 1e-4 * slopes[0] ** 2 == pytest.approx(1.73, abs=0.01)
  theta = np.random.default_rng(0).uniform(-4.4, 4.4, 400)
  np.testing.assert_allclose(np.asarray(fvb.zigzag_value(zig, jnp.asarray(theta))),
                             [ref.phi(t) for t in theta], atol=1e-12)
  np.testing.assert_array_equal(np.asarray(fvb.piece_index(zig, jnp.asarray(theta))),
                                [ref.piece(t) for t in theta])
  grads = np.asarray(jax.vmap(jax.grad(lambda t: fvb.zigzag_value(zig, t)))(jnp.asarray(theta)))
  np.testing.assert_allclose(grads, [ref.slope(t) for t in theta], rtol=1e-12)
  # Every piece holds one minimiser of (target - phi)^2, at phi = target.
  pieces = np.arange(-10, 10)
  for target in (-0.93, 0.0, 0.41):
    got = np.asarray(fvb.piece_minimiser(zig, jnp.asarray(pieces), jnp.float64(target)))
    np.testing.assert_allclose(got, [ref.minimiser(p, target) for p in pieces], atol=1e-12)
    np.testing.assert_array_equal(np.asarray(fvb.piece_index(zig, jnp.asarray(got))), pieces)
  # The fold mirrors at the walls.
  np.testing.assert_allclose(np.asarray(fvb.fold(zig, jnp.asarray([1.7, -1.6, 4.6, 3.0]))),
                             [1.3, -1.4, -1.4, 0.0], atol=1e-12)
  # float32 (the experiment's dtype) agrees to its rounding, ~ slope * eps * |theta|.
  zig32 = fvb.zigzag()
  np.testing.assert_allclose(np.asarray(fvb.zigzag_value(zig32, jnp.asarray(theta, jnp.float32))),
                             [ref.phi(t) for t in theta], atol=2e-4)
  with pytest.raises(ValueError, match="num_pieces must be a positive integer"):
    fvb.zigzag(num_pieces=0)
  with pytest.raises(ValueError, match="growth must be"):
    fvb.zigzag(growth=-1.0)


# ---------------------------------------------------------------------------------------------
# SGD over datasets and runs.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 100])
def test_toy_sgd_vmapped_over_datasets_matches_an_explicit_loop(batch_size):
  # The smoke config's inputs (the compiled program is shared with the smoke run).
  config = _config()
  toy, num_steps = config.toy, config.num_steps
  zig, key, _, x, theta0 = fvb._toy_setup(config)
  keys = fvb._path_keys(key, 1000 + batch_size, theta0.shape)
  got = np.asarray(fvb.toy_sgd(zig, x, theta0, keys, learning_rate=toy.learning_rate,
                               batch_size=batch_size, num_steps=num_steps,
                               sampling=toy.sampling))
  assert got.shape == (toy.num_datasets, toy.num_runs)
  ref, x64, paths = _Reference(), np.asarray(x, np.float64), [(0, 0), (0, 3), (5, 1), (11, 2)]
  if batch_size < toy.num_points:  # the minibatches step t of each path draws
    indices = np.asarray(jax.jit(jax.vmap(jax.vmap(
        lambda k, step: loops.minibatch_indices(k, step, num_examples=toy.num_points,
                                                batch_size=batch_size, sampling=toy.sampling),
        in_axes=(None, 0)), in_axes=(0, None)))(jnp.stack([keys[p] for p in paths]),
                                                jnp.arange(num_steps)))
  for index, (d, r) in enumerate(paths):
    theta = float(theta0[d, r])
    for step in range(num_steps):
      # B = N: full-batch gradient descent.
      batch = x64[d] if batch_size == toy.num_points else x64[d][indices[index, step]]
      theta -= toy.learning_rate * np.mean(-2.0 * (batch - ref.phi(theta)) * ref.slope(theta))
    assert abs(theta - float(theta0[d, r])) > 1e-3  # the path moved
    np.testing.assert_allclose(got[d, r], theta, atol=1e-5, err_msg=(d, r))


# ---------------------------------------------------------------------------------------------
# The information estimators.
# ---------------------------------------------------------------------------------------------


def test_grid_integrals_match_quadrature():
  zig = fvb.zigzag()
  grid, spacing = fvb.toy_grid(zig, num_points=6001)
  means = np.array([-0.61, -0.6, 0.1, 0.13, 0.9])
  variances = np.array([0.02, 0.01, 0.004, 0.03, 0.05]) ** 2
  weights = np.array([1.0, 2.0, 0.5, 1.5, 1.0])

  def mixture(t, w=weights):
    return sum(wi * _gaussian(t, m, v) for wi, m, v in zip(w, means, variances)) / w.sum()

  density = fvb.mixture_density(grid, jnp.asarray(means, jnp.float32),
                                jnp.asarray(variances, jnp.float32),
                                jnp.asarray(weights, jnp.float32), chunk_size=2)
  np.testing.assert_allclose(np.asarray(density), [mixture(t) for t in np.asarray(grid)],
                             rtol=1e-4, atol=1e-4)
  kls = fvb.gaussian_kl_to_density(grid, spacing, jnp.asarray(means, jnp.float32),
                                   jnp.asarray(variances, jnp.float32), density, chunk_size=3)
  points = list(means)
  expected = [_kl_quad(lambda t, m=m, v=v: _gaussian(t, m, v), mixture, -1.55, 1.55, points)
              for m, v in zip(means, variances)]
  np.testing.assert_allclose(np.asarray(kls), expected, atol=2e-4)
  other = fvb.mixture_density(grid, jnp.asarray(means, jnp.float32),
                              jnp.asarray(variances, jnp.float32))
  expected = _kl_quad(lambda t: mixture(t, np.ones(5)), mixture, -1.55, 1.55, points)
  assert float(fvb.density_kl(spacing, other[None], density)[0]) == pytest.approx(expected,
                                                                                  abs=2e-4)


def test_pooled_piece_probabilities_match_loops():
  rng = np.random.default_rng(1)
  pieces = rng.integers(-3, 3, size=(7, 5))
  groups = np.array([0, 2, 2, 1, 0, 2, 0])
  got = np.asarray(fvb.pooled_piece_probabilities(jnp.asarray(pieces), jnp.asarray(groups),
                                                  num_pieces=3, num_groups=3))
  for d in range(7):
    same = [p for e in range(7) if groups[e] == groups[d] for p in pieces[e]]
    for b in range(-3, 3):
      assert got[d, b + 3] == pytest.approx(same.count(b) / len(same))


def _information(zig, theta, xbar, mu, num_mu_bins, grid_points=4001):
  return fvb.toy_information(zig, jnp.asarray(theta, jnp.float32),
                             jnp.asarray(xbar, jnp.float32), np.asarray(mu), num_points=100,
                             mu_range=0.8, num_mu_bins=num_mu_bins, grid_points=grid_points)


def test_estimators_closed_forms():
  zig = fvb.zigzag()
  ref = _Reference()
  # Four datasets, each with all its runs at the minimiser of one piece; disjoint Gaussians: the
  # paper's estimator, I(theta; D) and H(piece) are all log 4, the seed term is 0.
  xbar = np.array([0.05, -0.3, 0.2, 0.6])
  mu = np.array([-0.7, -0.3, 0.1, 0.7])          # one mu bin each (4 bins of [-0.8, 0.8])
  pieces = [0, 3, -5, 7]
  theta = np.array([[ref.minimiser(p, t)] * 3 for p, t in zip(pieces, xbar)])
  values = _information(zig, theta, xbar, mu, num_mu_bins=4)
  for name in ("paper_estimator", "information", "information_unpooled", "piece_entropy",
               "piece_data_information"):
    assert values[name] == pytest.approx(math.log(4), abs=1e-3), name
  assert values["seed_information"] == pytest.approx(0.0, abs=1e-3)
  assert values["distance_to_minimiser"] < 1e-6
  expected = np.mean([math.log(100 * float(zig.slopes[p if p >= 0 else -p - 1]) ** 2)
                      for p in pieces])
  assert values["mean_log_fisher"] == pytest.approx(expected, rel=1e-6)
  # One dataset, its runs split over two pieces: the seed carries log 2, the data nothing.
  theta = np.array([[ref.minimiser(1, 0.2), ref.minimiser(-4, 0.2)] * 2])
  values = _information(zig, theta, [0.2], [0.2], num_mu_bins=1)
  assert values["paper_estimator"] == pytest.approx(math.log(2), abs=1e-3)
  assert values["seed_information"] == pytest.approx(math.log(2), abs=1e-3)
  assert values["information"] == pytest.approx(0.0, abs=1e-3)
  assert values["piece_shares"][1] == values["piece_shares"][3] == 0.5


def test_chain_rule_and_the_information_inside_one_piece():
  zig = fvb.zigzag()
  rng = np.random.default_rng(2)
  mu = rng.uniform(-0.8, 0.8, 40)
  xbar = mu + rng.normal(0.0, 0.1, 40)
  theta = rng.uniform(-0.5, 0.5, (40, 6))
  values = _information(zig, theta, xbar, mu, num_mu_bins=3)
  # I(theta; D, seed) = I(theta; D) + I(theta; seed | D), exactly on the grid.
  assert values["paper_estimator"] == pytest.approx(
      values["information_unpooled"] + values["seed_information"], abs=2e-4)
  assert 0 < values["information"] < values["paper_estimator"]
  # science.md §2.10: 1.51 nats inside one piece (N = 100, mu ~ U[-0.8, 0.8]); against a direct
  # convolution of the uniform with N(0, 2/N).
  inside = fvb.within_piece_information(num_points=100, mu_range=0.8)
  assert inside == pytest.approx(1.51, abs=0.005)
  u = np.linspace(-2.0, 2.0, 8001)
  step = u[1] - u[0]
  kernel = np.exp(-0.5 * u ** 2 / 0.02) / math.sqrt(2 * math.pi * 0.02)
  density = np.convolve((np.abs(u) <= 0.8) / 1.6, kernel, mode="same") * step
  entropy = -np.sum(density[density > 0] * np.log(density[density > 0])) * step
  assert inside == pytest.approx(entropy - 0.5 * math.log(2 * math.pi * math.e / 100), abs=1e-3)


def test_log_linear_fit_recovers_exponents():
  rates = np.repeat([0.01, 0.04, 0.16], 3)
  sizes = np.tile([8.0, 32.0, 128.0], 3)
  fit = fvb.log_linear_fit(3.0 * rates ** 0.5 * sizes ** -0.5, rates, sizes)
  assert fit["lr_exponent"] == pytest.approx(0.5)
  assert fit["batch_exponent"] == pytest.approx(-0.5)
  assert fit["temperature_exponent"] == pytest.approx(0.5)
  assert fit["r2"] == pytest.approx(1.0) and fit["temperature_r2"] == pytest.approx(1.0)
  fit = fvb.log_linear_fit(rates * sizes, rates, sizes)        # B does not cancel eta
  assert fit["temperature_r2"] < 0.5 and fit["r2"] == pytest.approx(1.0)
  assert math.isnan(fvb.log_linear_fit([1.0, 2.0], [0.1, 0.2], [4.0, 8.0])["r2"])


def test_digits_measurements_under_vmap_match_a_per_network_brute_force():
  from infojax.experiments import common
  apply_fn, params = common.init_mlp((6,), 4, (5,), jax.random.key(0))
  noise = jax.tree.map(lambda w: 0.3 * jax.random.normal(jax.random.key(1), (3, *w.shape)), params)
  stacked = jax.tree.map(lambda w, n: (w[None] + n).reshape(1, 3, *w.shape), params, noise)
  inputs = jax.random.normal(jax.random.key(2), (12, 5))
  labels = jnp.arange(12) % 4
  measure = fvb.digits_measurement_fn(apply_fn, probe=(inputs[:8], labels[:8]),
                                      train_batch=(inputs, labels), test_batch=(inputs, labels))
  values = {name: np.asarray(value) for name, value in measure(stacked).items()}
  assert values["fisher_trace"].shape == (1, 3)

  def log_probabilities(p, x):
    return jax.nn.log_softmax(apply_fn(p, x[None])[0])

  jacobian = jax.jit(jax.jacrev(log_probabilities))
  for s in range(3):
    net = jax.tree.map(lambda w, s=s: w[0, s], stacked)
    trace = 0.0  # (1/N) sum_n sum_y p(y | x_n) ||grad log p(y | x_n)||^2, labels from the model
    for x in np.asarray(inputs[:8]):
      probabilities = np.exp(np.asarray(log_probabilities(net, jnp.asarray(x)), np.float64))
      squares = sum(np.sum(np.asarray(g, np.float64).reshape(4, -1) ** 2, axis=1)
                    for g in jax.tree.leaves(jacobian(net, jnp.asarray(x))))
      trace += float(probabilities @ squares) / 8
    assert values["fisher_trace"][0, s] == pytest.approx(trace, rel=1e-4)
    logits = np.asarray(apply_fn(net, inputs), np.float64)
    nll = np.log(np.exp(logits).sum(1)) - logits[np.arange(12), np.asarray(labels)]
    assert values["train_loss"][0, s] == pytest.approx(nll.mean(), rel=1e-5)
    assert values["test_accuracy"][0, s] == pytest.approx(
        np.mean(logits.argmax(1) == np.asarray(labels)))


# ---------------------------------------------------------------------------------------------
# The experiment.
# ---------------------------------------------------------------------------------------------


def test_smoke_run_writes_records_plots_summary_and_resumes(tmp_path, monkeypatch):
  config = _config()
  summary = fvb.run(config, str(tmp_path))
  records = _records(tmp_path)
  kinds = [r["kind"] for r in records]
  num_digits = (len(config.digits.protocols) * len(config.digits.batch_sizes)
                * len(config.digits.learning_rates))
  assert kinds == (["digits"] * num_digits + ["toy"] * len(config.toy.batch_sizes)
                   + ["toy_langevin"] * len(config.toy.temperatures))
  toy = {r["batch_size"]: r for r in records if r["kind"] == "toy"}
  for record in toy.values():
    assert 0 <= record["piece_entropy"] <= math.log(20)
    assert record["information"] <= record["paper_estimator"]
    assert record["paper_estimator"] == pytest.approx(
        record["information_unpooled"] + record["seed_information"], abs=1e-3)
    assert sum(record["piece_shares"]) == pytest.approx(1.0)
  assert toy[100]["sampling"] == "full_batch" and toy[100]["distance_to_minimiser"] < 1e-4
  # Paired runs (same datasets and starts): B = 1 noise pushes runs out of the steep pieces.
  assert toy[1]["mean_log_fisher"] < toy[100]["mean_log_fisher"]
  assert summary["toy_mean_log_fisher_drop"] == pytest.approx(
      toy[100]["mean_log_fisher"] - toy[1]["mean_log_fisher"])
  for record in records[:num_digits]:
    assert record["num_steps"] == (
        config.num_epochs * (config.digits.num_train // record["batch_size"])
        if record["protocol"] == "epochs" else config.digits.fixed_steps)
    assert record["sde_time"] == pytest.approx(record["learning_rate"] * record["num_steps"])
    assert len(record["fisher_trace_per_seed"]) == len(config.digits.seeds)
    assert record["fisher_trace"] > 0 and 0 <= record["test_accuracy"] <= 1
    assert record["fisher_trace_std"] > 0           # the seeds differ
  for name in (fvb.TOY_PLOT, fvb.DIGITS_PLOT):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "science.md §2.10" in text and "REPRODUCE" in text and "eta/B" in text

  # Resume: drop the last record; only it is recomputed, to the same numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = fvb.toy_point

  def counting(config, **setting):
    calls.append(setting)
    return original(config, **setting)

  def no_digits(*args, **kwargs):
    raise AssertionError("the digits points were saved and must not be recomputed")

  monkeypatch.setattr(fvb, "toy_point", counting)
  monkeypatch.setattr(fvb, "digits_points", no_digits)
  monkeypatch.setattr(fvb, "digits_setup", no_digits)
  again = fvb.run(config, str(tmp_path))
  assert records[-1]["kind"] == "toy_langevin"
  assert calls == [{"temperature": records[-1]["temperature"]}]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == kinds
  assert resumed[:-1] == records[:-1]
  for key, value in records[-1].items():
    if isinstance(value, str):
      assert resumed[-1][key] == value
    else:
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-5, atol=1e-6, err_msg=key)
  assert again == summary


def test_bad_configs_are_rejected(tmp_path):
  config = _config()
  config.toy.batch_sizes = (0,)
  with pytest.raises(ValueError, match="batch_sizes must lie in"):
    fvb.run(config, str(tmp_path))
  config = _config()
  config.parts = ("toy", "nothing")
  with pytest.raises(ValueError, match="parts must be a non-empty subset"):
    fvb.run(config, str(tmp_path))
  config = _config()
  config.digits.protocols = ("epochs", "time")
  with pytest.raises(ValueError, match="protocols must be a non-empty subset"):
    fvb.run(config, str(tmp_path))
  with pytest.raises(ValueError, match="exactly one of batch_size and temperature"):
    fvb.toy_point(_config())
