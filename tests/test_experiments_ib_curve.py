"""Tests for the ib_curve experiment (infojax.experiments.ib_curve, configs/ib_curve.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax import data
from infojax.experiments import ib_curve

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"
_LOG2 = math.log(2.0)


def _entropy(p):
  p = np.asarray(p, np.float64)
  return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_joints_mrs_gerber_and_curve_checks():
  pair = ib_curve.symmetric_pair(0.1)
  mutual = _entropy(pair.sum(0)) + _entropy(pair.sum(1)) - _entropy(pair.ravel())
  np.testing.assert_allclose(mutual / _LOG2, 0.531004, atol=1e-6)      # science.md A.8
  joint = ib_curve.random_joint((8, 3), concentration=1.0, seed=4)
  assert joint.shape == (8, 3) and np.all(joint.sum(1) > 0)
  np.testing.assert_allclose(joint.sum(), 1.0, atol=1e-12)
  np.testing.assert_array_equal(joint, ib_curve.random_joint((8, 3), concentration=1.0, seed=4))
  # Mrs Gerber against its parametric form: T = X xor Bern(d) gives I(X;T) = log 2 - h(d) and
  # I(T;Y) = log 2 - h(e * d).
  h = lambda p: _entropy(np.stack([p, 1 - p], axis=-1))  # noqa: E731
  deltas = np.array([0.01, 0.1, 0.3, 0.45])
  np.testing.assert_allclose(
      ib_curve.mrs_gerber(_LOG2 - h(deltas), 0.1),
      _LOG2 - h(0.1 * (1 - deltas) + deltas * 0.9), atol=1e-12)
  np.testing.assert_allclose(ib_curve.mrs_gerber([0.0, _LOG2], 0.1), [0.0, mutual], atol=1e-12)
  # The shape checks: the exact scalar Gaussian curve passes them; a dip and a kink do not.
  betas = np.geomspace(3.0, 300.0, 20)
  rho2 = 0.5
  i_xt = 0.5 * np.log((betas - 1) * rho2 / (1 - rho2))
  i_ty = 0.5 * np.log((betas - 1) / (betas * (1 - rho2)))
  points = [{"beta": b, "i_xt": x, "i_ty": y} for b, x, y in zip(betas, i_xt, i_ty)]
  assert ib_curve.curve_shape(points) == {
      "decreases": 0, "concavity_violations": 0, "slope_violations": 0,
      "max_slope_increase": ib_curve.curve_shape(points)["max_slope_increase"]}
  dipped = [dict(p) for p in points]
  dipped[10]["i_ty"] -= 0.2
  shape = ib_curve.curve_shape(dipped)
  assert shape["decreases"] == 1 and shape["concavity_violations"] >= 1
  assert shape["slope_violations"] >= 1 and shape["max_slope_increase"] > 0
  # The departure: converged points only; the linear extrapolation recovers a continuous onset
  # (at 1.5 here) and refuses a jump.
  onset = [{"beta": b, "i_xt": max(0.0, 0.3 * (b - 1.5)), "converged": True}
           for b in (1.0, 1.2, 1.4, 1.45, 1.6, 2.0)]
  onset[3]["converged"] = False
  assert ib_curve.departure_bracket(onset, tolerance=1e-6) == (1.4, 1.6)
  assert ib_curve.departure_bracket(onset[:4], tolerance=1e-6) == (1.4, None)
  assert ib_curve.extrapolated_departure(onset, tolerance=1e-6) == pytest.approx(1.5)
  jump = [dict(p, i_xt=0.0 if p["beta"] < 1.5 else 0.6 + 0.01 * p["beta"]) for p in onset]
  assert math.isnan(ib_curve.extrapolated_departure(jump, tolerance=1e-6))


def test_digits_joint_is_the_empirical_joint_of_cells_and_labels():
  joint = ib_curve.digits_joint(num_cells=8, kmeans_inits=1, seed=0)
  labels = np.asarray(data.load("digits", "train", process_local=False)["label"])
  assert joint.shape == (8, 10) and np.all(joint.sum(1) > 0)
  np.testing.assert_allclose(joint.sum(0), np.bincount(labels, minlength=10) / len(labels),
                             atol=1e-12)
  np.testing.assert_allclose(joint * len(labels), np.round(joint * len(labels)), atol=1e-9)


def test_smoke_run_writes_records_plot_summary_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("ib_curve", "smoke")
  summary = ib_curve.run(config, str(tmp_path))
  records = _records(tmp_path)
  assert [r["joint"] for r in records] == sorted(
      (r["joint"] for r in records), key=list(config.joints).index)
  by_joint = {name: [r for r in records if r["joint"] == name] for name in config.joints}
  symmetric = by_joint["symmetric"]
  joint = symmetric[-1]
  assert joint["kind"] == "joint" and joint["num_records"] == len(symmetric) - 1
  counts = {m: sum(r.get("method") == m for r in symmetric) for m in
            ("vmapped", "annealed", "threshold", "deterministic")}
  assert counts == {"vmapped": config.num_betas, "annealed": config.num_betas,
                    "threshold": config.num_betas * config.threshold_rounds, "deterministic": 0}
  for record in symmetric[:-1]:
    assert record["i_ty"] <= joint["mutual_information"] + 1e-9
    assert record["i_xt"] <= joint["entropy_x"] + 1e-9
    assert isinstance(record["converged"], bool) and record["num_iterations"] >= 1
  # The measured claims: the departure brackets 1/(1-2e)^2 and the curve is Mrs Gerber's.
  assert summary["symmetric_theory_threshold"] == pytest.approx(1.5625)
  assert joint["departure_lo"] <= 1.5625 <= joint["departure_hi"]
  assert joint["trivial_instability_beta"] == pytest.approx(1.5625, rel=1e-9)
  assert summary["symmetric_mrs_gerber_max_deviation_bits"] < 1e-4
  assert summary["symmetric_relevance_at_max_beta"] == pytest.approx(1.0, abs=1e-4)
  assert summary["symmetric_decreases"] == 0 and summary["symmetric_concavity_violations"] == 0
  gaussian = by_joint["gaussian"]
  eigenvalues = np.array(gaussian[-1]["eigenvalues"])
  assert summary["gaussian_first_critical_beta"] == pytest.approx(1 / (1 - eigenvalues[0]))
  assert all(r["method"] == "analytic" for r in gaussian[:-1])
  relevance = np.array([r["i_ty"] for r in gaussian[:-1]])
  assert np.all(np.diff(relevance) >= 0) and relevance[-1] < gaussian[-1]["mutual_information"]
  with open(tmp_path / ib_curve.PLOT_FILE, "rb") as f:
    assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "Mrs Gerber" in text and "convergence" in text and "vmapped vs annealed" in text
  # The deterministic-IB line (that curve is compiled in the default run only).
  hard = [dict(r, method="deterministic") for r in symmetric if r.get("method") == "vmapped"]
  values, lines = ib_curve.summarise_joint("symmetric", symmetric + hard, config)
  assert values["deterministic_relevance_at_max_beta"] == pytest.approx(
      hard[-1]["i_ty"] / joint["mutual_information"])
  assert values["deterministic_above_trivial"] == sum(r["lagrangian"] > 1e-12 for r in hard)
  assert any("deterministic IB" in line for line in lines)

  # Resume: drop the last record (the Gaussian joint's), then the symmetric joint's; each time
  # only that joint is recomputed, to the same numbers.
  calls = []
  original = ib_curve.joint_records

  def counting(name, *args, **kwargs):
    calls.append(name)
    return original(name, *args, **kwargs)

  monkeypatch.setattr(ib_curve, "joint_records", counting)
  for dropped, name in ((len(records) - 1, "gaussian"), (len(symmetric) - 1, "symmetric")):
    with open(tmp_path / "metrics.jsonl", "w") as f:
      f.writelines(json.dumps(r) + "\n" for i, r in enumerate(records) if i != dropped)
    calls.clear()
    again = ib_curve.run(config, str(tmp_path))
    assert calls == [name]
    resumed = _records(tmp_path)
    assert len(resumed) == len(records)
    for old, new in zip(records, resumed):
      assert old.keys() == new.keys()
      for key, value in old.items():
        if isinstance(value, float):
          np.testing.assert_allclose(new[key], value, rtol=1e-12, err_msg=key)
        else:
          assert new[key] == value, key
    assert again == summary
