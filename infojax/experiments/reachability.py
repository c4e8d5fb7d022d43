"""The double well's transition probabilities and first-passage times against the temperature D.

Achille, Mbeng & Soatto, "Dynamics and reachability of learning tasks" (arXiv 1810.02440;
science.md §7) write SGD as ``dw = -U'(w) dt + sqrt(2 D) dW`` and split its transition
probability into a static factor ``exp(-[U(b) - U(a)] / (2D))`` and a dynamic ("reachability")
factor symmetric in the end points (§7.2), and they claim an escape rate ``C e^{-Delta C / D}``
set by the end points (their Eq 16). This experiment measures, with `infojax.dynamics.reachability`
(float64 throughout):

1. ``"transition"`` records (one per ``D`` and time): on the tilted double well
   ``U = (w^2 - 1)^2 - tilt w`` (A.14), the forward and backward transition densities between
   ``start`` and ``target`` and the probabilities of the windows ``|w - end| <= radius`` (from
   two Fokker-Planck solves each), their ratios against ``exp(-Delta U / D)``, the static factor,
   the forward and backward dynamic factors, and the "strict" window (the cells with
   ``|w - end| < radius``, the convention that reproduces the annotation's reach numbers);
   ``"transition_em"`` records: Euler-Maruyama estimates of the forward window probability.
2. ``"passage"`` records (one per ``D``): the mean first-passage time ``start -> target`` by the
   exact quadrature, by the grid chain absorbed at the target, by the Kramers/Langer formula and,
   for some ``D``, from Euler-Maruyama paths (mean, standard error, censored fraction).
3. ``"barrier"`` records (one per ``Delta U`` and ``D``): the fixed-barrier family of A.15 (this
   project's reconstruction, `infojax.dynamics.reachability.fixed_barrier_double_well`): exact
   ``ln tau`` and ``D ln tau``; Kramers' law predicts ``d ln tau / d(1/D) = barrier`` whatever
   ``Delta U``, the paper's Eq 16 predicts ``Delta U``.
4. ``"gibbs"`` records (one per temperature): two equal-loss wells of curvatures 100 and 1
   (science.md §2.7, `equal_loss_wells`): the Gibbs share of the sharp well against the Laplace
   prediction ``1/11``, and the ratio of exact escape times against ``sqrt(h_flat / h_sharp)``.

Outputs in the workdir: ``config.json``, ``metrics.jsonl``, ``reachability.png`` (transition
probabilities, ratios and factors against time), ``first_passage.png`` (passage times against
``1/D``, the A.15 family, the §2.7 shares) and ``summary.txt`` (what reproduces, in numbers). A
rerun in the same workdir resumes: a unit of work (a ``D`` of part 1, a ``D`` of part 2, a
``Delta U`` of part 3, a temperature of part 4) whose records are all in ``metrics.jsonl`` is not
recomputed. Every process computes everything (small replicated simulations); process 0 writes.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import io
from infojax.dynamics import reachability as reach
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
TRANSITION_PLOT = "reachability.png"
PASSAGE_PLOT = "first_passage.png"
A14_TIMES = (0.5, 5.0, 50.0, 500.0)
A14_REACH = (9e-5, 0.052, 0.29, 0.33)      # science.md §7.2 / A.14 (the annotation's grid)
A14_RATIO = 7.403
A15_SLOPES = (0.997, 0.998)
GIBBS_REFERENCE = {0.1: 0.0930, 0.2: 0.0955, 0.3: 0.0985}   # science.md §2.7
KEY_FIELDS = ("diffusion", "time", "delta_u", "temperature")
CHUNK_STEPS = 500
# Densities below this are rounding noise of the float64 eigendecomposition (relative to O(1)
# densities); their ratios are not reported as measurements.
RESOLVED_DENSITY = 1e-10


# ----------------------------------------------------------------------------------------------
# Set-up.
# ----------------------------------------------------------------------------------------------


def make_grid(config) -> reach.Grid:
  """The Fokker-Planck grid; ``start`` and ``target`` must be grid points."""
  g = reach.grid(config.grid_lower, config.grid_upper, config.grid_points)
  (h,) = g.spacing
  for name in ("start", "target"):
    position = (getattr(config, name) - config.grid_lower) / h
    if abs(position - round(position)) > 1e-6 or not 0 <= round(position) < config.grid_points:
      raise ValueError(f"reachability: config.{name} = {getattr(config, name)} must be a point of "
                       f"the grid ({config.grid_points} points from {config.grid_lower} to "
                       f"{config.grid_upper}, spacing {h:g}).")
  return g


def transition_times(config) -> np.ndarray:
  """``num_times`` log-spaced times from ``time_min`` to ``time_max`` and A.14's in that range."""
  times = np.geomspace(config.time_min, config.time_max, config.num_times)
  extra = [t for t in A14_TIMES if config.time_min <= t <= config.time_max]
  return np.unique(np.round(np.concatenate([times, extra]), 12))


