"""Smoke test of the Fisher benchmark at tiny sizes (JAX rows only)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_runs_end_to_end_and_writes_results(tmp_path):
  out = tmp_path / "RESULTS.md"
  command = [sys.executable, os.path.join(ROOT, "scripts", "bench_fisher.py"),
             "--workloads=cnn", "--batch_scale=0.0625", "--repetitions=2", "--no_peers",
             f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  text = out.read_text()
  assert "| cnn | G | jax_grad |" in text
  for quantity in ("empirical", "true", "mc", "trace", "norms"):
    rows = [line for line in text.splitlines()
            if line.startswith(f"| cnn | {quantity} | infojax_auto |")]
    assert len(rows) == 1, quantity
    rel_err = float(rows[0].split("|")[-2])
    assert rel_err < 1e-5, (quantity, rel_err)
  assert (tmp_path / "RESULTS.json").exists()
