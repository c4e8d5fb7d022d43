"""Tests for the deep_linear experiment (infojax.experiments.deep_linear, configs/deep_linear.py,
scripts/deep_linear.py): records, plots, summary and resume of the smoke run."""

import json
import math
import os

import numpy as np
import pytest

from infojax.dynamics import deep_linear as dynamics
from infojax.experiments import deep_linear

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PNG = b"\x89PNG\r\n\x1a\n"


def _get_config(arg=None):
  return _configs.get_config("deep_linear", arg)


def _lines(path):
  with open(path) as f:
    return f.read().splitlines()


def test_config_variants():
  full, smoke = _get_config(), _get_config("smoke")
  assert set(full.keys()) == set(smoke.keys())
  assert smoke.num_steps < full.num_steps
  assert full.num_steps % full.record_every == 0 and smoke.num_steps % smoke.record_every == 0
  # The default run reproduces science.md §10.3 exactly: eta = 1e-3, u0 = 1e-3, t/tau = 2, 4, 8
  # on the record grid.
  assert full.learning_rate == 1e-3 and full.u0 == 1e-3
  assert all((t / full.learning_rate) % full.record_every == 0 for t in (2, 4, 8))
  assert "scripts/deep_linear.py --config=configs/deep_linear.py" in open(
      os.path.join(_ROOT, "configs", "deep_linear.py")).read()
  with pytest.raises(ValueError, match="unknown config argument"):
    _get_config("no-such-variant")


def test_smoke_run_records_plots_summary_and_resume(tmp_path, monkeypatch):
  config = _get_config("smoke")
  calls = []
  simulate_depth = deep_linear.simulate_depth

  def counted(task, config, depth):
    calls.append(depth)
    return simulate_depth(task, config, depth)

  monkeypatch.setattr(deep_linear, "simulate_depth", counted)
  workdir = str(tmp_path / "run")
  summary = deep_linear.run(config, workdir)
  assert calls == [1, 2, 3]
  for name in (deep_linear.STRENGTHS_PLOT, deep_linear.LEARNING_TIMES_PLOT):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == _PNG, name
  metrics = os.path.join(workdir, deep_linear.METRICS_FILE)
  original = _lines(metrics)
  records = [json.loads(line) for line in original]
  # One trajectory record per (init, depth, recorded step), learning times per learnt mode.
  num_records = config.num_steps // config.record_every + 1
  s = np.array(config.singular_values)
  for depth in config.depths:
    for init, seeds in (("aligned", 1), ("random", config.num_random_inits)):
      points = [r for r in records if r["kind"] == "trajectory" and r["init"] == init
                and r["depth"] == depth]
      assert [r["step"] for r in points] == list(range(0, config.num_steps + 1,
                                                       config.record_every))
      assert len(points) == num_records
      strength = np.array([r["strength"] for r in points])
      assert strength.shape == ((num_records, 6) if init == "aligned"
                                else (num_records, seeds, 6))
      times = [r for r in records if r["kind"] == "learning_time" and r["init"] == init
               and r["depth"] == depth]
      assert len(times) == 4 * seeds
  # The records agree with the library's theory, independently evaluated here.
  aligned2 = [r for r in records if r["kind"] == "trajectory" and r["init"] == "aligned"
              and r["depth"] == 2]
  times = np.array([r["time"] for r in aligned2])
  np.testing.assert_allclose(times, config.learning_rate * np.arange(0, config.num_steps + 1,
                                                                     config.record_every))
  with np.errstate(invalid="ignore"):  # 0/0 in the s = 0 columns, replaced below
    closed = s * np.exp(2 * s * times[:, None]) / (np.exp(2 * s * times[:, None]) - 1
                                                   + s / config.u0)
  closed[:, s == 0] = (config.u0 / (1 + 2 * config.u0 * times))[:, None]
  theory = np.array([r["theory"] for r in aligned2])
  np.testing.assert_allclose(theory, closed, rtol=1e-9)
  error = np.max(np.abs(np.array([r["strength"] for r in aligned2]) - closed))
  assert summary["depth2_max_abs_error"] == pytest.approx(error, rel=1e-9)
  # O(learning_rate): the sigmoid's steepest slope max 2u(s - u) = s^2 / 2 times eta, roughly.
  assert error < 2 * config.learning_rate * max(s) ** 2
  # Learning times: each against the theory; the claims hold.
  for depth in config.depths:
    for value in (3.0, 2.0, 1.0, 0.5):
      label = f"s{value:g}"
      measured = summary[f"depth{depth}_half_time_{label}"]
      assert measured == pytest.approx(summary[f"depth{depth}_half_time_theory_{label}"],
                                       abs=3 * config.learning_rate * depth)
  assert summary["depth1_half_time_s0.5"] == pytest.approx(math.log(2), abs=0.01)
  assert summary["depth2_half_time_theory_s2"] == pytest.approx(
      float(dynamics.learning_time(2.0, config.u0, 1.0)), rel=1e-6)  # float32 here
  assert summary["depth1_half_time_relative_spread"] < 0.01
  assert summary["depth2_half_time_ratio"] > 4 and summary["depth3_half_time_ratio"] > 4
  assert summary["shallow_time_constant_independent_of_s"] is True
  assert summary["deep_stronger_modes_first"] is True
  assert summary["deep_time_scales_as_inverse_s"] is True
  assert summary["depth2_half_time_vs_log_over_2s"] < 0.01
  text = open(os.path.join(workdir, deep_linear.SUMMARY_FILE)).read()
  assert "claim (shallow nets have one time constant): reproduced" in text
  assert "stronger first reproduced" in text

  # Resume: drop the last record; only its depth is simulated again, and the record written is
  # the one dropped (the file equals the original).
  with open(metrics, "w") as f:
    f.write("\n".join(original[:-1]) + "\n")
  calls.clear()
  again = deep_linear.run(config, workdir)
  assert calls == [3]
  assert _lines(metrics) == original
  assert again == summary
  # A complete workdir: nothing is simulated.
  calls.clear()
  assert deep_linear.run(config, workdir) == summary
  assert calls == []
