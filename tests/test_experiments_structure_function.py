"""Tests for the structure_function experiment (infojax.experiments.structure_function)."""

import math

import numpy as np
import pytest
import scipy.stats

from infojax import train
from infojax.experiments import structure_function

import _configs


def _brute_force_knees(points, num_examples, tolerance):
  """Both knees and the hull slopes around the hull knee, from their definitions.

  The code-length knee: the least information within ``tolerance`` of the minimal
  ``N E_Q L + KL``. The hull knee: the point a line of slope -1 supports from below (the minimum of
  ``N E_Q L + KL``); the slope of the hull segment ending at vertex k is
  ``max_{t_j < t_k} (s_k - s_j) / (t_k - t_j)``, the one starting there
  ``min_{t_j > t_k} (s_j - s_k) / (t_j - t_k)`` (every other point lies above both lines).
  """
  t = np.array([p["information"] for p in points])
  s = num_examples * np.array([p["expected_loss"] for p in points])
  code = s + t
  near = np.flatnonzero(code <= code.min() + tolerance)
  code_knee = int(near[np.argmin(t[near])])
  k = int(np.argmin(code))
  left, right = t < t[k], t > t[k]
  slope_left = np.max((s[k] - s[left]) / (t[k] - t[left])) if left.any() else math.nan
  slope_right = np.min((s[right] - s[k]) / (t[right] - t[k])) if right.any() else math.nan
  return code_knee, k, slope_left, slope_right


def test_curve_knees_find_the_hull_and_its_slopes():
  num_examples = 100
  # A structure function with a bulge: the point at t = 20 lies above the hull, whose segments
  # have slopes -4, -2, -1.3, -0.5, -0.1 in summed nats: they cross -1 at t = 60.
  t = np.array([0.0, 10.0, 20.0, 40.0, 60.0, 200.0, 800.0])
  s = np.array([300.0, 260.0, 245.0, 200.0, 174.0, 104.0, 44.0])
  points = [{"information": ti, "expected_loss": si / num_examples} for ti, si in zip(t, s)]
  for tolerance, code_knee in ((1.0, 4), (10.0, 3)):  # code lengths 240 (t = 40) and 234 (t = 60)
    knees = structure_function.curve_knees(points, num_examples=num_examples,
                                           tolerance=tolerance)
    reference = _brute_force_knees(points, num_examples, tolerance)
    assert knees["code_knee"] == reference[0] == code_knee
    assert knees["hull_knee"] == reference[1] == 4
    assert knees["hull"] == [0, 1, 3, 4, 5, 6]
    np.testing.assert_allclose(knees["hull_slopes"], [-4.0, -2.0, -1.3, -0.5, -0.1], rtol=1e-9)
    np.testing.assert_allclose([knees["hull_slope_left"], knees["hull_slope_right"]],
                               reference[2:], rtol=1e-9)
  # A strictly convex S that never trades a nat of loss for a nat of information or better: the
  # hull knee is its first point, with no segment before it.
  gentle = [{"information": ti, "expected_loss": 100.0 * math.exp(-ti / 2000) / num_examples}
            for ti in t]
  knees = structure_function.curve_knees(gentle, num_examples=num_examples, tolerance=1.0)
  assert knees["hull_knee"] == 0 and knees["hull"] == list(range(len(t)))
  assert math.isnan(knees["hull_slope_left"])
  assert knees["hull_slope_right"] == pytest.approx(
      _brute_force_knees(gentle, num_examples, 1.0)[3], rel=1e-9)


def test_over_seeds_and_convergence():
  names = structure_function.CURVE_QUANTITIES
  curves = [{name: float(value + i) for i, name in enumerate(names)} for value in (1.0, 2.0, 4.5)]
  values = structure_function.over_seeds(curves)
  half = scipy.stats.t.ppf(0.975, 2) * np.std([1.0, 2.0, 4.5], ddof=1) / math.sqrt(3)
  for i, name in enumerate(names):
    assert values[name] == pytest.approx(2.5 + i, rel=1e-12)
    assert values[f"{name}_low"] == pytest.approx(2.5 + i - half, rel=1e-9)
    assert values[f"{name}_high"] == pytest.approx(2.5 + i + half, rel=1e-9)
  assert values["hull_slope_left_num_seeds"] == 3
  # A slope missing for one seed (its knee ends the hull): the interval of the other two.
  curves[0]["hull_slope_left"] = math.nan
  values = structure_function.over_seeds(curves)
  i = names.index("hull_slope_left")
  half = scipy.stats.t.ppf(0.975, 1) * np.std([2.0, 4.5], ddof=1) / math.sqrt(2)
  assert values["hull_slope_left_num_seeds"] == 2
  np.testing.assert_allclose([values[f"hull_slope_left{end}"] for end in ("", "_low", "_high")],
                             [3.25 + i, 3.25 + i - half, 3.25 + i + half], rtol=1e-9)
  sweeps = [{"steps": 100, "relative_change": 5e-4}, {"steps": 400, "relative_change": 2e-3},
            {"steps": 400, "relative_change": 1e-3}, {"steps": 250, "relative_change": 8e-4}]
  result = structure_function.convergence(sweeps, tolerance=1e-3, num_steps=400)
  assert result == {"num_fits": 4, "fits_at_cap": 1, "worst_relative_change": 2e-3,
                    "median_steps": 325.0}
  one_chunk = [{"steps": 400, "relative_change": math.nan}] * 2
  result = structure_function.convergence(one_chunk, tolerance=None, num_steps=400)
  assert result["fits_at_cap"] == 2 and math.isnan(result["worst_relative_change"])


