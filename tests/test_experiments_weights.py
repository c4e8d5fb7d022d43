"""Tests for the weights experiments: pac_bayes_bound, random_labels, structure_function and
bias_variance (infojax.experiments.*, configs/*.py, scripts/*.py)."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from infojax.experiments import bias_variance
from infojax.experiments import pac_bayes_bound
from infojax.experiments import common
from infojax.experiments import random_labels
from infojax.experiments import structure_function

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PNG = b"\x89PNG\r\n\x1a\n"


def _get_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(f"{name}_config",
                                                os.path.join(_ROOT, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == _PNG, path


def _binary_kl(q, p):
  def term(a, b):
    return 0.0 if a == 0 else a * math.log(a / b)
  return term(q, p) + term(1 - q, 1 - p)


def _kl_inverse(q, c):
  """sup {p in [q, 1]: kl(q || p) <= c}, by scipy's root finder in float64."""
  if _binary_kl(q, 1 - 1e-15) <= c:
    return 1.0
  return scipy.optimize.brentq(lambda p: _binary_kl(q, p) - c, q, 1 - 1e-15, xtol=1e-14)


# ----------------------------------------------------------------------------------------------
# Helpers, against independent references.
# ----------------------------------------------------------------------------------------------


def test_fitting_threshold_interpolates_in_log_beta():
  betas = [10.0, 1.0, 0.1, 0.01]
  losses = [2.3, 2.0, 0.2, 0.1]
  chance = 2.3
  # Crossing of 1.15 between beta = 0.1 (0.2) and 1 (2.0), linear in log beta.
  expected = 10 ** np.interp(1.15, [0.2, 2.0], [-1.0, 0.0])
  assert random_labels.fitting_threshold(betas, losses, chance_loss=chance) == pytest.approx(
      expected, rel=1e-12)
  assert math.isnan(random_labels.fitting_threshold(betas, [2.3] * 4, chance_loss=chance))
  assert random_labels.fitting_threshold(betas, [0.1] * 4, chance_loss=chance) == math.inf


def test_loss_per_information_recovers_a_linear_slope():
  num_examples, rate = 200, 0.07
  first, last = ({"information": t, "expected_loss": (500.0 - rate * t) / num_examples}
                 for t in (10.0, 3000.0))
  assert structure_function.loss_per_information(
      first, last, num_examples=num_examples) == pytest.approx(rate, rel=1e-9)
  assert math.isnan(structure_function.loss_per_information(first, first,
                                                            num_examples=num_examples))


def test_beta_grid_and_binary_labels():
  grid = common.beta_grid(10.0, 1e-3, 13)
  np.testing.assert_allclose(grid, 10.0 ** np.linspace(1, -3, 13), rtol=1e-12)
  with pytest.raises(ValueError, match="beta_min"):
    common.beta_grid(1.0, 2.0, 3)
  np.testing.assert_array_equal(pac_bayes_bound.binary_labels([0, 4, 5, 9], threshold=5),
                                [0, 0, 1, 1])


def test_initial_posterior_floors_the_variance_of_zero_weights():
  params = {"w": jnp.array([0.0, -0.5, 2.0]), "b": jnp.zeros(2)}
  posterior = pac_bayes_bound.initial_posterior(params, std_scale=2.0, min_variance=1e-6)
  np.testing.assert_allclose(np.exp(posterior.log_variance["w"]), [1e-6, 1.0, 16.0], rtol=1e-5)
  np.testing.assert_allclose(np.exp(posterior.log_variance["b"]), [1e-6, 1e-6], rtol=1e-5)


