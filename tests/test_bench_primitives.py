"""Tests of the primitives benchmark (infojax.bench.primitives, scripts/bench_primitives.py) and of
RESULTS.md keeping its section when the Fisher benchmark rewrites the file."""

import json

import pytest

from infojax.bench import primitives
from infojax.bench import report
from infojax.bench import workloads

TINY = {
    "num_classes": 3,
    "workloads": {
        "mlp": {"kind": "mlp", "sizes": [6, 5, 3], "activation": "relu", "batch": 4},
        "cnn": {"kind": "cnn", "input_hw": 4, "in_channels": 1, "channels": [2, 2, 2],
                "strides": [1, 2, 2], "kernel": 3, "padding": 1, "activation": "relu",
                "batch": 3},
    },
}
BEFORE = "# Fisher benchmark results\n\nSome table.\n\n## Notes\n\n- a note.\n"


@pytest.fixture
def tiny_json(tmp_path):
  path = tmp_path / "workloads.json"
  path.write_text(json.dumps(TINY))
  return str(path)


def _section(body):
  return f"{report.PRIMITIVES_BEGIN}\n## Curvature primitives\n\n{body}\n{report.PRIMITIVES_END}"


def test_replace_section_appends_then_replaces_and_keeps_the_rest():
  once = report.replace_section(BEFORE, _section("first"))
  assert once.startswith(BEFORE.rstrip() + "\n\n" + report.PRIMITIVES_BEGIN)
  assert report.marked_section(once) == _section("first")
  middle = once + "\n## Written after the section\n"
  twice = report.replace_section(middle, _section("second"))
  assert twice == middle.replace(_section("first"), _section("second"))
  assert "first" not in twice and twice.count(report.PRIMITIVES_BEGIN) == 1
  assert report.replace_section("", _section("x")) == _section("x") + "\n"
  with pytest.raises(ValueError, match="no"):
    report.replace_section(BEFORE + report.PRIMITIVES_BEGIN + "\nunterminated", _section("x"))
  with pytest.raises(ValueError, match="must start"):
    report.replace_section(BEFORE, "no markers")


def test_fisher_report_keeps_the_primitives_section(tmp_path):
  path = tmp_path / "RESULTS.md"
  path.write_text(report.replace_section(BEFORE, _section("kept | table")))
  rows = [report.Row("mlp", "G", "jax_grad", "jax", 1.0, 3, ratio=1.0)]
  machine = {"date": "today", "cpu": "cpu", "cores": 2, "backend": "cpu", "devices": "1 x cpu",
             "python": "3"}
  kwargs = dict(command="python scripts/bench_fisher.py", machine=machine, versions={},
                workloads={"mlp": "an MLP"}, notes=["n"], memory_method=None)
  report.write_results(str(path), rows, **kwargs)
  text = path.read_text()
  assert text.startswith("# Fisher benchmark results") and "| mlp | G | jax_grad |" in text
  assert "Some table." not in text                      # the Fisher part itself is rewritten
  assert report.marked_section(text) == _section("kept | table")
  assert text.rstrip().endswith(report.PRIMITIVES_END)
  report.write_results(str(path), rows, **kwargs)       # idempotent: still exactly one section
  assert path.read_text() == text
  path.unlink()                                         # no earlier file: no section
  report.write_results(str(path), rows, **kwargs)
  assert report.PRIMITIVES_BEGIN not in path.read_text()


