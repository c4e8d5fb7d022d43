"""Tests for the reachability experiment (infojax.experiments.reachability,
configs/reachability.py, scripts/reachability.py)."""

import json
import math
import os

import numpy as np
import pytest

from infojax.experiments import reachability

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"
_UNITS = ("transition_curve", "transition_em", "passage_point", "barrier_curve", "gibbs_point")


def _config_module():
  return _configs.config_module("reachability")


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_config_variants():
  module = _config_module()
  full, smoke = module.get_config(), module.get_config("smoke")
  assert smoke.num_steps < full.num_steps
  assert "scripts/reachability.py --config=configs/reachability.py" in module.__doc__
  with pytest.raises(ValueError, match="unknown config argument"):
    module.get_config("no-such-variant")
  # The default grid holds the end points as grid points (spacing 0.01, as the annotation's).
  assert reachability.make_grid(full).spacing[0] == pytest.approx(0.01)
  bad = module.get_config("smoke")
  bad.start = -1.04
  with pytest.raises(ValueError, match="config.start"):
    reachability.make_grid(bad)


def test_smoke_run_writes_measurements_and_resumes(tmp_path, monkeypatch):
  config = _config_module().get_config("smoke")
  summary = reachability.run(config, str(tmp_path))
  records = _records(tmp_path)
  kinds = [r["kind"] for r in records]
  num_times = len(reachability.transition_times(config))
  assert kinds.count("transition") == num_times * len(config.diffusions)
  assert kinds.count("transition_em") == len(config.em_times)
  assert kinds.count("passage") == len(config.passage_inverse_diffusions)
  assert kinds.count("barrier") == len(config.delta_us) * len(config.barrier_inverse_diffusions)
  assert kinds.count("gibbs") == len(config.temperatures)
  # Detailed balance at every resolved time; the dynamic factors agree.
  transitions = [r for r in records if r["kind"] == "transition"]
  resolved = [r for r in transitions if r["resolved"]]
  assert len(resolved) >= len(transitions) - 2
  for r in resolved:
    assert r["density_ratio"] == pytest.approx(r["expected_ratio"], rel=1e-7)
    assert r["reachability_forward"] == pytest.approx(r["reachability_backward"], rel=1e-7)
  assert summary["a14_expected_ratio"] == pytest.approx(7.39544, rel=1e-5)
  # The reach probability grows to the Gibbs probability of the window.
  curve = [r["forward_window"] for r in transitions if r["diffusion"] == 0.25]
  assert curve[0] < 1e-3 < 0.3 < curve[-1] < 0.36
  # Passage times: the grid chain agrees with the quadrature; Kramers underestimates at large D.
  passages = [r for r in records if r["kind"] == "passage"]
  for r in passages:
    assert r["grid_chain"] == pytest.approx(r["exact"], rel=5e-3)
    assert 0.7 < r["kramers_over_exact"] < 1.0
  em = [r for r in passages if r["em_mean"] is not None]
  assert len(em) == 1 and em[0]["em_censored_fraction"] < 0.05
  assert abs(em[0]["em_mean"] - em[0]["exact"]) < 4 * em[0]["em_standard_error"] + 0.2
  # A.15 and section 2.7.
  assert 0.995 < summary["a15_slope_min"] <= summary["a15_slope_max"] < 1.0
  for r in (r for r in records if r["kind"] == "gibbs"):
    assert r["share_sharp"] == pytest.approx(r["reference_share"], abs=1e-4)
    assert r["laplace_share"] == pytest.approx(1 / 11)
  for name in (reachability.TRANSITION_PLOT, reachability.PASSAGE_PLOT):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "Eq 16" in text and "Kramers' law (slope = barrier) holds" in text
  assert "0.0930, 0.0955, 0.0985" in text and "reproduces to 1e-4" in text

  # Resume: drop the last record; only its unit (the last temperature) is recomputed, equal.
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  for name in _UNITS:
    original = getattr(reachability, name)

    def counting(*args, _original=original, _name=name, **kwargs):
      calls.append((_name, args[-1]))
      return _original(*args, **kwargs)

    monkeypatch.setattr(reachability, name, counting)
  again = reachability.run(config, str(tmp_path))
  assert calls == [("gibbs_point", config.temperatures[-1])]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == kinds
  for key, value in records[-1].items():
    if isinstance(value, float) and math.isfinite(value):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-12, err_msg=key)
  assert again == summary