def _barrier_top(potential, low, high):
  """The saddle between ``low`` and ``high``: the grid maximum, refined by Newton's method."""
  w = np.linspace(low, high, 2001)
  values = np.asarray(jax.vmap(potential)(jnp.asarray(w)))
  saddle = reach.critical_point(potential, float(w[int(np.argmax(values))]))
  if not float(jax.grad(jax.grad(potential))(saddle)) < 0:
    raise ValueError("reachability: no barrier top found between the end points.")
  return float(saddle)


@functools.lru_cache(maxsize=None)
def tilted_potential(tilt: float):
  """``U(w) = (w^2 - 1)^2 - tilt w``, one object per ``tilt`` (compiled programs are reused)."""
  return functools.partial(reach.tilted_double_well, tilt=tilt)


@functools.lru_cache(maxsize=None)
def wells_potential(curvatures: tuple, minima: tuple):
  """`equal_loss_wells` with these parameters, one object per parameters."""
  return functools.partial(reach.equal_loss_wells, curvatures=curvatures, minima=minima)


@functools.lru_cache(maxsize=None)
def _wells_saddle(curvatures: tuple, minima: tuple) -> float:
  return _barrier_top(wells_potential(curvatures, minima), *minima)


def _key(record) -> tuple:
  return (record["kind"],) + tuple(round(float(record[f]), 10) for f in KEY_FIELDS if f in record)


# ----------------------------------------------------------------------------------------------
# Units of work: each returns its records (a list of flat dicts).
# ----------------------------------------------------------------------------------------------


def transition_curve(potential, g: reach.Grid, config, diffusion: float) -> list:
  """Part 1: transition densities, windows, ratios and factors at every time, for one ``D``."""
  times = transition_times(config)
  (h,) = g.spacing
  kwargs = dict(diffusion=diffusion, times=jnp.asarray(times))
  density = reach.transition_probability(potential, g, config.start, config.target, **kwargs)
  window = reach.transition_probability(potential, g, config.start, config.target,
                                        radius=config.radius, **kwargs)
  strict = reach.transition_probability(potential, g, config.start, config.target,
                                        radius=config.radius - h / 2, **kwargs)
  delta_u = float(potential(config.target) - potential(config.start))
  records = []
  for i, t in enumerate(times):
    forward, backward = float(density.forward[i]), float(density.backward[i])
    records.append(io.to_json_value({
        "kind": "transition", "diffusion": diffusion, "time": float(t),
        "forward_density": forward, "backward_density": backward,
        "density_ratio": forward / backward if backward > 0 else math.nan,
        "resolved": min(forward, backward) > RESOLVED_DENSITY,
        "expected_ratio": math.exp(-delta_u / diffusion), "end_point_difference": delta_u,
        "static": density.static, "reachability_forward": density.reachability_forward[i],
        "reachability_backward": density.reachability_backward[i],
        "forward_window": window.forward[i], "backward_window": window.backward[i],
        "window_ratio": (float(window.forward[i]) / float(window.backward[i])
                         if float(window.backward[i]) > 0 else math.nan),
        "forward_window_strict": strict.forward[i]}))
  return records


