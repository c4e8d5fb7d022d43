"""Tests for the SGD-path benchmark (infojax.bench.dynamics): rows, ratios, markdown section."""

import numpy as np

from infojax.bench import dynamics
from infojax.bench import report


def test_rows_ratios_and_section_replacement(tmp_path):
  config = dynamics.Config(workloads=("mlp_small",), num_steps=8, num_seeds=2, repetitions=1,
                           time_budget_s=1.0)
  rows = dynamics.run(config)
  assert [row.name for row in rows] == list(dynamics.ROWS)
  by_name = {row.name: row for row in rows}
  assert by_name["sgd_path"].speedup_of_sgd_path == 1.0
  for row in rows[1:]:
    np.testing.assert_allclose(
        row.steps_per_s, (2 if row.name == "sgd_path_vmap16" else 1) * 8 / row.median_ms * 1e3)
    assert row.step_in_gradients > 0
  path = tmp_path / "RESULTS.md"
  path.write_text("# Results\n\nkept text\n")
  dynamics.write(rows, config, str(path), command="bench")
  dynamics.write(rows, config, str(path), command="bench again")
  text = path.read_text()
  assert text.startswith("# Results\n\nkept text\n") and text.count(dynamics.BEGIN) == 1
  assert "bench again" in text and "| mlp_small | sgd_path |" in text
  # The Fisher benchmark keeps the section when it rewrites the file.
  assert (dynamics.BEGIN, dynamics.END) in report.PRESERVED_SECTIONS
