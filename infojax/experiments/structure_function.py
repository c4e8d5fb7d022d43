"""The structure function of a task, S(t), for real and random labels.

Achille, Paolini, Mbeng & Soatto, "The information complexity of learning tasks, their structure
and their distance" (Information and Inference 2021; science.md §3.1-3.2): the structure function
``S(t) = min_{KL(Q||P) <= t} E_Q L_D`` is traced by minimising the information Lagrangian
``E_Q L_D + beta KL(Q || P)`` over Gaussian ``Q`` for a decreasing sweep of ``beta``, warm-started
from ``Q = P`` (`infojax.weights.trace_structure_function`, the variational estimator), with
``P = N(w0, lambda^2 I)`` at the initialisation of an MLP and ``beta`` for the **summed** loss in
nats. Each ``beta`` gives one point ``(KL(Q*_beta || P), E_{Q*_beta} L_D)``.

What to look for (the lecture's picture): with real labels S drops steeply at first (a few nats of
information explain many labels: structure), then flattens into memorisation; with random labels
there is no structure to find. `infojax.weights.kolmogorov_knee` marks the Kolmogorov minimal
sufficient point: the least information whose two-part code length ``N E_Q L_D + KL`` is within a
nat of the minimum, where the slope of S in summed nats crosses -1. The mean slopes before and after
the knee are reported as nats of summed loss bought per nat of information (`loss_per_information`):
the ideal code of the theory pays one nat of information per memorised nat of loss; a Gaussian
post-distribution pays far more.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"sweep"`` record per dataset,
labels and ``beta``, and one ``"curve"`` record per dataset and labels), one
``structure_function_<dataset>.png`` per dataset, and ``summary.txt``. A rerun starts over.
"""

import math
import os

import jax
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import train
from infojax import weights
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
LABELS = ("real", "random")


def plot_file(dataset: str) -> str:
  """The name of a dataset's plot in the workdir."""
  return f"structure_function_{dataset}.png"


def loss_per_information(first: dict, last: dict, *, num_examples: int) -> float:
  """Nats of summed loss bought per nat of information between two points of S.

  ``-(N E_Q L_D[last] - N E_Q L_D[first]) / (KL[last] - KL[first])``: the mean slope ``-dS/dt`` of
  the structure function in summed nats between the points (1 for the ideal code of random labels,
  science.md §3.1; above 1 where the data have structure).

  Args:
    first, last: sweep records (``information``, ``expected_loss``).
    num_examples: N.

  Returns:
    The rate (a float; ``nan`` when the information does not change).
  """
  information = last["information"] - first["information"]
  if information == 0:
    return math.nan
  return -num_examples * (last["expected_loss"] - first["expected_loss"]) / information