def transition_em(potential, config, diffusion: float) -> list:
  """Part 1: Euler-Maruyama estimates of the forward window probability at ``em_times``."""
  key = jax.random.fold_in(jax.random.key(config.seed), 1)
  estimate = reach.path_reach_probability(
      potential, config.start, config.target, diffusion=diffusion, step_size=config.em_step,
      times=list(config.em_times), radius=config.radius, num_paths=config.em_paths, key=key)
  return [io.to_json_value({"kind": "transition_em", "diffusion": diffusion, "time": float(t),
                            "forward_window_em": estimate.estimate[i],
                            "standard_error": estimate.standard_error[i],
                            "num_paths": config.em_paths, "step_size": config.em_step})
          for i, t in enumerate(config.em_times)]


def passage_point(potential, g: reach.Grid, config, diffusion: float, *, minimum: float,
                  saddle: float) -> list:
  """Part 2: the mean first-passage time ``start -> target`` at one ``D``, four ways."""
  exact = float(reach.mean_first_passage_time(
      potential, config.start, config.target, diffusion=diffusion, reflecting=config.reflecting,
      num_points=config.quadrature_points))
  chain = float(reach.grid_mean_first_passage_time(
      potential, g, config.start, g.points >= config.target - 1e-9, diffusion=diffusion))
  kramers = float(reach.kramers_time(potential, minimum, saddle, diffusion=diffusion))
  record = {"kind": "passage", "diffusion": diffusion, "inverse_diffusion": 1.0 / diffusion,
            "exact": exact, "grid_chain": chain, "kramers": kramers,
            "kramers_over_exact": kramers / exact, "em_mean": None, "em_standard_error": None,
            "em_censored_fraction": None}
  matches = [i for i, d in enumerate(config.em_passage_diffusions) if math.isclose(d, diffusion)]
  if matches:
    steps = config.em_passage_horizon * exact / config.em_passage_step
    max_steps = CHUNK_STEPS * max(1, math.ceil(steps / CHUNK_STEPS))
    times = np.asarray(reach.path_first_passage_times(
        potential, config.start, config.target, diffusion=diffusion,
        step_size=config.em_passage_step, max_steps=max_steps,
        num_paths=config.em_passage_paths, chunk_steps=CHUNK_STEPS,
        key=jax.random.fold_in(jax.random.key(config.seed), 100 + matches[0])))
    finite = times[np.isfinite(times)]
    record.update(em_mean=float(np.mean(finite)) if finite.size else math.nan,
                  em_standard_error=(float(np.std(finite, ddof=1) / math.sqrt(finite.size))
                                     if finite.size > 1 else math.nan),
                  em_censored_fraction=float(1.0 - finite.size / times.size),
                  em_paths=config.em_passage_paths, em_step=config.em_passage_step)
  return [io.to_json_value(record)]


@functools.partial(jax.jit, static_argnames=("num_points",))
def _barrier_log_times(delta_u, diffusions, barrier, reflecting, num_points):
  """Exact ``ln tau`` and the Kramers ``ln tau`` of the fixed-barrier well, for each ``D``."""
  well = functools.partial(reach.fixed_barrier_double_well, delta_u=delta_u, barrier=barrier)
  m = reach.fixed_barrier_minimum(delta_u, barrier=barrier)

  def one(diffusion):
    exact = reach.log_mean_first_passage_time(well, -1.0, m, diffusion=diffusion,
                                              reflecting=reflecting, num_points=num_points)
    kramers = jnp.log(reach.kramers_time(well, -1.0, 0.0, diffusion=diffusion))
    return exact, kramers

  return jax.vmap(one)(diffusions)


