"""Tests for the vib experiment (infojax.experiments.vib, configs/vib.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax.experiments import vib

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_degradation_beta():
  betas = [0.0, 1e-3, 1e-2, 1e-1]
  flat_then_worse = np.array([[0.05, 0.04, 0.05, 0.30], [0.05, 0.05, 0.04, 0.32],
                              [0.06, 0.04, 0.045, 0.31]])
  assert vib.degradation_beta(betas, flat_then_worse) == 1e-1
  # A bad point followed by a recovery is not where the error degrades.
  recovering = np.array([[0.05, 0.30, 0.05, 0.30], [0.05, 0.31, 0.05, 0.31]])
  assert vib.degradation_beta(betas, recovering) == 1e-1
  assert vib.degradation_beta(betas, np.full((3, 4), 0.05)) is None
  # One seed: any excess counts.
  assert vib.degradation_beta(betas, [[0.05, 0.04, 0.041, 0.05]]) == 1e-2
  with pytest.raises(ValueError, match="shape"):
    vib.degradation_beta(betas, np.zeros((2, 3)))
  with pytest.raises(ValueError, match="increase"):
    vib.degradation_beta([1.0, 0.1], np.zeros((2, 2)))


def test_smoke_run_writes_every_point_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("vib", "smoke")
  summary = vib.run(config, str(tmp_path))
  records = _records(tmp_path)
  expected = [("deterministic", None)] + [("vib", b) for b in sorted(config.betas)]
  assert [(r["method"], r["beta"], r["seed"]) for r in records] == [
      (m, b, s) for m, b in expected for s in config.seeds]
  for record in records:
    assert 0.0 <= record["test_error"] <= 1.0 and 0.0 <= record["test_error_mean_code"] <= 1.0
    assert len(record["train_objective"]) == config.num_epochs
    assert math.isclose(record["i_zy_lower_bound"],
                        record["label_entropy"] - record["test_cross_entropy"], rel_tol=1e-6)
    assert math.isclose(record["label_entropy"], math.log(10), rel_tol=1e-3)
    if record["method"] == "deterministic":
      assert record["rate"] == 0.0 and record["test_error"] == record["test_error_mean_code"]
    else:
      assert record["rate"] > 0.0
  rates = {r["beta"]: r["rate"] for r in records if r["method"] == "vib"}
  assert rates[1.0] < rates[1e-3]     # a larger beta buys a smaller rate
  assert summary["vib_beta1_rate"] == rates[1.0]
  with open(tmp_path / vib.PLOT_FILE, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  text = (tmp_path / "summary.txt").read_text()
  assert "Alemi" in text and "error degrades" in text and "convergence" in text

  # Resume: drop the last point; only it is trained again, to the same numbers.
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = vib.train_point

  def counting(*args, **kwargs):
    calls.append(kwargs)
    return original(*args, **kwargs)

  monkeypatch.setattr(vib, "train_point", counting)
  assert vib.run(config, str(tmp_path)) == summary
  assert [(c["method"], c["beta"], c["seed"]) for c in calls] == [
      (records[-1]["method"], records[-1]["beta"], records[-1]["seed"])]
  assert _records(tmp_path) == records


def test_negative_beta_is_an_error(tmp_path):
  config = _configs.get_config("vib", "smoke")
  config.betas = (-1.0, 1.0)
  with pytest.raises(ValueError, match="non-negative"):
    vib.run(config, str(tmp_path))
