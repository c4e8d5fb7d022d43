"""Tests of the Fisher benchmark (infojax.bench, scripts/bench_fisher.py) at tiny sizes."""

import json
import os
import subprocess
import sys

import jax
import pytest

from infojax.bench import fisher
from infojax.bench import report
from infojax.bench import workloads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "num_classes": 4,
    "workloads": {
        "mlp": {"kind": "mlp", "sizes": [12, 8, 8, 4], "activation": "relu", "batch": 6},
        "cnn": {"kind": "cnn", "input_hw": 6, "in_channels": 2, "channels": [3, 4, 4],
                "strides": [1, 2, 2], "kernel": 3, "padding": 1, "activation": "relu",
                "batch": 5},
    },
}
ENGINE_QUANTITIES = ("empirical", "true", "mc", "trace", "norms")


@pytest.fixture
def tiny_json(tmp_path):
  path = tmp_path / "workloads.json"
  path.write_text(json.dumps(TINY))
  return str(path)


def test_reference_workloads_come_from_the_file_and_fall_back_to_the_embedded_copy(
    tiny_json, tmp_path):
  specs, source = workloads.load_reference_workloads(tiny_json)
  assert specs["mlp"]["sizes"] == [12, 8, 8, 4] and specs["mlp"]["num_classes"] == 4
  assert source == os.path.abspath(tiny_json)
  specs, source = workloads.load_reference_workloads(str(tmp_path / "absent.json"))
  assert specs["mlp"]["sizes"] == [784, 512, 512, 10] and specs["cnn"]["batch"] == 64
  assert "embedded" in source


def test_embedded_workloads_match_the_shared_file():
  path = os.path.join(ROOT, "..", "shared", "bench", "workloads.json")
  if not os.path.exists(path):
    pytest.skip("shared/bench/workloads.json is not next to the checkout")
  with open(path) as f:
    shared = json.load(f)["workloads"]
  assert shared == workloads.REFERENCE_WORKLOADS


def test_plan_scales_batches_and_names_the_sweep():
  reference, _ = workloads.load_reference_workloads("")
  specs = workloads.plan(("mlp", "sweep", "resnet18"), reference, batch_scale=2.0, cifar_batch=4)
  by_name = {s["name"]: s for s in specs}
  assert by_name["mlp"]["batch"] == 512 and by_name["mlp"]["role"] == "reference"
  assert by_name["mlp_b64_c100"]["sizes"][-1] == 100 and by_name["mlp_b64_c100"]["batch"] == 128
  assert by_name["resnet18"]["norm"] == "none" and by_name["resnet18"]["batch"] == 8
  with pytest.raises(ValueError, match="unknown workload group"):
    workloads.plan(("vgg",), reference)


def _row(workload, quantity, implementation, ratio, **kwargs):
  return report.Row(workload, quantity, implementation, "jax", ratio, 1, ratio=ratio, **kwargs)


def test_targets_are_met_or_missed_by_the_default_method_rows():
  rows = [
      _row("mlp", "empirical", "infojax_factored", 1.04, default_method=True, rel_err=2e-7,
           process_peak_ratio=1.2),
      _row("mlp", "empirical", "infojax_vmap", 0.5, rel_err=2e-7),    # not the default: ignored
      _row("mlp", "true", "infojax_factored", 3.5, default_method=True, rel_err=2e-7,
           process_peak_ratio=1.6),
      _row("mlp", "mc", "infojax_factored", 1.0, default_method=True, rel_err=3e-5),
      _row("mlp", "true", "backpack_diagggn_exact", 4.0, rel_err=1e-7),
  ]
  by_key = {(t["kind"], t["quantity"]): t for t in report.targets(rows)}
  assert by_key[("time", "empirical")]["met"]
  assert not by_key[("time", "true")]["met"]
  assert by_key[("time", "true")]["best_peer_this_run"] == "backpack_diagggn_exact 4.00x"
  assert not by_key[("time", "mc")]["met"]     # fast, but its error exceeds 1e-5
  assert by_key[("memory", "empirical")]["met"]
  assert not by_key[("memory", "true")]["met"]
  assert ("time", "empirical") in by_key and len([t for t in by_key if t[0] == "time"]) == 3