def barrier_curve(config, delta_u: float) -> list:
  """Part 3: exact and Kramers ``ln tau`` against ``1/D`` for one member of the A.15 family."""
  inverse = np.asarray(config.barrier_inverse_diffusions, dtype=np.float64)
  right_minimum = float(reach.fixed_barrier_minimum(delta_u, barrier=config.barrier))
  exact, kramers = _barrier_log_times(jnp.asarray(delta_u), jnp.asarray(1.0 / inverse),
                                      jnp.asarray(config.barrier), jnp.asarray(config.reflecting),
                                      num_points=config.quadrature_points)
  return [io.to_json_value({"kind": "barrier", "delta_u": delta_u, "diffusion": 1.0 / x,
                            "inverse_diffusion": x, "log_tau": exact[i],
                            "d_log_tau": exact[i] / x, "log_tau_kramers": kramers[i],
                            "barrier": config.barrier, "right_minimum": right_minimum})
          for i, x in enumerate(inverse)]


def gibbs_point(config, temperature: float) -> list:
  """Part 4: the Gibbs share of the sharp well and the ratio of escape times at one ``T``."""
  (h_sharp, h_flat), (a, b) = config.curvatures, config.minima
  parameters = (tuple(float(h) for h in config.curvatures), tuple(float(m) for m in config.minima))
  wells = wells_potential(*parameters)
  lower, upper = min(a, b) - 3.0, max(a, b) + 4.0
  g = reach.grid(lower, upper, config.gibbs_grid_points)
  saddle = _wells_saddle(*parameters)
  share = float(reach.well_shares(wells, g, [saddle], temperature=temperature)[0 if a < b else 1])
  laplace = float(reach.laplace_well_shares(jnp.zeros(2), jnp.asarray([h_sharp, h_flat]),
                                            temperature=temperature)[0])
  log_sharp = float(reach.log_mean_first_passage_time(
      wells, a, b, diffusion=temperature, reflecting=lower if a < b else upper,
      num_points=config.quadrature_points))
  log_flat = float(reach.log_mean_first_passage_time(
      wells, b, a, diffusion=temperature, reflecting=upper if a < b else lower,
      num_points=config.quadrature_points))
  return [io.to_json_value({
      "kind": "gibbs", "temperature": temperature, "share_sharp": share, "laplace_share": laplace,
      "reference_share": GIBBS_REFERENCE.get(round(temperature, 6)),
      "log_escape_time_sharp": log_sharp, "log_escape_time_flat": log_flat,
      "escape_time_ratio": math.exp(log_sharp - log_flat),
      "laplace_escape_time_ratio": math.sqrt(h_flat / h_sharp), "saddle": saddle})]


# ----------------------------------------------------------------------------------------------
# Plots and the summary.
# ----------------------------------------------------------------------------------------------


def _plot_transitions(path, transitions, em):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(16.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 3)
  diffusions = sorted({r["diffusion"] for r in transitions})
  colours = [f"C{i}" for i in range(len(diffusions))]
  for d, colour in zip(diffusions, colours):
    # Unresolved points (densities below RESOLVED_DENSITY, rounding noise) are not drawn.
    rows = [r for r in transitions if r["diffusion"] == d and r["resolved"]]
    if not rows:
      continue
    t = [r["time"] for r in rows]
    axes[0].plot(t, [r["forward_window"] for r in rows], color=colour, label=f"forward, D={d:g}")
    axes[0].plot(t, [r["backward_window"] for r in rows], color=colour, linestyle="--",
                 label=f"backward, D={d:g}")
    axes[1].plot(t, [r["density_ratio"] / r["expected_ratio"] for r in rows], color=colour,
                 label=f"densities, D={d:g}")
    axes[1].plot(t, [r["window_ratio"] / r["expected_ratio"] for r in rows], color=colour,
                 linestyle="--", label=f"windows, D={d:g}")
    axes[2].plot(t, [r["reachability_forward"] for r in rows], color=colour,
                 label=f"dynamic, forward, D={d:g}")
    axes[2].plot(t, [r["reachability_backward"] for r in rows], color=colour, linestyle="none",
                 marker=".", label=f"dynamic, backward, D={d:g}")
    axes[2].axhline(rows[0]["static"], color=colour, linestyle=":",
                    label=f"static e^(-dU/2D), D={d:g}")
  for d in sorted({r["diffusion"] for r in em}):
    rows = [r for r in em if r["diffusion"] == d]
    axes[0].errorbar([r["time"] for r in rows], [r["forward_window_em"] for r in rows],
                     yerr=[2 * r["standard_error"] for r in rows], fmt="ko", capsize=3,
                     label=f"Euler-Maruyama, D={d:g} (2 s.e.)")
  axes[0].set_yscale("log")
  axes[0].set_ylabel("P(|w_t - end| <= radius)")
  axes[0].set_title(f"reach probability (A.14; densities > {RESOLVED_DENSITY:g})")
  axes[1].axhline(1.0, color="k", linewidth=0.5)
  axes[1].set_ylabel("(forward / backward) / exp(-dU / D)")
  axes[1].set_title("detailed balance at every t")
  axes[2].set_yscale("log")
  axes[2].set_ylabel("factor of the transition density")
  axes[2].set_title("static x dynamic split (Eq 9-10)")
  for axis in axes:
    axis.set_xscale("log")
    axis.set_xlabel("t")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.savefig(path, dpi=110)


