"""Tests for the task_transfer experiment (infojax.experiments.task_transfer,
configs/task_transfer.py, scripts/task_transfer.py)."""

import json
import math
import os

import numpy as np
import pytest
import scipy.stats

from infojax.experiments import task_transfer

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_pair_statistics_against_scipy():
  rng = np.random.default_rng(0)
  pairs = [{"target": t, "cost": float(rng.normal()), "distance": float(rng.normal()),
            "by_target": float(i)} for i, t in enumerate("abc") for _ in range(4)]
  want = [scipy.stats.spearmanr([p["distance"] for p in pairs if p["target"] == t],
                                [p["cost"] for p in pairs if p["target"] == t]).statistic
          for t in "abc"]
  np.testing.assert_allclose(task_transfer.within_target_correlations(pairs, "cost", "distance"),
                             want, rtol=1e-5)
  assert task_transfer.between_target_share(pairs, "by_target") == pytest.approx(1.0)
  values = np.array([p["cost"] for p in pairs])
  within = sum((p["cost"] - np.mean([q["cost"] for q in pairs if q["target"] == p["target"]])) ** 2
               for p in pairs)
  assert task_transfer.between_target_share(pairs, "cost") == pytest.approx(
      1 - within / np.sum((values - values.mean()) ** 2))


def test_smoke_run_writes_pairs_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("task_transfer", "smoke")
  summary = task_transfer.run(config, str(tmp_path))
  records = _records(tmp_path)
  tasks = list(config.tasks)
  assert [r["kind"] for r in records[:len(tasks)]] == ["task"] * len(tasks)
  pairs = [r for r in records if r["kind"] == "pair"]
  assert sorted((p["source"], p["target"]) for p in pairs) == sorted(
      (s, t) for s in tasks for t in tasks if s != t)
  assert [r["target"] for r in records if r["kind"] == "scratch"] == tasks
  for pair in pairs:
    curve = np.array(pair["accuracy_curve"])
    assert curve.shape == (config.fine_tune_steps // config.eval_every + 1,)
    assert 0 <= pair["steps_to_accuracy"] <= config.fine_tune_steps
    # The cost is the first evaluation at the threshold, or the budget when censored.
    reached = np.flatnonzero(curve >= pair["threshold"])
    if pair["censored"]:
      assert reached.size == 0 and pair["steps_to_accuracy"] == config.fine_tune_steps
    else:
      assert pair["steps_to_accuracy"] == reached[0] * config.eval_every
    np.testing.assert_allclose(pair["mean_error"], 1 - curve.mean(), rtol=1e-6)
    assert 0.0 <= pair["task2vec_distance"] <= 1.0
    # d(S -> T) = I(S T; w) - I(S; w).
    np.testing.assert_allclose(pair["information_distance"],
                               pair["information_joint"] - pair["information_source"],
                               rtol=1e-4, atol=1e-3)
    assert pair["information_source"] > 0 and pair["information_joint"] > 0
  for name in task_transfer.DISTANCES:
    for cost in task_transfer.COSTS:
      value = summary[f"spearman_{cost}_vs_{name}"]
      assert math.isnan(value) or -1.0 <= value <= 1.0
      assert 0.0 < summary[f"spearman_{cost}_vs_{name}_p"] <= 1.0 or math.isnan(value)
  assert summary["num_pairs"] == len(pairs)
  for name in task_transfer.COSTS + task_transfer.DISTANCES:
    share = summary[f"between_target_share_{name}"]
    assert math.isnan(share) or 0.0 <= share <= 1.0 + 1e-9
  with open(tmp_path / task_transfer.PLOT_FILE, "rb") as f:
    assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "Spearman" in text and "verdict" in text and "censored" in text

  # Resume: drop the last pair; only it is recomputed, to the same numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = task_transfer.information_distance

  def counting(source, target, *args, **kwargs):
    calls.append((source.name, target.name))
    return original(source, target, *args, **kwargs)

  monkeypatch.setattr(task_transfer, "information_distance", counting)
  again = task_transfer.run(config, str(tmp_path))
  assert calls == [(records[-1]["source"], records[-1]["target"])]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == [r["kind"] for r in records]
  for key, value in records[-1].items():
    if isinstance(value, float):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    elif not isinstance(value, list):
      assert resumed[-1][key] == value, key
  np.testing.assert_allclose(resumed[-1]["accuracy_curve"], records[-1]["accuracy_curve"],
                             atol=1e-6)
  assert again.keys() == summary.keys()
