"""Tests for the bias_variance experiment (infojax.experiments.bias_variance)."""

import math
import os

import jax.numpy as jnp
import numpy as np
import pytest

from infojax import train
from infojax.experiments import bias_variance

import _configs


def test_prior_variance_grid_is_log_uniform_and_checked():
  grid = bias_variance.prior_variance_grid(1e-5, 10.0, 100)
  assert grid.shape == (100,) and grid[0] == pytest.approx(1e-5) and grid[-1] == pytest.approx(10)
  np.testing.assert_allclose(np.diff(np.log(grid)), math.log(1e6) / 99, rtol=1e-9)
  for arguments, match in [((0.0, 1.0, 10), "0 < prior_variance_grid_min"),
                           ((1.0, 0.1, 10), "0 < prior_variance_grid_min"),
                           ((1e-3, 1.0, 0), "prior_variance_grid_size"),
                           ((1e-3, 1.0, 2.5), "prior_variance_grid_size")]:
    with pytest.raises(ValueError, match=match):
      bias_variance.prior_variance_grid(*arguments)


def test_occam_prior_variance_minimises_the_union_bounded_code_length():
  rng = np.random.default_rng(3)
  num_examples, beta, loss = 30, 2.0, 0.7
  params = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=3), jnp.float32)}
  curvature = {"w": jnp.asarray(rng.exponential(size=(4, 3)), jnp.float32),
               "b": jnp.asarray(rng.exponential(size=3), jnp.float32)}
  prior_mean = {"w": jnp.zeros((4, 3)), "b": jnp.ones(3)}
  grid = bias_variance.prior_variance_grid(1e-5, 10.0, 100)
  choice = bias_variance.occam_prior_variance(curvature, params, loss=loss,
                                              num_examples=num_examples, beta=beta,
                                              prior_variances=grid, prior_mean=prior_mean)
  # Brute force in float64: N C*_beta = N L + beta [||w - w0||^2/(2 v) + 1/2 sum log(1 + v h /
  # beta_mean)], beta_mean = beta / N, at every grid value v.
  squared = sum(((np.asarray(params[k], np.float64) - np.asarray(prior_mean[k])) ** 2).sum()
                for k in params)
  h = np.concatenate([np.asarray(curvature[k], np.float64).ravel() for k in params])
  beta_mean = beta / num_examples
  code = []
  for v in grid:
    code.append(num_examples * loss
                + beta * (squared / (2 * v) + 0.5 * np.log1p(v * h / beta_mean).sum()))
  best = int(np.argmin(code))
  assert 0 < best < len(grid) - 1  # an interior minimum: the test can fail
  runner_up = np.partition(code, 1)[1]
  assert runner_up - code[best] > 1e-5 * code[best]  # not a float32 tie
  assert choice.prior_variance == grid[best]
  assert choice.choice_cost == pytest.approx(math.log(100), rel=1e-12)
  assert choice.code_length == pytest.approx(code[best] + beta * math.log(100), rel=1e-6)
  fixed = bias_variance.laplace_code_length(curvature, params, loss=loss,
                                            num_examples=num_examples, beta=beta,
                                            prior_variance=grid[7], prior_mean=prior_mean)
  assert fixed == pytest.approx(code[7], rel=1e-6)


def test_bad_configs_are_refused():
  for field, value, match in [("widths", (), "widths must be distinct positive"),
                              ("widths", (4, 4), "widths must be distinct positive"),
                              ("seeds", (), "seeds must be a non-empty"),
                              ("prior_variance_grid_size", 0, "prior_variance_grid_size")]:
    config = _configs.get_config("bias_variance", "smoke")
    with config.unlocked():
      setattr(config, field, value)
    with pytest.raises(ValueError, match=match):
      bias_variance.run(config, "/nonexistent/never/written")


