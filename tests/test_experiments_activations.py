"""Tests for the effective_information experiment (infojax.experiments.effective_information,
configs/effective_information.py, scripts/effective_information.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax.experiments import effective_information

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _smoke_config():
  return _configs.get_config("effective_information", "smoke")


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_sprite_splits_keep_factors_and_standardise():
  splits = effective_information.sprite_splits(image_size=8, scale_stride=3, orientation_stride=20,
                                               position_stride=16, num_test=10, seed=0)
  train, test = splits["train"], splits["test"]
  assert train["image"].shape == (3 * 2 * 2 * 2 * 2 - 10, 8, 8, 1) and test["label"].shape == (10,)
  np.testing.assert_array_equal(train["label"], train["factors"][:, 0])
  np.testing.assert_allclose(train["image"].mean(), 0.0, atol=1e-5)
  with pytest.raises(ValueError, match="num_test must be in"):
    effective_information.sprite_splits(image_size=8, scale_stride=3, orientation_stride=20,
                                        position_stride=16, num_test=48, seed=0)


def test_smoke_run_writes_measurements_and_resumes(tmp_path, monkeypatch):
  config = _smoke_config()
  summary = effective_information.run(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r["kind"] for r in records] == ["train"] + ["beta"] * len(config.betas)
  betas = [r["beta"] for r in records[1:]]
  assert betas == sorted(config.betas)
  layers = ["Conv_0", "Conv_1", "Dense_0"]
  for record in records[1:]:
    for layer in layers:
      for quantity in ("information_weights", "effective_corrected", "effective_printed",
                       "information_image", "information_shape", "information_position_x"):
        assert math.isfinite(record[f"{layer}_{quantity}"]), (layer, quantity)
      assert record[f"{layer}_information_position_x"] <= math.log(4) + 1e-6  # a lower bound
      assert record[f"{layer}_information_image"] <= math.log(config.num_probe) + 1e-6
    # Pseudo-determinants: at most the 3 logits; the first convolution (4x4x2 activations for
    # 8x8 inputs) at most 32.
    assert 0 <= record["Dense_0_rank"] <= 3 and 0 < record["Conv_0_rank"] <= 32
    # KL(Q||P) = the mean's distance term + the variances' term, each non-negative.
    assert 0 < record["information_distance"] < record["information"]
    assert record["information_variance"] == pytest.approx(
        record["information"] - record["information_distance"])
  # The prior pulls harder at larger beta: less information in the weights.
  assert records[-1]["information"] < records[1]["information"]
  for name in ("Conv_0_information_weights_vs_beta", "Dense_0_effective_printed_vs_beta"):
    assert -1.0 <= summary[name] <= 1.0
  for name in (effective_information.SWEEP_PLOT, effective_information.INVARIANCE_PLOT):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == _PNG
  assert "Spearman" in (tmp_path / "summary.txt").read_text()

  # Resume: drop the last point; only it is recomputed, to the same numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = effective_information.lagrangian_fit

  def counting_fit(*args, **kwargs):
    fit = original(*args, **kwargs)

    def fn(trained, initial, batch, beta, key):
      calls.append(float(beta))
      return fit(trained, initial, batch, beta, key)
    return fn

  monkeypatch.setattr(effective_information, "lagrangian_fit", counting_fit)
  again = effective_information.run(config, str(tmp_path))
  assert calls == [betas[-1]]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == [r["kind"] for r in records]
  for key, value in records[-1].items():
    if isinstance(value, float):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
  assert again.keys() == summary.keys()
