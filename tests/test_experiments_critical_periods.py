"""Tests for the critical_periods experiment (infojax.experiments.critical_periods)."""

import json
import os

import numpy as np
import pytest

from infojax import train
from infojax.experiments import critical_periods

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _key(record):
  return (record["kind"], record["deficit"], record["sweep"], record["start"], record["stop"],
          record["seed"], record["epoch"])


def test_sweep_runs_and_bad_configs():
  config = _configs.get_config("critical_periods", "smoke")
  runs = critical_periods.sweep_runs(config)
  assert list(zip(runs.sweep, runs.start, runs.stop, runs.end, runs.seed)) == [
      ("removal", 0, 0, 1, 0), ("removal", 0, 0, 1, 1), ("removal", 0, 2, 3, 0),
      ("removal", 0, 2, 3, 1), ("window", 0, 1, 2, 0), ("window", 0, 1, 2, 1)]
  # The paper's (GPU) setting is a valid sweep: 8 removal points and 6 windows inside 300 epochs.
  paper = critical_periods.sweep_runs(_configs.get_config("critical_periods", "cifar10"))
  assert len(paper.seed) == 14 and int(paper.end.max()) == 300
  for field, value, match in [("deficits", ("cataract",), "deficits must be a non-empty subset"),
                              ("removal_epochs", (0, 3), "outside the run"),
                              ("window_onsets", (2,), "outside the run"),
                              ("clean_epochs", 3, "clean_epochs must be")]:
    bad = _configs.get_config("critical_periods", "smoke")
    with bad.unlocked():
      setattr(bad, field, value)
    with pytest.raises(ValueError, match=match):
      critical_periods.run(bad, "/nonexistent/never/written")


def test_smoke_sweep_measures_every_run_equals_runs_alone_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("critical_periods", "smoke")
  summary = critical_periods.run(config, str(tmp_path / "whole"))
  records = _records(tmp_path / "whole")
  runs = critical_periods.sweep_runs(config)
  epochs = [r for r in records if r["kind"] == "epoch"]
  # Every run is measured at epochs 0..end, for every deficit.
  assert len(epochs) == len(config.deficits) * int(np.sum(runs.end + 1))
  finals = [r for r in records if r["kind"] == "final"]
  assert len(finals) == len(config.deficits) * len(runs.seed)
  for record in epochs:
    layers = [k for k in record if k.startswith("fisher_trace_true/")]
    assert len(layers) == 3 and record["fisher_trace_true"] > 0
    assert sum(record[k] for k in layers) == pytest.approx(record["fisher_trace_true"], rel=1e-5)
    assert 0.0 <= record["test_accuracy"] <= 1.0
  # T = 0 is the clean run: the same numbers whichever deficit's sweep it ran in.
  clean = {d: [r["test_accuracy"] for r in epochs if r["deficit"] == d and r["stop"] == 0]
           for d in config.deficits}
  assert clean["blur"] == clean["label_permutation"]
  # A deficit changes the run while it is on (both 2-epoch removal runs differ from clean).
  for deficit in config.deficits:
    run = [r["fisher_trace_true"] for r in epochs if r["deficit"] == deficit
           and r["stop"] == 2 and r["seed"] == 0 and r["epoch"] == 1]
    base = [r["fisher_trace_true"] for r in epochs if r["deficit"] == deficit
            and r["stop"] == 0 and r["seed"] == 0 and r["epoch"] == 1]
    assert run != base
  assert set(summary) >= {"clean_accuracy", "blur_removal_drop", "blur_lasting"}
  with open(tmp_path / "whole" / critical_periods.PLOT_FILE, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "critical period" in (tmp_path / "whole" / "summary.txt").read_text()
  page = (tmp_path / "whole" / "index.html").read_text()   # the run's page, for a browser
  assert f"src='{critical_periods.PLOT_FILE}'" in page and "critical period" in page

  # Kill the sweep at its second checkpoint of the second deficit; the rerun resumes there (it
  # does not retrain the first deficit) and ends with exactly the uninterrupted records.
  saves, trained = [], []
  original_save, original_epoch = train.Checkpointer.save, critical_periods._make_train_epoch

  def killing_save(self, epoch, state):
    saves.append((self.directory, epoch))
    original_save(self, epoch, state)
    if len(saves) == 5:
      raise KeyboardInterrupt

  monkeypatch.setattr(train.Checkpointer, "save", killing_save)
  with pytest.raises(KeyboardInterrupt):
    critical_periods.run(config, str(tmp_path / "killed"))
  assert saves[-1][0].endswith("label_permutation") and saves[-1][1] == 2
  monkeypatch.setattr(train.Checkpointer, "save", original_save)

  def counting(apply_fn, deficit, *args):
    trained.append(deficit.kind)
    return original_epoch(apply_fn, deficit, *args)

  monkeypatch.setattr(critical_periods, "_make_train_epoch", counting)
  critical_periods.run(config, str(tmp_path / "killed"))
  assert trained == ["label_permutation"]
  resumed = _records(tmp_path / "killed")
  assert sorted(map(_key, resumed)) == sorted(map(_key, records))
  by_key = {_key(r): r for r in records}
  for record in resumed:
    assert record == by_key[_key(record)]

  # One run alone (its own one-run program) equals the same run in the vmapped sweep.
  with config.unlocked():
    config.deficits = ("blur",)
    config.removal_epochs = (2,)
    config.window_onsets = ()
    config.seeds = (1,)
  critical_periods.run(config, str(tmp_path / "alone"))
  alone = [r for r in _records(tmp_path / "alone") if r["kind"] == "epoch"]
  swept = [r for r in epochs if r["deficit"] == "blur" and r["sweep"] == "removal"
           and r["stop"] == 2 and r["seed"] == 1]
  assert [r["epoch"] for r in alone] == [r["epoch"] for r in swept] == [0, 1, 2, 3]
  for a, s in zip(alone, swept):
    for name in a:
      if name.startswith(("fisher_trace", "test_accuracy", "train_loss")):
        assert a[name] == pytest.approx(s[name], rel=1e-4, abs=1e-6), name