def test_load_splits_subsets_and_standardises():
  splits = common.load_splits("digits", num_train=300, seed=1)
  assert splits["train"]["image"].shape == (300, 8, 8, 1)
  assert splits["test"]["label"].shape == (360,)
  assert abs(float(splits["train"]["image"].mean())) < 1e-5
  assert float(splits["train"]["image"].std()) == pytest.approx(1.0, rel=1e-4)
  other = common.load_splits("digits", num_train=300, seed=2)
  assert not np.array_equal(splits["train"]["label"], other["train"]["label"])
  with pytest.raises(ValueError, match="num_train"):
    common.load_splits("digits", num_train=10 ** 6)
  # Per process: on one process its share is the whole split, standardised the same way.
  whole, local = common.load_splits("digits"), common.load_splits("digits", process_local=True)
  for split in ("train", "test"):
    for name in ("image", "label"):
      np.testing.assert_array_equal(local[split][name], whole[split][name])
  with pytest.raises(ValueError, match="process_local"):
    common.load_splits("digits", num_train=300, process_local=True)


def test_fisher_information_matches_the_closed_form_of_softmax_regression():
  """For logits x W + b the true Fisher diagonal is mean_n x_nj^2 p_nk (1 - p_nk) (and
  p_nk (1 - p_nk) for b); the information is sum (w - w0)^2/(2 lambda^2)
  + 1/2 sum g(lambda^2 h N / beta) in float64, with beta for the summed loss."""
  rng = np.random.default_rng(0)
  num_examples, features, classes = 40, 5, 3
  inputs = rng.normal(size=(num_examples, features)).astype(np.float32)
  labels = rng.integers(0, classes, size=num_examples).astype(np.int32)
  params = {"w": jnp.asarray(rng.normal(size=(features, classes)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=classes), jnp.float32)}
  prior_mean = {"w": jnp.asarray(rng.normal(size=(features, classes)), jnp.float32),
                "b": jnp.zeros(classes, jnp.float32)}
  beta, prior_variance = 0.5, 0.3

  def apply_fn(p, x):
    return x @ p["w"] + p["b"][None, :]

  result = common.fisher_information(apply_fn, params, (inputs, labels), beta=beta,
                                     prior_variance=prior_variance, prior_mean=prior_mean)
  x = inputs.astype(np.float64)
  logits = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  variance = probs * (1 - probs)
  curvature = {"w": (x ** 2).T @ variance / num_examples, "b": variance.mean(0)}

  def g(s):
    return np.log1p(s) - s / (1 + s)

  mean_term = sum(((np.asarray(params[k], np.float64) - np.asarray(prior_mean[k], np.float64))
                   ** 2).sum() for k in params) / (2 * prior_variance)
  curvature_term = sum(0.5 * g(prior_variance * curvature[k] * num_examples / beta).sum()
                       for k in params)
  assert result["information"] == pytest.approx(mean_term + curvature_term, rel=1e-4)
  assert result["information_mean_term"] == pytest.approx(mean_term, rel=1e-5)
  assert result["information_curvature_term"] == pytest.approx(curvature_term, rel=1e-3)


# ----------------------------------------------------------------------------------------------
# Smoke runs of the experiments.
# ----------------------------------------------------------------------------------------------


