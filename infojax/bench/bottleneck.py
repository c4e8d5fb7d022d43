"""Benchmark of the Blahut-Arimoto IB curve (`infojax.activations.ib_curve`) against numpy.

On a seeded Dirichlet joint of ``num_x x num_y`` (256 x 10) with ``|T| = num_clusters`` (10), one
IB curve of ``num_betas`` (64) log-spaced ``beta`` is computed with ``num_iterations`` updates per
``beta`` (``tol=0``: no early stop, so every row does the same updates; the rows report the updates
they did), all in float64, as:

* ``update_step``: the unit: one jitted call of `infojax.activations.bottleneck.update`, vmapped
  over the ``num_betas`` encoders (one update of the whole curve);
* ``ib_curve_vmap``: `ib_curve` (``restarts=1``, every ``beta`` from a random encoder, one
  ``vmap`` of ``lax.while_loop``s), compiled ahead of time (the compile time is its own column);
* ``ib_curve_anneal``: `ib_curve(anneal=True)`, a ``lax.scan`` up the ``beta`` grid that solves
  each ``beta`` twice (from the previous solution and from one random encoder), so twice the
  updates, one ``beta`` after the other;
* ``jit_step_loop``: a Python loop of ``num_iterations`` calls of ``update_step``;
* ``numpy_loop``: a numpy float64 loop over the betas, ``num_iterations`` updates each, of the same
  log-space equations (`numpy_update`, with the joint's constants computed once).

Ratios: ``x numpy`` is the numpy loop's time over the row's (above 1: the row is faster);
``update / step`` is the row's time per update of the whole curve (its updates over
``num_betas``) over one ``update_step`` call.
"""

import dataclasses
import os
import time
from typing import Callable, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp
from scipy.special import xlogy

from infojax.activations import bottleneck
from infojax.bench import measure
from infojax.bench import report

BEGIN = report.BOTTLENECK_BEGIN
END = report.BOTTLENECK_END
ROWS = ("update_step", "ib_curve_vmap", "ib_curve_anneal", "jit_step_loop", "numpy_loop")


@dataclasses.dataclass
class Config:
  """What to run (see ``scripts/bench_bottleneck.py --help``)."""
  rows: Sequence[str] = ROWS          # which rows; update_step and numpy_loop are always run
  num_x: int = 256
  num_y: int = 10
  num_clusters: int = 10
  num_betas: int = 64
  beta_min: float = 0.5
  beta_max: float = 50.0
  num_iterations: int = 200
  repetitions: int = 3
  time_budget_s: float = 10.0
  seed: int = 0


@dataclasses.dataclass
class Row:
  """One timed row: ``median_ms`` for one call (one whole curve, or one update step)."""
  name: str
  median_ms: float
  calls: int
  updates: int                              # encoder updates per call (all betas together)
  compile_s: Optional[float] = None
  speedup_over_numpy: Optional[float] = None  # numpy_loop's time / this row's time
  update_in_steps: Optional[float] = None     # time per curve update / one update_step call
  note: str = ""


def joint(config: Config) -> np.ndarray:
  """The seeded ``Dirichlet(1)`` joint of ``(num_x, num_y)``."""
  rng = np.random.default_rng(config.seed)
  return rng.dirichlet(np.ones(config.num_x * config.num_y)).reshape(config.num_x, config.num_y)


def numpy_update(log_q: np.ndarray, p_x: np.ndarray, p_y_given_x: np.ndarray,
                 negative_entropy: np.ndarray, beta: float) -> np.ndarray:
  """One Blahut-Arimoto IB update in numpy float64 (the equations of
  `infojax.activations.bottleneck.update`, for joints without zeros).

  Args:
    log_q: ``(X, T)`` the log encoder.
    p_x: ``(X,)``; p_y_given_x: ``(X, Y)``; negative_entropy: ``(X,)`` ``sum_y p log p`` of
      ``p(y|x)`` (the joint's constants).
    beta: the weight of ``I(T;Y)``.

  Returns:
    The next log encoder ``(X, T)``.
  """
  q = np.exp(log_q)
  p_t = p_x @ q
  p_y_given_t = (q.T @ (p_x[:, None] * p_y_given_x)) / p_t[:, None]
  distortion = negative_entropy[:, None] - p_y_given_x @ np.log(p_y_given_t).T
  logits = np.log(p_t)[None, :] - beta * distortion
  return logits - logsumexp(logits, axis=1, keepdims=True)


