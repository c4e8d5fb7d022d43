"""Tests for the IB-curve benchmark (infojax.bench.bottleneck): rows, ratios, markdown section."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax.activations import bottleneck as ib
from infojax.bench import bottleneck
from infojax.bench import report


def test_numpy_update_is_the_library_update(x64):
  config = bottleneck.Config(num_x=6, num_y=3, num_clusters=4)
  p_xy = bottleneck.joint(config)
  encoder = np.random.default_rng(1).dirichlet(np.ones(4), 6)
  state = ib.init(jnp.asarray(p_xy), num_clusters=4, key=None, p_t_given_x=jnp.asarray(encoder))
  p_x = p_xy.sum(axis=1)
  p_y_given_x = p_xy / p_x[:, None]
  negative_entropy = np.sum(p_y_given_x * np.log(p_y_given_x), axis=1)
  expected = jax.jit(ib.update)(state, jnp.asarray(p_xy), 3.0).log_p_t_given_x
  np.testing.assert_allclose(
      bottleneck.numpy_update(np.asarray(state.log_p_t_given_x), p_x, p_y_given_x,
                              negative_entropy, 3.0), expected, atol=1e-12)


def test_rows_ratios_and_section_replacement(tmp_path):
  # The annealed row is left out to save its compilation (about 5 s); it counts 2 solves a beta.
  config = bottleneck.Config(rows=("ib_curve_vmap", "jit_step_loop"), num_x=8, num_y=3,
                             num_clusters=2, num_betas=4, num_iterations=5, repetitions=1,
                             time_budget_s=1.0)
  rows = bottleneck.run(config)
  assert [row.name for row in rows] == ["update_step", "ib_curve_vmap", "jit_step_loop",
                                        "numpy_loop"]
  by_name = {row.name: row for row in rows}
  assert by_name["numpy_loop"].speedup_over_numpy == 1.0
  assert by_name["update_step"].updates == 4 and by_name["numpy_loop"].updates == 20
  assert by_name["ib_curve_vmap"].updates == 20 and by_name["jit_step_loop"].updates == 20
  assert by_name["update_step"].speedup_over_numpy is None      # one step, not a curve
  for row in rows[1:]:
    np.testing.assert_allclose(row.speedup_over_numpy,
                               by_name["numpy_loop"].median_ms / row.median_ms)
    np.testing.assert_allclose(row.update_in_steps, row.median_ms / (row.updates / 4)
                               / by_name["update_step"].median_ms)
  assert by_name["ib_curve_vmap"].compile_s > 0 and by_name["numpy_loop"].compile_s is None
  path = tmp_path / "RESULTS.md"
  path.write_text("# Results\n\nkept text\n")
  bottleneck.write(rows, config, str(path), command="bench")
  bottleneck.write(rows, config, str(path), command="bench again")
  text = path.read_text()
  assert text.startswith("# Results\n\nkept text\n") and text.count(bottleneck.BEGIN) == 1
  assert "bench again" in text and "| ib_curve_vmap |" in text
  # The Fisher benchmark keeps the section when it rewrites the file.
  assert (bottleneck.BEGIN, bottleneck.END) in report.PRESERVED_SECTIONS
  with pytest.raises(ValueError, match="rows must be among"):
    bottleneck.run(bottleneck.Config(rows=("ib_curve_vmapped",)))
