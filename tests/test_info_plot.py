"""Tests for the main job: experiments/info_plot.py with its config and script."""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from infojax import io
from infojax.experiments import info_plot

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCRIPT = os.path.join(_ROOT, "scripts", "info_plot.py")
_CONFIG = os.path.join(_ROOT, "configs", "info_plot.py")


def _get_config(arg=None):
  spec = importlib.util.spec_from_file_location("info_plot_config", _CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_balanced_probe_indices():
  labels = np.repeat(np.arange(4), [5, 9, 3, 7])
  indices = info_plot.balanced_probe_indices(labels, per_class=3, num_classes=4, seed=0)
  assert indices.shape == (12,) and len(set(indices.tolist())) == 12
  np.testing.assert_array_equal(labels[indices], np.repeat(np.arange(4), 3))
  np.testing.assert_array_equal(
      indices, info_plot.balanced_probe_indices(labels, per_class=3, num_classes=4, seed=0))
  draws = {tuple(info_plot.balanced_probe_indices(labels, per_class=3, num_classes=4, seed=s))
           for s in range(5)}
  assert len(draws) > 1
  with pytest.raises(ValueError, match="class 2 has 3 examples"):
    info_plot.balanced_probe_indices(labels, per_class=4, num_classes=4, seed=0)
  with pytest.raises(ValueError, match="per_class"):
    info_plot.balanced_probe_indices(labels, per_class=0, num_classes=4, seed=0)


def test_fisher_trace_hook_matches_the_closed_form_for_softmax_regression():
  """For logits W^T x + b: empirical trace = mean ||p - e_y||^2 (||x||^2 + 1), true trace =
  mean (1 - sum_k p_k^2)(||x||^2 + 1)."""
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(12, 5)).astype(np.float32)
  labels = rng.integers(0, 3, size=12).astype(np.int32)
  params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=3), jnp.float32)}

  def apply_fn(params, x):
    return x @ params["w"] + params["b"][None, :]

  hook = info_plot.fisher_trace_hook(apply_fn, (inputs, labels))
  state = type("State", (), {"params": params})()
  traces = hook(3, state)
  logits = inputs.astype(np.float64) @ np.asarray(params["w"], np.float64) + np.asarray(params["b"])
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  scale = (inputs.astype(np.float64) ** 2).sum(-1) + 1.0
  empirical = np.mean(((probs - np.eye(3)[labels]) ** 2).sum(-1) * scale)
  true = np.mean((1.0 - (probs ** 2).sum(-1)) * scale)
  assert set(traces) == {"fisher_trace_empirical", "fisher_trace_true"}
  assert float(traces["fisher_trace_empirical"]) == pytest.approx(empirical, rel=1e-5)
  assert float(traces["fisher_trace_true"]) == pytest.approx(true, rel=1e-5)
  # Per layer: the kernel's block carries the ||x||^2 part, the bias's the 1.
  layers = info_plot.fisher_trace_hook(apply_fn, (inputs, labels), kinds=("true",),
                                       per_layer=True)(0, state)
  assert set(layers) == {"fisher_trace_true", "fisher_trace_true/w", "fisher_trace_true/b"}
  squared = 1.0 - (probs ** 2).sum(-1)
  assert float(layers["fisher_trace_true/w"]) == pytest.approx(
      np.mean(squared * (scale - 1.0)), rel=1e-5)
  assert float(layers["fisher_trace_true/b"]) == pytest.approx(np.mean(squared), rel=1e-5)
  assert float(layers["fisher_trace_true"]) == pytest.approx(true, rel=1e-5)
  with pytest.raises(ValueError, match="kinds"):
    info_plot.fisher_trace_hook(apply_fn, (inputs, labels), kinds=("mc",))