def _entries(config: Config):
  p_xy = joint(config)
  betas = np.geomspace(config.beta_min, config.beta_max, config.num_betas)
  key = jax.random.key(config.seed)
  n = config.num_iterations
  wanted = set(config.rows) | {"update_step", "numpy_loop"}
  p, b = jnp.asarray(p_xy), jnp.asarray(betas)
  initial = np.random.default_rng(config.seed + 1).dirichlet(
      np.ones(config.num_clusters), (config.num_betas, config.num_x))
  states = jax.vmap(lambda q: bottleneck.init(p, num_clusters=config.num_clusters, key=None,
                                              p_t_given_x=q))(jnp.asarray(initial))
  step = jax.jit(jax.vmap(lambda state, beta: bottleneck.update(state, p, beta)))
  entries = {"update_step": measure.jax_entry("update_step", "jax", step, (states, b))}
  options = dict(num_clusters=config.num_clusters, tol=0.0, max_iter=n, restarts=1)
  vmapped = jax.jit(lambda p, b, k: bottleneck.ib_curve(p, b, key=k, **options).num_iterations)
  annealed = jax.jit(lambda p, b, k: bottleneck.ib_curve(p, b, key=k, anneal=True, **options)
                     .num_iterations)
  for name, fn in (("ib_curve_vmap", vmapped), ("ib_curve_anneal", annealed)):
    if name in wanted:
      entries[name] = measure.jax_entry(name, "jax", fn, (p, b, key))

  def step_loop():
    state = states
    for _ in range(n):
      state = step(state, b)
    return jax.block_until_ready(state.iteration)

  entries["jit_step_loop"] = measure.Entry("jit_step_loop", "python loop", "jax", step_loop)
  p_x = p_xy.sum(axis=1)
  p_y_given_x = p_xy / p_x[:, None]
  negative_entropy = np.sum(xlogy(p_y_given_x, p_y_given_x), axis=1)
  initial = np.log(initial)

  def numpy_loop():
    iterations = np.zeros(config.num_betas, np.int64)
    for index, beta in enumerate(betas):
      log_q = initial[index]
      for _ in range(n):
        log_q = numpy_update(log_q, p_x, p_y_given_x, negative_entropy, beta)
        iterations[index] += 1
    return iterations

  entries["numpy_loop"] = measure.Entry("numpy_loop", "numpy float64", "numpy", numpy_loop)
  return [entries[name] for name in ROWS if name in entries]


def _updates(name: str, value, config: Config) -> int:
  """The encoder updates one call of a row did (all betas together)."""
  if name == "update_step":
    return config.num_betas
  if name == "ib_curve_anneal":       # two solves per beta; the result counts the kept one
    return 2 * config.num_betas * config.num_iterations
  if name == "jit_step_loop":
    return config.num_betas * config.num_iterations
  return int(np.sum(np.asarray(value)))


def run(config: Config, *, log: Callable[[str], None] = lambda message: None) -> List[Row]:
  """Times the rows (interleaved rounds, medians), in float64."""
  unknown = set(config.rows) - set(ROWS)
  if unknown:
    raise ValueError(f"rows must be among {ROWS}; got {sorted(unknown)}.")
  with jax.enable_x64(True):
    entries = _entries(config)
    measurements = measure.time_entries(entries, repetitions=config.repetitions,
                                        time_budget_s=config.time_budget_s, log=log)
  medians = {entry.quantity: m.median_ms for entry, m in zip(entries, measurements)}
  rows = []
  for entry, m in zip(entries, measurements):
    updates = _updates(entry.quantity, m.value, config)
    whole_curve = entry.quantity != "update_step"
    row = Row(entry.quantity, m.median_ms, len(m.times_s), updates, compile_s=entry.compile_s,
              speedup_over_numpy=medians["numpy_loop"] / m.median_ms if whole_curve else None,
              update_in_steps=(m.median_ms / (updates / config.num_betas))
              / medians["update_step"], note=entry.note)
    rows.append(row)
    log(f"  {entry.quantity:<16} {m.median_ms:10.2f} ms  {updates} updates")
  return rows


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def _than(ratio: float) -> str:
  """``"2.0x faster than"`` for a time ratio (other / this) above 1, ``"1.1x slower than"``
  below it."""
  return f"{ratio:.2f}x faster than" if ratio >= 1 else f"{1 / ratio:.2f}x slower than"


