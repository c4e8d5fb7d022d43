"""The structure function of a task, S(t), for real and random labels, over seeds.

Achille, Paolini, Mbeng & Soatto, "The information complexity of learning tasks, their structure
and their distance" (Information and Inference 2021; science.md §3.1-3.2): the structure function
``S(t) = min_{KL(Q||P) <= t} E_Q L_D`` is traced by minimising the information Lagrangian
``E_Q L_D + beta KL(Q || P)`` over Gaussian ``Q`` for a decreasing sweep of ``beta``, warm-started
from ``Q = P`` (`infojax.experiments.common.lagrangian_sweep`, the variational estimator), with
``P = N(w0, lambda^2 I)`` at the initialisation of an MLP and ``beta`` for the **summed** loss in
nats. Each ``beta`` gives one point ``(KL(Q*_beta || P), E_{Q*_beta} L_D)``; each fit runs until
the relative change of its chunk-mean objective between two chunks of ``check_every`` steps is at
most ``tolerance`` (``num_steps`` at most), and the criterion's last value is recorded.

Two knees are reported for each curve (science.md §3.1):

- the **code-length knee** (`infojax.weights.kolmogorov_knee`): the least information within
  ``knee_tolerance`` nats of the minimal two-part code length ``N E_Q L_D + KL``. That code length
  is the Lagrangian at ``beta = 1``, so this knee is the minimum two-part code length, beta = 1, by
  construction: it says where the sweep's ``beta = 1`` fit landed, not where S bends.
- the **hull knee** (`infojax.weights.hull_knee`): the vertex of the lower convex hull of the points
  ``(t, N E_Q L_D)`` where the slope of the hull's segments crosses -1 summed nat per nat, with the
  slopes fitted on the hull segments around it (``hull_slope_left`` < -1 <= ``hull_slope_right``).
  It is defined from S alone. The Lagrangian only sees the hull, and its ``beta = 1`` minimiser sits
  where the hull's slope crosses -1, so for optimal fits the two knees agree; where they differ,
  the fits or the ``beta`` grid are not fine enough to locate the knee.

The information at each knee is split into its distance term ``||mu - w0||^2 / (2 lambda^2)`` and
its variance term (the rest of the KL). Every number of a (dataset, labels) pair is reported as the
mean over ``config.seeds`` with a 95% Student-t interval (`common.mean_interval`); a seed draws the
training subset, the initialisation ``w0``, the random labels and the fits' noise.

Outputs in the workdir: ``config.json``; ``metrics.jsonl`` with one ``"sweep"`` record per unit
(dataset, seed, labels) and ``beta``, one ``"curve"`` record per unit (both knees, the hull and its
slopes), one ``"knees"`` record per dataset and labels (means and intervals over the seeds) and one
``"convergence"`` record; ``sweeps/<unit>/`` with each unit's orbax checkpoints; one
``structure_function_<dataset>.png`` per dataset (every seed's points, hull and knees) and
``summary.txt``. A rerun resumes: units whose records are in ``metrics.jsonl`` are kept, the unit
that was running resumes at the ``beta`` after its last checkpoint, and the records end identical to
an uninterrupted run's. With ``config.tensorboard`` the records are mirrored as TensorBoard scalars.
"""

import functools
import json
import math
import os

import jax
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import models
from infojax import train
from infojax import weights
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
SWEEPS_DIR = "sweeps"
LABELS = ("real", "random")
KNEES = ("code_knee", "hull_knee")
POINT_QUANTITIES = ("beta", "information", "information_distance", "information_variance",
                    "expected_loss", "code_length")
CURVE_QUANTITIES = (tuple(f"{knee}_{name}" for knee in KNEES for name in POINT_QUANTITIES)
                    + ("hull_slope_left", "hull_slope_right", "loss_at_max_beta",
                       "loss_at_min_beta", "information_at_min_beta"))


def plot_file(dataset: str) -> str:
  """The name of a dataset's plot in the workdir."""
  return f"structure_function_{dataset}.png"


def unit_name(dataset: str, seed: int, labels: str) -> str:
  """The name of one unit of the run (one traced curve), e.g. ``"digits_seed0_real"``."""
  return f"{dataset}_seed{seed}_{labels}"