def test_smoke_run_reports_seeds_with_spread_and_resumes_after_a_kill(tmp_path, monkeypatch):
  config = _configs.get_config("bias_variance", "smoke")
  with config.unlocked():
    config.seeds = (0, 1)
  summary = bias_variance.run(config, str(tmp_path / "whole"))
  records = _configs.read_records(tmp_path / "whole")
  widths, seeds = list(config.widths), list(config.seeds)
  points = [r for r in records if r["kind"] == "width"]
  assert [(p["seed"], p["width"]) for p in points] == [(s, w) for s in seeds for w in widths]
  assert len(records) == len(points) * (config.num_epochs + 2)  # epochs 0..E, then the point
  grid = bias_variance.prior_variance_grid(config.prior_variance_grid_min,
                                           config.prior_variance_grid_max,
                                           config.prior_variance_grid_size)
  log_k = math.log(config.prior_variance_grid_size)
  for p in points:
    w = p["width"]
    assert p["num_parameters"] == 64 * w + w + w * 10 + 10  # 8x8 inputs, 10 classes
    assert 0 <= p["test_error"] <= 1 and 0 <= p["train_error"] <= 1
    assert p["information"] > p["information_mean_term"] > 0
    assert p["information"] == pytest.approx(
        p["information_mean_term"] + p["information_curvature_term"], rel=1e-9)
    assert p["prior_variance_occam"] in grid
    assert p["prior_variance_choice_cost"] == pytest.approx(log_k)
    assert p["information_occam"] == pytest.approx(
        p["information_occam_mean_term"] + p["information_occam_curvature_term"] + log_k,
        rel=1e-9)
    assert p["code_length_occam"] > p["information_occam"]  # + N L(w*) > 0 at beta = 1
  # Each seed its own data and initialisation: the same width measures differently.
  for w in widths:
    first, second = (next(p for p in points if p["seed"] == s and p["width"] == w) for s in seeds)
    assert first["information"] != second["information"]
  for key in ("test_error", "information", "information_occam", "information_mean_term",
              "information_occam_curvature_term"):
    values = [[p[key] for p in points if p["width"] == w] for w in widths]
    np.testing.assert_allclose(summary[key], np.mean(values, axis=1), rtol=1e-6)
    for low, mean, high in zip(summary[key + "_low"], summary[key], summary[key + "_high"]):
      assert low <= mean <= high
  for name, key in (("parameters", "num_parameters"), ("information", "information"),
                    ("information_occam", "information_occam")):
    assert summary[f"spearman_test_error_vs_{name}"] == bias_variance.rank_correlation(
        summary[key], summary["test_error"])
    assert len(summary[f"spearman_test_error_vs_{name}_per_seed"]) == len(seeds)
  best, peak = summary["best_width"], summary["peak_width"]
  assert best == widths[int(np.argmin(summary["test_error"]))]
  assert widths.index(peak) >= widths.index(best)
  by_unit = {(p["seed"], p["width"]): p for p in points}
  drops = [by_unit[s, peak]["information_occam"] - by_unit[s, widths[-1]]["information_occam"]
           for s in seeds]
  assert summary["information_occam_drop_after_peak"][0] == pytest.approx(np.mean(drops))
  with open(tmp_path / "whole" / bias_variance.PLOT_FILE, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "log K = 4.61 nats" in (tmp_path / "whole" / "summary.txt").read_text()

  # Kill the run at its 8th checkpoint (seed 0, width 16, epoch 3); the rerun keeps the first
  # unit, resumes the second at epoch 4 and ends with exactly the uninterrupted records.
  saves = []
  original_save = train.Checkpointer.save

  def killing_save(self, epoch, tree):
    saves.append((os.path.relpath(self.directory, tmp_path), epoch))
    original_save(self, epoch, tree)
    if len(saves) == 8:
      raise KeyboardInterrupt

  monkeypatch.setattr(train.Checkpointer, "save", killing_save)
  with pytest.raises(KeyboardInterrupt):
    bias_variance.run(config, str(tmp_path / "killed"))
  assert [r["kind"] for r in _configs.read_records(tmp_path / "killed")].count("width") == 1
  del saves[:]

  def counting_save(self, epoch, tree):
    saves.append((os.path.relpath(self.directory, tmp_path), epoch))
    original_save(self, epoch, tree)

  monkeypatch.setattr(train.Checkpointer, "save", counting_save)
  bias_variance.run(config, str(tmp_path / "killed"))
  assert saves[0][1] == 4 and "seed_0/width_16" in saves[0][0]
  assert not any(f"{os.sep}seed_0{os.sep}width_2{os.sep}" in directory + os.sep
                 for directory, _ in saves)  # the completed unit is not retrained
  assert _configs.read_records(tmp_path / "killed") == records
