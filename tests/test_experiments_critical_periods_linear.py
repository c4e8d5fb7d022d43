"""Tests for the critical_periods_linear experiment (infojax.experiments.critical_periods_linear,
configs/critical_periods_linear.py): records against the authors' per-mode recursion, the plot,
the summary's verdicts and resume, on the smoke run."""

import json
import math
import os

import numpy as np
import pytest

from infojax import io
from infojax.experiments import critical_periods_linear

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"
_S = np.sqrt([15.0, 7.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0])  # the hierarchy's singular values


def _get_config(arg=None):
  return _configs.get_config("critical_periods_linear", arg)


def _lines(path):
  with open(path) as f:
    return f.read().splitlines()


def _recursion(u0, *, depth, learning_rate, num_steps, onset, length):
  """Kleinman et al.'s per-mode recursion for aligned balanced pathways (their
  analytical_and_sgd_final.py): p <- p + lr p^(D-1) (s - K_a - K_b), K = p^D; b held in the
  window."""
  pa, pb = (np.asarray(u, np.float64) ** (1.0 / depth) for u in u0)
  for step in range(num_steps):
    omega = _S - pa ** depth - pb ** depth
    grow_a = pa ** (depth - 1) * omega
    if not onset <= step < onset + length:
      pb = pb + learning_rate * pb ** (depth - 1) * omega
    pa = pa + learning_rate * grow_a
  return np.stack([pa ** depth, pb ** depth])


def test_config_variants():
  full, smoke = _get_config(), _get_config("smoke")
  assert set(full.keys()) == set(smoke.keys())
  assert smoke.num_steps < full.num_steps
  # The paper's multipath-depth4-analytical.yaml: dt 0.01, T 1000, deficit 150 at 0, 400, 750.
  assert (full.learning_rate, full.num_steps, full.deficit_length) == (0.01, 1000, 150)
  assert {0, 400, 750} <= set(full.deficit_onsets) and 4 in full.depths
  for config in (full, smoke):
    assert max(config.deficit_onsets) + config.deficit_length <= config.num_steps
  doc = _configs.config_module("critical_periods_linear").__doc__
  assert "scripts/critical_periods_linear.py --config=configs/critical_periods_linear.py" in doc
  with pytest.raises(ValueError, match="unknown config argument"):
    _get_config("no-such-variant")