def _plot_passage(path, passages, barriers, gibbs):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(16.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 3)
  x = [r["inverse_diffusion"] for r in passages]
  axes[0].plot(x, [r["exact"] for r in passages], "k-", label="exact (quadrature)")
  axes[0].plot(x, [r["grid_chain"] for r in passages], "C0o", markerfacecolor="none",
               label="grid chain")
  axes[0].plot(x, [r["kramers"] for r in passages], "C1--", label="Kramers / Langer")
  em = [r for r in passages if r["em_mean"] is not None]
  axes[0].errorbar([r["inverse_diffusion"] for r in em], [r["em_mean"] for r in em],
                   yerr=[2 * r["em_standard_error"] for r in em], fmt="C3s", capsize=3,
                   label="Euler-Maruyama (2 s.e.)")
  axes[0].set_yscale("log")
  axes[0].set_xlabel("1 / D")
  axes[0].set_ylabel("mean first-passage time")
  axes[0].set_title("tilted double well, start -> target")
  for i, delta_u in enumerate(sorted({r["delta_u"] for r in barriers}, reverse=True)):
    rows = [r for r in barriers if r["delta_u"] == delta_u]
    axes[1].plot([r["inverse_diffusion"] for r in rows], [r["d_log_tau"] for r in rows],
                 color=f"C{i}", marker="o", label=f"exact, dU = {delta_u:+g}")
    axes[1].axhline(delta_u, color=f"C{i}", linestyle=":", linewidth=1)
  axes[1].axhline(barriers[0]["barrier"], color="k", linestyle="--", linewidth=1,
                  label="Kramers: barrier")
  axes[1].set_xlabel("1 / D")
  axes[1].set_ylabel("D ln tau")
  axes[1].set_title("fixed barrier (A.15); dotted: Eq 16's dU")
  temperatures = [r["temperature"] for r in gibbs]
  axes[2].plot(temperatures, [r["share_sharp"] for r in gibbs], "C0o-",
               label="Gibbs share of the sharp well")
  axes[2].plot(temperatures, [r["escape_time_ratio"] for r in gibbs], "C2s-",
               label="tau(sharp -> flat) / tau(flat -> sharp)")
  axes[2].axhline(gibbs[0]["laplace_share"], color="C0", linestyle="--", label="Laplace 1/11")
  axes[2].axhline(gibbs[0]["laplace_escape_time_ratio"], color="C2", linestyle="--",
                  label="sqrt(h_flat / h_sharp)")
  reference = [(t, s) for t, s in GIBBS_REFERENCE.items()]
  axes[2].plot([t for t, _ in reference], [s for _, s in reference], "k+", markersize=10,
               label="science.md 2.7")
  axes[2].set_xlabel("T = D")
  axes[2].set_title("equal-loss wells, curvatures 100 and 1")
  for axis in axes:
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.savefig(path, dpi=110)


def _slope(rows, low, high):
  rows = [r for r in rows if low - 1e-9 <= r["inverse_diffusion"] <= high + 1e-9]
  if len(rows) < 2:
    return math.nan
  return float(np.polyfit([r["inverse_diffusion"] for r in rows], [r["log_tau"] for r in rows],
                          1)[0])