def test_pac_bayes_bound_smoke_certifies_real_labels_below_random_labels(tmp_path):
  config = _get_config("pac_bayes_bound", "smoke")
  summary = pac_bayes_bound.run(config, str(tmp_path))
  records = _records(tmp_path)
  kinds = [r["kind"] for r in records]
  assert kinds.count("sgd") == 2 * (config.num_epochs + 1)
  assert kinds.count("pac_bayes") == 2 * math.ceil(
      config.pac_bayes.num_epochs / config.pac_bayes.log_every)
  certificates = {r["labels"]: r for r in records if r["kind"] == "certificate"}
  assert set(certificates) == {"real", "random"}
  m = summary["num_train"]
  for labels, c in certificates.items():
    for name in ("train_error", "monte_carlo_error_bound", "kl", "prior_variance",
                 "prior_variance_index", "b_re", "bound", "pinsker_bound", "delta",
                 "delta_monte_carlo", "total_delta", "num_examples", "num_mc_samples",
                 "union_bound_term", "snn_test_error", "sgd_test_error", "vacuous"):
      assert name in c, (labels, name)
    assert 0 <= c["train_error"] <= c["monte_carlo_error_bound"] <= c["bound"] <= 1
    assert c["bound"] <= c["pinsker_bound"] + 1e-6
    assert c["num_examples"] == m and c["total_delta"] == pytest.approx(0.035)
    # Every term recomputed in float64 from the reported ingredients.
    j = c["prior_variance_index"]
    assert j == int(j) and j >= 1
    assert c["prior_variance"] == pytest.approx(0.1 * math.exp(-j / 100), rel=1e-5)
    assert c["union_bound_term"] == pytest.approx(2 * math.log(j), abs=1e-4)
    b_re = (c["kl"] + 2 * math.log(j) + math.log(math.pi ** 2 * m / (6 * 0.025))) / (m - 1)
    assert c["b_re"] == pytest.approx(b_re, rel=1e-5)
    chernoff = _kl_inverse(c["train_error"], math.log(2 / 0.01) / c["num_mc_samples"])
    assert c["monte_carlo_error_bound"] == pytest.approx(chernoff, abs=1e-5)
    assert c["bound"] == pytest.approx(_kl_inverse(chernoff, b_re), abs=1e-4)
    assert c["vacuous"] == (c["bound"] >= 0.5)
  # The property the experiment is about: random labels cannot be certified.
  assert certificates["random"]["vacuous"]
  assert summary["random_bound"] > summary["real_bound"]
  assert summary["real_train_error"] < 0.2 and summary["random_train_error"] > 0.3
  _assert_png(tmp_path / "pac_bayes_bound.png")
  assert "PAC-Bayes-kl bound" in (tmp_path / "summary.txt").read_text()


@pytest.mark.slow
def test_random_labels_smoke_pays_information_for_noise(tmp_path):
  config = _get_config("random_labels", "smoke")
  summary = random_labels.run(config, str(tmp_path))
  records = _records(tmp_path)
  fractions = list(config.fractions)
  memorised = [r for r in records if r["kind"] == "memorisation"]
  assert [r["fraction"] for r in memorised] == fractions
  for r in memorised:
    assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    assert math.isfinite(r["information"]) and r["information"] > 0
    layers = sum(v for k, v in r.items() if k.startswith("information_Dense_"))
    assert layers == pytest.approx(r["information"], rel=1e-5)
  assert sum(r["kind"] == "sgd" for r in records) == len(fractions) * (config.num_epochs + 1)
  sweeps = {f: [r for r in records if r["kind"] == "sweep" and r["fraction"] == f]
            for f in fractions}
  for points in sweeps.values():
    assert len(points) == config.sweep.num_betas
    assert [p["beta"] for p in points] == sorted((p["beta"] for p in points), reverse=True)
    assert all(p["information"] > 0 and math.isfinite(p["expected_loss"]) for p in points)
    # Lowering beta buys information.
    assert points[-1]["information"] > points[0]["information"]
  # At every beta the random labels leave more loss than the real ones.
  for real, noise in zip(sweeps[0.0], sweeps[1.0]):
    assert noise["expected_loss"] > real["expected_loss"]
  assert summary["fractions"] == fractions
  for beta in config.sweep.report_betas:
    assert len(summary[f"information_beta_{beta:g}"]) == len(fractions)
  for name in ("information", "phase_transition", "memorisation"):
    _assert_png(tmp_path / f"random_labels_{name}.png")


def test_structure_function_smoke_marks_the_kolmogorov_knee(tmp_path):
  config = _get_config("structure_function", "smoke")
  summary = structure_function.run(config, str(tmp_path))
  records = _records(tmp_path)
  for dataset in config.datasets:
    num_train = summary[f"{dataset}_num_train"]
    curves = {}
    for labels in ("real", "random"):
      points = [r for r in records if r["kind"] == "sweep" and r["dataset"] == dataset
                and r["labels"] == labels]
      assert len(points) == config.num_betas
      curves[labels] = points
      # The knee, recomputed: least information within tolerance of the minimal code length.
      code = np.array([num_train * p["expected_loss"] + p["information"] for p in points])
      near = code <= code.min() + config.knee_tolerance
      knee = min(np.flatnonzero(near), key=lambda i: points[i]["information"])
      assert [p["knee"] for p in points] == [i == knee for i in range(len(points))]
      assert summary[f"{dataset}_{labels}_knee_information"] == points[knee]["information"]
      for p in points:
        assert p["code_length"] == pytest.approx(code[points.index(p)], rel=1e-9)
    assert curves["random"][-1]["expected_loss"] > curves["real"][-1]["expected_loss"]
    _assert_png(tmp_path / structure_function.plot_file(dataset))
  assert sum(r["kind"] == "curve" for r in records) == 2 * len(config.datasets)


