"""Tests for the information_dropout experiment (infojax.experiments.information_dropout,
configs/information_dropout.py, scripts/information_dropout.py)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax.experiments import information_dropout

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _digits(count=6, seed=0):
  rng = np.random.default_rng(seed)
  return rng.uniform(0.2, 1.0, (count, 4, 4, 1)).astype(np.float32), np.arange(count) % 3


def test_cluttered_digits_places_digit_and_clutter():
  images, labels = _digits()
  clean = information_dropout.cluttered_digits(images, labels, canvas_size=10, num_fragments=0,
                                               fragment_size=2, seed=3)
  cluttered = information_dropout.cluttered_digits(images, labels, canvas_size=10,
                                                   num_fragments=3, fragment_size=2, seed=3)
  assert clean["image"].shape == (6, 10, 10, 1)
  np.testing.assert_array_equal(clean["label"], labels)
  for n, (top, left, bottom, right) in enumerate(clean["box"]):
    assert 0 <= top and bottom == top + 4 <= 10 and 0 <= left and right == left + 4 <= 10
    np.testing.assert_array_equal(clean["image"][n, top:bottom, left:right], images[n])
    outside = clean["image"][n].copy()
    outside[top:bottom, left:right] = 0
    assert not outside.any() and not clean["clutter"][n].any()   # no fragments: no clutter
    mask = cluttered["image"][n, ..., 0] > 0
    mask[top:bottom, left:right] = False
    np.testing.assert_array_equal(cluttered["clutter"][n], mask)
  np.testing.assert_array_equal(cluttered["box"], clean["box"])   # same seed, same placements
  assert np.all(cluttered["image"] >= clean["image"])            # clutter is a pixelwise maximum
  assert np.sum(cluttered["image"] > clean["image"]) > 0
  again = information_dropout.cluttered_digits(images, labels, canvas_size=10, num_fragments=3,
                                               fragment_size=2, seed=3)
  np.testing.assert_array_equal(again["image"], cluttered["image"])
  other = information_dropout.cluttered_digits(images, labels, canvas_size=10, num_fragments=3,
                                               fragment_size=2, seed=4)
  assert not np.array_equal(other["image"], cluttered["image"])
  for kwargs, match in ((dict(canvas_size=3), "canvas_size"), (dict(num_fragments=-1),
                                                               "num_fragments"),
                        (dict(fragment_size=5), "fragment_size")):
    arguments = {**dict(canvas_size=10, num_fragments=1, fragment_size=2, seed=0), **kwargs}
    with pytest.raises(ValueError, match=match):
      information_dropout.cluttered_digits(images, labels, **arguments)


@pytest.mark.parametrize("size", [20, 11])
def test_cell_centres_against_a_centre_tap_convolution(size):
  """A stride-2 3x3 'SAME' convolution whose only tap is the centre reads off each cell's centre
  from a ramp of pixel coordinates."""
  kernel = jnp.zeros((3, 1, 1)).at[1, 0, 0].set(1.0)
  ramp = (jnp.arange(size, dtype=jnp.float32) + 0.5)[None, :, None]
  centres = ramp
  for pools in (1, 2):
    centres = jax.lax.conv_general_dilated(centres, kernel, (2,), "SAME",
                                           dimension_numbers=("NWC", "WIO", "NWC"))
    np.testing.assert_array_equal(information_dropout.cell_centres(size, pools),
                                  np.asarray(centres[0, :, 0]))


def test_kl_regions_against_loop():
  rng = np.random.default_rng(0)
  maps = rng.uniform(size=(3, 5, 5))
  boxes = np.array([[0, 0, 8, 8], [4, 6, 12, 14], [12, 12, 20, 20]])
  clutter = rng.uniform(size=(3, 20, 20)) < 0.3
  centres = information_dropout.cell_centres(20, 2)
  masses, areas = [], []
  sums, counts = dict.fromkeys(information_dropout.REGIONS, 0.0), dict.fromkeys(
      information_dropout.REGIONS, 0)
  for n in range(3):
    digit_cells, total = 0, 0.0
    for i in range(5):
      for j in range(5):
        if (boxes[n, 0] <= centres[i] < boxes[n, 2] and boxes[n, 1] <= centres[j] < boxes[n, 3]):
          region = "digit"
          digit_cells += 1
          total += maps[n, i, j]
        elif clutter[n, int(centres[i]), int(centres[j])]:
          region = "clutter"
        else:
          region = "background"
        sums[region] += maps[n, i, j]
        counts[region] += 1
    masses.append(total / maps[n].sum())
    areas.append(digit_cells / 25)
  result = information_dropout.kl_regions(maps, boxes, clutter, canvas_size=20, num_pools=2)
  np.testing.assert_allclose(result["digit_mass_fraction"], np.mean(masses), rtol=1e-12)
  np.testing.assert_allclose(result["digit_area_fraction"], np.mean(areas), rtol=1e-12)
  for region in information_dropout.REGIONS:
    assert counts[region] > 0
    np.testing.assert_allclose(result[f"kl_per_cell_{region}"], sums[region] / counts[region],
                               rtol=1e-12)
  uniform = information_dropout.kl_regions(np.ones((3, 5, 5)), boxes, clutter, canvas_size=20,
                                           num_pools=2)
  np.testing.assert_allclose(uniform["digit_mass_fraction"], uniform["digit_area_fraction"],
                             rtol=1e-12)
  with pytest.raises(ValueError, match="do not match"):
    information_dropout.kl_regions(maps, boxes, clutter, canvas_size=20, num_pools=1)


def test_init_params_follow_lecun_normal():
  model = information_dropout.ClutteredCNN((64, 64), 10, "information")
  params = information_dropout.init_params(model, (1, 8, 8, 1), seed=0)
  reference = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
  assert jax.tree.map(lambda x: x.shape, params) == jax.tree.map(lambda x: x.shape, reference)
  kernel = np.asarray(params["pool2"]["alpha"]["kernel"], np.float64)   # fan_in 3 * 3 * 64
  std = 1 / math.sqrt(3 * 3 * 64)
  assert abs(kernel.var() / std ** 2 - 1) < 5 * math.sqrt(2 / kernel.size)
  assert np.abs(kernel).max() <= 2 * std / 0.8796 + 1e-7             # truncated at 2 std
  np.testing.assert_array_equal(np.asarray(params["pool2"]["f"]["bias"]), 0.0)
  again = information_dropout.init_params(model, (1, 8, 8, 1), seed=0)
  np.testing.assert_array_equal(np.asarray(again["Conv_0"]["kernel"]),
                                np.asarray(params["Conv_0"]["kernel"]))


def test_model_maps_and_objective_beta():
  images = jnp.asarray(np.random.default_rng(1).normal(size=(3, 8, 8, 1)), jnp.float32)
  for method in ("binary", "none"):
    model = information_dropout.ClutteredCNN((2, 2), 4, method)
    _, maps = jax.eval_shape(lambda x: model.apply(model.init(jax.random.key(0), x), x), images)
    assert maps["pool1"].shape == (3, 4, 4) and maps["pool2"].shape == (3, 2, 2)
  model = information_dropout.ClutteredCNN((2, 2), 4, "information")
  params = information_dropout.init_params(model, (1, 8, 8, 1), seed=0)
  objective = information_dropout.objective(model)
  batch = {"image": images, "label": jnp.asarray([0, 1, 2])}
  key = information_dropout.run_key(0)

  @jax.jit
  def losses(params):
    values = [objective.loss(params, {"beta": jnp.float32(b)}, batch, key) for b in (0.0, 0.5)]
    return values[0][0], values[1][0], values[1][1][1]["kl"], objective.evaluate(params, {}, batch)

  plain, penalised, kl, evaluated = losses(params)
  # The same key draws the same noise: the penalty is exactly beta * mean KL. (The KL of pool2
  # depends on pool1's noise, so training and evaluation KLs differ.)
  np.testing.assert_allclose(float(penalised - plain), 0.5 * float(kl), rtol=1e-5)
  assert float(jnp.mean(evaluated["kl"])) > 0
  np.testing.assert_allclose(np.asarray(evaluated["kl"]),
                             np.asarray(evaluated["kl_pool1"] + evaluated["kl_pool2"]), rtol=1e-6)
  assert float(kl) > 0
  with pytest.raises(ValueError, match="method"):
    information_dropout.ClutteredCNN((2, 2), 4, "gaussian")


def test_smoke_run_writes_records_plots_summary_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("information_dropout", "smoke")
  summary = information_dropout.run(config, str(tmp_path))
  records = _records(tmp_path)
  settings = information_dropout.settings(config)
  assert len(records) == len(settings) * len(config.seeds)
  assert [(r["method"], r["filter_percentage"], r["beta"]) for r in records] == [
      setting for setting in settings for _ in config.seeds]
  size = config.canvas_size
  for record in records:
    assert record["kind"] == "point"
    assert 0 <= record["test_accuracy"] <= 1 and math.isfinite(record["train_loss"])
    assert len(record["train_loss_curve"]) == config.num_epochs
    if record["method"] == "information":
      assert record["test_kl"] > 0
      pools = information_dropout.pool_names(len(config.base_channels))
      np.testing.assert_allclose(record["test_kl"], sum(record[f"test_kl_{p}"] for p in pools),
                                 rtol=1e-6)
      assert 0 <= record["pool1_digit_mass_fraction"] <= 1
      assert 0 < record["pool1_digit_area_fraction"] < 1
      assert record["pool1_kl_per_cell_digit"] >= 0
      for depth, name in enumerate(pools, start=1):
        cells = information_dropout.cell_centres(size, depth).size
        assert np.shape(record[f"heatmap_{name}"]) == (config.num_heatmaps, cells, cells)
    else:
      assert record["test_kl"] == 0.0
  assert math.isfinite(summary["worst_relative_change"])
  beta = config.betas[-1]
  assert summary[f"beta{beta:g}_pool1_digit_area_fraction"] == records[-1][
      "pool1_digit_area_fraction"]
  for name in (information_dropout.PLOT_FILE, information_dropout.HEATMAP_FILE):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "binary dropout" in text and "where the KL sits" in text and "convergence" in text

  # Resume: drop the last point; only it is recomputed, to the same numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = information_dropout.train_point

  def counting(*args, **kwargs):
    calls.append((kwargs["method"], kwargs["beta"]))
    return original(*args, **kwargs)

  monkeypatch.setattr(information_dropout, "train_point", counting)
  information_dropout.run(config, str(tmp_path))
  assert calls == [(records[-1]["method"], records[-1]["beta"])]
  assert _records(tmp_path) == records
