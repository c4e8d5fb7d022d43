"""Test error against the number of parameters and against the information in the weights.

The lecture's "information is a better measure of complexity than the number of parameters"
(Achille & Soatto; science.md §4.4, "Bias-variance"): train one-hidden-layer MLPs of increasing
width by SGD on the same data (by default with a fraction of the training labels corrupted, so that
fitting everything costs test accuracy), then plot the test error of each solution against its
number of parameters and against the information in its weights. Each seed in ``config.seeds`` is a
whole replication: its own training subset (with ``num_train``), its own corrupted labels (the
noise is redrawn per seed, so the spread covers which labels are wrong), its own initialisations
and its own batches; the widths of one seed share its data. Test error and information are reported
per width as the mean over seeds with the 95% Student-t interval (`common.mean_interval`).

The information estimator is the closed form around the trained weights ``w*``
(`infojax.experiments.common.gaussian_information_terms`; science.md §2.6, corrected form):
``KL(Q*||P) = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta_mean)`` with ``h`` the
exact true-Fisher diagonal on the training set, ``P = N(w0, lambda^2 I)`` at the initialisation,
``beta`` for the summed loss (``beta = 1``: the Bayesian / MDL trade-off) and ``beta_mean = beta /
N``. The two terms are reported apart: the mean (distance) term ``||w* - w0||^2 / (2 lambda^2)``
and the curvature term, the rest. The Laplace code length of ``w*`` in summed nats is
``N C*_beta = N L(w*) + beta [||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j log(1 + lambda^2 h_j /
beta_mean)]`` (`infojax.weights.optimal_lagrangian` for the mean loss, times N).

Two priors:

* the fixed ``lambda^2 = config.prior_variance``, chosen before the data: ``information`` and
  ``code_length`` as above;
* the ``lambda_k^2`` of a log-uniform grid of K values (``prior_variance_grid_{min,max,size}``)
  that minimises ``N C*_beta``, paid for by a union bound: the prior is the mixture
  ``P = (1/K) sum_k N(w0, lambda_k^2 I)``, and since ``p(w) >= p_k(w) / K`` for every k,
  ``KL(Q||P) <= KL(Q||P_k) + log K``. The choice of ``lambda_k^2`` costs ``log K`` nats, added to
  the reported information, ``information_occam = KL(Q*||P_k) + log K``, and to the code length,
  ``code_length_occam = N C*_beta(lambda_k^2) + beta log K``. This is the union bound over the
  prior variance of Dziugaite & Roy 2017 (science.md §11.1, with a uniform instead of a
  ``1/j^2`` weighting over a finite grid); a fine grid makes the choice nearly continuous for
  ``log K`` nats (4.6 for K = 100).

Rank correlations (Spearman) of the test error with each complexity measure are reported per seed
and for the means over seeds; the summary also says whether the test error has a second descent
(from the worst width wider than the best one to the widest, the drop paired by seed with its 95%
interval above 0) and whether each information measure descends with it by the same criterion.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"sgd"`` records per seed, width and
epoch, one ``"width"`` record per seed and width), ``units/seed_<s>/width_<w>/`` (each unit's
training checkpoints), ``bias_variance.png`` and ``summary.txt``. A rerun resumes: the (seed, width)
units already in ``metrics.jsonl`` are kept, and an interrupted unit's training continues from its
last checkpoint (``checkpoint_every`` epochs apart), with records identical to an uninterrupted run.
"""

import math
import os
from typing import NamedTuple

import jax
import ml_collections
import numpy as np
import scipy.stats

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import weights
from infojax.experiments import common

PLOT_FILE = "bias_variance.png"
UNITS_DIR = "units"
# Per-width quantities reported as mean and interval over seeds.
_SPREAD_KEYS = ("train_error", "test_error", "information", "information_mean_term",
                "information_curvature_term", "code_length", "information_occam",
                "information_occam_mean_term", "information_occam_curvature_term",
                "code_length_occam")
# Complexity measures the test error is rank-correlated with: summary name -> record key.
_MEASURES = {"parameters": "num_parameters", "information": "information",
             "information_occam": "information_occam"}


class OccamChoice(NamedTuple):
  """The prior variance a two-part code chooses from a grid, and what the choice costs.

  Attributes:
    prior_variance: the ``lambda_k^2`` of the grid that minimises ``N C*_beta``.
    code_length: ``N C*_beta(lambda_k^2) + beta log K``, summed nats.
    choice_cost: ``log K``, nats: the union bound's price for choosing among K values.
  """
  prior_variance: float
  code_length: float
  choice_cost: float


