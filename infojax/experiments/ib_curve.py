"""Information bottleneck curves of small discrete joints, and of a Gaussian joint.

Tishby, Pereira & Bialek (1999), "The information bottleneck method" (science.md §8): for a joint
``p(x, y)``, the encoders ``q(t|x)`` minimising ``I(X;T) - beta I(T;Y)`` trace, as ``beta`` grows,
a curve in the information plane that is increasing and concave, of slope ``1/beta``, bounded by
``I(T;Y) <= I(X;Y)`` and ``I(X;T) <= H(X)`` (§8.4). Measured on three joints:

* ``symmetric``: the binary symmetric pair, ``X ~ Bern(1/2)``, ``Y = X xor Bern(e)`` (§8.5), whose
  optimal curve is given by Mrs Gerber's lemma, ``I(T;Y) = 1 - h(e * h^-1(1 - I(X;T)))`` bits, and
  whose encoder is trivial below ``beta = 1/(1 - 2e)^2`` (1.5625 at ``e = 0.1``; science.md A.8);
* ``random``: a seeded Dirichlet(``random_concentration``) joint of shape ``random_shape`` (8 x 3,
  science.md B.21);
* ``digits``: the bundled 8x8 digits' training split, the 64 pixel intensities quantised by
  k-means (scikit-learn, seeded, ``digits_cells`` cells) into ``x`` = the cell, against the 10
  labels ``y``; ``p(x, y)`` is the empirical joint of the (cell, label) pairs.

Protocol, per joint: `infojax.activations.ib_curve` over ``num_betas`` log-spaced ``beta`` in
``[beta_min, beta_max]`` for every ``|T|`` of the joint's ``clusters``, twice: ``"vmapped"`` (every
``beta`` from ``restarts`` random encoders, one ``vmap``) and ``"annealed"`` (deterministic
annealing up the ``beta`` grid, each ``beta`` warm-started from the previous solution plus
``anneal_noise`` and from ``restarts`` random encoders, keeping the lower Lagrangian); once the
deterministic IB (Strouse & Schwab 2017, ``method="deterministic"``, vmapped, the largest ``|T|``);
and, for the ``threshold_joints``, ``threshold_rounds`` refinements of where ``I(X;T)`` departs
from 0 (`departure_bracket` of the vmapped curve of the smallest ``|T|``, re-gridded with
``num_betas`` linear steps). Everything runs
in float64; an iteration stops when no ``q(t|x)`` entry moves by more than ``tol`` or after
``num_steps`` updates. The departure is compared with ``1/rho_m^2``, the ``beta`` above which the
trivial encoder is no longer a local minimum (`infojax.activations.bottleneck.maximal_correlation`;
for the symmetric pair the theory's threshold). A ``gaussian`` joint (seeded covariance,
``gaussian_dims``) adds the analytic curve of Chechik et al. (2005), "Information bottleneck for
Gaussian variables" (JMLR; `infojax.activations.bottleneck.gaussian_ib_curve`).

Outputs in the workdir: ``config.json``; ``metrics.jsonl`` with, per joint, ``"point"`` records
(``joint``, ``method``, ``num_clusters``, ``beta``, ``i_xt``, ``i_ty``, ``lagrangian``, nats,
``converged``, ``num_iterations``; ``method="threshold"`` for the refinement and ``"analytic"``
for the Gaussian joint) followed by one ``"joint"`` record (``I(X;Y)``, ``H(X)``, ``1/rho_m^2``,
...); ``ib_curve.png`` (the information plane per joint with the bounds, and ``I(X;T)`` against
``beta``); ``summary.txt``. A rerun in the same workdir resumes per joint: a joint whose records
are all in ``metrics.jsonl`` is not recomputed.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import info
from infojax import io
from infojax.activations import bottleneck
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "ib_curve.png"
JOINTS = ("symmetric", "random", "digits", "gaussian")   # the order fixes each joint's PRNG key
DISCRETE_METHODS = ("vmapped", "annealed")
LOG2 = math.log(2.0)
SHAPE_CHECKS = ("decreases", "concavity_violations", "slope_violations")


# ----------------------------------------------------------------------------------------------
# The joints.
# ----------------------------------------------------------------------------------------------


def symmetric_pair(error: float) -> np.ndarray:
  """``(2, 2)`` the joint of ``X ~ Bern(1/2)`` and ``Y = X xor Bern(error)``."""
  return np.array([[1 - error, error], [error, 1 - error]]) / 2


def random_joint(shape, *, concentration: float, seed: int) -> np.ndarray:
  """A seeded ``Dirichlet(concentration)`` joint of ``shape = (X, Y)`` (every ``p(x) > 0``)."""
  num_x, num_y = (int(n) for n in shape)
  rng = np.random.default_rng(seed)
  return rng.dirichlet(np.full(num_x * num_y, float(concentration))).reshape(num_x, num_y)


def digits_joint(*, num_cells: int, kmeans_inits: int, seed: int, data_dir=None) -> np.ndarray:
  """The empirical joint of (k-means cell of the 64 pixels, label) on the digits training split.

  Returns:
    ``(num_cells, 10)``: counts of each (cell, label) pair over the examples; k-means cells are
    never empty.
  """
  from sklearn.cluster import KMeans

  arrays = data.load("digits", "train", data_dir=data_dir, process_local=False)
  features = np.asarray(arrays["image"], np.float64).reshape(len(arrays["label"]), -1)
  cells = KMeans(int(num_cells), n_init=int(kmeans_inits), random_state=seed).fit_predict(features)
  counts = np.zeros((int(num_cells), 10))
  np.add.at(counts, (cells, np.asarray(arrays["label"])), 1.0)
  return counts / counts.sum()


def gaussian_covariances(dims, *, seed: int):
  """A seeded joint covariance ``F F^T + I/2`` of ``dims = (d_x, d_y)``, split as
  ``(cov_x, cov_xy, cov_y)``."""
  d_x, d_y = (int(d) for d in dims)
  factor = np.random.default_rng(seed).normal(size=(d_x + d_y, d_x + d_y))
  joint = factor @ factor.T + 0.5 * np.eye(d_x + d_y)
  return joint[:d_x, :d_x], joint[:d_x, d_x:], joint[d_x:, d_x:]


def mrs_gerber(i_xt, error: float) -> np.ndarray:
  """The optimal ``I(T;Y)`` of the binary symmetric pair at ``I(X;T)`` (nats, elementwise).

  Mrs Gerber's lemma (science.md §8.5): ``I(T;Y) = log 2 - h(e * d)`` with ``h(d) = log 2 -
  I(X;T)``, ``d <= 1/2``, ``a * b = a(1 - b) + b(1 - a)`` and ``h`` the binary entropy (nats);
  ``h^-1`` by 60 bisection steps on all points at once (``I(X;T)`` clipped to ``[0, log 2]``),
  in float64.
  """
  target = LOG2 - np.clip(np.asarray(i_xt, np.float64), 0.0, LOG2)
  low, high = np.zeros_like(target), np.full_like(target, 0.5)
  with jax.enable_x64(True):
    for _ in range(60):
      middle = 0.5 * (low + high)
      below = np.asarray(info.binary_entropy(middle)) < target
      low, high = np.where(below, middle, low), np.where(below, high, middle)
    delta = 0.5 * (low + high)
    return LOG2 - np.asarray(info.binary_entropy(error * (1 - delta) + delta * (1 - error)))


# ----------------------------------------------------------------------------------------------
# The curves (jitted once per shape and option set; reruns in one process reuse the programs).
# ----------------------------------------------------------------------------------------------


def _curve(p_xy, betas, key, *, num_clusters, restarts, tol, max_iter, method, anneal,
           anneal_noise):
  return bottleneck.ib_curve(p_xy, betas, num_clusters=num_clusters, key=key, tol=tol,
                             max_iter=max_iter, restarts=restarts, method=method, anneal=anneal,
                             anneal_noise=anneal_noise)


_STATIC = ("num_clusters", "restarts", "tol", "max_iter", "method", "anneal", "anneal_noise")
# config.fast_compile_joints: XLA:CPU's backend optimisation level 0 compiles these programs
# 1.5-2.5x faster and runs them 1.5-4x slower; for joints so small that compiling dominates.
_CURVE = {False: jax.jit(_curve, static_argnames=_STATIC),
          True: jax.jit(_curve, static_argnames=_STATIC,
                        compiler_options={"xla_backend_optimization_level": 0})}
_GAUSSIAN_CURVE = jax.jit(bottleneck.gaussian_ib_curve)


def curve_points(p_xy, betas, *, key, num_clusters: int, method: str, config,
                 fast_compile: bool = False) -> list:
  """One IB curve as ``"point"`` records (without the joint's name).

  Args:
    p_xy: ``(X, Y)`` the joint (float64).
    betas: ``(B,)``.
    key: the PRNG key.
    num_clusters: ``|T|``.
    method: ``"vmapped"``, ``"annealed"``, ``"deterministic"`` (vmapped) or ``"threshold"``
      (vmapped, at most ``config.threshold_num_steps`` updates; the refinement of the departure).
    config: the experiment config (``restarts``, ``tol``, ``num_steps``, ``anneal_noise``).
    fast_compile: compile at XLA's backend optimisation level 0.

  Returns:
    One dict per ``beta``: ``method``, ``num_clusters``, ``beta``, ``i_xt``, ``i_ty``,
    ``lagrangian`` (nats), ``converged``, ``num_iterations``.
  """
  result = _CURVE[bool(fast_compile)](
      jnp.asarray(p_xy), jnp.asarray(betas), key, num_clusters=int(num_clusters),
      restarts=int(config.restarts), tol=float(config.tol),
      max_iter=int(config.threshold_num_steps if method == "threshold" else config.num_steps),
      method="deterministic" if method == "deterministic" else "ib",
      anneal=method == "annealed", anneal_noise=float(config.anneal_noise))
  fields = {name: np.asarray(getattr(result, name)) for name in
            ("i_xt", "i_ty", "lagrangian", "converged", "num_iterations")}
  return [{"kind": "point", "method": method, "num_clusters": int(num_clusters),
           "beta": float(beta), **{name: values[index].item() for name, values in fields.items()}}
          for index, beta in enumerate(np.asarray(betas))]


def departure_bracket(points, *, tolerance: float):
  """Where ``I(X;T)`` departs from 0, from the converged points only (near the threshold the
  iterations slow down, and an unconverged encoder can sit either side of 0).

  Returns:
    ``(lo, hi)``: ``hi`` the smallest ``beta`` of a converged point with ``I(X;T) > tolerance``,
    ``lo`` the largest ``beta`` below it of a converged point with ``I(X;T) <= tolerance``;
    ``None`` for either when there is none.
  """
  points = sorted((p for p in points if p["converged"]), key=lambda p: p["beta"])
  departed = [p["beta"] for p in points if p["i_xt"] > tolerance]
  hi = departed[0] if departed else None
  below = [p["beta"] for p in points if p["i_xt"] <= tolerance and (hi is None or p["beta"] < hi)]
  return (below[-1] if below else None), hi


def extrapolated_departure(points, *, tolerance: float) -> float:
  """The ``beta`` where the line through the first two converged points with ``I(X;T) >
  tolerance`` meets ``I(X;T) = 0``.

  Near a continuous onset ``I(X;T)`` grows linearly in ``beta - beta_0`` (the slope condition
  ``1/beta = dI(T;Y)/dI(X;T) = rho^2 - c I(X;T) + ...``), so the error is second order in the
  distance of the points from the onset. ``nan`` without two such points, or when the line meets
  0 above the bracket ``(lo, hi)`` of `departure_bracket` or below it by more than ``hi - lo``
  (a jump of ``I(X;T)``, not a continuous onset).
  """
  departed = sorted((p for p in points if p["converged"] and p["i_xt"] > tolerance),
                    key=lambda p: p["beta"])
  if len(departed) < 2 or departed[1]["i_xt"] == departed[0]["i_xt"]:
    return math.nan
  first, second = departed[:2]
  slope = (second["i_xt"] - first["i_xt"]) / (second["beta"] - first["beta"])
  onset = first["beta"] - first["i_xt"] / slope
  lo, hi = departure_bracket(points, tolerance=tolerance)
  return onset if lo is not None and 2 * lo - hi <= onset <= hi else math.nan


def _discrete_joint_records(name, p_xy, config, key):
  """All the records of one discrete joint (its points, then its ``"joint"`` record)."""
  betas = np.geomspace(config.beta_min, config.beta_max, config.num_betas)
  clusters = sorted(int(c) for c in config.clusters[name])
  options = dict(config=config, fast_compile=name in config.fast_compile_joints)
  records = []
  for index, num_clusters in enumerate(clusters):
    for offset, method in enumerate(DISCRETE_METHODS):
      records += curve_points(p_xy, betas, key=jax.random.fold_in(key, 10 * index + offset),
                              num_clusters=num_clusters, method=method, **options)
  if config.deterministic:
    records += curve_points(p_xy, betas, key=jax.random.fold_in(key, 1000),
                            num_clusters=clusters[-1], method="deterministic", **options)
  grid = [r for r in records if r["method"] == "vmapped" and r["num_clusters"] == clusters[0]]
  lo, hi = departure_bracket(grid, tolerance=config.departure_tol)
  for round_index in range(config.threshold_rounds if name in config.threshold_joints else 0):
    if lo is None or hi is None:
      break
    refined = curve_points(p_xy, np.linspace(lo, hi, config.num_betas),
                           key=jax.random.fold_in(key, 2000 + round_index),
                           num_clusters=clusters[0], method="threshold", **options)
    records += refined
    lo, hi = departure_bracket(grid + [r for r in records if r["method"] == "threshold"],
                               tolerance=config.departure_tol)
  p = jnp.asarray(p_xy)
  rho = float(bottleneck.maximal_correlation(p))
  joint = {"kind": "joint", "joint": name, "num_x": int(p_xy.shape[0]),
           "num_y": int(p_xy.shape[1]), "mutual_information": float(info.mutual_information(p)),
           "entropy_x": float(info.entropy(jnp.sum(p, axis=1))),
           "entropy_y": float(info.entropy(jnp.sum(p, axis=0))), "maximal_correlation": rho,
           "trivial_instability_beta": 1.0 / rho ** 2 if rho > 0 else math.inf,
           "departure_lo": lo, "departure_hi": hi,
           "departure_extrapolated": extrapolated_departure(
               grid + [r for r in records if r["method"] == "threshold"],
               tolerance=config.departure_tol),
           "num_records": len(records)}
  if name == "symmetric":
    joint["error"] = float(config.symmetric_error)
    joint["theory_threshold"] = 1.0 / (1.0 - 2.0 * config.symmetric_error) ** 2
  return [{"joint": name, **r} for r in records] + [joint]


def _gaussian_records(config):
  cov_x, cov_xy, cov_y = gaussian_covariances(config.gaussian_dims, seed=config.seed)
  spectrum = jax.tree.map(lambda x: np.asarray(x[0]),
                          _GAUSSIAN_CURVE(cov_x, cov_xy, cov_y, np.ones(1)))
  # Directions with lambda = 1 up to rounding (d_x - d_y of them) carry nothing about Y.
  finite = spectrum.critical_betas[spectrum.eigenvalues < 1 - 1e-9]
  betas = np.geomspace(1.0 + 1e-6, max(config.beta_max, 4.0 * finite.max()), config.num_betas)
  betas = np.unique(np.concatenate([betas, finite * (1 + 1e-9)]))
  curve = _GAUSSIAN_CURVE(cov_x, cov_xy, cov_y, betas)
  d_x = int(cov_x.shape[0])
  records = [{"kind": "point", "joint": "gaussian", "method": "analytic", "num_clusters": d_x,
              "beta": float(beta), "i_xt": float(curve.i_xt[i]), "i_ty": float(curve.i_ty[i]),
              "lagrangian": float(curve.lagrangian[i]), "converged": True, "num_iterations": 0,
              "num_active": int(curve.num_active[i])} for i, beta in enumerate(betas)]
  eigenvalues = spectrum.eigenvalues
  mutual = -0.5 * float(np.sum(np.log(eigenvalues)))
  records.append({"kind": "joint", "joint": "gaussian", "d_x": d_x, "d_y": int(cov_y.shape[0]),
                  "mutual_information": mutual, "eigenvalues": eigenvalues.tolist(),
                  "critical_betas": finite.tolist(), "num_records": len(records)})
  return records


def joint_records(name: str, config, key) -> list:
  """Every record of one joint (see the module docstring), computed in float64."""
  with jax.enable_x64(True):
    if name == "gaussian":
      return _gaussian_records(config)
    if name == "symmetric":
      p_xy = symmetric_pair(config.symmetric_error)
    elif name == "random":
      p_xy = random_joint(config.random_shape, concentration=config.random_concentration,
                          seed=config.seed)
    elif name == "digits":
      p_xy = digits_joint(num_cells=config.digits_cells, kmeans_inits=config.kmeans_inits,
                          seed=config.seed, data_dir=config.data_dir)
    else:
      raise ValueError(f"ib_curve: joints must be among {JOINTS}; got {name!r}.")
    return _discrete_joint_records(name, p_xy, config, key)


# ----------------------------------------------------------------------------------------------
# What the summary reports.
# ----------------------------------------------------------------------------------------------


def best_curve(points) -> list:
  """The lowest-Lagrangian point at each ``beta`` over the vmapped and annealed curves of every
  ``|T|`` (the best IB point found), sorted by ``beta``."""
  best = {}
  for point in points:
    if point["method"] in DISCRETE_METHODS + ("analytic",):
      if point["beta"] not in best or point["lagrangian"] < best[point["beta"]]["lagrangian"]:
        best[point["beta"]] = point
  return [best[beta] for beta in sorted(best)]


def curve_shape(points, *, tolerance: float = 1e-9, moved: float = 1e-6) -> dict:
  """How a curve (sorted by ``beta``) meets the theory (science.md §8.4).

  Returns:
    ``decreases``: steps where ``I(X;T)`` or ``I(T;Y)`` falls by more than ``tolerance`` nats
    (0: monotone); ``concavity_violations``: consecutive secant slopes ``dI(T;Y) / dI(X;T)`` (over
    steps where ``I(X;T)`` moves by more than ``moved``) that increase by more than 1e-6 (0:
    concave); ``slope_violations``: secant slopes outside ``[1/beta_{k+1}, 1/beta_k]`` by more than
    1e-6 relative, the bracket any two optimal points satisfy (from ``L_{beta_k}(k) <=
    L_{beta_k}(k+1)`` and the same at ``beta_{k+1}``); ``max_slope_increase``.
  """
  beta = np.array([p["beta"] for p in points])
  i_xt = np.array([p["i_xt"] for p in points])
  i_ty = np.array([p["i_ty"] for p in points])
  decreases = int(np.sum(np.diff(i_xt) < -tolerance) + np.sum(np.diff(i_ty) < -tolerance))
  steps = np.flatnonzero(np.diff(i_xt) > moved)
  slopes = (i_ty[steps + 1] - i_ty[steps]) / (i_xt[steps + 1] - i_xt[steps])
  increases = np.diff(slopes)
  outside = ((slopes > (1 / beta[steps]) * (1 + 1e-6))
             | (slopes < (1 / beta[steps + 1]) * (1 - 1e-6)))
  return {"decreases": decreases, "concavity_violations": int(np.sum(increases > 1e-6)),
          "slope_violations": int(np.sum(outside)),
          "max_slope_increase": float(increases.max()) if increases.size else 0.0}


def _series(points, method, num_clusters):
  return sorted((p for p in points if p["method"] == method and p["num_clusters"] == num_clusters),
                key=lambda p: p["beta"])


def summarise_joint(name: str, records: list, config) -> tuple:
  """``(values, lines)``: the flat summary of one joint and its lines for ``summary.txt``."""
  joint = next(r for r in records if r["kind"] == "joint")
  points = [r for r in records if r["kind"] == "point"]
  mutual = joint["mutual_information"]
  best = best_curve(points)
  shape = curve_shape(best)
  values = {"mutual_information": mutual,
            "relevance_at_max_beta": best[-1]["i_ty"] / mutual,
            "decreases": shape["decreases"], "concavity_violations": shape["concavity_violations"],
            "slope_violations": shape["slope_violations"]}
  if name == "gaussian":
    values["first_critical_beta"] = joint["critical_betas"][0]
    lines = [
        f"gaussian (d_x={joint['d_x']}, d_y={joint['d_y']}; analytic, Chechik et al. 2005): "
        f"I(X;Y) = {mutual:.4f} nats, eigenvalues of Sigma_x|y Sigma_x^-1 "
        + ", ".join(f"{v:.4f}" for v in joint["eigenvalues"]) + ", critical betas "
        + ", ".join(f"{v:.4g}" for v in joint["critical_betas"])
        + f"; I(T;Y)/I(X;Y) = {values['relevance_at_max_beta']:.4f} at beta = "
        f"{best[-1]['beta']:.4g}; the curve is monotone ({shape['decreases']} decreases), concave "
        f"({shape['concavity_violations']} slope increases) and its secant slopes lie in "
        f"[1/beta_k+1, 1/beta_k] ({shape['slope_violations']} violations)."]
    return values, lines
  clusters = sorted(int(c) for c in config.clusters[name])
  grid = [p for p in points if p["method"] in DISCRETE_METHODS]
  lo, hi = joint["departure_lo"], joint["departure_hi"]
  departure = math.nan if lo is None or hi is None else 0.5 * (lo + hi)
  extrapolated = joint["departure_extrapolated"]
  values.update({"departure_beta": departure, "departure_extrapolated": extrapolated,
                 "trivial_instability_beta":
                 joint["trivial_instability_beta"],
                 "converged_fraction": float(np.mean([p["converged"] for p in grid])),
                 "max_iterations": int(max(p["num_iterations"] for p in grid))})
  rounds = config.threshold_rounds if name in config.threshold_joints else 0
  bracket = "none found" if lo is None or hi is None else f"between {lo:.6g} and {hi:.6g}"
  lines = [
      f"{name} (|X|={joint['num_x']}, |Y|={joint['num_y']}): I(X;Y) = {mutual:.4f} nats "
      f"({mutual / LOG2:.6f} bits), H(X) = {joint['entropy_x']:.4f} nats; |T| in {clusters}, "
      f"{config.num_betas} betas in [{config.beta_min:g}, {config.beta_max:g}], "
      f"{config.restarts} restarts.",
      f"  departure of I(X;T) from 0 (> {config.departure_tol:g} nats, converged points of the "
      f"vmapped |T|={clusters[0]} curve and {rounds} refinements): {bracket} (midpoint "
      f"{departure:.6g}; the first two departed points extrapolated linearly to I(X;T) = 0: "
      f"{extrapolated:.6g}, nan if the onset is not continuous); 1/rho_m^2 = "
      f"{joint['trivial_instability_beta']:.6g} (above it the trivial encoder is not a local "
      "minimum)."]
  if name == "symmetric":
    theory = joint["theory_threshold"]
    values["theory_threshold"] = theory
    values["departure_error"] = departure - theory
    values["extrapolated_error"] = extrapolated - theory
    deviations = {}
    for method in DISCRETE_METHODS:
      for num_clusters in clusters:
        series = _series(points, method, num_clusters)
        gap = np.abs(np.array([p["i_ty"] for p in series])
                     - mrs_gerber([p["i_xt"] for p in series], joint["error"]))
        deviations[(method, num_clusters)] = float(gap.max()) / LOG2
    best_gap = float(np.max(np.abs(np.array([p["i_ty"] for p in best]) - mrs_gerber(
        [p["i_xt"] for p in best], joint["error"])))) / LOG2
    values["mrs_gerber_max_deviation_bits"] = best_gap
    values["mrs_gerber_worst_curve_deviation_bits"] = max(deviations.values())
    worst = max(deviations, key=deviations.get)
    inside = lo is not None and hi is not None and lo <= theory <= hi
    lines.append(
        f"  theory (science.md §8.5, A.8): threshold 1/(1-2e)^2 = {theory:.5g}; the bracket "
        f"{'holds' if inside else 'does NOT hold'} it; midpoint error {departure - theory:+.2e}, "
        f"extrapolation error {extrapolated - theory:+.2e}. Max |I(T;Y) - Mrs "
        f"Gerber(I(X;T))| over the best curve: {best_gap:.2e} bits "
        f"(science.md: 1e-4); worst single curve {worst[0]} |T|={worst[1]}: "
        f"{deviations[worst]:.2e} bits.")
  lines.append(
      f"  best curve (lowest Lagrangian per beta over vmapped and annealed, all |T|): "
      f"I(T;Y)/I(X;Y) = {values['relevance_at_max_beta']:.4f} at beta = {best[-1]['beta']:.4g} "
      f"(I(X;T) = {best[-1]['i_xt']:.4f} of H(X) = {joint['entropy_x']:.4f}); monotone: "
      f"{shape['decreases']} decreases of I(X;T) or I(T;Y) by > 1e-9 nats; concave: "
      f"{shape['concavity_violations']} increases of the secant slope dI(T;Y)/dI(X;T) by > 1e-6 "
      f"(largest {shape['max_slope_increase']:.2e}); secant slopes outside [1/beta_k+1, "
      f"1/beta_k]: {shape['slope_violations']}.")
  lowest = {c: {} for c in clusters}
  for point in grid:
    per_beta = lowest[point["num_clusters"]]
    per_beta[point["beta"]] = min(per_beta.get(point["beta"], math.inf), point["lagrangian"])
  worse = sum(lowest[big][beta] > lowest[small][beta] + 1e-9
              for small, big in zip(clusters, clusters[1:]) for beta in lowest[small])
  values["more_clusters_worse"] = worse
  lines.append(
      f"  more clusters: at {worse} of {len(clusters) - 1} x {config.num_betas} (|T|, beta) "
      "pairs the lowest Lagrangian (vmapped or annealed) is higher with the next larger |T| by "
      "> 1e-9 nats (science.md B.21: non-increasing in |T|).")
  comparison = []
  for num_clusters in clusters:
    vmapped = {p["beta"]: p for p in _series(points, "vmapped", num_clusters)}
    annealed = {p["beta"]: p for p in _series(points, "annealed", num_clusters)}
    differences = np.array([annealed[b]["lagrangian"] - vmapped[b]["lagrangian"]
                            for b in vmapped])
    annealed_better = int(np.sum(differences < -1e-9))
    vmapped_better = int(np.sum(differences > 1e-9))
    values[f"t{num_clusters}_annealed_better"] = annealed_better
    values[f"t{num_clusters}_vmapped_better"] = vmapped_better
    comparison.append(
        f"|T|={num_clusters}: annealed lower at {annealed_better}, vmapped lower at "
        f"{vmapped_better} of {len(differences)} betas (largest gaps "
        f"{-min(differences.min(), 0.0):.2e} / {max(differences.max(), 0.0):.2e} nats); "
        "violations of monotone/concave/slope bracket, vmapped "
        + ", annealed ".join("/".join(str(shape[k]) for k in SHAPE_CHECKS) for shape in (
            curve_shape(_series(points, m, num_clusters)) for m in DISCRETE_METHODS)))
  lines.append("  vmapped vs annealed (Lagrangian differences > 1e-9 nats; the shape of each "
               "curve as `curve_shape` counts it): " + "; ".join(comparison) + ".")
  for method in DISCRETE_METHODS:
    series = [p for p in grid if p["method"] == method]
    values[f"{method}_converged_fraction"] = float(np.mean([p["converged"] for p in series]))
  lines.append(
      f"  convergence: max |change of q(t|x)| <= tol = {config.tol:g} within {config.num_steps} "
      f"updates: vmapped {values['vmapped_converged_fraction']:.3f}, annealed "
      f"{values['annealed_converged_fraction']:.3f} of the points (most updates: "
      f"{values['max_iterations']}).")
  hard = _series(points, "deterministic", clusters[-1])
  if hard:
    values["deterministic_relevance_at_max_beta"] = hard[-1]["i_ty"] / mutual
    values["deterministic_above_trivial"] = sum(p["lagrangian"] > 1e-12 for p in hard)
    lines.append(
        f"  deterministic IB (|T|={clusters[-1]}, vmapped, objective H(T) - beta I(T;Y)): "
        f"I(T;Y)/I(X;Y) = {values['deterministic_relevance_at_max_beta']:.4f} at the largest "
        f"beta, {len({round(p['i_xt'], 9) for p in hard})} distinct points (hard clusterings); "
        f"at {values['deterministic_above_trivial']} of {len(hard)} betas its objective is above "
        "the trivial encoder's 0 (the hard update stuck in a poor clustering).")
  return values, lines


# ----------------------------------------------------------------------------------------------
# The plot and the driver.
# ----------------------------------------------------------------------------------------------


def _plot(path, by_joint, config):
  from matplotlib.figure import Figure

  names = [name for name in JOINTS if name in by_joint]
  figure = Figure(figsize=(4.6 * len(names), 8.4), layout="constrained")
  axes = np.asarray(figure.subplots(2, len(names), squeeze=False))
  for column, name in enumerate(names):
    records = by_joint[name]
    joint = next(r for r in records if r["kind"] == "joint")
    points = [r for r in records if r["kind"] == "point"]
    plane, sweep = axes[0, column], axes[1, column]
    series_keys = sorted({(p["method"], p["num_clusters"]) for p in points
                          if p["method"] != "threshold"})
    for method, num_clusters in series_keys:
      series = _series(points, method, num_clusters)
      style = {"vmapped": dict(marker="o", markersize=3, linestyle="-", alpha=0.8),
               "annealed": dict(marker="s", markersize=4, linestyle="none", fillstyle="none"),
               "deterministic": dict(marker="x", markersize=5, linestyle="none"),
               "analytic": dict(linestyle="-", linewidth=2)}[method]
      label = f"{method} |T|={num_clusters}" if method != "analytic" else "analytic (GIB)"
      plane.plot([p["i_xt"] for p in series], [p["i_ty"] for p in series], label=label, **style)
      sweep.plot([p["beta"] for p in series], [p["i_xt"] for p in series], label=label, **style)
    mutual = joint["mutual_information"]
    plane.axhline(mutual, color="gray", linestyle="--", label=f"I(X;Y) = {mutual:.3f}")
    top = max(p["i_xt"] for p in points)
    if "entropy_x" in joint:
      plane.axvline(joint["entropy_x"], color="gray", linestyle=":",
                    label=f"H(X) = {joint['entropy_x']:.3f}")
      top = joint["entropy_x"]
    span = np.linspace(0, top, 200)
    plane.plot(span, np.minimum(span, mutual), color="lightgray", linewidth=0.8,
               label="I(T;Y) <= I(X;T)")
    if name == "symmetric":
      plane.plot(span, mrs_gerber(span, joint["error"]), color="black", linewidth=0.8,
                 linestyle="-.", label="Mrs Gerber")
      sweep.axvline(joint["theory_threshold"], color="black", linestyle="-.",
                    label=f"1/(1-2e)^2 = {joint['theory_threshold']:.4g}")
    if name == "gaussian":
      for beta in joint["critical_betas"]:
        sweep.axvline(beta, color="gray", linestyle=":", linewidth=0.8)
    elif math.isfinite(joint["trivial_instability_beta"]):
      sweep.axvline(joint["trivial_instability_beta"], color="gray", linestyle="--",
                    label=f"1/rho_m^2 = {joint['trivial_instability_beta']:.4g}")
    plane.set_xlabel("I(X;T) [nats]")
    plane.set_ylabel("I(T;Y) [nats]")
    plane.set_title(name, fontsize="small")
    sweep.set_xscale("log")
    sweep.set_xlabel("beta (weight of I(T;Y))")
    sweep.set_ylabel("I(X;T) [nats]")
    for axis in (plane, sweep):
      axis.grid(alpha=0.3)
      axis.legend(fontsize="xx-small")
  figure.suptitle("Information bottleneck curves: Blahut-Arimoto (vmapped restarts, annealing, "
                  "deterministic IB) and the Gaussian closed form")
  figure.savefig(path, dpi=110)


def _complete(records) -> bool:
  joints = [r for r in records if r["kind"] == "joint"]
  return len(joints) == 1 and joints[0]["num_records"] == len(records) - 1


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Computes the curves of every joint of the config; writes records, the plot and the summary.

  Args:
    config: see ``configs/ib_curve.py``.
    workdir: the output directory; a rerun with the same config resumes per joint.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing), per joint
    ``<joint>_``: ``mutual_information``, ``relevance_at_max_beta`` (``I(T;Y)/I(X;Y)`` of the best
    curve at the largest ``beta``), ``decreases``, ``concavity_violations``, ``slope_violations``
    (`curve_shape`); for the discrete joints ``departure_beta`` (the midpoint of
    `departure_bracket`), ``departure_extrapolated`` (`extrapolated_departure`),
    ``trivial_instability_beta``,
    ``converged_fraction``, ``max_iterations``, ``more_clusters_worse``,
    ``t<|T|>_annealed_better`` / ``_vmapped_better``; for the symmetric pair
    ``theory_threshold``, ``departure_error``, ``extrapolated_error``,
    ``mrs_gerber_max_deviation_bits``,
    ``mrs_gerber_worst_curve_deviation_bits``; with the deterministic IB
    ``deterministic_relevance_at_max_beta`` and ``deterministic_above_trivial``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = io.read_metrics(metrics_path) if os.path.exists(metrics_path) else []
  unknown = [name for name in config.joints if name not in JOINTS]
  if unknown:
    raise ValueError(f"ib_curve: joints must be among {JOINTS}; got {unknown}.")
  by_joint = {}
  for name in config.joints:
    previous = [r for r in saved if r.get("joint") == name]
    if _complete(previous):
      by_joint[name] = previous
    else:
      key = jax.random.fold_in(jax.random.key(config.seed), JOINTS.index(name))
      by_joint[name] = [io.to_json_value(r) for r in joint_records(name, config, key)]
    common.write_records(metrics_path, [r for n in by_joint for r in by_joint[n]],
                         tensorboard=config.tensorboard)
  summary, lines = {}, [
      "ib_curve: information bottleneck curves (science.md §8; A.8, B.21). Nats unless said; "
      "beta weighs I(T;Y) in I(X;T) - beta I(T;Y)."]
  for name, records in by_joint.items():
    values, joint_lines = summarise_joint(name, records, config)
    summary.update({f"{name}_{key}": value for key, value in values.items()})
    lines += joint_lines
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), by_joint, config)
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