def test_bias_variance_smoke_counts_parameters_and_information(tmp_path):
  config = _get_config("bias_variance", "smoke")
  summary = bias_variance.run(config, str(tmp_path))
  records = _records(tmp_path)
  points = [r for r in records if r["kind"] == "width"]
  widths = list(config.widths)
  assert [p["width"] for p in points] == widths
  for p in points:
    w = p["width"]
    assert p["num_parameters"] == 64 * w + w + w * 10 + 10  # 8x8 inputs, 10 classes
    assert 0 <= p["test_error"] <= 1 and 0 <= p["train_error"] <= 1
    assert p["information"] > p["information_mean_term"] > 0
    assert p["prior_variance_occam"] in config.prior_variance_grid
  assert summary["test_error"] == [p["test_error"] for p in points]
  assert summary["best_width"] == widths[int(np.argmin(summary["test_error"]))]
  for name in ("parameters", "information", "information_occam"):
    assert -1 <= summary[f"spearman_test_error_vs_{name}"] <= 1
  _assert_png(tmp_path / "bias_variance.png")


def test_occam_prior_variance_minimises_the_laplace_code_length():
  rng = np.random.default_rng(3)
  num_examples = 30
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
  curvature = {"w": jnp.asarray(rng.exponential(size=(4, 3)), jnp.float32),
               "b": jnp.asarray(rng.exponential(size=3), jnp.float32)}
  prior_mean = {"w": jnp.zeros((4, 3)), "b": jnp.ones(3)}
  grid = (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
  loss = 0.7
  chosen = bias_variance.occam_prior_variance(curvature, params, loss=loss,
                                              num_examples=num_examples, beta=2.0,
                                              prior_variances=grid, prior_mean=prior_mean)
  # Brute force in float64: L + beta_mean [||w - w0||^2/(2 v) + 1/2 sum log(1 + v h / beta_mean)].
  squared = sum(((np.asarray(params[k], np.float64) - np.asarray(prior_mean[k])) ** 2).sum()
                for k in params)
  h = np.concatenate([np.asarray(curvature[k], np.float64).ravel() for k in params])
  beta_mean = 2.0 / num_examples
  code = [loss + beta_mean * (squared / (2 * v) + 0.5 * np.log1p(v * h / beta_mean).sum())
          for v in grid]
  assert 0 < int(np.argmin(code)) < len(grid) - 1  # an interior minimum: the test can fail
  assert chosen == grid[int(np.argmin(code))]


def test_script_runs_from_the_command_line(tmp_path):
  script = os.path.join(_ROOT, "scripts", "random_labels.py")
  config = os.path.join(_ROOT, "configs", "random_labels.py")
  result = subprocess.run(
      [sys.executable, script, f"--config={config}:smoke", f"--workdir={tmp_path}",
       "--config.fractions=(1.0,)", "--config.num_epochs=1", "--config.sweep.num_betas=1",
       "--config.sweep.report_betas=(1.0,)"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("random_labels: ") and "information_beta_1=" in result.stdout
  with open(tmp_path / "config.json") as f:
    saved = json.load(f)
  assert saved["fractions"] == [1.0] and saved["sweep"]["num_betas"] == 1
  records = _records(tmp_path)
  assert [r["kind"] for r in records] == ["sgd", "sgd", "memorisation", "sweep"]
  for name in ("information", "phase_transition", "memorisation"):
    _assert_png(tmp_path / f"random_labels_{name}.png")