def prior_variance_grid(minimum: float, maximum: float, size: int) -> np.ndarray:
  """``size`` log-uniform prior variances from ``minimum`` to ``maximum`` (float64, increasing)."""
  if not 0 < minimum <= maximum:
    raise ValueError(f"bias_variance: need 0 < prior_variance_grid_min <= prior_variance_grid_max;"
                     f" got {minimum} and {maximum}.")
  if isinstance(size, bool) or int(size) != size or size < 1:
    raise ValueError(f"bias_variance: prior_variance_grid_size must be a positive integer; got "
                     f"{size!r}.")
  return np.geomspace(minimum, maximum, int(size))


def laplace_code_length(curvature, params, *, loss: float, num_examples: int, beta: float,
                        prior_variance: float, prior_mean) -> float:
  """``N C*_beta``, the Laplace code length of ``w*`` under ``N(w0, lambda^2 I)``, summed nats.

  ``N C*_beta = N L(w*) + beta [||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j log(1 + lambda^2 h_j /
  beta_mean)]``, ``beta_mean = beta / N``: N times `infojax.weights.optimal_lagrangian` of the
  mean loss, the minimum over diagonal Gaussians ``Q = N(w*, Sigma)`` of ``N E_Q L + beta KL(Q||P)``
  for the quadratic loss (science.md §2.6).

  Args:
    curvature: ``h``, the curvature of the mean loss at ``w*`` (e.g. the true-Fisher diagonal).
    params: ``w*``.
    loss: ``L(w*)``, the mean training loss.
    num_examples: N.
    beta: the trade-off for the summed loss.
    prior_variance: ``lambda^2``.
    prior_mean: ``w0``.

  Returns:
    ``N C*_beta`` (float32 arithmetic), nats.
  """
  beta_mean = beta / num_examples
  return num_examples * float(weights.optimal_lagrangian(
      loss, curvature, params, beta=beta_mean, prior_variance=prior_variance,
      prior_mean=prior_mean))


def occam_prior_variance(curvature, params, *, loss: float, num_examples: int, beta: float,
                         prior_variances, prior_mean) -> OccamChoice:
  """The ``lambda^2`` of a grid that minimises the Laplace code length, with the union bound's cost.

  Minimises `laplace_code_length` over the K values of ``prior_variances`` (a uniform prior over
  the grid), then charges ``log K`` nats for the choice: ``KL(Q||P) <= KL(Q||P_k) + log K`` for the
  mixture ``P = (1/K) sum_k P_k`` (Dziugaite & Roy 2017; science.md §11.1).

  Args:
    curvature, params, loss, num_examples, beta, prior_mean: as in `laplace_code_length`.
    prior_variances: the K candidate ``lambda^2`` values (e.g. `prior_variance_grid`).

  Returns:
    An `OccamChoice`.

  Cost: K evaluations of a few element-wise operations per weight.
  """
  prior_variances = np.asarray(prior_variances, np.float64)
  if prior_variances.ndim != 1 or not prior_variances.size:
    raise ValueError(f"occam_prior_variance: prior_variances must be a non-empty 1-D sequence; got "
                     f"shape {prior_variances.shape}.")
  code_lengths = [laplace_code_length(curvature, params, loss=loss, num_examples=num_examples,
                                      beta=beta, prior_variance=v, prior_mean=prior_mean)
                  for v in prior_variances]
  best = int(np.argmin(code_lengths))
  choice_cost = math.log(prior_variances.size)
  return OccamChoice(prior_variance=float(prior_variances[best]),
                     code_length=code_lengths[best] + beta * choice_cost, choice_cost=choice_cost)


def rank_correlation(x, y) -> float:
  """Spearman's rank correlation of two sequences (``nan`` for fewer than 3 points)."""
  if len(x) < 3:
    return math.nan
  return float(scipy.stats.spearmanr(x, y).statistic)


def _checked_config(config) -> tuple:
  """``(widths, seeds, grid)`` from the config, validated."""
  widths = [int(w) for w in config.widths]
  if not widths or any(w < 1 for w in widths) or len(set(widths)) < len(widths):
    raise ValueError(f"bias_variance: widths must be distinct positive integers; got "
                     f"{config.widths}.")
  seeds = common.check_seeds("bias_variance", config.seeds)
  grid = prior_variance_grid(config.prior_variance_grid_min, config.prior_variance_grid_max,
                             config.prior_variance_grid_size)
  return widths, seeds, grid