def markdown(rows: Sequence[Row], config: Config, *, command: str) -> str:
  """The RESULTS.md section (between `BEGIN` and `END`)."""
  machine = measure.machine_description()
  versions = {k: v for k, v in measure.library_versions().items()
              if k in ("jax", "jaxlib", "numpy")}
  by_name = {row.name: row for row in rows}
  lines = [BEGIN, "## Blahut-Arimoto IB curve (`infojax.activations.ib_curve`)", "",
           f"Command: `{command}` on {time.strftime('%Y-%m-%d')}.", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items())
           + f"; load average {os.getloadavg()[0]:.1f} when the section was written (a shared "
           "machine times less steadily). Versions: "
           + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", "",
           f"One IB curve of {config.num_betas} log-spaced betas in [{config.beta_min:g}, "
           f"{config.beta_max:g}] on a seeded Dirichlet {config.num_x} x {config.num_y} joint, "
           f"|T| = {config.num_clusters}, {config.num_iterations} updates per beta (tol = 0, so no "
           "early stop; `updates` counts what each call did), float64 throughout. Medians of up "
           f"to {config.repetitions} interleaved rounds after a warm-up; compile times excluded "
           "from the medians and given separately. `x numpy`: the numpy loop's time over the "
           "row's (above 1: faster than numpy); `update / step`: the row's time per update of "
           "the whole curve over one jitted `bottleneck.update` vmapped over the betas (the "
           "unit, `update_step`). The annealed curve solves each beta twice (warm start and one "
           "random encoder), one beta after the other.", "",
           "| implementation | median (ms) | calls | updates | compile (s) | x numpy | "
           "update / step |", "|---|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(f"| {row.name} | {row.median_ms:.2f} | {row.calls} | {row.updates} | "
                 f"{_fmt(row.compile_s, '.2f')} | {_fmt(row.speedup_over_numpy, '.2f')} | "
                 f"{_fmt(row.update_in_steps, '.2f')} |")
  lines.append("")
  if {"ib_curve_vmap", "numpy_loop", "jit_step_loop"} <= set(by_name):
    vmap, steps = by_name["ib_curve_vmap"], by_name["jit_step_loop"]
    lines.append(
        f"- The vmapped curve is {_than(vmap.speedup_over_numpy)} the numpy loop and "
        f"{_than(steps.median_ms / vmap.median_ms)} the Python loop of jitted steps; inside its "
        f"`while_loop` an update of the whole curve costs {vmap.update_in_steps:.2f}x a "
        "top-level jitted update call, and in the numpy loop "
        f"{by_name['numpy_loop'].update_in_steps:.2f}x.")
  if {"ib_curve_anneal", "ib_curve_vmap"} <= set(by_name):
    anneal = by_name["ib_curve_anneal"]
    lines.append(
        f"- The annealed curve does {anneal.updates // by_name['ib_curve_vmap'].updates}x the "
        f"updates, one beta after the other, in {anneal.median_ms / 1e3:.2f} s "
        f"({_than(anneal.speedup_over_numpy)} the numpy loop; {anneal.update_in_steps:.2f}x an "
        "update step per update of the curve).")
  lines.append(END)
  return "\n".join(lines) + "\n"


def write(rows: Sequence[Row], config: Config, path: str, *, command: str) -> None:
  """Puts the section into the markdown file at ``path`` (replacing an earlier one; the rest of
  the file is kept; `infojax.bench.report.write_results` keeps this section too)."""
  report.write_section(path, markdown(rows, config, command=command), BEGIN, END)