def test_smoke_run_of_the_script_writes_metrics_plot_and_summary(tmp_path):
  config = _get_config("smoke")
  workdir = tmp_path / "run"
  process = subprocess.run(
      [sys.executable, _SCRIPT, f"--config={_CONFIG}:smoke", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=600)
  assert process.returncode == 0, process.stderr[-3000:]
  records = io.read_metrics(str(workdir / "metrics.jsonl"))
  assert [r["epoch"] for r in records] == list(range(config.num_epochs + 1))
  for record in records:
    for kind in ("empirical", "true"):
      value = record[f"fisher_trace_{kind}"]
      assert math.isfinite(value) and value > 0
      # The per-layer traces (the config's default) of the model's layers sum to the total.
      layers = [k for k in record if k.startswith(f"fisher_trace_{kind}/")]
      assert len(layers) >= 3
      assert sum(record[k] for k in layers) == pytest.approx(value, rel=1e-5)
    assert 0 <= record["test_accuracy"] <= 1
  for record in records[1:]:
    assert {"train_loss", "train_accuracy", "test_loss"} <= set(record)
  # Better than chance after the smoke run's few epochs.
  assert records[-1]["test_accuracy"] > 0.2
  # The summary line printed by the script reports the last record and the peak.
  assert process.stdout.startswith(f"info_plot: epochs={config.num_epochs} ")
  assert f"test_accuracy={records[-1]['test_accuracy']:.4g}" in process.stdout
  peak = max(r["fisher_trace_true"] for r in records)
  assert f"fisher_trace_true_peak={peak:.4g}" in process.stdout
  with open(workdir / "info_plot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  page = (workdir / "index.html").read_text()
  assert "src='info_plot.png'" in page and f"{len(records)} records" in page
  text = (workdir / "summary.txt").read_text()
  assert "true Fisher trace" in text and "test accuracy" in text
  with open(workdir / "config.json") as f:
    assert json.load(f)["num_epochs"] == config.num_epochs
  # A different config is refused in a workdir that holds a run.
  config.optimizer.lr = 1.0
  with pytest.raises(ValueError, match=r"different config \(optimizer\.lr"):
    info_plot.run(config, str(workdir))


def _launch(workdir, *overrides):
  command = [sys.executable, _SCRIPT, f"--config={_CONFIG}:smoke", f"--workdir={workdir}",
             *overrides]
  return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _lines(path):
  try:
    with open(path) as f:
      return f.read().count("\n")
  except FileNotFoundError:
    return 0


@pytest.mark.slow  # three concurrent script runs, about a minute on 2 cores
def test_script_runs_and_a_killed_script_resumes_to_the_same_metrics(tmp_path):
  """The script end to end; SIGKILL at an arbitrary point mid-run, then the same command again."""
  overrides = ["--config.num_epochs=12", "--config.fisher.probe_per_class=10"]
  reference = _launch(tmp_path / "reference", *overrides)
  killed = _launch(tmp_path / "killed", *overrides)
  metrics = tmp_path / "killed" / "metrics.jsonl"
  deadline = time.time() + 240
  while _lines(metrics) < 4 and killed.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert killed.poll() is None, "the run finished before it could be killed"
  killed.send_signal(signal.SIGKILL)
  killed.wait(timeout=60)
  assert 4 <= _lines(metrics) < 13

  stdout, stderr = reference.communicate(timeout=300)
  assert reference.returncode == 0, stderr[-3000:]
  assert stdout.startswith("info_plot: epochs=12 ") and "test_accuracy=" in stdout
  for name in ("config.json", "metrics.jsonl", "info_plot.png", "summary.txt"):
    assert (tmp_path / "reference" / name).exists(), name

  resumed = _launch(tmp_path / "killed", *overrides)
  stdout_resumed, stderr = resumed.communicate(timeout=300)
  assert resumed.returncode == 0, stderr[-3000:]
  expected = (tmp_path / "reference" / "metrics.jsonl").read_text()
  assert metrics.read_text() == expected
  assert stdout_resumed.split(" (outputs in")[0] == stdout.split(" (outputs in")[0]