def _seed_data(config, seed: int) -> dict:
  """One seed's data: its training subset and corrupted labels, the test split, the class count."""
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train, seed=seed)
  num_classes = data.dataset_info(config.dataset, data_dir=config.data_dir).num_classes
  labels, _ = data.transforms.corrupt_labels(splits["train"]["label"], fraction=config.label_noise,
                                             num_classes=num_classes, seed=seed)
  return {"train": {"image": splits["train"]["image"], "label": labels}, "test": splits["test"],
          "num_classes": num_classes}


def _run_unit(config, seed_data, *, seed: int, width: int, grid, workdir: str) -> list:
  """Trains one (seed, width) unit (resuming its checkpoints) and measures it; its records."""
  train_arrays = seed_data["train"]
  apply_fn, initial = common.init_mlp((width,), seed_data["num_classes"],
                                      train_arrays["image"].shape[1:],
                                      jax.random.fold_in(jax.random.key(seed), width))
  unit_dir = os.path.join(workdir, UNITS_DIR, f"seed_{seed}", f"width_{width}")
  trained, history = common.train_classifier(
      apply_fn, initial, train_arrays, seed_data["test"], optimizer_config=config.optimizer,
      num_epochs=config.num_epochs, batch_size=config.batch_size, seed=seed, workdir=unit_dir,
      checkpoint_every=config.checkpoint_every)
  batch = common.as_batch(train_arrays)
  curvature = common.true_fisher_diagonal(apply_fn, trained, batch,
                                          chunk_size=config.fisher_chunk_size)
  num_train, last = int(train_arrays["label"].shape[0]), history[-1]
  shared = {"num_examples": num_train, "beta": config.fisher_beta, "prior_mean": initial}
  fixed = common.gaussian_information_terms(curvature, trained,
                                            prior_variance=config.prior_variance, **shared)
  choice = occam_prior_variance(curvature, trained, loss=last["train_eval_loss"],
                                prior_variances=grid, **shared)
  occam = common.gaussian_information_terms(curvature, trained,
                                            prior_variance=choice.prior_variance, **shared)
  code_length = laplace_code_length(curvature, trained, loss=last["train_eval_loss"],
                                    prior_variance=config.prior_variance, **shared)
  point = {"kind": "width", "seed": seed, "width": width, "num_examples": num_train,
           "num_parameters": common.num_parameters(initial),
           "train_error": 1.0 - last["train_eval_accuracy"],
           "test_error": 1.0 - last["test_accuracy"], "test_loss": last["test_loss"],
           "estimator": "closed form, exact true Fisher diagonal", "beta": config.fisher_beta,
           "prior_variance": config.prior_variance, **fixed, "code_length": code_length,
           "prior_variance_occam": choice.prior_variance,
           "prior_variance_choice_cost": choice.choice_cost,
           "information_occam": occam["information"] + choice.choice_cost,
           "information_occam_mean_term": occam["information_mean_term"],
           "information_occam_curvature_term": occam["information_curvature_term"],
           "code_length_occam": choice.code_length}
  return [{"kind": "sgd", "seed": seed, "width": width, **r} for r in history] + [point]


def _summarise(points, widths, seeds, grid) -> dict:
  """The summary dict from the ``"width"`` records (see `run`)."""
  table = {(p["seed"], p["width"]): p for p in points}
  summary = {"widths": widths, "seeds": seeds,
             "num_parameters": [table[seeds[0], w]["num_parameters"] for w in widths],
             "prior_variance_choice_cost": math.log(len(grid))}
  for key in _SPREAD_KEYS:
    intervals = [common.mean_interval([table[s, w][key] for s in seeds]) for w in widths]
    for index, suffix in enumerate(("", "_low", "_high")):
      summary[key + suffix] = [float(interval[index]) for interval in intervals]
  summary["prior_variance_occam"] = [[table[s, w]["prior_variance_occam"] for s in seeds]
                                     for w in widths]
  for name, key in _MEASURES.items():
    per_seed = [rank_correlation([table[s, w][key] for w in widths],
                                 [table[s, w]["test_error"] for w in widths]) for s in seeds]
    summary[f"spearman_test_error_vs_{name}"] = rank_correlation(summary[key],
                                                                 summary["test_error"])
    summary[f"spearman_test_error_vs_{name}_per_seed"] = per_seed
  best = int(np.argmin(summary["test_error"]))
  peak = widths[best + int(np.argmax(summary["test_error"][best:]))]
  summary["best_width"], summary["peak_width"] = widths[best], peak
  # Paired over seeds (the widths of a seed share its data): the drop from the peak width to the
  # widest, and whether its interval lies above 0.
  for key in ("test_error", "information", "information_occam"):
    drop = common.mean_interval([table[s, peak][key] - table[s, widths[-1]][key] for s in seeds])
    summary[f"{key}_drop_after_peak"] = [float(value) for value in drop]
    summary[f"second_descent_{key}"] = bool(peak != widths[-1] and drop[1] > 0)
  return summary


