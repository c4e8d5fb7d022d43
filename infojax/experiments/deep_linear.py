"""Learning dynamics of shallow and deep linear networks: mode strengths against time.

Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear
neural networks" (ICLR 2014; science.md §10, §15 A.9). A linear network of ``D`` weight matrices is
trained by full-batch gradient descent (`infojax.dynamics.deep_linear.simulate`) on a task with
whitened inputs and an input-output correlation ``Sigma31 = U diag(s) V^T`` of prescribed singular
values (science.md §10.3: ``n1 = n2 = 8``, ``n3 = 6``, ``s = (3, 2, 1, 0.5, 0, 0)``), and each
mode's strength ``u = (U^T W V)_{aa}`` of the end-to-end map is recorded against ``t / tau =
learning_rate * steps``:

* from the aligned, balanced initialisation of the theory (every mode at ``u0``), against the
  theory: ``u = s (1 - e^{-t/tau}) + u0 e^{-t/tau}`` at depth 1, the sigmoid
  ``u = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)`` at depth 2, and the integrated ODE
  ``tau du/dt = D u^{2 - 2/D} (s - u)`` at depth ``D >= 3``;
* from ``num_random_inits`` small random initialisations (entries i.i.d.
  ``N(0, u0^{2/D} / hidden_dim)``, so the modes start at ``~ +-u0`` in size; vmapped over seeds),
  whose spread is reported.

The claim measured: a shallow network learns every mode with the same time constant ``tau``
(half of ``s`` at ``t ~ tau ln 2``); a deep one learns the stronger modes first, with a learning
time ``~ 1/s`` (``(tau / 2s) ln(s / u0)`` at depth 2) after a plateau.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"trajectory"`` records per
initialisation, depth and recorded time, with every mode; ``"learning_time"`` records per
initialisation, depth, mode with ``s > 0`` and seed: the time to half of ``s``; one ``"run"``
record per initialisation and depth), ``mode_strengths.png``, ``learning_times.png`` and
``summary.txt``. ``"run"`` records of random inits compare them with the aligned theory
(``max_abs_error``), which they need not follow. Each depth (its aligned and random inits) is one
compiled program. A rerun in the same workdir resumes: a depth whose records are all in
``metrics.jsonl`` is not recomputed, and for the others only the missing records are written (the
simulation is deterministic, so they equal what a full run writes).
"""

import math
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
STRENGTHS_PLOT = "mode_strengths.png"
LEARNING_TIMES_PLOT = "learning_times.png"
INITS = ("aligned", "random")


def record_key(record: dict) -> tuple:
  """The identity of a metrics record: what a resumed run looks up."""
  kind = record["kind"]
  if kind == "trajectory":
    return kind, record["init"], record["depth"], record["step"]
  if kind == "learning_time":
    return kind, record["init"], record["depth"], record["mode"], record["seed"]
  return kind, record["init"], record["depth"]


def expected_keys(config, depth: int) -> set:
  """The `record_key` of every record of one depth's runs."""
  steps = range(0, config.num_steps + 1, config.record_every)
  learnt = [mode for mode, value in enumerate(config.singular_values) if value > 0]
  keys = set()
  for init in ("aligned", "random") if config.num_random_inits else ("aligned",):
    seeds = [None] if init == "aligned" else list(range(config.num_random_inits))
    keys |= ({("trajectory", init, depth, step) for step in steps}
             | {("learning_time", init, depth, mode, seed) for mode in learnt for seed in seeds}
             | {("run", init, depth)})
  return keys


def _label(s: float) -> str:
  return f"s{s:g}"


def _theory(config, times, s, depth):
  return np.asarray(deep_linear.predicted_mode_strength(
      jnp.asarray(times), jnp.asarray(s), config.u0, depth=depth,
      substeps=config.ode_substeps))


def _theory_half_time(config, times, s, depth, theory):
  """The theory's time to reach s / 2: closed forms at depths 1 and 2, else the ODE's crossing on
  the recorded grid."""
  learnt = s > 0
  if depth <= 2:
    return np.asarray(deep_linear.learning_time(jnp.asarray(s[learnt]), config.u0,
                                                jnp.asarray(s[learnt] / 2), depth=depth))
  return np.asarray(deep_linear.crossing_time(jnp.asarray(times),
                                              jnp.asarray(theory[:, learnt]),
                                              jnp.asarray(s[learnt] / 2)))