def _plot(path, curves, knees, *, num_train, chance_loss, title):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 2)
  for labels, points in curves.items():
    information = np.array([p["information"] for p in points])
    loss = np.array([p["expected_loss"] for p in points])
    betas = np.array([p["beta"] for p in points])
    knee = knees[labels]
    (line,) = axes[0].plot(information, loss, marker="o", markersize=3, label=f"{labels} labels")
    axes[0].plot(information[knee], loss[knee], marker="*", markersize=13, linestyle="none",
                 color=line.get_color(),
                 label=f"{labels}: knee at {information[knee]:.3g} nats (beta={betas[knee]:.3g})")
    # The ideal code of noise from the knee: one nat of summed loss per nat of information.
    span = np.geomspace(information[knee], information[knee] + num_train * loss[knee], 50)
    axes[0].plot(span, loss[knee] - (span - information[knee]) / num_train, linestyle="--",
                 color=line.get_color(), alpha=0.6)
    axes[1].plot(betas, loss, marker="o", markersize=3, color=line.get_color(),
                 label=f"{labels} labels")
  for axis in axes:
    axis.axhline(chance_loss, color="gray", linestyle=":", label="log |Y|")
    axis.set_xscale("log")
    axis.set_ylim(bottom=0)
    axis.set_ylabel("expected training loss E_Q L_D [nats]")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  axes[0].set_xlabel("information in the weights KL(Q || P) [nats]")
  axes[0].set_title("S(t); dashed: slope -1 in summed nats (the ideal code)", fontsize="small")
  axes[1].set_xlabel("beta (summed-loss convention)")
  axes[1].set_title("the minimiser's loss along the beta sweep", fontsize="small")
  figure.suptitle(title)
  figure.savefig(path, dpi=120)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Traces S(t) for real and random labels on each dataset of the config.

  Args:
    config: see ``configs/structure_function.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary: for
    each ``<dataset>_<labels>``: ``_knee_information``, ``_knee_loss``, ``_knee_beta`` (the
    Kolmogorov knee), ``_loss_at_max_beta`` and ``_loss_at_min_beta`` (``E_Q L_D`` at the ends of
    the sweep), ``_information_at_min_beta``, ``_structure_rate`` and ``_memorisation_rate``
    (`loss_per_information` from the largest ``beta`` to the knee and from the knee to the smallest
    ``beta``); and ``<dataset>_num_train``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  betas = common.beta_grid(config.beta_max, config.beta_min, config.num_betas)
  records, summary, lines = [], {}, []
  optimizer = train.make_optimizer(config.optimizer, steps_per_epoch=1,
                                   num_epochs=config.num_steps)
  key = jax.random.key(config.seed)
  for dataset_index, dataset in enumerate(config.datasets):
    splits = common.load_splits(dataset, data_dir=config.data_dir,
                                normalize=config.normalize, num_train=config.num_train,
                                seed=config.seed)
    num_classes = data.dataset_info(dataset, data_dir=config.data_dir).num_classes
    train_arrays = splits["train"]
    num_train = int(train_arrays["label"].shape[0])
    summary[f"{dataset}_num_train"] = num_train
    init_key = jax.random.fold_in(key, 2 * dataset_index)
    apply_fn, initial = common.init_mlp(config.hidden_sizes, num_classes,
                                        train_arrays["image"].shape[1:], init_key)
    loss_fn = common.mean_nll_fn(apply_fn)  # one loss and optimiser: the sweeps compile once
    curves, knees = {}, {}
    for labels_index, labels_name in enumerate(LABELS):
      labels = train_arrays["label"]
      if labels_name == "random":
        labels, _ = data.transforms.corrupt_labels(labels, fraction=1.0, num_classes=num_classes,
                                                   seed=config.seed)
      points = common.lagrangian_sweep(
          loss_fn, initial, (train_arrays["image"], labels), betas,
          prior_variance=config.prior_variance, optimizer=optimizer,
          num_steps=config.num_steps,
          key=jax.random.fold_in(key, 2 * dataset_index + 1 + 100 * labels_index),
          eval_samples=config.eval_samples)
      knee = int(weights.kolmogorov_knee(
          np.array([p["information"] for p in points]),
          np.array([p["expected_loss"] for p in points]), num_examples=num_train,
          tolerance=config.knee_tolerance))
      for index, point in enumerate(points):
        records.append({"kind": "sweep", "dataset": dataset, "labels": labels_name,
                        "knee": index == knee, **point})
      name = f"{dataset}_{labels_name}"
      values = {
          "knee_information": points[knee]["information"],
          "knee_loss": points[knee]["expected_loss"], "knee_beta": points[knee]["beta"],
          "loss_at_max_beta": points[0]["expected_loss"],
          "loss_at_min_beta": points[-1]["expected_loss"],
          "information_at_min_beta": points[-1]["information"],
          "structure_rate": loss_per_information(points[0], points[knee],
                                                 num_examples=num_train),
          "memorisation_rate": loss_per_information(points[knee], points[-1],
                                                    num_examples=num_train)}
      records.append({"kind": "curve", "dataset": dataset, "labels": labels_name,
                      "num_train": num_train, "num_parameters": common.num_parameters(
                          initial), **values})
      summary.update({f"{name}_{k}": v for k, v in values.items()})
      curves[labels_name] = points
      knees[labels_name] = knee
      lines.append(
          f"{dataset}, {labels_name} labels (N={num_train}): knee at "
          f"KL={values['knee_information']:.1f} nats, E_Q L_D={values['knee_loss']:.3f} "
          f"(beta={values['knee_beta']:.3g}); E_Q L_D "
          f"{values['loss_at_max_beta']:.3f} at beta={betas[0]:.3g} -> "
          f"{values['loss_at_min_beta']:.3f} at beta={betas[-1]:.3g} "
          f"(KL={values['information_at_min_beta']:.1f}); nats of summed loss per nat of "
          f"information: {values['structure_rate']:.3g} before the knee, "
          f"{values['memorisation_rate']:.3g} after it.")
    if io.is_primary_process():
      _plot(os.path.join(workdir, plot_file(dataset)), curves, knees, num_train=num_train,
            chance_loss=math.log(num_classes),
            title=f"Structure function on {dataset}: MLP {tuple(config.hidden_sizes)}, "
            f"N={num_train}")
  common.write_records(os.path.join(workdir, METRICS_FILE), records)
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), [
      f"structure_function: variational Gaussian Q, prior N(w0, {config.prior_variance:g} I) at "
      f"the initialisation, beta for the summed loss (nats), {config.num_steps} full-batch steps "
      "per beta.", *lines])
  return summary if io.is_primary_process() else {}