def test_smoke_run_writes_rows_accuracy_and_keeps_results_md(tiny_json, tmp_path):
  config = primitives.Config(
      workloads=("mlp", "cnn"), workloads_json=tiny_json, repetitions=2, time_budget_s=0.1,
      hutchinson_probes=3, top_k=3, lanczos_iterations=16, slq_probes=2, slq_iterations=4,
      exact_hessian_limit=100, jacobian_limit=1000, accuracy_sizes=(6, 5, 3), accuracy_batch=6)
  messages = []
  result = primitives.run(config, log=messages.append)
  rows = {(r.workload, r.quantity): r for r in result.rows}
  for workload in ("mlp", "cnn"):
    assert rows[(workload, "G")].ratio == pytest.approx(1.0)
    for quantity in primitives.QUANTITIES:
      row = rows[(workload, quantity)]
      if row.median_ms is None:
        assert row.note.startswith("skipped")
        continue
      assert row.median_ms > 0 and row.calls >= 1 and row.ratio > 0, (workload, quantity)
      assert row.compile_s > 0
      assert row.run_peak_ratio is None or row.run_peak_ratio >= 0
  # The 6-5-3 MLP has 53 parameters, N x C x P = 4 x 3 x 53 = 636: both within the limits.
  assert rows[("mlp", "hessian_diagonal_exact")].median_ms is not None
  assert rows[("mlp", "per_example_jacobians")].median_ms is not None
  mlp = workloads.build(dict(TINY["workloads"]["mlp"], name="mlp", num_classes=3))
  specs = primitives.row_specs(mlp, primitives.Config(exact_hessian_limit=52, jacobian_limit=635))
  assert [s.quantity for s in specs] == list(primitives.QUANTITIES)
  skipped = {s.quantity: s for s in specs if s.skip}
  assert set(skipped) == {"hessian_diagonal_exact", "per_example_jacobians"}
  assert skipped["hessian_diagonal_exact"].fn is None
  assert "P = 53 Hessian-vector products" in skipped["hessian_diagonal_exact"].skip
  assert "N x C x P = 4 x 3 x 53" in skipped["per_example_jacobians"].skip

  eigen = [r for r in result.accuracy if r.quantity.startswith("eigenvalues")]
  # P = 53 and rank <= N (C - 1) = 12: 16 Lanczos steps span the range (then restart after the
  # breakdown), so the float64 runs (16 and P steps) agree with eigh to rounding; float32 to ~1e-6.
  assert len(eigen) == 3 and sum("num_iterations=53" in r.call for r in eigen) == 1
  for r in eigen:
    assert r.rel_err < (1e-4 if "float32" in r.note else 1e-9), (r.call, r.note, r.rel_err)
  assert len(eigen[0].values) == 3 and eigen[0].values == sorted(eigen[0].values, reverse=True)
  exact = [r for r in result.accuracy
           if not r.quantity.startswith(("eigenvalues", "spectral", "hessian_diagonal_hutch"))]
  expected = {"covariance_diagonal", "covariance_trace", "covariance_product",
              "hessian_diagonal_exact", "fvp_true", "hvp", "per_example_jacobians",
              "per_example_vjp", "per_example_jvp"}
  assert {r.quantity for r in exact} == expected
  for r in exact:
    assert r.rel_err < 1e-10, (r.quantity, r.call, r.rel_err)

  path = tmp_path / "RESULTS.md"
  path.write_text(BEFORE)
  primitives.write(result, str(path), command="python scripts/bench_primitives.py --test")
  text = path.read_text()
  assert text.startswith(BEFORE.rstrip() + "\n\n" + report.PRIMITIVES_BEGIN)
  section = report.marked_section(text)
  assert "| mlp | fvp_true |" in section and "| cnn | eigenvalues |" in section
  assert "### Accuracy on a small model" in section and "--test" in section
  table_lines = [line.replace("\\|", "") for line in section.splitlines() if line.startswith("|")]
  assert {line.count("|") for line in table_lines if "rel err" in line or "workload" in line} == {
      6, 13}
  for line in table_lines:             # every row has its header's number of cells
    assert line.count("|") in (6, 13), line
  path.write_text(text + "\n## After\n")
  primitives.write(result, str(path), command="python scripts/bench_primitives.py --again")
  again = path.read_text()
  assert again.startswith(BEFORE.rstrip()) and again.endswith("\n## After\n")
  assert again.count(report.PRIMITIVES_BEGIN) == 1 and "--again" in again and "--test" not in again
  saved = json.loads((tmp_path / "PRIMITIVES.json").read_text())
  assert len(saved["rows"]) == len(result.rows) and len(saved["accuracy"]) == len(result.accuracy)
  assert saved["config"]["lanczos_iterations"] == 16
  assert any(m.startswith("mlp: MLP 6-5-3") for m in messages)