def test_smoke_run_records_plot_summary_and_resume(tmp_path, monkeypatch):
  config = _get_config("smoke")
  calls = []
  simulate_depth = critical_periods_linear.simulate_depth

  def counted(task, config, depth):
    calls.append(depth)
    return simulate_depth(task, config, depth)

  monkeypatch.setattr(critical_periods_linear, "simulate_depth", counted)
  workdir = str(tmp_path / "run")
  summary = critical_periods_linear.run(config, workdir)
  assert calls == list(config.depths)
  with open(os.path.join(workdir, critical_periods_linear.PLOT_FILE), "rb") as f:
    assert f.read(8) == _PNG
  assert not os.path.exists(os.path.join(workdir, "tensorboard"))  # off by default
  metrics = os.path.join(workdir, critical_periods_linear.METRICS_FILE)
  original = _lines(metrics)
  records = [json.loads(line) for line in original]
  seeds = list(range(config.num_seeds))
  for depth in config.depths:
    baselines = {r["seed"]: r for r in records if r["kind"] == "baseline" and r["depth"] == depth}
    assert sorted(baselines) == seeds
    runs = [r for r in records if r["kind"] == "run" and r["depth"] == depth]
    assert sorted((r["onset"], r["seed"]) for r in runs) == sorted(
        (t, s) for t in config.deficit_onsets for s in seeds)
    for record in [*baselines.values(), *runs]:
      u0 = np.array(baselines[record["seed"]]["initial_strength"])
      assert u0.shape == (2, 8)
      np.testing.assert_allclose(u0[0], u0[1], rtol=1e-12)  # shared by the pathways
      onset, length = record.get("onset", 0), record.get("deficit_length", 0)
      expected = _recursion(u0, depth=depth, learning_rate=config.learning_rate,
                            num_steps=config.num_steps, onset=onset, length=length)
      strength = np.array(record["final_strength"])
      np.testing.assert_allclose(strength, expected, rtol=1e-9, atol=1e-12)
      imbalance = (expected[0] - expected[1]).sum() / expected.sum()
      assert record["final_imbalance"] == pytest.approx(imbalance, abs=1e-9)
      assert record["final_loss"] == pytest.approx(0.5 * np.sum((_S - expected.sum(0)) ** 2),
                                                   rel=1e-6, abs=1e-12)
    for record in runs:
      relative = record["final_imbalance"] - baselines[record["seed"]]["final_imbalance"]
      assert record["relative_imbalance"] == pytest.approx(relative, abs=1e-12)
      assert record["permanent"] == (abs(relative) > config.threshold)
    # The summary's numbers are the records' means.
    by_onset = {t: np.mean([r["relative_imbalance"] for r in runs if r["onset"] == t])
                for t in config.deficit_onsets}
    early, late = min(config.deficit_onsets), max(config.deficit_onsets)
    assert summary[f"depth{depth}_early_imbalance"] == pytest.approx(by_onset[early])
    assert summary[f"depth{depth}_late_imbalance"] == pytest.approx(by_onset[late])
    permanent = [t for t, v in by_onset.items() if abs(v) > config.threshold]
    assert summary[f"depth{depth}_last_permanent_onset"] == (max(permanent) if permanent else -1)
  # The verdicts follow from the numbers; the deep claims hold on the smoke run.
  assert summary["early_permanent_at_depth_ge2"] is True
  assert summary["late_none"] is True
  assert summary["depth1_none"] == (summary["depth1_last_permanent_onset"] < 0)
  assert summary["claim_reproduces"] == summary["depth1_none"]
  text = open(os.path.join(workdir, critical_periods_linear.SUMMARY_FILE)).read()
  assert "criterion: a deficit's effect is permanent" in text
  assert f"more than {config.threshold:g}" in text
  assert ("The claim reproduces" in text) == summary["claim_reproduces"]

  # Resume: drop the last record; only its depth is simulated again, and the record written is the
  # one dropped (the file equals the original).
  with open(metrics, "w") as f:
    f.write("\n".join(original[:-1]) + "\n")
  calls.clear()
  again = critical_periods_linear.run(config, workdir)
  assert calls == [config.depths[-1]]
  assert _lines(metrics) == original
  assert again == summary
  calls.clear()
  assert critical_periods_linear.run(config, workdir) == summary
  assert calls == []


def test_smoke_run_mirrors_every_record_into_tensorboard_also_after_a_resume(tmp_path):
  pytest.importorskip("tensorboardX")
  from infojax.io import tensorboard
  config = _get_config("smoke")
  config.tensorboard = True
  workdir = str(tmp_path / "run")
  critical_periods_linear.run(config, workdir)
  metrics = os.path.join(workdir, critical_periods_linear.METRICS_FILE)
  logdir = os.path.join(workdir, "tensorboard")

  def expected():
    """Every finite number of record i as the scalar ``<kind>/<field>`` at step i (float32)."""
    return sorted((f"{record['kind']}/{name}", step, float(np.float32(value)))
                  for step, record in enumerate(io.read_metrics(metrics))
                  for name, value in record.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))

  written = expected()
  assert {step for _, step, _ in written} == set(range(len(_lines(metrics))))  # every record
  assert sorted(tensorboard.read_scalars(logdir)) == written
  # Resume after losing the last record: each record is still there once, at its index.
  lines = _lines(metrics)
  with open(metrics, "w") as f:
    f.write("\n".join(lines[:-1]) + "\n")
  critical_periods_linear.run(config, workdir)
  assert _lines(metrics) == lines
  assert sorted(tensorboard.read_scalars(logdir)) == written