def curve_knees(points, *, num_examples: int, tolerance: float) -> dict:
  """Both knees of one traced structure function, and its lower convex hull.

  Args:
    points: the sweep's points (`common.lagrangian_sweep`), ``beta`` decreasing.
    num_examples: N (the knees work in summed nats).
    tolerance: nats of code length for `infojax.weights.kolmogorov_knee`.

  Returns:
    ``code_knee`` and ``hull_knee`` (indices into ``points``), ``hull`` (the hull's vertices,
    information increasing), ``hull_slopes`` (its segments' slopes, summed nats of loss per nat of
    information), and ``hull_slope_left`` / ``hull_slope_right``: the slopes of the segments that
    end and start at the hull knee (``nan`` where it is the first or last vertex).
  """
  information = np.array([p["information"] for p in points], np.float64)
  loss = np.array([p["expected_loss"] for p in points], np.float64)
  code_knee = int(weights.kolmogorov_knee(information, loss, num_examples=num_examples,
                                          tolerance=tolerance))
  hull = weights.hull_knee(information, loss, num_examples=num_examples)
  vertices = [int(i) for i in hull.hull]
  slopes = [float(s) for s in hull.slopes]
  position = vertices.index(int(hull.index))
  return {"code_knee": code_knee, "hull_knee": int(hull.index), "hull": vertices,
          "hull_slopes": slopes,
          "hull_slope_left": slopes[position - 1] if position > 0 else math.nan,
          "hull_slope_right": slopes[position] if position < len(slopes) else math.nan}


def curve_values(points, knees: dict) -> dict:
  """The reported numbers of one curve: each knee's ``POINT_QUANTITIES``, the hull slopes around
  the hull knee and the ends of the sweep (``CURVE_QUANTITIES``)."""
  values = {f"{knee}_{name}": points[knees[knee]][name] for knee in KNEES
            for name in POINT_QUANTITIES}
  values.update(hull_slope_left=knees["hull_slope_left"],
                hull_slope_right=knees["hull_slope_right"],
                loss_at_max_beta=points[0]["expected_loss"],
                loss_at_min_beta=points[-1]["expected_loss"],
                information_at_min_beta=points[-1]["information"])
  return values


def over_seeds(curves) -> dict:
  """Each of ``CURVE_QUANTITIES`` over the seeds' curve records: ``<name>`` the mean and
  ``<name>_low``, ``<name>_high`` its 95% Student-t interval (`common.mean_interval`).

  A hull slope is missing (``nan``) for a seed whose hull knee is the hull's first or last vertex;
  its interval is over the other seeds, with their number in ``<name>_num_seeds`` (all ``nan`` if
  no seed has it).
  """
  values = {}
  for name in CURVE_QUANTITIES:
    seeds = np.array([curve[name] for curve in curves], np.float64)
    seeds = seeds[~np.isnan(seeds)]
    mean, low, high = common.mean_interval(seeds) if seeds.size else (math.nan,) * 3
    values.update({name: float(mean), f"{name}_low": float(low), f"{name}_high": float(high)})
    if name.startswith("hull_slope"):
      values[f"{name}_num_seeds"] = int(seeds.size)
  return values


def convergence(sweeps, *, tolerance, num_steps: int) -> dict:
  """How well the fits met the criterion.

  Args:
    sweeps: the ``"sweep"`` records (``steps``, ``relative_change``).
    tolerance: the criterion's tolerance (``None``: every fit runs ``num_steps`` steps).
    num_steps: the cap on the steps of a fit.

  Returns:
    ``num_fits``, ``fits_at_cap`` (fits that ran ``num_steps`` steps without meeting the
    criterion), ``worst_relative_change`` (the largest final relative change; ``nan`` if every fit
    ran one chunk) and ``median_steps``.
  """
  changes = np.array([r["relative_change"] for r in sweeps], np.float64)
  steps = np.array([r["steps"] for r in sweeps])
  met = np.zeros(len(sweeps), bool) if tolerance is None else changes <= tolerance
  worst = float(np.max(changes[~np.isnan(changes)])) if not np.all(np.isnan(changes)) else math.nan
  return {"num_fits": len(sweeps), "fits_at_cap": int(np.sum((steps >= num_steps) & ~met)),
          "worst_relative_change": worst, "median_steps": float(np.median(steps))}