def simulate_depth(task, config, depth: int) -> dict:
  """Gradient descent at one depth from the aligned init (row 0) and the random inits (rows 1..),
  as one compiled program (the initialisations and a vmapped `deep_linear.simulate`).

  Returns:
    The histories as numpy arrays with a leading axis of ``1 + num_random_inits`` runs.
  """
  scale = config.u0 ** (1.0 / depth) / math.sqrt(config.hidden_dim)
  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), depth),
                          config.num_random_inits)

  def simulate_all(task, keys):
    aligned = deep_linear.balanced_init(task, depth=depth, hidden_dim=config.hidden_dim,
                                        u0=config.u0)
    weights = tuple(a[None] for a in aligned)
    if config.num_random_inits:
      random = jax.vmap(lambda key: deep_linear.random_init(
          task, depth=depth, hidden_dim=config.hidden_dim, scale=scale, key=key))(keys)
      weights = tuple(jnp.concatenate([a, r]) for a, r in zip(weights, random))
    return jax.vmap(lambda w: deep_linear.simulate(
        task, w, learning_rate=config.learning_rate, num_steps=config.num_steps,
        record_every=config.record_every).history)(weights)

  return {name: np.asarray(value) for name, value in jax.jit(simulate_all)(task, keys).items()}


def unit_records(task, config, depth: int) -> list:
  """Every record of one depth (aligned init, then random inits), in the order a run writes them."""
  s = np.asarray(task.singular_values, np.float64)
  history = simulate_depth(task, config, depth)
  times = history["time"][0].astype(np.float64)
  theory = _theory(config, times, s, depth)
  theory_half = _theory_half_time(config, times, s, depth, theory)
  learnt = np.flatnonzero(s > 0)
  records = []
  for init in ("aligned", "random") if config.num_random_inits else ("aligned",):
    rows = slice(0, 1) if init == "aligned" else slice(1, None)
    strength = history["strength"][rows].astype(np.float64)  # (seeds, R + 1, k)
    loss, off_mode = history["loss"][rows], history["off_mode"][rows]
    for index, step in enumerate(history["step"][0]):
      record = {"kind": "trajectory", "init": init, "depth": depth, "step": int(step),
                "time": float(times[index]), "theory": theory[index]}
      if init == "aligned":
        record.update(strength=strength[0, index], loss=float(loss[0, index]),
                      off_mode=float(off_mode[0, index]))
      else:
        record.update(strength=strength[:, index], loss=loss[:, index],
                      off_mode=off_mode[:, index])
      records.append(io.to_json_value(record))
    halves = np.stack([np.asarray(deep_linear.crossing_time(
        jnp.asarray(times), jnp.asarray(strength[seed][:, learnt]),
        jnp.asarray(s[learnt] / 2))) for seed in range(strength.shape[0])])
    seeds = [None] if init == "aligned" else list(range(strength.shape[0]))
    for position, mode in enumerate(learnt):
      for row, seed in enumerate(seeds):
        value = float(halves[row, position])
        records.append({"kind": "learning_time", "init": init, "depth": depth,
                        "mode": int(mode), "seed": seed, "s": float(s[mode]),
                        "half_time": None if math.isnan(value) else value,
                        "theory_half_time": float(theory_half[position])})
    zero = s == 0
    zero_error = (float(np.max(np.abs(strength[..., zero] - theory[None][..., zero])))
                  if np.any(zero) and init == "aligned" else None)
    records.append(io.to_json_value({
        "kind": "run", "init": init, "depth": depth, "num_seeds": int(strength.shape[0]),
        "max_abs_error": float(np.max(np.abs(strength - theory[None]))),
        "zero_mode_max_abs_error": zero_error,
        "final_strength": np.mean(strength[:, -1], axis=0),
        "final_loss": float(np.mean(loss[:, -1])),
        "final_off_mode": float(np.mean(off_mode[:, -1])),
        "not_learnt": int(np.sum(np.isnan(halves)))}))
  return records