def _plot(path, summary, config):
  """Error against parameters and against both informations, and the information's two terms."""
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  from matplotlib.ticker import NullFormatter  # pylint: disable=import-outside-toplevel

  def spread(key):
    mean = np.asarray(summary[key])
    return mean, np.stack([mean - np.asarray(summary[key + "_low"]),
                           np.asarray(summary[key + "_high"]) - mean])

  figure = Figure(figsize=(20.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 4)
  parameters = summary["num_parameters"]
  test_error, test_spread = spread("test_error")
  train_error, train_spread = spread("train_error")
  axes[0].errorbar(parameters, test_error, yerr=test_spread, marker="o", capsize=3,
                   label="test error")
  axes[0].errorbar(parameters, train_error, yerr=train_spread, marker="s", linestyle="--",
                   capsize=3, label="train error (noisy labels)")
  axes[0].set_xlabel("number of parameters")
  axes[0].set_ylabel("error")
  for axis, key, title in (
      (axes[1], "information", f"lambda^2 = {config.prior_variance:g}"),
      (axes[2], "information_occam", "grid lambda^2 minimising the code length (+ log K)")):
    values, value_spread = spread(key)
    axis.errorbar(values, test_error, xerr=value_spread, yerr=test_spread, marker="o", capsize=3,
                  label="test error")
    for width, value, error in zip(summary["widths"], values, test_error):
      axis.annotate(str(width), (value, error), fontsize="x-small", textcoords="offset points",
                    xytext=(3, 3))
    axis.set_title(title, fontsize="medium")
    axis.set_xlabel("information in the weights [nats]")
    axis.set_ylabel("test error")
  for key, label, style in (
      ("information_mean_term", "distance term, fixed lambda^2", "-"),
      ("information_curvature_term", "curvature term, fixed lambda^2", "--"),
      ("information_occam_mean_term", "distance term, grid lambda^2", "-"),
      ("information_occam_curvature_term", "curvature term, grid lambda^2", "--")):
    values, value_spread = spread(key)
    axes[3].errorbar(parameters, values, yerr=value_spread, marker="o", linestyle=style,
                     capsize=3, label=label)
  axes[3].set_title("the information's two terms", fontsize="medium")
  axes[3].set_xlabel("number of parameters")
  axes[3].set_ylabel("nats")
  for axis in axes:
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  axes[3].set_yscale("log")  # both terms are >= 0; interval ends below 0 are clipped
  figure.suptitle(f"MLP widths on {config.dataset} with {config.label_noise:.0%} corrupted "
                  f"training labels; mean and 95% t interval over {len(summary['seeds'])} seeds "
                  "(numbers: widths)")
  figure.savefig(path, dpi=120)


def _interval(summary, key, index, digits) -> str:
  mean, low, high = (summary[key + suffix][index] for suffix in ("", "_low", "_high"))
  return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _summary_lines(config, summary, grid, num_train) -> list:
  lines = [
      f"bias_variance: one-hidden-layer MLPs on {num_train} {config.dataset} examples, "
      f"{config.label_noise:.0%} of the training labels corrupted (redrawn per seed), seeds "
      f"{summary['seeds']}, {config.num_epochs} epochs; mean [95% t interval] over seeds. "
      f"Information: closed form from the exact true Fisher at beta={config.fisher_beta:g} "
      f"(summed loss), prior N(w0, lambda^2 I) at the initialisation, fixed lambda^2="
      f"{config.prior_variance:g}, or the lambda^2 of a log-uniform grid of {len(grid)} values "
      f"in [{grid[0]:g}, {grid[-1]:g}] minimising the Laplace code length, charged log K = "
      f"{summary['prior_variance_choice_cost']:.2f} nats (union bound)."]
  for index, width in enumerate(summary["widths"]):
    chosen = summary["prior_variance_occam"][index]
    edge = " (at an end of the grid)" if {grid[0], grid[-1]} & set(chosen) else ""
    lines.append(
        f"width {width:5d} ({summary['num_parameters'][index]:6d} parameters): train error "
        f"{_interval(summary, 'train_error', index, 4)}, test error "
        f"{_interval(summary, 'test_error', index, 4)}; information at fixed lambda^2 "
        f"{_interval(summary, 'information', index, 1)} nats (distance "
        f"{summary['information_mean_term'][index]:.1f} + curvature "
        f"{summary['information_curvature_term'][index]:.1f}); at the grid lambda^2 "
        f"{_interval(summary, 'information_occam', index, 1)} nats (distance "
        f"{summary['information_occam_mean_term'][index]:.1f} + curvature "
        f"{summary['information_occam_curvature_term'][index]:.1f} + log K), lambda^2 chosen "
        f"{', '.join(f'{v:.3g}' for v in chosen)}{edge}.")
  correlations = []
  for name, label in (("parameters", "the number of parameters"),
                      ("information", "the information at fixed lambda^2"),
                      ("information_occam", "the information at the grid lambda^2")):
    per_seed = ", ".join(f"{c:.3f}" for c in summary[f"spearman_test_error_vs_{name}_per_seed"])
    correlations.append(f"with {label} {summary[f'spearman_test_error_vs_{name}']:.3f} "
                        f"(per seed {per_seed})")
  lines.append("Spearman rank correlation of the (mean) test error " + "; ".join(correlations)
               + ".")
  if summary["peak_width"] == summary["widths"][-1]:
    lines.append(f"Lowest mean test error at width {summary['best_width']}; the widest width has "
                 "the highest test error beyond it: no second descent.")
    return lines
  descent = {True: "descends", False: "does not descend"}
  drops = []
  for key, label, digits in (("test_error", "the test error", 4),
                             ("information", "the information at fixed lambda^2", 1),
                             ("information_occam", "the information at the grid lambda^2", 1)):
    mean, low, high = summary[f"{key}_drop_after_peak"]
    drops.append(f"{label} {descent[summary[f'second_descent_{key}']]} (drop {mean:.{digits}f} "
                 f"[{low:.{digits}f}, {high:.{digits}f}])")
  lines.append(
      f"Lowest mean test error at width {summary['best_width']}, highest beyond it at width "
      f"{summary['peak_width']}. Second descent (the drop from width {summary['peak_width']} to "
      f"width {summary['widths'][-1]}, paired by seed, with its interval above 0): "
      + "; ".join(drops) + ".")
  return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains one MLP per seed and width; records test error, parameter count and information.

  A rerun in the same workdir resumes: completed (seed, width) units are read back from
  ``metrics.jsonl`` (written after each unit), and an interrupted unit's training resumes from its
  checkpoints, so the records equal those of an uninterrupted run.

  Args:
    config: see ``configs/bias_variance.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary:
    ``widths``, ``seeds``, ``num_parameters`` (per width); per width (lists in the order of
    ``widths``) the mean over seeds of ``train_error``, ``test_error``, ``information``,
    ``information_mean_term``, ``information_curvature_term``, ``code_length`` (fixed prior),
    ``information_occam`` (``+ log K``), ``information_occam_mean_term``,
    ``information_occam_curvature_term`` and ``code_length_occam`` (grid prior), each with
    ``_low`` and ``_high`` (the 95% t interval); ``prior_variance_occam`` (per width, per seed);
    ``prior_variance_choice_cost`` (``log K``); the rank correlations
    ``spearman_test_error_vs_{parameters,information,information_occam}`` of the means, and
    ``..._per_seed``; ``best_width``, ``peak_width`` (the worst width wider than the best),
    ``{test_error,information,information_occam}_drop_after_peak`` (``[mean, low, high]`` over
    seeds of the value at ``peak_width`` minus that at the widest width) and
    ``second_descent_{test_error,information,information_occam}`` (whether that interval lies
    above 0; false when the widest width is the peak).
  """
  widths, seeds, grid = _checked_config(config)
  workdir = config_lib.prepare_workdir(config, workdir)
  path = os.path.join(workdir, common.METRICS_FILE)
  saved = common.saved_records(path)
  completed = {(r["seed"], r["width"]) for r in saved if r["kind"] == "width"}
  records = []
  for seed in seeds:
    seed_data = None
    for width in widths:
      if (seed, width) in completed:
        records.extend(r for r in saved if (r["seed"], r["width"]) == (seed, width))
        continue
      if seed_data is None:
        seed_data = _seed_data(config, seed)
      records.extend(_run_unit(config, seed_data, seed=seed, width=width, grid=grid,
                               workdir=workdir))
      common.write_records(path, records, tensorboard=config.tensorboard)

  points = [r for r in records if r["kind"] == "width"]
  summary = _summarise(points, widths, seeds, grid)
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), summary, config)
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE),
                       _summary_lines(config, summary, grid, points[0]["num_examples"]))
  return summary