def summarise(config, transitions, em, passages, barriers, gibbs):
  """The flat summary and the lines of ``summary.txt``."""
  summary, lines = {}, []
  resolved = [r for r in transitions if r["resolved"]]
  deviation = max((abs(r["density_ratio"] / r["expected_ratio"] - 1) for r in resolved),
                  default=math.nan)
  symmetry = max((abs(r["reachability_forward"] / r["reachability_backward"] - 1)
                  for r in resolved), default=math.nan)
  summary["density_ratio_max_relative_deviation"] = deviation
  summary["reachability_asymmetry_max"] = symmetry
  lines.append(
      f"reachability: tilted double well U = (w^2 - 1)^2 - {config.tilt:g} w, start "
      f"{config.start:g}, target {config.target:g}, Fokker-Planck on {config.grid_points} points "
      f"over [{config.grid_lower:g}, {config.grid_upper:g}] (Scharfetter-Gummel, exact in time, "
      "float64).")
  lines.append(
      f"Detailed balance: over D in {sorted({r['diffusion'] for r in transitions})} and "
      f"{len({r['time'] for r in transitions})} times from {config.time_min:g} to "
      f"{config.time_max:g} ({len(resolved)} of {len(transitions)} points with both densities "
      f"above {RESOLVED_DENSITY:g}; below that they are rounding noise), the forward/backward "
      f"density ratio equals exp(-dU/D) to a relative {deviation:.1e}, and the dynamic factor is "
      f"symmetric to {symmetry:.1e}.")
  a14 = [r for r in transitions if math.isclose(r["diffusion"], 0.25)]
  a14_resolved = [r["density_ratio"] for r in a14 if r["resolved"]]
  if a14_resolved:
    row = {r["time"]: r for r in a14}
    low, high = min(a14_resolved), max(a14_resolved)
    summary["a14_ratio_min"], summary["a14_ratio_max"] = low, high
    summary["a14_expected_ratio"] = a14[0]["expected_ratio"]
    reproduces = max(abs(low / A14_RATIO - 1), abs(high / A14_RATIO - 1)) < 0.02
    lines.append(
        f"A.14 (D = 0.25, dU = {a14[0]['end_point_difference']:.4f}): forward/backward density "
        f"ratio from {low:.4f} to {high:.4f} over the {len(a14_resolved)} resolved times, "
        f"exp(-dU/D) = {a14[0]['expected_ratio']:.4f}; the annotation's {A14_RATIO} at all "
        f"times {'reproduces (within 2%)' if reproduces else 'does NOT reproduce'}.")
    present = [t for t in A14_TIMES if t in row]
    if present:
      exact = [row[t]["forward_window"] for t in present]
      strict = [row[t]["forward_window_strict"] for t in present]
      for t, value, value_strict in zip(present, exact, strict):
        summary[f"a14_reach_t{t:g}"] = value
        summary[f"a14_reach_strict_t{t:g}"] = value_strict
      references = [A14_REACH[A14_TIMES.index(t)] for t in present]
      close = all(abs(s / r - 1) < 0.05 for s, r in zip(strict, references))
      lines.append(
          "A.14 reach probability P(|w_t - target| <= {:g}) at t = {}: {} (exact window); the "
          "cells strictly inside it (the annotation's convention, {} cells) give {}, against the "
          "annotation's {}: {}. The window ratio is {} (densities, not windows, obey the exact "
          "ratio).".format(
              config.radius, ", ".join(f"{t:g}" for t in present),
              ", ".join(f"{v:.3g}" for v in exact),
              int(round(2 * config.radius / make_grid(config).spacing[0])) - 1,
              ", ".join(f"{v:.3g}" for v in strict), ", ".join(f"{v:g}" for v in references),
              ("reproduces (within 5%)" if close else "does NOT reproduce")
              + ("" if math.isclose(make_grid(config).spacing[0], 0.01) else
                 f" (this grid's spacing is {make_grid(config).spacing[0]:g}, not the "
                 "annotation's 0.01, so its strict cells differ)"),
              ", ".join(f"{row[t]['window_ratio']:.3f}" for t in present)))
  for r in em:
    fp = next((x["forward_window"] for x in transitions
               if math.isclose(x["diffusion"], r["diffusion"])
               and math.isclose(x["time"], r["time"])), None)
    summary[f"em_reach_d{r['diffusion']:g}_t{r['time']:g}"] = r["forward_window_em"]
    lines.append(
        f"Euler-Maruyama ({r['num_paths']} paths, step {r['step_size']:g}) at D = "
        f"{r['diffusion']:g}, t = {r['time']:g}: {r['forward_window_em']:.4g} +- "
        f"{r['standard_error']:.2g}" + (f" (Fokker-Planck {fp:.4g})" if fp is not None else ""))
  for r in passages:
    text = (f"D = {r['diffusion']:.4g}: mean first-passage time {r['exact']:.4g} (quadrature), "
            f"{r['grid_chain']:.4g} (grid chain), Kramers {r['kramers']:.4g} "
            f"(ratio {r['kramers_over_exact']:.3f})")
    summary[f"mfpt_d{r['diffusion']:.4g}"] = r["exact"]
    if r["em_mean"] is not None:
      text += (f", Euler-Maruyama {r['em_mean']:.4g} +- {r['em_standard_error']:.2g} "
               f"({r['em_censored_fraction']:.1%} censored)")
      summary[f"mfpt_em_d{r['diffusion']:.4g}"] = r["em_mean"]
    lines.append(text)
  low, high = config.slope_inverse_diffusions
  slopes = {}
  for delta_u in sorted({r["delta_u"] for r in barriers}, reverse=True):
    rows = [r for r in barriers if r["delta_u"] == delta_u]
    slopes[delta_u] = _slope(rows, low, high)
    summary[f"a15_slope_du{delta_u:+g}"] = slopes[delta_u]
  if barriers:
    d_log = [r["d_log_tau"] for r in barriers
             if low - 1e-9 <= r["inverse_diffusion"] <= high + 1e-9]
    finite = [s for s in slopes.values() if np.isfinite(s)]
    barrier_law = bool(finite) and all(abs(s - config.barrier) < 0.01 for s in finite)
    summary["a15_slope_min"] = min(finite) if finite else math.nan
    summary["a15_slope_max"] = max(finite) if finite else math.nan
    lines.append(
        f"A.15 (barrier {config.barrier:g}, dU from {max(slopes):+g} to {min(slopes):+g}): "
        f"d ln tau / d(1/D) over 1/D in [{low:g}, {high:g}] = "
        + ", ".join(f"{s:.4f} (dU {u:+g})" for u, s in slopes.items())
        + (f"; D ln tau in [{min(d_log):.3f}, {max(d_log):.3f}]" if d_log else "")
        + f" (annotation {A15_SLOPES[0]}-{A15_SLOPES[1]}). Kramers' law (slope = barrier) "
        + ("holds" if barrier_law else "does NOT hold")
        + "; the paper's Eq 16 (slope = dU, i.e. "
        + ", ".join(f"{u:+g}" for u in slopes) + ") does not: the escape time follows the "
        "barrier, not the end points.")
  for r in gibbs:
    summary[f"gibbs_share_t{r['temperature']:g}"] = r["share_sharp"]
  if gibbs:
    checked = [r for r in gibbs if r["reference_share"] is not None]
    agree = all(abs(r["share_sharp"] - r["reference_share"]) < 1e-4 for r in checked)
    lines.append(
        "Section 2.7 (equal-loss wells, curvatures {} and {}, minima {}): Gibbs share of the sharp "
        "well {} at T = {} (science.md {}: {}); Laplace {:.4f} at every T. Escape-time ratio "
        "tau(sharp -> flat) / tau(flat -> sharp) = {} against the Eyring-Kramers "
        "sqrt(h_flat/h_sharp) = {:.3f}, reached as T -> 0 with O(T) corrections: the barrier "
        "terms cancel between equal-loss wells, so the preference for the flat well does not "
        "sharpen as T falls."
        .format(config.curvatures[0], config.curvatures[1], tuple(config.minima),
                ", ".join(f"{r['share_sharp']:.4f}" for r in gibbs),
                ", ".join(f"{r['temperature']:g}" for r in gibbs),
                ", ".join(f"{r['reference_share']:.4f} at {r['temperature']:g}" for r in checked)
                or "no reference at these T",
                ("reproduces to 1e-4" if agree else "does NOT reproduce") if checked else "-",
                gibbs[0]["laplace_share"],
                ", ".join(f"{r['escape_time_ratio']:.4f}" for r in gibbs),
                gibbs[0]["laplace_escape_time_ratio"]))
  return summary, lines