def test_benchmark_rows_are_exact_and_results_are_written(tiny_json, tmp_path):
  config = fisher.Config(workloads=("mlp",), workloads_json=tiny_json, peers=("jax",),
                         repetitions=2, time_budget_s=0.2, process_memory=False)
  messages = []
  result = fisher.run(config, log=messages.append)
  rows = {(r.quantity, r.implementation): r for r in result.rows}
  assert ("G", "jax_grad") in rows and rows[("G", "jax_grad")].ratio == pytest.approx(1.0)
  for method in ("factored", "vmap"):
    for quantity in ENGINE_QUANTITIES:
      row = rows[(quantity, f"infojax_{method}")]
      assert row.rel_err < 1e-5, (quantity, method, row.rel_err)
      assert row.reference.startswith("brute_force")
      assert row.median_ms > 0 and row.calls >= 1 and row.compile_s > 0
      assert row.default_method == (method == "factored")
  assert rows[("empirical", "jax_vmap_grad")].rel_err < 1e-5
  assert rows[("G", "jax_grad")].rel_err < 1e-5
  out = tmp_path / "RESULTS.md"
  fisher.write(result, str(out), command="python scripts/bench_fisher.py --test")
  text = out.read_text()
  assert "| mlp | empirical | infojax_factored (auto) |" in text
  assert "## Targets (issue 3)" in text and "--test" in text
  saved = json.loads((tmp_path / "RESULTS.json").read_text())
  assert len(saved["rows"]) == len(result.rows) and saved["machine"]["cores"] >= 1
  assert any(line.startswith("mlp: MLP 12-8-8-4") for line in messages)


@pytest.mark.slow
def test_peers_agree_with_the_float64_reference(tiny_json):
  """Layout conversions and scaling conventions of every installed peer, on both workloads."""
  pytest.importorskip("torch")
  config = fisher.Config(workloads=("mlp", "cnn"), workloads_json=tiny_json, repetitions=1,
                         time_budget_s=0.1, process_memory=False)
  with jax.numpy_rank_promotion("allow"):     # kfac-jax broadcasts implicitly
    result = fisher.run(config)
  peers = [r for r in result.rows if not r.implementation.startswith(("infojax_", "jax_"))]
  assert {r.implementation for r in peers} >= {"torch_grad", "torchfunc_vmap_grad"}
  for row in peers:
    if row.rel_err is None:
      assert row.quantity == "mc" and "own sampled labels" in row.note
    else:
      assert row.rel_err < 1e-5, (row.workload, row.quantity, row.implementation, row.rel_err)
  torch_gradient = [r for r in peers if r.implementation == "torch_grad"]
  assert all(r.ratio == pytest.approx(1.0) for r in torch_gradient)


@pytest.mark.slow
def test_script_runs_end_to_end_with_memory_probes(tiny_json, tmp_path):
  out = tmp_path / "RESULTS.md"
  command = [sys.executable, os.path.join(ROOT, "scripts", "bench_fisher.py"), "--workloads=cnn",
             f"--workloads_json={tiny_json}", "--peers=jax", "--repetitions=1",
             f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT,
                          check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  saved = json.loads((tmp_path / "RESULTS.json").read_text())
  rows = {(r["quantity"], r["implementation"]): r for r in saved["rows"]}
  assert rows[("G", "jax_grad")]["process_peak_mb"] > 0
  assert rows[("empirical", "infojax_factored")]["process_peak_ratio"] > 0
  assert any(t["kind"] == "memory" for t in saved["targets"])


@pytest.mark.slow
def test_script_runs_unchanged_on_two_processes(tiny_json, tmp_path):
  """The benchmark as a 2-process job: every process measures its devices, process 0 writes."""
  sys.path.insert(0, os.path.dirname(__file__))
  import _multiprocess  # pylint: disable=import-outside-toplevel
  out = tmp_path / "RESULTS.md"
  command = [sys.executable, os.path.join(ROOT, "scripts", "bench_fisher.py"), "--workloads=mlp",
             f"--workloads_json={tiny_json}", "--peers=jax", "--repetitions=1",
             "--no_process_memory", f"--out={out}"]
  outputs = _multiprocess.run_processes(command, num_processes=2, devices_per_process=1,
                                        settings="env", timeout=600)
  assert "process 0 of 2" in outputs[0] and "process 1 of 2" in outputs[1]
  assert "wrote" in outputs[0] and "wrote" not in outputs[1]
  saved = json.loads((tmp_path / "RESULTS.json").read_text())
  errors = [r["rel_err"] for r in saved["rows"] if r["rel_err"] is not None]
  assert errors and max(errors) <= 1e-5