def _plot_strengths(path, records, config, depths, s):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(4.6 * len(depths), 7.4), layout="constrained")
  axes = figure.subplots(2, len(depths), squeeze=False)
  colors = [f"C{i}" for i in range(len(s))]
  for column, depth in enumerate(depths):
    for row, init in enumerate(INITS):
      axis = axes[row, column]
      points = [r for r in records if r["kind"] == "trajectory" and r["init"] == init
                and r["depth"] == depth]
      if not points:
        axis.set_visible(False)
        continue
      times = np.array([r["time"] for r in points])
      strength = np.array([r["strength"] for r in points])  # (R, k) or (R, seeds, k)
      theory = np.array([r["theory"] for r in points])
      for mode, value in enumerate(s):
        if init == "aligned":
          axis.plot(times, strength[:, mode], color=colors[mode], label=f"s = {value:g}")
        else:
          for seed in range(strength.shape[1]):
            axis.plot(times, strength[:, seed, mode], color=colors[mode], alpha=0.6,
                      linewidth=0.9, label=f"s = {value:g}" if seed == 0 else None)
        axis.plot(times, theory[:, mode], color=colors[mode], linestyle="--", linewidth=1.2)
      kind = {1: "closed form", 2: "closed form"}.get(depth, "ODE")
      axis.set_title(f"depth {depth}, {init} init (dashed: {kind})", fontsize="small")
      axis.set_xlabel("t / tau = learning_rate x steps")
      axis.set_ylabel("mode strength u = (U^T W V)_aa")
      axis.grid(alpha=0.3)
      if column == 0:
        axis.legend(fontsize="x-small")
  figure.suptitle(f"Deep linear networks: gradient descent (lines) against the theory (dashed), "
                  f"u0 = {config.u0:g}, learning rate {config.learning_rate:g}")
  figure.savefig(path, dpi=110)


def _plot_learning_times(path, records, config, depths):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6.2, 4.4), layout="constrained")
  axis = figure.subplots()
  for index, depth in enumerate(depths):
    color = f"C{index}"
    aligned = [r for r in records if r["kind"] == "learning_time" and r["depth"] == depth
               and r["init"] == "aligned"]
    s = np.array([r["s"] for r in aligned])
    axis.plot(s, [r["theory_half_time"] for r in aligned], color=color, linestyle="--",
              linewidth=1.0)
    axis.plot(s, [np.nan if r["half_time"] is None else r["half_time"] for r in aligned],
              color=color, marker="o", linestyle="none", label=f"depth {depth}, aligned")
    random = [r for r in records if r["kind"] == "learning_time" and r["depth"] == depth
              and r["init"] == "random"]
    if random:
      values = sorted({r["s"] for r in random})
      times = [[r["half_time"] for r in random if r["s"] == v and r["half_time"] is not None]
               for v in values]
      keep = [i for i, t in enumerate(times) if t]
      axis.errorbar([values[i] * 1.04 for i in keep], [np.mean(times[i]) for i in keep],
                    yerr=[np.std(times[i]) for i in keep], color=color, marker="x",
                    linestyle="none", capsize=3, label=f"depth {depth}, random (mean +- std)")
  axis.set_xscale("log")
  axis.set_yscale("log")
  axis.set_xlabel("singular value s")
  axis.set_ylabel("time to reach s / 2 [t / tau]")
  axis.set_title("dashed: theory; deep nets ~ 1/s, shallow nets ~ ln 2 for every s",
                 fontsize="small")
  axis.grid(alpha=0.3, which="both")
  axis.legend(fontsize="x-small")
  figure.savefig(path, dpi=110)


def _half_times(records, init, depth):
  """{s: [half times over seeds]} (``nan`` where the mode was not learnt in time)."""
  out = {}
  for r in records:
    if r["kind"] == "learning_time" and r["init"] == init and r["depth"] == depth:
      out.setdefault(r["s"], []).append(math.nan if r["half_time"] is None else r["half_time"])
  return out


