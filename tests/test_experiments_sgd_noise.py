"""Tests for the sgd_noise experiment (infojax.experiments.sgd_noise, configs/sgd_noise.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax.experiments import sgd_noise

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_rank_at():
  assert sgd_noise.rank_at([0.5, 0.89, 0.95]) == 3
  assert sgd_noise.rank_at([0.95, 1.0]) == 1
  assert sgd_noise.rank_at([0.2, 0.4]) is None


def test_smoke_run_measures_every_checkpoint_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("sgd_noise", "smoke")
  summary = sgd_noise.run(config, str(tmp_path))
  records = _records(tmp_path)
  steps = [0, 30, 60]
  assert [(r["seed"], r["step"]) for r in records] == [(s, t) for s in config.seeds for t in steps]
  for record in records:
    values = np.array(record["noise_eigenvalues"])
    assert values.shape == (config.k,) and np.all(np.diff(values) <= 1e-6 * values[0])
    assert 0 < values[0] <= record["noise_trace"] * (1 + 1e-5)
    assert 1.0 <= record["stable_rank"] <= summary["num_parameters"]
    fraction = np.array(record["captured_fraction"])
    assert np.all(np.diff(fraction) >= 0) and fraction[-1] <= 1 + 1e-5
    assert 0.0 <= record["overlap"] <= 1.0 + 1e-5
    assert math.isclose(record["temperature"], config.learning_rate / (2 * config.batch_size))
  # Training lowers the loss.
  for seed in config.seeds:
    losses = [r["train_loss"] for r in records if r["seed"] == seed]
    assert losses[-1] < losses[0]
  with open(tmp_path / sgd_noise.PLOT_FILE, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "Chaudhari & Soatto" in (tmp_path / "summary.txt").read_text()

  # Resume: drop the last point; only it is measured again, to the same numbers.
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = sgd_noise.measure_fn

  def counting(*args, **kwargs):
    measure = original(*args, **kwargs)

    def fn(params, key):
      calls.append(1)
      return measure(params, key)
    return fn

  monkeypatch.setattr(sgd_noise, "measure_fn", counting)
  again = sgd_noise.run(config, str(tmp_path))
  assert len(calls) == 1
  resumed = _records(tmp_path)
  assert len(resumed) == len(records)
  for key, value in records[-1].items():
    if isinstance(value, (float, list)):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert again == pytest.approx(summary)