@functools.lru_cache(maxsize=None)
def _loss_fn(hidden_sizes: tuple, num_classes: int):
  """The mean cross-entropy of an MLP, one object per architecture, so that the sweeps of every
  seed, labels and rerun in this process share one compilation."""
  model = models.MLP(hidden_sizes, num_classes)
  return common.mean_nll_fn(models.make_apply_fn(model))


@functools.lru_cache(maxsize=None)
def _optimizer(optimizer_json: str, num_steps: int):
  """The sweep's optimiser, one object per setting (see `_loss_fn`)."""
  return train.make_optimizer(ml_collections.ConfigDict(json.loads(optimizer_json)),
                              steps_per_epoch=1, num_epochs=num_steps)


def _trace_unit(config, workdir, dataset, dataset_index, seed, labels_index, splits):
  """Traces one unit's curve (resuming from its checkpoints) and returns its records."""
  num_classes = data.dataset_info(dataset, data_dir=config.data_dir).num_classes
  images, labels = splits["train"]["image"], splits["train"]["label"]
  num_train = int(labels.shape[0])
  key = jax.random.key(seed)
  _, initial = common.init_mlp(config.hidden_sizes, num_classes, images.shape[1:],
                               jax.random.fold_in(key, 2 * dataset_index))
  labels_name = LABELS[labels_index]
  if labels_name == "random":
    labels, _ = data.transforms.corrupt_labels(labels, fraction=1.0, num_classes=num_classes,
                                               seed=seed)
  name = unit_name(dataset, seed, labels_name)
  points = common.lagrangian_sweep(
      _loss_fn(tuple(int(h) for h in config.hidden_sizes), num_classes), initial,
      (images, labels), common.beta_grid(config.beta_max, config.beta_min, config.num_betas),
      prior_variance=config.prior_variance,
      optimizer=_optimizer(json.dumps(config_lib.config_to_dict(config.optimizer),
                                      sort_keys=True), config.num_steps),
      num_steps=config.num_steps,
      key=jax.random.fold_in(key, 2 * dataset_index + 1 + 100 * labels_index),
      eval_samples=config.eval_samples, tolerance=config.tolerance,
      check_every=config.check_every, workdir=os.path.join(workdir, SWEEPS_DIR, name))
  knees = curve_knees(points, num_examples=num_train, tolerance=config.knee_tolerance)
  unit = {"dataset": dataset, "seed": seed, "labels": labels_name}
  hull = set(knees["hull"])
  records = [{"kind": "sweep", **unit, "code_knee": k == knees["code_knee"],
              "hull_knee": k == knees["hull_knee"], "on_hull": k in hull, **point}
             for k, point in enumerate(points)]
  records.append({"kind": "curve", **unit, "num_train": num_train,
                  "num_parameters": common.num_parameters(initial), **knees,
                  **curve_values(points, knees)})
  return records


def _segments(information, summed_loss, hull, num=24):
  """Points along the hull's straight segments, dense enough to draw them on a log axis."""
  t, s = [], []
  for a, b in zip(hull[:-1], hull[1:]):
    fraction = np.linspace(0.0, 1.0, num)
    t.append(information[a] + fraction * (information[b] - information[a]))
    s.append(summed_loss[a] + fraction * (summed_loss[b] - summed_loss[a]))
  return (np.concatenate(t), np.concatenate(s)) if t else (information[hull], summed_loss[hull])