def _summarise(records, config, depths, s):
  """The flat summary and the lines of summary.txt."""
  summary, lines = {}, []
  runs = {(r["init"], r["depth"]): r for r in records if r["kind"] == "run"}
  learnt = sorted((v for v in set(s) if v > 0), reverse=True)
  lines.append("max |gradient descent - theory| over the run, aligned init (theory: closed form "
               "at depths 1 and 2, ODE at depth >= 3; O(learning_rate)):")
  for depth in depths:
    run = runs[("aligned", depth)]
    summary[f"depth{depth}_max_abs_error"] = run["max_abs_error"]
    if run["zero_mode_max_abs_error"] is not None:
      summary[f"depth{depth}_zero_mode_max_abs_error"] = run["zero_mode_max_abs_error"]
    lines.append(f"  depth {depth}: {run['max_abs_error']:.3g} (s = 0 modes: "
                 f"{run['zero_mode_max_abs_error']:.3g}); final strengths "
                 f"{np.round(run['final_strength'], 4).tolist()}")
  if 2 in depths:
    table = []
    for time in (2.0, 4.0, 8.0):
      point = [r for r in records if r["kind"] == "trajectory" and r["init"] == "aligned"
               and r["depth"] == 2 and abs(r["time"] - time) < 1e-9]
      if point:
        table.append(f"t/tau={time:g}: GD {np.round(point[0]['strength'][:4], 4).tolist()} vs "
                     f"theory {np.round(point[0]['theory'][:4], 4).tolist()}")
        for mode, value in enumerate(s[:4]):
          summary[f"depth2_strength_t{time:g}_{_label(value)}"] = point[0]["strength"][mode]
    if table:
      lines.append("depth 2 against science.md §10.3 (its GD column, at learning rate 1e-3 and "
                   "u0 = 1e-3: 2.9457, 1.1946, 0.0517, 0.0073 at t/tau = 2; 3.0000, 1.9996, "
                   "0.7486, 0.0493 at 4; 3.000, 2.000, 0.9999, 0.4283 at 8; this run: learning "
                   f"rate {config.learning_rate:g}, u0 = {config.u0:g}): " + "; ".join(table))
  lines.append("time to reach s/2 (t/tau): measured (aligned init) / theory"
               + (f" / random inits mean +- std over {config.num_random_inits} seeds"
                  if config.num_random_inits else "") + ":")
  ratios = {}
  for depth in depths:
    aligned = _half_times(records, "aligned", depth)
    theory = {r["s"]: r["theory_half_time"] for r in records if r["kind"] == "learning_time"
              and r["init"] == "aligned" and r["depth"] == depth}
    random = _half_times(records, "random", depth)
    cells = []
    for value in learnt:
      measured = aligned[value][0]
      summary[f"depth{depth}_half_time_{_label(value)}"] = measured
      summary[f"depth{depth}_half_time_theory_{_label(value)}"] = theory[value]
      cell = f"s={value:g}: {measured:.3f} / {theory[value]:.3f}"
      if value in random:
        times = np.array(random[value])
        reached = times[~np.isnan(times)]
        mean = float(np.mean(reached)) if reached.size else math.nan
        spread = float(np.std(reached)) if reached.size else math.nan
        summary[f"depth{depth}_random_half_time_{_label(value)}"] = mean
        summary[f"depth{depth}_random_half_time_std_{_label(value)}"] = spread
        missing = int(np.sum(np.isnan(times)))
        cell += f" / {mean:.3f} +- {spread:.3f}" + (
            f" ({missing} of {times.size} not learnt by t/tau = {records_end(records):g})"
            if missing else "")
      cells.append(cell)
    lines.append(f"  depth {depth}: " + "; ".join(cells))
    measured = np.array([aligned[v][0] for v in learnt])
    if np.all(np.isfinite(measured)) and len(learnt) > 1:
      ratio = float(measured[-1] / measured[0])  # weakest over strongest
      spread = float(np.ptp(measured) / np.mean(measured))
      slope = float(np.polyfit(np.log(learnt), np.log(measured), 1)[0])
      ratios[depth] = (ratio, spread, slope, bool(np.all(np.diff(measured) > 0)))
      summary[f"depth{depth}_half_time_ratio"] = ratio
      summary[f"depth{depth}_half_time_relative_spread"] = spread
      summary[f"depth{depth}_half_time_log_slope"] = slope
      if depth == 2:
        # Saxe et al.'s small-u0 learning time (tau / 2s) ln(s / u0).
        approximation = np.log(np.array(learnt) / config.u0) / (2 * np.array(learnt))
        deviation = float(np.max(np.abs(measured / approximation - 1)))
        summary["depth2_half_time_vs_log_over_2s"] = deviation
        lines.append(f"    against (1/2s) ln(s/u0) = {np.round(approximation, 3).tolist()}: "
                     f"largest relative deviation {deviation:.3g}")
      lines.append(f"    weakest/strongest time ratio {ratio:.3g} (s ratio "
                   f"{learnt[0] / learnt[-1]:g}); relative spread {spread:.3g}; slope of "
                   f"log time against log s {slope:.3f}; s x time: "
                   f"{np.round(measured * np.array(learnt), 3).tolist()}")
  if 1 in ratios:
    ratio, spread, slope, _ = ratios[1]
    shallow = spread < 0.01
    summary["shallow_time_constant_independent_of_s"] = shallow
    verdict = "reproduced" if shallow else "NOT reproduced"
    lines.append(f"claim (shallow nets have one time constant): {verdict}: half times vary by "
                 f"{100 * spread:.2f}% across s "
                 f"(theory: ln(2 (s - u0)/s) ~ ln 2 = {math.log(2):.4f}).")
  deep = [d for d in ratios if d >= 2]
  if deep:
    first = all(ratios[d][3] for d in deep)
    inverse = all(abs(ratios[d][2] + 1) < 0.25 for d in deep)
    summary["deep_stronger_modes_first"] = first
    summary["deep_time_scales_as_inverse_s"] = inverse
    lines.append(
        f"claim (deep nets learn stronger modes first, time ~ 1/s): stronger first "
        f"{'reproduced' if first else 'NOT reproduced'}; 1/s scaling (log-log slope within "
        f"0.25 of -1) {'reproduced' if inverse else 'NOT reproduced'}: slopes "
        + ", ".join(f"depth {d}: {ratios[d][2]:.3f}" for d in deep)
        + " (theory: depth 2's (1/2s) ln(s/u0) has slope -1 + 1/ln(s/u0); at depth D >= 3 the "
        "plateau ~ u0^{-(D-2)/D} / ((D-2) s) has slope -1).")
  return summary, lines


