"""Test error against the number of parameters and against the information in the weights.

The lecture's "information is a better measure of complexity than the number of parameters"
(Achille & Soatto; science.md §4.4, "Bias-variance"): train one-hidden-layer MLPs of increasing
width by SGD on the same data (by default with a fraction of the training labels corrupted, so that
fitting everything costs test accuracy), then plot the test error of each solution against its
number of parameters and against the information in its weights.

The information estimator is the closed form around the trained weights ``w*``
(`infojax.experiments.common.fisher_information`; science.md §2.6, corrected form):
``KL(Q*||P) = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta_mean)`` with ``h`` the
exact true-Fisher diagonal on the training set, ``P = N(w0, lambda^2 I)`` at the initialisation and
``beta`` for the summed loss (``beta = 1``: the Bayesian / MDL trade-off). It is reported at the
configured ``lambda^2`` and at the ``lambda^2`` of a grid that minimises the Laplace code length
``C*_beta = L(w*) + beta_mean [||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j log(1 + lambda^2 h_j /
beta_mean)]`` (`infojax.weights.optimal_lagrangian`), the prior a two-part code would choose.
Rank correlations (Spearman) of the test error with each complexity measure are reported.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"sgd"`` records per width and epoch,
one ``"width"`` record per width), ``bias_variance.png`` and ``summary.txt``. A rerun starts over.
"""

import functools
import math
import os

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


def occam_prior_variance(curvature, params, *, loss: float, num_examples: int, beta: float,
                         prior_variances, prior_mean) -> float:
  """The ``lambda^2`` of a grid that minimises the Laplace code length ``C*_beta`` at ``w*``.

  ``C*_beta = L(w*) + beta_mean [||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j log(1 + lambda^2 h_j /
  beta_mean)]`` (`infojax.weights.optimal_lagrangian`), ``beta_mean = beta / N``.

  Args:
    curvature: ``h``, the curvature of the mean loss at ``w*`` (e.g. the true-Fisher diagonal).
    params: ``w*``.
    loss: ``L(w*)``, the mean training loss.
    num_examples: N.
    beta: the trade-off for the summed loss.
    prior_variances: the candidate ``lambda^2`` values.
    prior_mean: ``w0``.

  Returns:
    The minimising ``lambda^2``.
  """
  beta_mean = beta / num_examples
  code_lengths = [float(weights.optimal_lagrangian(loss, curvature, params, beta=beta_mean,
                                                   prior_variance=v, prior_mean=prior_mean))
                  for v in prior_variances]
  return float(prior_variances[int(np.argmin(code_lengths))])


def rank_correlation(x, y) -> float:
  """Spearman's rank correlation of two sequences (``nan`` for fewer than 3 points)."""
  if len(x) < 3:
    return math.nan
  return float(scipy.stats.spearmanr(x, y).statistic)