def _plot(path, records, *, chance_loss, title):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11.0, 4.4), layout="constrained")
  axes = figure.subplots(1, 2)
  curves = [r for r in records if r["kind"] == "curve"]
  colors = {"real": "C0", "random": "C3"}
  for curve in curves:
    points = [r for r in records if r["kind"] == "sweep" and r["seed"] == curve["seed"]
              and r["labels"] == curve["labels"]]
    information = np.array([p["information"] for p in points])
    loss = np.array([p["expected_loss"] for p in points])
    betas = np.array([p["beta"] for p in points])
    num_train = curve["num_train"]
    first = curve["seed"] == curves[0]["seed"]
    once = first and curve["labels"] == LABELS[0]  # one legend entry for each marker
    color = colors[curve["labels"]]
    axes[0].plot(information, loss, marker="o", markersize=3, linestyle="none", color=color,
                 alpha=0.6, label=f"{curve['labels']} labels" if first else None)
    hull_t, hull_s = _segments(information, num_train * loss, curve["hull"])
    axes[0].plot(hull_t, hull_s / num_train, color=color, linewidth=1.0,
                 label="lower convex hull" if once else None)
    hull_knee, code_knee = curve["hull_knee"], curve["code_knee"]
    axes[0].plot(information[hull_knee], loss[hull_knee], marker="*", markersize=12,
                 linestyle="none", color=color,
                 label="hull knee (slope crosses -1)" if once else None)
    axes[0].plot(information[code_knee], loss[code_knee], marker="x", markersize=9,
                 linestyle="none", color="black",
                 label="minimum code length (beta = 1)" if once else None)
    # The ideal code of noise from the hull knee: one nat of summed loss per nat of information.
    span = np.geomspace(information[hull_knee], information[hull_knee] + num_train
                        * loss[hull_knee], 50)
    axes[0].plot(span, loss[hull_knee] - (span - information[hull_knee]) / num_train,
                 linestyle="--", color=color, alpha=0.4)
    axes[1].plot(betas, loss, marker="o", markersize=3, color=color, alpha=0.7,
                 label=f"{curve['labels']} labels" if first else None)
  for axis in axes:
    axis.axhline(chance_loss, color="gray", linestyle=":", label="log |Y|")
    axis.set_xscale("log")
    axis.set_ylim(bottom=0)
    axis.set_ylabel("expected training loss E_Q L_D [nats]")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  axes[0].set_xlabel("information in the weights KL(Q || P) [nats]")
  axes[0].set_title("S(t), every seed; dashed: slope -1 in summed nats from the hull knee",
                    fontsize="small")
  axes[1].set_xlabel("beta (summed-loss convention)")
  axes[1].set_title("the minimiser's loss along the beta sweep", fontsize="small")
  figure.suptitle(title)
  figure.savefig(path, dpi=120)


def _interval(values: dict, name: str, digits: str) -> str:
  return (f"{values[name]:{digits}} [{values[name + '_low']:{digits}}, "
          f"{values[name + '_high']:{digits}}]")


def _slope(values: dict, name: str) -> str:
  count = values[f"{name}_num_seeds"]
  if count == 0:
    return "none (the knee ends the hull)"
  text = _interval(values, name, ".3g")
  total = values["num_seeds"]
  return text if count == total else f"{text} ({count} of {total} seeds)"


def _knee_line(values: dict, knee: str) -> str:
  return (f"KL {_interval(values, f'{knee}_information', '.1f')} nats (distance "
          f"{values[f'{knee}_information_distance']:.1f} + variance "
          f"{values[f'{knee}_information_variance']:.1f}), E_Q L_D "
          f"{_interval(values, f'{knee}_expected_loss', '.3f')}, code length N E_Q L_D + KL "
          f"{_interval(values, f'{knee}_code_length', '.1f')} nats")


