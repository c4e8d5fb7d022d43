"""Tests for the random_labels experiment (infojax.experiments.random_labels,
configs/random_labels.py, scripts/random_labels.py)."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from infojax import train
from infojax.experiments import common
from infojax.experiments import random_labels

import _configs


def _loop_transition(betas, losses):
  """The largest drop of the loss between neighbouring betas, by an explicit loop."""
  pairs = sorted(zip(betas, losses))
  best, where = 0.0, None
  for (low, low_loss), (high, high_loss) in zip(pairs[:-1], pairs[1:]):
    if high_loss - low_loss > best:
      best, where = high_loss - low_loss, math.sqrt(low * high)
  return math.nan if where is None else where


def test_transition_beta_is_the_largest_drop_against_a_numpy_loop():
  rng = np.random.default_rng(0)
  for _ in range(50):
    size = int(rng.integers(2, 12))
    betas = rng.permutation(np.geomspace(10.0, 1e-3, size))
    losses = rng.uniform(0.0, 2.3, size)
    assert random_labels.transition_beta(betas, losses) == pytest.approx(
        _loop_transition(betas, losses), rel=1e-12, nan_ok=True)
  # A sigmoid in log beta drops most across the grid step that holds its centre (0.03).
  betas = np.geomspace(10.0, 1e-3, 13)
  losses = 2.3 / (1.0 + np.exp(-3.0 * (np.log(betas) - np.log(0.03))))
  found = random_labels.transition_beta(betas, losses)
  assert 0.0215 < found < 0.0465 and found == pytest.approx(math.sqrt(0.0215443 * 0.0464159),
                                                            rel=1e-5)
  # Ties go to the first step in increasing beta; no drop, or one beta, is nan.
  assert random_labels.transition_beta([1.0, 2.0, 4.0], [0.0, 1.0, 2.0]) == pytest.approx(
      math.sqrt(2.0))
  assert math.isnan(random_labels.transition_beta([1.0, 2.0, 4.0], [2.0, 1.0, 0.5]))
  assert math.isnan(random_labels.transition_beta([1.0], [2.0]))
  with pytest.raises(ValueError, match="one length"):
    random_labels.transition_beta([1.0, 2.0], [1.0])
  with pytest.raises(ValueError, match="betas must be > 0"):
    random_labels.transition_beta([0.0, 2.0], [1.0, 2.0])


def test_bad_configs_name_the_field():
  for field, value, match in [("seeds", (), "seeds must be"), ("seeds", (0, 0), "seeds must be"),
                              ("fractions", (0.5, 1.5), "fractions must be"),
                              ("sweep.report_betas", (0.3,), "report_betas must be points")]:
    config = _configs.get_config("random_labels", "smoke")
    with config.unlocked():
      parent, name = (config.sweep, field[6:]) if field.startswith("sweep.") else (config, field)
      setattr(parent, name, value)
    with pytest.raises(ValueError, match=match):
      random_labels.run(config, "/nonexistent/never/written")


@pytest.mark.slow
def test_random_labels_smoke_pays_information_for_noise_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("random_labels", "smoke")
  seeds, fractions = list(config.seeds), list(config.fractions)
  summary = random_labels.run(config, str(tmp_path / "whole"))
  records = _configs.read_records(tmp_path / "whole")
  memorised = [r for r in records if r["kind"] == "memorisation"]
  units = [(s, f) for s in seeds for f in fractions]
  assert [(r["seed"], r["fraction"]) for r in memorised] == units
  for r in memorised:
    assert 0 <= r["train_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    assert math.isfinite(r["information"]) and r["information"] > 0
    layers = sum(v for k, v in r.items() if k.startswith("information_Dense_"))
    assert layers == pytest.approx(r["information"], rel=1e-5)
    assert r["information_mean_term"] + r["information_curvature_term"] == pytest.approx(
        r["information"], rel=1e-6)
  assert sum(r["kind"] == "sgd" for r in records) == len(seeds) * len(fractions) * (
      config.num_epochs + 1)
  sweeps = {(s, f): [r for r in records if r["kind"] == "sweep" and r["seed"] == s
                     and r["fraction"] == f] for s in seeds for f in fractions}
  for points in sweeps.values():
    assert len(points) == config.sweep.num_betas
    assert [p["beta"] for p in points] == sorted((p["beta"] for p in points), reverse=True)
    for p in points:
      assert p["information"] > 0 and math.isfinite(p["expected_loss"])
      assert p["information_distance"] + p["information_variance"] == pytest.approx(
          p["information"], rel=1e-6)
      assert config.sweep.check_every <= p["steps"] <= config.sweep.num_steps
      assert p["steps"] % config.sweep.check_every == 0
      # Stopped early only when the criterion was met.
      assert p["steps"] == config.sweep.num_steps or p["relative_change"] <= config.sweep.tolerance
    assert points[-1]["information"] > points[0]["information"]  # lowering beta buys information
  # Each seed its own initialisation: the two seeds' sweeps differ.
  assert sweeps[0, 1.0][0]["information"] != sweeps[1, 1.0][0]["information"]
  # At every beta the random labels leave more loss than the real ones.
  for seed in seeds:
    for real, noise in zip(sweeps[seed, 0.0], sweeps[seed, 1.0]):
      assert noise["expected_loss"] > real["expected_loss"]

  # The summary: means over seeds, the transition's t interval in log beta, the convergence.
  assert summary["fractions"] == fractions and summary["seeds"] == seeds
  for index, fraction in enumerate(fractions):
    values = [m["information_mean_term"] for m in memorised if m["fraction"] == fraction]
    assert summary["fisher_distance"][index] == pytest.approx(np.mean(values))
    assert summary["fisher_distance_std"][index] == pytest.approx(np.std(values, ddof=1))
    per_seed = [random_labels.transition_beta([p["beta"] for p in sweeps[s, fraction]],
                                              [p["expected_loss"] for p in sweeps[s, fraction]])
                for s in seeds]
    expected = [math.exp(v) for v in common.mean_interval(np.log(per_seed))]
    assert [summary[f"threshold_beta{end}"][index] for end in ("", "_low", "_high")] == (
        pytest.approx(expected))
  half_step = (config.sweep.beta_max / config.sweep.beta_min) ** (
      0.5 / (config.sweep.num_betas - 1))
  random = (summary["threshold_beta_random_low"], summary["threshold_beta_random_high"])
  assert summary["lecture_transition_reproduced"] == (
      random[0] / half_step <= 1.0 <= random[1] * half_step)
  for beta in config.sweep.report_betas:
    assert len(summary[f"information_beta_{beta:g}"]) == len(fractions)
    assert len(summary[f"distance_beta_{beta:g}_std"]) == len(fractions)
  fits = [p for points in sweeps.values() for p in points]
  assert summary["num_fits"] == len(fits)
  assert summary["capped_fits"] == sum(p["steps"] == config.sweep.num_steps for p in fits)
  assert summary["worst_relative_change"] == max(p["relative_change"] for p in fits)
  text = (tmp_path / "whole" / "summary.txt").read_text()
  assert "phase transition at beta = 1" in text and "reproduce" in text and "+-" in text
  assert f"{summary['capped_fits']} of {len(fits)} fits hit the step cap" in text
  for name in ("information", "phase_transition", "memorisation"):
    _configs.assert_png(tmp_path / "whole" / f"random_labels_{name}.png")

  # Kill the run inside the second unit's SGD (save 8: units save 3 SGD epochs, then 3 betas),
  # then, rerun, inside the third unit's sweep; the last rerun trains only what is left and ends
  # with exactly the uninterrupted records.
  original_save, original_train = train.Checkpointer.save, common.train_classifier
  saves, trained = [], []

  def killing_save(at):
    def save(self, epoch, tree):
      saves.append((os.path.relpath(self.directory, tmp_path / "killed"), epoch))
      if len(saves) == at:
        raise KeyboardInterrupt
      original_save(self, epoch, tree)
    return save

  def counting_train(*args, workdir, **kwargs):
    trained.append(os.path.relpath(workdir, tmp_path / "killed"))
    return original_train(*args, workdir=workdir, **kwargs)

  monkeypatch.setattr(common, "train_classifier", counting_train)
  for at, unit, kind, epoch in ((8, "seed_0/fraction_1", "checkpoints", 2),
                                (10, "seed_1/fraction_0", "sweep", 1)):
    saves.clear()
    monkeypatch.setattr(train.Checkpointer, "save", killing_save(at))
    with pytest.raises(KeyboardInterrupt):
      random_labels.run(config, str(tmp_path / "killed"))
    assert saves[-1] == (os.path.join("units", unit, kind), epoch)
  saves.clear()
  trained.clear()
  monkeypatch.setattr(train.Checkpointer, "save", killing_save(0))
  random_labels.run(config, str(tmp_path / "killed"))
  assert trained == ["units/seed_1/fraction_0", "units/seed_1/fraction_1"]
  # The interrupted unit resumed: its SGD was complete, its sweep saves only the betas left.
  assert [s for s in saves if "seed_1/fraction_0" in s[0]] == [
      ("units/seed_1/fraction_0/sweep", 1), ("units/seed_1/fraction_0/sweep", 2)]
  assert ((tmp_path / "killed" / "metrics.jsonl").read_text()
          == (tmp_path / "whole" / "metrics.jsonl").read_text())
  assert ((tmp_path / "killed" / "summary.txt").read_text()
          == (tmp_path / "whole" / "summary.txt").read_text())


def test_script_runs_from_the_command_line(tmp_path):
  script = os.path.join(_configs.ROOT, "scripts", "random_labels.py")
  config = os.path.join(_configs.ROOT, "configs", "random_labels.py")
  result = subprocess.run(
      [sys.executable, script, f"--config={config}:smoke", f"--workdir={tmp_path}",
       "--config.seeds=(3,)", "--config.fractions=(1.0,)", "--config.num_epochs=1",
       "--config.sweep.num_betas=1", "--config.sweep.report_betas=(1.0,)",
       "--config.tensorboard=True"],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("random_labels: ") and "information_beta_1=" in result.stdout
  with open(tmp_path / "config.json") as f:
    saved = json.load(f)
  assert saved["fractions"] == [1.0] and saved["seeds"] == [3]
  records = _configs.read_records(tmp_path)
  assert [r["kind"] for r in records] == ["sgd", "sgd", "memorisation", "sweep"]
  assert {r["seed"] for r in records} == {3}
  assert os.listdir(tmp_path / "tensorboard")  # the records mirrored for TensorBoard
  for name in ("information", "phase_transition", "memorisation"):
    _configs.assert_png(tmp_path / f"random_labels_{name}.png")