# ----------------------------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------------------------


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the four parts unit by unit (resuming), then writes the plots and the summary.

  Args:
    config: see ``configs/reachability.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) a flat summary:
    ``density_ratio_max_relative_deviation``, ``reachability_asymmetry_max``,
    ``a14_ratio_min``/``max``,
    ``a14_reach_t<t>`` and ``a14_reach_strict_t<t>``, ``em_reach_d<D>_t<t>``, ``mfpt_d<D>``
    (and ``mfpt_em_d<D>``), ``a15_slope_du<dU>``, ``a15_slope_min``/``max`` and
    ``gibbs_share_t<T>``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = io.read_metrics(metrics_path) if os.path.exists(metrics_path) else []
  done = {_key(r): r for r in saved}
  with jax.enable_x64(True):
    g = make_grid(config)
    potential = tilted_potential(float(config.tilt))
    minimum = float(reach.critical_point(potential, config.start))
    saddle = _barrier_top(potential, config.start, config.target)
    times = transition_times(config)
    units = []   # (keys, compute)
    for d in config.diffusions:
      units.append(([("transition", round(float(d), 10), round(float(t), 10)) for t in times],
                    functools.partial(lambda d: transition_curve(potential, g, config, d), d)))
    units.append(([("transition_em", round(float(config.em_diffusion), 10), round(float(t), 10))
                   for t in config.em_times],
                  lambda: transition_em(potential, config, config.em_diffusion)))
    for x in config.passage_inverse_diffusions:
      d = 1.0 / x
      units.append(([("passage", round(d, 10))], functools.partial(
          lambda d: passage_point(potential, g, config, d, minimum=minimum, saddle=saddle), d)))
    for delta_u in config.delta_us:
      units.append(([("barrier", round(1.0 / x, 10), round(float(delta_u), 10))
                     for x in config.barrier_inverse_diffusions],
                    functools.partial(lambda u: barrier_curve(config, u), float(delta_u))))
    for temperature in config.temperatures:
      units.append(([("gibbs", round(float(temperature), 10))],
                    functools.partial(lambda t: gibbs_point(config, t), float(temperature))))
    order = [key for keys, _ in units for key in keys]
    for keys, compute in units:
      if all(key in done for key in keys):
        continue
      records = compute()
      done.update({_key(r): r for r in records})
      common.write_records(metrics_path, [done[k] for k in order if k in done],
                           tensorboard=config.tensorboard)
    records = [done[k] for k in order]
    summary, lines = summarise(
        config, [r for r in records if r["kind"] == "transition"],
        [r for r in records if r["kind"] == "transition_em"],
        [r for r in records if r["kind"] == "passage"],
        [r for r in records if r["kind"] == "barrier"],
        [r for r in records if r["kind"] == "gibbs"])
  if not io.is_primary_process():
    return {}
  _plot_transitions(os.path.join(workdir, TRANSITION_PLOT),
                    [r for r in records if r["kind"] == "transition"],
                    [r for r in records if r["kind"] == "transition_em"])
  _plot_passage(os.path.join(workdir, PASSAGE_PLOT),
                [r for r in records if r["kind"] == "passage"],
                [r for r in records if r["kind"] == "barrier"],
                [r for r in records if r["kind"] == "gibbs"])
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