def _plot(path, points, config):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.0), layout="constrained")
  axes = figure.subplots(1, 3)
  parameters = [p["num_parameters"] for p in points]
  axes[0].plot(parameters, [p["test_error"] for p in points], marker="o", label="test error")
  axes[0].plot(parameters, [p["train_error"] for p in points], marker="s", linestyle="--",
               label="train error (noisy labels)")
  axes[0].set_xlabel("number of parameters")
  for axis, key, title in (
      (axes[1], "information", f"lambda^2 = {config.prior_variance:g}"),
      (axes[2], "information_occam", "lambda^2 minimising the code length")):
    values = [p[key] for p in points]
    axis.plot(values, [p["test_error"] for p in points], marker="o", label="test error")
    for point, value in zip(points, values):
      axis.annotate(str(point["width"]), (value, point["test_error"]), fontsize="x-small",
                    textcoords="offset points", xytext=(3, 3))
    axis.set_xlabel(f"information in the weights [nats] ({title})")
  for axis in axes:
    axis.set_xscale("log")
    axis.set_ylabel("error")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.suptitle(f"MLP widths on {config.dataset} with {config.label_noise:.0%} corrupted "
                  "training labels (numbers: widths)")
  figure.savefig(path, dpi=120)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains one MLP per width; records test error, parameter count and information.

  Args:
    config: see ``configs/bias_variance.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary: per
    width (lists in the order of ``widths``) ``num_parameters``, ``train_error``, ``test_error``,
    ``information`` (at ``config.prior_variance``), ``information_occam`` and
    ``prior_variance_occam``; the rank correlations ``spearman_test_error_vs_parameters``,
    ``spearman_test_error_vs_information`` and ``spearman_test_error_vs_information_occam``; and
    ``best_width``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  widths = [int(w) for w in config.widths]
  if not widths or any(w < 1 for w in widths):
    raise ValueError(f"bias_variance: widths must be positive integers; got {config.widths}.")
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train,
                              seed=config.seed)
  num_classes = data.dataset_info(config.dataset, data_dir=config.data_dir).num_classes
  labels, _ = data.transforms.corrupt_labels(splits["train"]["label"], fraction=config.label_noise,
                                             num_classes=num_classes, seed=config.seed)
  train_arrays = {"image": splits["train"]["image"], "label": labels}
  batch = common.as_batch(train_arrays)
  num_train = int(labels.shape[0])
  key = jax.random.key(config.seed)
  records, points = [], []
  for width in widths:
    apply_fn, initial = common.init_mlp((width,), num_classes, train_arrays["image"].shape[1:],
                                        jax.random.fold_in(key, width))
    trained, history = common.train_classifier(
        apply_fn, initial, train_arrays, splits["test"], optimizer_config=config.optimizer,
        num_epochs=config.num_epochs, batch_size=config.batch_size, seed=config.seed)
    records.extend({"kind": "sgd", "width": width, **r} for r in history)
    curvature = common.true_fisher_diagonal(apply_fn, trained, batch,
                                            chunk_size=config.fisher_chunk_size)
    last = history[-1]
    terms = functools.partial(common.gaussian_information_terms, curvature, trained,
                              num_examples=num_train, beta=config.fisher_beta, prior_mean=initial)
    information = terms(prior_variance=config.prior_variance)
    occam_variance = occam_prior_variance(
        curvature, trained, loss=last["train_eval_loss"], num_examples=num_train,
        beta=config.fisher_beta, prior_variances=config.prior_variance_grid, prior_mean=initial)
    occam = terms(prior_variance=occam_variance)
    point = {"kind": "width", "width": width, "num_parameters": common.num_parameters(initial),
             "train_error": 1.0 - last["train_eval_accuracy"],
             "test_error": 1.0 - last["test_accuracy"], "test_loss": last["test_loss"],
             "estimator": "closed form, exact true Fisher diagonal", "beta": config.fisher_beta,
             "prior_variance": config.prior_variance, **information,
             "prior_variance_occam": occam_variance, "information_occam": occam["information"],
             "information_occam_mean_term": occam["information_mean_term"]}
    points.append(point)
    records.append(point)

  test_errors = [p["test_error"] for p in points]
  summary = {key: [p[key] for p in points] for key in (
      "num_parameters", "train_error", "test_error", "information", "information_occam",
      "prior_variance_occam")}
  summary["widths"] = widths
  summary["best_width"] = widths[int(np.argmin(test_errors))]
  for key, name in (("num_parameters", "parameters"), ("information", "information"),
                    ("information_occam", "information_occam")):
    summary[f"spearman_test_error_vs_{name}"] = rank_correlation(summary[key], test_errors)

  common.write_records(os.path.join(workdir, common.METRICS_FILE), records)
  if io.is_primary_process():
    _plot(os.path.join(workdir, PLOT_FILE), points, config)
  lines = [f"bias_variance: one-hidden-layer MLPs on {num_train} {config.dataset} "
           f"examples, {config.label_noise:.0%} of the training labels corrupted; information: "
           f"closed form from the exact true Fisher at beta={config.fisher_beta:g} (summed loss), "
           f"prior N(w0, lambda^2 I) at the initialisation."]
  for p in points:
    lines.append(
        f"width {p['width']:5d} ({p['num_parameters']:6d} parameters): train error "
        f"{p['train_error']:.4f}, test error {p['test_error']:.4f}; information "
        f"{p['information']:.1f} nats at lambda^2={p['prior_variance']:g} "
        f"({p['information_mean_term']:.1f} from ||w*-w0||^2), {p['information_occam']:.1f} nats "
        f"at the code-length-optimal lambda^2={p['prior_variance_occam']:g}.")
  lines.append(
      f"Spearman rank correlation of the test error with the number of parameters "
      f"{summary['spearman_test_error_vs_parameters']:.3f}, with the information "
      f"{summary['spearman_test_error_vs_information']:.3f} (fixed lambda^2), "
      f"{summary['spearman_test_error_vs_information_occam']:.3f} (optimal lambda^2); lowest test "
      f"error at width {summary['best_width']}.")
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