def test_bad_seeds_are_rejected():
  for seeds in [(), (0, 0), (0, -1), (0.5,)]:
    config = _configs.get_config("structure_function", "smoke")
    config.seeds = seeds
    with pytest.raises(ValueError, match="seeds must be"):
      structure_function.run(config, "/nonexistent/never/written")


def test_smoke_run_reports_both_knees_over_seeds_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("structure_function", "smoke")
  saves = []
  original_save = train.Checkpointer.save

  def counting_save(self, epoch, tree):
    saves.append(self.directory)
    original_save(self, epoch, tree)

  monkeypatch.setattr(train.Checkpointer, "save", counting_save)
  summary = structure_function.run(config, str(tmp_path / "whole"))
  num_units = len(config.datasets) * len(config.seeds) * len(structure_function.LABELS)
  assert len(saves) == num_units * config.num_betas  # one checkpoint per beta
  records = _configs.read_records(tmp_path / "whole")
  assert [r["kind"] for r in records].count("curve") == num_units
  for dataset in config.datasets:
    num_train = summary[f"{dataset}_num_train"]
    finals = {}
    for labels in structure_function.LABELS:
      curves = []
      for seed in config.seeds:
        points = [r for r in records if r["kind"] == "sweep" and r["dataset"] == dataset
                  and r["labels"] == labels and r["seed"] == seed]
        (curve,) = [r for r in records if r["kind"] == "curve" and r["dataset"] == dataset
                    and r["labels"] == labels and r["seed"] == seed]
        assert len(points) == config.num_betas
        code_knee, hull_knee, left, right = _brute_force_knees(points, num_train,
                                                               config.knee_tolerance)
        assert [p["code_knee"] for p in points] == [i == code_knee for i in range(len(points))]
        assert [p["hull_knee"] for p in points] == [i == hull_knee for i in range(len(points))]
        np.testing.assert_allclose([curve["hull_slope_left"], curve["hull_slope_right"]],
                                   [left, right], rtol=1e-9)
        for knee, index in (("code_knee", code_knee), ("hull_knee", hull_knee)):
          assert curve[f"{knee}_information"] == points[index]["information"]
          assert curve[f"{knee}_beta"] == points[index]["beta"]
        for p in points:
          assert p["code_length"] == pytest.approx(
              num_train * p["expected_loss"] + p["information"], rel=1e-9)
          assert p["information_distance"] + p["information_variance"] == pytest.approx(
              p["information"], rel=1e-5)
          assert p["information_distance"] >= 0
          assert 0 < p["steps"] <= config.num_steps and p["steps"] % config.check_every == 0
        curves.append(curve)
      finals[labels] = np.mean([c["loss_at_min_beta"] for c in curves])
      name = f"{dataset}_{labels}"
      for quantity in ("code_knee_information", "hull_knee_code_length",
                       "hull_knee_information_distance"):
        seeds = [c[quantity] for c in curves]
        assert summary[f"{name}_{quantity}"] == pytest.approx(np.mean(seeds), rel=1e-12)
        assert summary[f"{name}_{quantity}_low"] <= min(seeds)  # 2 seeds: t_0.975,1 = 12.7
        assert summary[f"{name}_{quantity}_high"] >= max(seeds)
    assert finals["random"] > finals["real"]
    with open(tmp_path / "whole" / structure_function.plot_file(dataset), "rb") as f:
      assert f.read(8) == _configs.PNG_SIGNATURE
  (check,) = [r for r in records if r["kind"] == "convergence"]
  assert check["num_fits"] == num_units * config.num_betas == summary["num_fits"]
  text = (tmp_path / "whole" / "summary.txt").read_text()
  assert "minimum two-part code length (beta = 1)" in text and "Hull knee" in text

  # Kill the run at its 5th checkpoint (the second unit's second beta); the rerun keeps the first
  # unit, resumes the second at its third beta, and ends with exactly the uninterrupted records.
  kill_at = 5
  saves.clear()

  def killing_save(self, epoch, tree):
    counting_save(self, epoch, tree)
    if len(saves) == kill_at:
      raise KeyboardInterrupt

  monkeypatch.setattr(train.Checkpointer, "save", killing_save)
  with pytest.raises(KeyboardInterrupt):
    structure_function.run(config, str(tmp_path / "killed"))
  # The first unit only.
  assert len(_configs.read_records(tmp_path / "killed")) == config.num_betas + 1
  killed_in = saves[-1]
  saves.clear()
  monkeypatch.setattr(train.Checkpointer, "save", counting_save)
  resumed = structure_function.run(config, str(tmp_path / "killed"))
  assert resumed == pytest.approx(summary, nan_ok=True)
  assert len(saves) == num_units * config.num_betas - kill_at and saves[0] == killed_in
  assert ((tmp_path / "killed" / "metrics.jsonl").read_text()
          == (tmp_path / "whole" / "metrics.jsonl").read_text())
