"""Critical periods in a two-pathway deep linear network: final imbalance against deficit onset.

Kleinman, Achille & Soatto, "Critical Learning Periods Emerge Even in Deep Linear Networks" (ICLR
2024; science.md §1.5, §15 B.20; the authors' code mjkleinman/CriticalPeriodDeepLinearNets,
``multipath/``). Two pathways of ``D`` weight matrices read the same one-hot item of Saxe's 8-item,
15-feature hierarchy (`infojax.dynamics.deep_linear.hierarchical_task`) and add their outputs; both
start aligned and balanced with the same small per-mode strengths (`multipath_init`), and
full-batch gradient descent on the summed squared error (`simulate_multipath`) runs for
``num_steps`` steps. The deficit gates pathway b for ``deficit_length`` steps from an onset: its
output still counts, it receives no gradient, so pathway a learns alone. For each depth, seed
and onset, plus a run without deficit, the final "imbalance" ``sum_alpha (K_a - K_b) / sum_alpha
(K_a + K_b)`` of the pathways' mode strengths (`pathway_imbalance`) and the final loss are
measured; every depth's sweep (seeds x onsets) is one compiled program.

The claim tested (B.20): the imbalance is permanent (at the end of the run, long after the
deficit, it exceeds the no-deficit run's by more than ``threshold``) for early onsets at depth >=
2, absent for late onsets, and absent at depth 1. Expected mechanism: outside the deficit both
pathways receive the same error, so gradient flow conserves ``c(K_a) - c(K_b)`` per mode, with
``c(K) = K`` at depth 1, ``ln K`` at depth 2, ``-K^{-(D-2)/D}`` deeper: a deficit while the mode
is still being learnt leaves a lasting split; once it is learnt the error is ~0 and a deficit
changes nothing. At depth 1 the same conservation law holds (``W_a - W_b`` is exactly conserved),
so an early deficit also leaves a permanent split there; the summary reports what is measured.
The paper's "no critical period at depth 1" is shown in its matrix-completion experiment, where a
shallow network's unobserved entries receive no gradient; this experiment does not model that.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"baseline"`` record per depth
and seed, the run without deficit, with the initial and final mode strengths ``(2, k)``; one
``"run"`` record per depth, onset and seed), ``imbalance_vs_onset.png`` and
``summary.txt``. A rerun resumes: a depth whose records are all present is not recomputed; for the
others only missing records are added (the runs are deterministic, so they equal a full run's).
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import io
from infojax.dynamics import deep_linear
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "imbalance_vs_onset.png"
LEARNT_FRACTION = 1e-2  # "learnt": the loss below this fraction of its initial value


def record_key(record: dict) -> tuple:
  """The identity of a metrics record: what a resumed run looks up."""
  return record["kind"], record["depth"], record.get("onset"), record["seed"]


def expected_keys(config, depth: int) -> set:
  """The `record_key` of every record of one depth."""
  seeds = range(config.num_seeds)
  return ({("baseline", depth, None, seed) for seed in seeds}
          | {("run", depth, int(onset), seed) for onset in config.deficit_onsets
             for seed in seeds})


def initial_strengths(key, num_modes: int, *, scale, noise) -> jax.Array:
  """The authors' initial strengths: ``scale (1 + noise xi)`` per mode, ``xi`` standard normal,
  sorted descending, the same for both pathways; shape ``(2, k)``."""
  u0 = -jnp.sort(-scale * (1.0 + noise * jax.random.normal(key, (num_modes,))))
  return jnp.stack([u0, u0])


@functools.partial(jax.jit, static_argnames=("depth", "hidden_dim"))
def _initial_pathways(task, keys, scale, noise, *, depth, hidden_dim):
  """One `deep_linear.multipath_init` per key, stacked; the free rotations are the identity
  columns (the strengths, the loss and the imbalance do not depend on them)."""
  num_modes = task.singular_values.shape[0]

  def init(key):
    u0 = initial_strengths(key, num_modes, scale=scale, noise=noise)
    return deep_linear.multipath_init(task, u0.astype(task.singular_values.dtype), depth=depth,
                                      hidden_dim=hidden_dim)

  return jax.vmap(init)(keys)


def simulate_depth(task, config, depth: int) -> dict:
  """Every seed's run without deficit (window 0) and with a deficit at each onset (windows 1..),
  as one compiled `deep_linear.deficit_sweep`.

  Returns:
    The histories as numpy arrays with leading axes ``(num_seeds, 1 + num_onsets)``.
  """
  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), depth),
                          config.num_seeds)
  pathways = _initial_pathways(task, keys, config.init_scale, config.init_noise, depth=depth,
                               hidden_dim=config.hidden_dim)
  onsets = np.array([0] + [int(t) for t in config.deficit_onsets])
  lengths = np.array([0] + [int(config.deficit_length)] * len(config.deficit_onsets))
  trajectory = deep_linear.deficit_sweep(
      task, pathways, learning_rate=config.learning_rate, num_steps=config.num_steps,
      deficit_onsets=onsets, deficit_lengths=lengths, record_every=config.record_every)
  return {name: np.asarray(value) for name, value in trajectory.history.items()}


def unit_records(task, config, depth: int) -> list:
  """Every record of one depth, in the order a run writes them."""
  history = simulate_depth(task, config, depth)
  imbalance = history["imbalance"][..., -1].astype(np.float64)  # (seeds, 1 + onsets)
  loss = history["loss"].astype(np.float64)  # (seeds, windows, R + 1)
  records = []
  for seed in range(config.num_seeds):
    learnt = np.flatnonzero(loss[seed, 0] <= LEARNT_FRACTION * loss[seed, 0, 0])
    records.append(io.to_json_value({
        "kind": "baseline", "depth": depth, "seed": seed,
        "initial_strength": history["strength"][seed, 0, 0],
        "final_imbalance": imbalance[seed, 0], "final_loss": loss[seed, 0, -1],
        "final_strength": history["strength"][seed, 0, -1],
        "learnt_step": int(history["step"][seed, 0, learnt[0]]) if learnt.size else None}))
  for index, onset in enumerate(config.deficit_onsets, start=1):
    for seed in range(config.num_seeds):
      relative = imbalance[seed, index] - imbalance[seed, 0]
      records.append(io.to_json_value({
          "kind": "run", "depth": depth, "onset": int(onset), "seed": seed,
          "deficit_length": int(config.deficit_length),
          "final_imbalance": imbalance[seed, index], "relative_imbalance": relative,
          "permanent": bool(abs(relative) > config.threshold),
          "final_loss": loss[seed, index, -1],
          "final_strength": history["strength"][seed, index, -1]}))
  return records


def _curves(records, config, depths):
  """Per depth: onsets, mean and std over seeds of the relative imbalance and of the final loss."""
  curves = {}
  for depth in depths:
    runs = [r for r in records if r["kind"] == "run" and r["depth"] == depth]
    onsets = sorted({r["onset"] for r in runs})
    table = {name: np.array([[r[name] for r in runs if r["onset"] == onset] for onset in onsets])
             for name in ("relative_imbalance", "final_loss")}
    curves[depth] = {"onsets": np.array(onsets),
                     **{f"{name}_mean": values.mean(axis=1) for name, values in table.items()},
                     **{f"{name}_std": values.std(axis=1) for name, values in table.items()}}
  return curves


def _plot(path, curves, learnt_steps, config):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 2)
  for depth, curve in curves.items():
    (line, *_) = axes[0].errorbar(curve["onsets"], curve["relative_imbalance_mean"],
                                  yerr=curve["relative_imbalance_std"], marker="o", markersize=3,
                                  capsize=2, label=f"depth {depth}")
    axes[0].axvline(learnt_steps[depth], color=line.get_color(), linestyle=":", alpha=0.7)
    axes[1].errorbar(curve["onsets"], curve["final_loss_mean"], yerr=curve["final_loss_std"],
                     marker="o", markersize=3, capsize=2, label=f"depth {depth}")
  axes[0].axhline(config.threshold, color="gray", linestyle="--",
                  label=f"threshold {config.threshold:g}")
  axes[0].set_ylabel("final imbalance minus no-deficit run's")
  axes[0].set_title("sum(K_a - K_b) / sum(K_a + K_b) at the end\ndotted: the no-deficit run "
                    "has learnt (loss < 1% of initial)", fontsize="small")
  axes[1].set_yscale("log")
  axes[1].set_ylabel("final loss (summed squared error)")
  axes[1].set_title("the task is solved whatever the onset", fontsize="small")
  for axis in axes:
    axis.set_xlabel(f"deficit onset (step; pathway b gated for {config.deficit_length} steps)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle(f"Two-pathway linear network on Saxe's hierarchy: {config.num_steps} GD steps "
                  f"of {config.learning_rate:g}, {config.num_seeds} seeds (mean, std)")
  figure.savefig(path, dpi=120)


def _summarise(records, config, depths):
  curves = _curves(records, config, depths)
  baselines = {d: [r for r in records if r["kind"] == "baseline" and r["depth"] == d]
               for d in depths}
  summary, lines = {}, []
  early, late = min(config.deficit_onsets), max(config.deficit_onsets)
  for depth in depths:
    curve = curves[depth]
    permanent = curve["onsets"][np.abs(curve["relative_imbalance_mean"]) > config.threshold]
    learnt = [b["learnt_step"] for b in baselines[depth]]
    values = {
        "early_imbalance": float(curve["relative_imbalance_mean"][0]),
        "early_imbalance_std": float(curve["relative_imbalance_std"][0]),
        "late_imbalance": float(curve["relative_imbalance_mean"][-1]),
        "last_permanent_onset": float(permanent.max()) if permanent.size else -1.0,
        "baseline_imbalance": float(np.mean([b["final_imbalance"] for b in baselines[depth]])),
        "baseline_learnt_step": (float(np.mean(learnt)) if None not in learnt else float("nan")),
        "max_final_loss": float(np.max([r["final_loss"] for r in records
                                        if r["kind"] == "run" and r["depth"] == depth]))}
    summary.update({f"depth{depth}_{name}": value for name, value in values.items()})
    points = ", ".join(f"{int(t)}: {m:.3f}" for t, m in zip(curve["onsets"],
                                                            curve["relative_imbalance_mean"]))
    lines.append(
        f"depth {depth}: final imbalance minus the no-deficit run's, by onset (mean of "
        f"{config.num_seeds} seeds; largest std {curve['relative_imbalance_std'].max():.2g}): "
        f"{points}. Permanent (> {config.threshold:g}) for onsets up to "
        f"{values['last_permanent_onset']:g}." if permanent.size else
        f"depth {depth}: no onset leaves a permanent imbalance (> {config.threshold:g}); by "
        f"onset: {points}.")
    lines.append(
        f"  no-deficit run: imbalance {values['baseline_imbalance']:.2g}, loss below "
        f"{LEARNT_FRACTION:g} of its initial value from step {values['baseline_learnt_step']:g}; "
        f"largest final loss with a deficit {values['max_final_loss']:.2g}.")
  deep = [d for d in depths if d >= 2]
  threshold = config.threshold
  verdicts = {
      "early_permanent_at_depth_ge2": bool(deep) and all(
          summary[f"depth{d}_early_imbalance"] > threshold for d in deep),
      "late_none": all(abs(summary[f"depth{d}_late_imbalance"]) <= threshold for d in depths),
      "depth1_none": (1 in depths and summary["depth1_last_permanent_onset"] < 0),
      "window_grows_with_depth": all(
          summary[f"depth{a}_last_permanent_onset"] < summary[f"depth{b}_last_permanent_onset"]
          for a, b in zip(depths, depths[1:]))}
  verdicts["claim_reproduces"] = all(verdicts[k] for k in ("early_permanent_at_depth_ge2",
                                                           "late_none", "depth1_none"))
  summary.update(verdicts)
  lines.append(
      "the window closes as the task is learnt: last onset with a permanent imbalance against the "
      "no-deficit run's step of loss < 1% of its initial value, by depth: " + ", ".join(
          f"D={d}: {summary[f'depth{d}_last_permanent_onset']:g} vs "
          f"{summary[f'depth{d}_baseline_learnt_step']:g}" for d in depths) + ".")
  word = {True: "yes", False: "no"}
  lines.append(
      f"criterion: a deficit's effect is permanent when the imbalance at the end of the run "
      f"(step {config.num_steps}) exceeds the same seed's no-deficit run's by more than "
      f"{threshold:g} (mean over seeds).")
  lines.append(
      f"claim (B.20): permanent imbalance for the earliest onset ({early}) at every depth >= 2: "
      f"{word[verdicts['early_permanent_at_depth_ge2']]}; none for the latest onset ({late}): "
      f"{word[verdicts['late_none']]}; none at depth 1: "
      + (word[verdicts["depth1_none"]] if 1 in depths else "not run")
      + f". The claim {'reproduces' if verdicts['claim_reproduces'] else 'does not reproduce'}"
      + ("" if verdicts["claim_reproduces"] or 1 not in depths or verdicts["depth1_none"] else
         " at depth 1: there both pathways receive the same gradient outside the deficit, so "
         "W_a - W_b is conserved and the split made during an early deficit stays (the paper's "
         "depth-1 contrast is from its matrix-completion experiment, not this model)")
      + f". The window of onsets that leave a permanent imbalance grows with depth: "
      f"{word[verdicts['window_grows_with_depth']]}.")
  return summary, lines, curves


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the deficit sweep of every depth; writes metrics, the plot and the summary (process 0).

  Args:
    config: see ``configs/critical_periods_linear.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing), per depth
    ``depth<D>_early_imbalance`` (and ``_std``) and ``_late_imbalance`` (mean over seeds of the
    final imbalance minus the no-deficit run's at the earliest and latest onsets),
    ``_last_permanent_onset`` (-1: none), ``_baseline_imbalance``, ``_baseline_learnt_step``,
    ``_max_final_loss``; and the verdicts ``early_permanent_at_depth_ge2``, ``late_none``,
    ``depth1_none``, ``window_grows_with_depth`` and ``claim_reproduces``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  depths = [int(d) for d in config.depths]
  if not depths or min(depths) < 1:
    raise ValueError(f"config.depths must be positive integers; got {tuple(config.depths)}.")
  if not config.deficit_onsets:
    raise ValueError("config.deficit_onsets must list at least one onset.")
  metrics_path = os.path.join(workdir, METRICS_FILE)
  records = list(io.read_metrics(metrics_path))
  present = {record_key(r) for r in records}
  with jax.enable_x64(bool(config.float64)):
    task = deep_linear.hierarchical_task(jnp.float64 if config.float64 else jnp.float32)
    for depth in depths:
      if expected_keys(config, depth) <= present:
        continue
      new = [r for r in unit_records(task, config, depth) if record_key(r) not in present]
      records.extend(new)
      present.update(record_key(r) for r in new)
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  summary, lines, curves = _summarise(records, config, depths)
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), curves,
        {d: summary[f"depth{d}_baseline_learnt_step"] for d in depths}, config)
  header = (
      f"critical_periods_linear: two pathways of depth {tuple(depths)} (hidden width "
      f"{config.hidden_dim}) on Saxe's 8-item hierarchy, aligned balanced init at "
      f"{config.init_scale:g} (1 + {config.init_noise:g} xi) per mode, shared by the pathways; "
      f"full-batch GD with step {config.learning_rate:g} for {config.num_steps} steps on the "
      f"summed squared error; pathway b gated (no gradient, output kept) for "
      f"{config.deficit_length} steps from each onset {tuple(config.deficit_onsets)}; "
      f"{config.num_seeds} seeds. Imbalance: sum(K_a - K_b) / sum(K_a + K_b) of the pathways' "
      "mode strengths.")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), [header, *lines])
  return summary
