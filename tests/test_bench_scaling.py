"""Tests of the scaling sweep (infojax.bench.scaling, scripts/bench_scaling.py) at tiny sizes."""

import json
import os
import subprocess
import sys

import pytest

from infojax.bench import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "num_classes": 4,
    "workloads": {
        "mlp": {"kind": "mlp", "sizes": [12, 8, 8, 4], "activation": "relu", "batch": 8},
        "cnn": {"kind": "cnn", "input_hw": 6, "in_channels": 2, "channels": [3, 4, 4],
                "strides": [1, 2, 2], "kernel": 3, "padding": 1, "activation": "relu",
                "batch": 4},
    },
}


def _spec(name):
  return dict(TINY["workloads"][name], name=name, num_classes=TINY["num_classes"])


@pytest.mark.parametrize("num_devices, names", [(1, ("mlp",)), (2, ("mlp", "cnn"))])
def test_sharded_programs_match_one_device_and_report_throughput(num_devices, names):
  result = scaling.measure_devices([_spec(name) for name in names], num_devices=num_devices,
                                   repetitions=1, time_budget_s=0.1)
  rows = {(r["workload"], r["quantity"]): r for r in result["rows"]}
  assert set(rows) == {(name, q) for name in names for q in scaling.QUANTITIES}
  for (name, quantity), row in rows.items():
    assert row["devices"] == num_devices and row["batch"] == TINY["workloads"][name]["batch"]
    assert row["throughput"] > 0 and row["median_ms"] > 0 and row["calls"] >= 1
    # The diagonals are sums over examples (float32 rounding only); the step's update theta' - theta
    # also carries the rounding of theta' itself, relative to a small update.
    bound = 1e-4 if quantity == "train_step" else 1e-5
    assert row["rel_err"] <= bound, (name, quantity, row["rel_err"])
  assert set(result["workloads"]) == set(names)


def test_device_counts_batches_and_speed_up():
  # pylint: disable=protected-access
  assert scaling.default_device_counts("cpu", 1) == (1, 2, 4, 8)
  assert scaling.default_device_counts("gpu", 1) == (1,)
  assert scaling.default_device_counts("gpu", 6) == (1, 2, 4)
  sized, notes = scaling._sized([_spec("mlp"), dict(_spec("cnn"), batch=5)], 4)
  assert [s["batch"] for s in sized] == [8, 8] and len(notes) == 1 and "`cnn`" in notes[0]
  rows = [{"workload": "mlp", "quantity": "true", "devices": d, "median_ms": ms}
          for d, ms in ((1, 4.0), (2, 2.0))]
  speed_ups = [r["speed_up"] for r in scaling._with_speed_up(rows)]
  assert speed_ups == [1.0, 2.0]
  env = scaling._child_env(2, "cpu")
  assert env["XLA_FLAGS"].count("--xla_force_host_platform_device_count") == 1
  assert "--xla_force_host_platform_device_count=2" in env["XLA_FLAGS"]


@pytest.mark.slow
def test_script_writes_the_table_for_each_device_count(tmp_path):
  workloads_json = tmp_path / "workloads.json"
  workloads_json.write_text(json.dumps(TINY))
  out = tmp_path / "SCALING.md"
  command = [sys.executable, os.path.join(ROOT, "scripts", "bench_scaling.py"), "--devices=1,2",
             f"--workloads_json={workloads_json}", "--repetitions=1", "--time_budget_s=0.1",
             f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT,
                          check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  text = out.read_text()
  assert "virtual CPU devices share" in text
  table = [line for line in text.splitlines() if line.startswith(("| mlp |", "| cnn |"))]
  assert len(table) == 2 * len(scaling.QUANTITIES) * 2
  saved = json.loads((tmp_path / "SCALING.json").read_text())
  assert [(r["workload"], r["quantity"], r["devices"]) for r in saved["rows"][:2]] == [
      ("mlp", "empirical", 1), ("mlp", "empirical", 2)]
  assert all(r["speed_up"] > 0 and r["throughput"] > 0 for r in saved["rows"])
  assert max(r["rel_err"] for r in saved["rows"] if r["quantity"] != "train_step") <= 1e-5
  assert saved["machine"]["cores"] >= 1 and saved["versions"]["jax"]