def _summary_lines(config, knee_records, convergence_record) -> list:
  tolerance = ("a fixed number of steps" if config.tolerance is None else
               f"until the relative change of the chunk-mean objective between two chunks of "
               f"{config.check_every} steps is <= {config.tolerance:g}")
  lines = [
      f"structure_function: variational Gaussian Q, prior N(w0, {config.prior_variance:g} I) at "
      f"the initialisation, beta for the summed loss (nats), {config.num_betas} betas from "
      f"{config.beta_max:g} to {config.beta_min:g}; each fit full-batch {tolerance}, at most "
      f"{config.num_steps} steps. Seeds {tuple(config.seeds)}: mean [95% t interval].",
      f"Convergence: {convergence_record['fits_at_cap']} of {convergence_record['num_fits']} fits "
      f"stopped at the cap of {config.num_steps} steps without meeting the criterion; worst final "
      f"relative change {convergence_record['worst_relative_change']:.3g}; median "
      f"{convergence_record['median_steps']:.0f} steps."]
  for values in knee_records:
    lines.append(
        f"{values['dataset']}, {values['labels']} labels (N={values['num_train']}): "
        f"minimum two-part code length (beta = 1): {_knee_line(values, 'code_knee')}. Hull knee "
        f"(slope of S crosses -1 on the lower convex hull, at beta "
        f"{_interval(values, 'hull_knee_beta', '.3g')}): {_knee_line(values, 'hull_knee')}; hull "
        f"slopes {_slope(values, 'hull_slope_left')} before it and "
        f"{_slope(values, 'hull_slope_right')} after it (summed nats of loss per nat). "
        f"E_Q L_D {values['loss_at_max_beta']:.3f} at beta={config.beta_max:g} -> "
        f"{values['loss_at_min_beta']:.3f} at beta={config.beta_min:g} (KL "
        f"{values['information_at_min_beta']:.1f}).")
  return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Traces S(t) for real and random labels on each dataset and seed of the config.

  A rerun resumes: units (dataset, seed, labels) already in ``metrics.jsonl`` are kept, the unit
  that was running resumes from its sweep's last checkpoint, and the records end identical to an
  uninterrupted run's.

  Args:
    config: see ``configs/structure_function.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary:
    for each ``<dataset>_<labels>`` and each of ``CURVE_QUANTITIES`` (both knees' ``beta``,
    ``information``, its distance and variance terms, ``expected_loss`` and ``code_length``; the
    hull slopes around the hull knee; the ends of the sweep) the mean over the seeds and its
    ``_low`` and ``_high`` 95% t interval; ``<dataset>_num_train``; and the `convergence` numbers.
  """
  common.check_seeds("structure_function", config.seeds)
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = common.saved_records(metrics_path)
  completed = {unit_name(r["dataset"], r["seed"], r["labels"]) for r in saved
               if r["kind"] == "curve"}
  done = {name: [r for r in saved if r["kind"] in ("sweep", "curve")
                 and unit_name(r["dataset"], r["seed"], r["labels"]) == name]
          for name in completed}
  units = [(dataset_index, dataset, seed, labels_index)
           for dataset_index, dataset in enumerate(config.datasets) for seed in config.seeds
           for labels_index in range(len(LABELS))]
  order = [unit_name(dataset, seed, LABELS[labels_index]) for _, dataset, seed, labels_index
           in units]
  splits = {}
  for (dataset_index, dataset, seed, labels_index), name in zip(units, order):
    if name in done:
      continue
    if (dataset, seed) not in splits:
      splits = {(dataset, seed): common.load_splits(
          dataset, data_dir=config.data_dir, normalize=config.normalize,
          num_train=config.num_train, seed=seed)}
    done[name] = _trace_unit(config, workdir, dataset, dataset_index, seed, labels_index,
                             splits[(dataset, seed)])
    common.write_records(metrics_path, [r for n in order if n in done for r in done[n]],
                         tensorboard=config.tensorboard)
  records = [r for name in order for r in done[name]]
  summary, knee_records = {}, []
  for dataset in config.datasets:
    num_classes = data.dataset_info(dataset, data_dir=config.data_dir).num_classes
    for labels in LABELS:
      curves = [r for r in records if r["kind"] == "curve" and r["dataset"] == dataset
                and r["labels"] == labels]
      values = over_seeds(curves)
      summary[f"{dataset}_num_train"] = curves[0]["num_train"]
      summary.update({f"{dataset}_{labels}_{k}": v for k, v in values.items()})
      knee_records.append({"kind": "knees", "dataset": dataset, "labels": labels,
                           "num_train": curves[0]["num_train"], "num_seeds": len(curves),
                           **values})
    if io.is_primary_process():
      _plot(os.path.join(workdir, plot_file(dataset)),
            [r for r in records if r["dataset"] == dataset], chance_loss=math.log(num_classes),
            title=f"Structure function on {dataset}: MLP {tuple(config.hidden_sizes)}, "
            f"N={curves[0]['num_train']}, seeds {tuple(config.seeds)}")
  convergence_record = {"kind": "convergence", **convergence(
      [r for r in records if r["kind"] == "sweep"], tolerance=config.tolerance,
      num_steps=config.num_steps)}
  summary.update({k: v for k, v in convergence_record.items() if k != "kind"})
  common.write_records(metrics_path, records + knee_records + [convergence_record],
                       tensorboard=config.tensorboard)
  common.write_summary(os.path.join(workdir, SUMMARY_FILE),
                       _summary_lines(config, knee_records, convergence_record))
  return summary if io.is_primary_process() else {}
