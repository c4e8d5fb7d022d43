"""Tests for the beta_vae experiment (infojax.experiments.beta_vae, configs/beta_vae.py,
scripts/beta_vae.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax.data.builders import sprites
from infojax.experiments import beta_vae

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_close(got, expected, path="record"):
  """Equal structure; numbers equal to float32 rounding."""
  if isinstance(expected, dict):
    assert sorted(got) == sorted(expected), path
    for key in expected:
      _assert_close(got[key], expected[key], f"{path}.{key}")
  elif isinstance(expected, list) and expected and isinstance(expected[0], (dict, str)):
    assert len(got) == len(expected), path
    for index, (a, b) in enumerate(zip(got, expected)):
      _assert_close(a, b, f"{path}[{index}]")
  elif isinstance(expected, (float, list)):
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(expected, float), rtol=1e-5,
                               atol=1e-7, err_msg=path)
  else:
    assert got == expected, path


def test_sprite_grid_rows_follow_the_factor_indices():
  grid = beta_vae.sprite_grid(image_size=8, scale_stride=3, orientation_stride=20,
                              position_stride=8)
  assert grid.factor_sizes == (3, 2, 2, 4, 4)
  assert grid.images.shape == (192, 8, 8, 1) and set(np.unique(grid.images)) <= {0, 1}
  strides = np.array([1, 3, 20, 8, 8])
  for row in (0, 37, 191):
    factors = grid.factors[row]
    assert np.ravel_multi_index(tuple(factors), grid.factor_sizes) == row
    image = sprites.render(sprites.factor_values((factors * strides)[None]), image_size=8)[0]
    np.testing.assert_array_equal(grid.images[row, ..., 0], image // 255)


def test_entry_steps_and_the_claimed_order():
  steps = np.array([10, 20, 30])
  kl = np.array([[0.0, 0.6, 0.1], [0.7, 0.9, 0.2], [1.0, 1.2, 0.3]])
  assert beta_vae.entry_steps(steps, kl, threshold=0.5) == [20, 10, None]
  check = beta_vae.claim_check
  assert check(["position_y", "position_x", "scale", "shape"])["reproduces"]
  assert check(["position_x", "position_x", "scale"])["reproduces"]
  assert not check(["scale", "position_x", "shape"])["first_is_position"]
  wrong_order = check(["position_x", "orientation", "scale"])
  assert wrong_order["first_is_position"] and not wrong_order["ordered"]
  assert not check(["position_x", "position_y"])["ordered"]      # scale never entered
  assert not check([])["reproduces"]
  # Chunks whose dimension 1 enters first (position y), then dimension 0 (scale).
  information = np.zeros((3, 5))
  information[0, 1] = information[1, 4] = information[2, 0] = 1.0
  chunks = [{"step": int(s), "kl_per_dimension": row.tolist(), "information": information}
            for s, row in zip(steps, kl)]
  order = beta_vae.entering_order(chunks, information, threshold=0.5)
  assert [(e["dimension"], e["step"], e["factor"]) for e in order] == [
      (1, 10, "position_y"), (0, 20, "scale")]


def test_smoke_run_writes_measurements_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("beta_vae", "smoke")
  summary = beta_vae.run(config, str(tmp_path))
  records = _records(tmp_path)
  names = ["beta1", "beta4", "capacity"]
  num_chunks = config.num_steps // config.log_every
  assert [(r["kind"], r["run"]) for r in records] == [
      (kind, name) for name in names for kind in ["chunk"] * num_chunks + ["run"]]
  latent, num_factors = config.latent_dim, len(sprites.FACTOR_NAMES)
  for record in records:
    assert len(record["kl_per_dimension"]) == latent
    assert min(record["kl_per_dimension"]) >= 0
    np.testing.assert_allclose(sum(record["kl_per_dimension"]), record["eval_kl"], rtol=1e-5)
    assert np.shape(record["information"]) == (latent, num_factors)
    assert math.isfinite(record["eval_nll"]) and record["eval_nll"] > 0
    if record["kind"] == "chunk" and record["run"] == "capacity":
      ramp = beta_vae.ramp_steps(config)
      np.testing.assert_allclose(record["capacity"],
                                 config.max_capacity * min(record["step"] / ramp, 1.0),
                                 rtol=1e-6)
  runs = [r for r in records if r["kind"] == "run"]
  for record in runs:
    for score in ("beta_vae_score", "factor_vae_score", "mig", "dci_disentanglement",
                  "dci_completeness", "dci_informativeness"):
      assert 0.0 <= record[score] <= 1.0, score
    assert np.shape(record["dci_importance"]) == (latent, num_factors)
    assert record["active_units"] == sum(k > config.active_threshold
                                         for k in record["kl_per_dimension"])
    steps = [e["step"] for e in record["entering_order"]]
    assert steps == sorted(steps)
  assert runs[-1]["capacity_tracking_error"] >= 0
  assert summary["beta4_eval_kl"] < summary["beta1_eval_kl"]   # a heavier KL weight
  assert 0.0 <= summary["capacity_claim_reproduces"] <= 1.0
  plots = [beta_vae.KL_PLOT, beta_vae.METRICS_PLOT] + [beta_vae.traversal_plot_file(n)
                                                       for n in names]
  for name in plots:
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == _PNG, name
  text = (tmp_path / "summary.txt").read_text()
  assert "claim (Burgess et al." in text and "normalised beta" in text

  # Resume: drop the last record (the capacity run's); only that run is recomputed, to the same
  # numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = beta_vae.train_run

  def counting(config, spec, seed, *args, **kwargs):
    calls.append((spec.name, seed))
    return original(config, spec, seed, *args, **kwargs)

  monkeypatch.setattr(beta_vae, "train_run", counting)
  again = beta_vae.run(config, str(tmp_path))
  assert calls == [("capacity", 0)]
  resumed = _records(tmp_path)
  assert [(r["kind"], r["run"]) for r in resumed] == [(r["kind"], r["run"]) for r in records]
  _assert_close(resumed[-1], records[-1])
  assert again.keys() == summary.keys()
