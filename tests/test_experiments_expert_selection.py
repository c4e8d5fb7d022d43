"""Tests for the expert_selection experiment (infojax.experiments.expert_selection,
configs/expert_selection.py, scripts/expert_selection.py)."""

import json
import os

import numpy as np
import pytest

from infojax.experiments import expert_selection
from infojax.experiments import task_transfer

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections

_PNG = b"\x89PNG\r\n\x1a\n"


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_smoke_run_scores_the_choices_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("expert_selection", "smoke")
  summary = expert_selection.run(config, str(tmp_path))
  records = _records(tmp_path)
  points = [r for r in records if r["kind"] == "target"]
  assert [(p["target"], p["num_train"]) for p in points] == [
      (t, n) for t in config.target_tasks for n in config.target_num_train]
  for point in points:
    bank = [s for s in config.source_tasks if s != point["target"]]  # exclude_target
    assert point["bank"] == bank and len(point["errors"]) == len(bank)
    errors = np.array(point["errors"])
    assert point["best_error"] == pytest.approx(errors.min())
    np.testing.assert_allclose(point["random_gap"], errors.mean() - errors.min(), atol=1e-6)
    for alpha in config.alphas:
      name = f"alpha{alpha:g}"
      distances = np.array(point[f"{name}_distances"])
      assert point[f"{name}_chosen"] == int(np.argmin(distances))
      chosen_error = errors[point[f"{name}_chosen"]]
      np.testing.assert_allclose(point[f"{name}_gap"], chosen_error - errors.min(), atol=1e-6)
      assert point[f"{name}_rank"] == int(np.sum(errors < chosen_error))
    # alpha shifts each expert's distance by -alpha d_sym(expert, trivial), d_sym in [0, 1].
    shift = np.array(point["alpha0_distances"]) - np.array(point["alpha0.15_distances"])
    assert np.all(shift >= -1e-6) and np.all(shift <= 0.15 + 1e-6)
  for n in config.target_num_train:
    assert summary[f"n{n}_alpha0.15_gap"] >= 0 and summary[f"n{n}_random_gap"] >= 0
  with open(tmp_path / expert_selection.PLOT_FILE, "rb") as f:
    assert f.read(8) == _PNG
  text = (tmp_path / "summary.txt").read_text()
  assert "verdict" in text and "alpha=0.15" in text

  # Resume: drop the last point; only it is recomputed, to the same numbers (same seed).
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:-1])
  calls = []
  original = task_transfer.fine_tune_bank

  def counting(starts, target, *args, **kwargs):
    calls.append((target.name, int(target.train["label"].shape[0])))
    return original(starts, target, *args, **kwargs)

  monkeypatch.setattr(task_transfer, "fine_tune_bank", counting)
  again = expert_selection.run(config, str(tmp_path))
  assert calls == [(records[-1]["target"], records[-1]["num_train"])]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == [r["kind"] for r in records]
  for key, value in records[-1].items():
    if isinstance(value, float):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    elif isinstance(value, list) and value and isinstance(value[0], float):
      np.testing.assert_allclose(resumed[-1][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    else:
      assert resumed[-1][key] == value, key
  assert again.keys() == summary.keys()
  np.testing.assert_allclose([again[k] for k in summary], list(summary.values()), rtol=1e-4,
                             atol=1e-6)