def records_end(records) -> float:
  """The last recorded time."""
  return max(r["time"] for r in records if r["kind"] == "trajectory")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Simulates every (initialisation, depth); writes metrics, plots and the summary (process 0).

  Args:
    config: see ``configs/deep_linear.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): per depth
    ``depth<D>_max_abs_error`` (aligned init, against the theory), ``..._zero_mode_max_abs_error``,
    per learnt mode ``depth<D>_half_time_s<s>`` and ``..._theory_s<s>``, with random inits
    ``depth<D>_random_half_time_s<s>`` and ``..._std_s<s>``, ``depth<D>_half_time_ratio``
    (weakest over strongest mode), ``..._relative_spread`` and ``..._log_slope`` (of log time
    against log s), at depth 2 the strengths at t/tau = 2, 4, 8 when recorded and
    ``depth2_half_time_vs_log_over_2s`` (the largest relative deviation of the half times from
    ``(1/2s) ln(s/u0)``), and the verdicts
    ``shallow_time_constant_independent_of_s``, ``deep_stronger_modes_first`` and
    ``deep_time_scales_as_inverse_s``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  depths = [int(d) for d in config.depths]
  if not depths or min(depths) < 1:
    raise ValueError(f"config.depths must be positive integers; got {tuple(config.depths)}.")
  saved = io.read_metrics(metrics_path)
  records = list(saved)
  present = {record_key(r) for r in saved}
  with jax.enable_x64(bool(config.float64)):
    dtype = jnp.float64 if config.float64 else jnp.float32
    task = deep_linear.linear_task(jnp.asarray(config.singular_values, dtype),
                                   input_dim=config.input_dim, output_dim=config.output_dim,
                                   key=jax.random.key(config.seed))
    for depth in depths:
      if expected_keys(config, depth) <= present:
        continue
      new = [r for r in unit_records(task, config, depth) if record_key(r) not in present]
      records.extend(new)
      present.update(record_key(r) for r in new)
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  s = [float(v) for v in config.singular_values]
  summary, lines = _summarise(records, config, depths, s)
  if not io.is_primary_process():
    return {}
  _plot_strengths(os.path.join(workdir, STRENGTHS_PLOT), records, config, depths, s)
  _plot_learning_times(os.path.join(workdir, LEARNING_TIMES_PLOT), records, config, depths)
  header = (f"deep_linear: n1={config.input_dim}, hidden={config.hidden_dim}, "
            f"n3={config.output_dim}, s={tuple(s)}, whitened inputs; full-batch gradient "
            f"descent, learning rate {config.learning_rate:g}, {config.num_steps} steps "
            f"(t/tau up to {config.learning_rate * config.num_steps:g}); aligned balanced init "
            f"at u0={config.u0:g}" + (f" and {config.num_random_inits} random inits (entries "
                                      "N(0, u0^(2/D)/hidden))" if config.num_random_inits
                                      else "") + f"; depths {tuple(depths)}.")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), [header, *lines])
  return summary
