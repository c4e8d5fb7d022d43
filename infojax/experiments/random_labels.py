"""Information in the weights against label noise, and the phase transition on random labels.

The lecture's "networks can overfit, but they have to pay a price" (Achille & Soatto, "Emergence of
invariance and disentanglement in deep representations", JMLR 2018; science.md §4.4), on a small
dataset and a fully connected network, in three measurements:

1. **Memorisation by SGD** (Zhang et al. 2017, "Understanding deep learning requires rethinking
   generalization"): for each fraction ``f`` of training labels replaced by uniformly random ones,
   train the MLP by SGD to zero training error on those labels, and record its accuracy on them and
   on the clean test labels, epoch by epoch. At ``f = 1`` the network fits pure noise while its test
   accuracy stays at chance. The information in the weights of each SGD solution is then estimated
   in closed form from the exact true-Fisher diagonal (`fisher_information`, science.md §2.6).
2. **The information Lagrangian across beta**: for each ``f``, minimise
   ``C_beta(Q) = E_{w~Q} L_D(w) + beta KL(Q || P)`` over Gaussian ``Q = N(mean, diag var)`` for a
   decreasing sweep of ``beta`` (warm-started from ``Q = P``; the variational estimator
   `infojax.weights.trace_structure_function`), with ``P = N(w0, lambda^2 I)`` centred at the
   initialisation. ``beta`` multiplies the **summed** loss ``N L_D`` in nats
   (``beta_mean = beta/N``, science.md §0.2). The information ``KL(Q* || P)`` at each ``beta``
   against ``f`` is the slide's "information vs corrupted labels";
3. **The phase transition**: at ``f = 1`` (fully random labels) the expected training loss of ``Q*``
   against ``beta`` falls from about ``log |Y|`` (not fitting) towards 0 (fitting); with real
   labels (``f = 0``) the fall happens at a larger ``beta``. `fitting_threshold` reads off where.

The data splits, the MLP, its SGD training, the two information estimators and the JSON-lines
records come from `infojax.experiments.common`.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (records tagged by ``"kind"``: ``"sgd"``
per epoch, ``"memorisation"`` per fraction, ``"sweep"`` per fraction and ``beta``),
``random_labels_information.png``, ``random_labels_phase_transition.png``,
``random_labels_memorisation.png`` and ``summary.txt``. A rerun in the same workdir starts over.
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
from infojax.experiments import common

INFORMATION_PLOT = "random_labels_information.png"
TRANSITION_PLOT = "random_labels_phase_transition.png"
MEMORISATION_PLOT = "random_labels_memorisation.png"


def fitting_threshold(betas, expected_losses, *, chance_loss: float) -> float:
  """The ``beta`` below which Q fits: ``E_Q L_D`` at most half the chance loss ``log |Y| / 2``.

  Going up from the smallest ``beta``, the first crossing of ``chance_loss / 2``, interpolated
  linearly in ``log beta`` between the two grid points that straddle it; ``nan`` if the smallest
  ``beta`` does not fit, ``inf`` if every point fits.

  Args:
    betas: ``(K,)`` trade-offs, any order.
    expected_losses: ``(K,)`` ``E_Q L_D`` at each.
    chance_loss: the loss of the uniform prediction, ``log |Y|``.

  Returns:
    The threshold ``beta`` (a float).
  """
  order = np.argsort(np.asarray(betas, np.float64))
  betas = np.asarray(betas, np.float64)[order]
  losses = np.asarray(expected_losses, np.float64)[order]
  level = 0.5 * chance_loss
  fits = losses <= level
  if not fits.any():
    return math.nan
  if fits.all():
    return math.inf
  # The last fitting grid point before the first one (in increasing beta) that does not fit.
  last = int(np.argmin(fits)) - 1
  if last < 0:
    return math.nan
  low, high = np.log(betas[last]), np.log(betas[last + 1])
  weight = (level - losses[last]) / (losses[last + 1] - losses[last])
  return float(np.exp(low + weight * (high - low)))


# ----------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------


def _plot_information(path, fractions, sweeps, memorisation, report_betas):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.0), layout="constrained")
  axes = figure.subplots(1, 3)
  for beta in report_betas:
    values = [next(p["information"] for p in sweeps[f] if math.isclose(p["beta"], beta))
              for f in fractions]
    axes[0].plot(fractions, values, marker="o", label=f"beta = {beta:.3g}")
  axes[0].set_yscale("log")
  axes[0].set_title("variational: KL(Q*_beta || P) from the Lagrangian")
  axes[1].plot(fractions, [m["information"] for m in memorisation], marker="o", label="total")
  axes[1].plot(fractions, [m["information_mean_term"] for m in memorisation], marker="s",
               linestyle="--", label="||w* - w0||^2 / (2 lambda^2)")
  axes[1].set_title("closed form at the SGD solution (true Fisher)")
  axes[2].plot(fractions, [m["train_accuracy"] for m in memorisation], marker="o",
               label="train (corrupted labels)")
  axes[2].plot(fractions, [m["test_accuracy"] for m in memorisation], marker="o",
               label="test (clean labels)")
  axes[2].set_ylabel("accuracy of the SGD solution")
  axes[2].set_title("memorisation by SGD")
  for axis in axes[:2]:
    axis.set_ylabel("information in the weights [nats]")
  for axis in axes:
    axis.set_xlabel("fraction of corrupted training labels")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.savefig(path, dpi=120)


def _plot_transition(path, fractions, sweeps, chance_loss):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(10.0, 4.0), layout="constrained")
  axes = figure.subplots(1, 2)
  for fraction in fractions:
    betas = [p["beta"] for p in sweeps[fraction]]
    label = {0.0: "real labels", 1.0: "random labels"}.get(fraction, f"{fraction:.0%} corrupted")
    axes[0].plot(betas, [p["expected_loss"] for p in sweeps[fraction]], marker="o",
                 markersize=3, label=label)
    axes[1].plot(betas, [p["information"] for p in sweeps[fraction]], marker="o", markersize=3,
                 label=label)
  axes[0].axhline(chance_loss, color="gray", linestyle=":", label="log |Y| (chance)")
  axes[0].set_ylabel("expected training loss E_Q L_D [nats]")
  axes[1].set_ylabel("information KL(Q || P) [nats]")
  axes[1].set_yscale("log")
  for axis in axes:
    axis.set_xscale("log")
    axis.set_xlabel("beta (summed-loss convention)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.suptitle("Minimisers of E_Q L_D + beta KL(Q || P) along a beta sweep")
  figure.savefig(path, dpi=120)


def _plot_memorisation(path, histories):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6.0, 4.0), layout="constrained")
  axis = figure.subplots()
  for fraction, history in histories.items():
    label = {0.0: "real", 1.0: "random"}.get(fraction, f"{fraction:.0%} corrupted")
    epochs = [r["epoch"] for r in history]
    (line,) = axis.plot(epochs, [r["train_eval_accuracy"] for r in history],
                        label=f"{label} labels: train")
    axis.plot(epochs, [r["test_accuracy"] for r in history], linestyle="--",
              color=line.get_color(), label=f"{label} labels: test")
  axis.set_xlabel("epoch")
  axis.set_ylabel("accuracy")
  axis.set_ylim(0, 1.02)
  axis.grid(alpha=0.3)
  axis.legend(fontsize="small")
  axis.set_title("SGD fits random labels; test accuracy stays at chance")
  figure.savefig(path, dpi=120)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Memorisation by SGD, information against label noise, and the random-label transition.

  Args:
    config: see ``configs/random_labels.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary:
    ``fractions``; per fraction the SGD solution's ``train_accuracy``, ``test_accuracy`` and
    closed-form ``fisher_information``; ``information_beta_<b>`` (the variational ``KL(Q*_b || P)``
    per fraction) for each reported ``beta``; the fitting thresholds ``threshold_beta_real`` (``f =
    0``) and ``threshold_beta_random`` (``f = 1``) when swept; and ``num_parameters``,
    ``num_train``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  fractions = [float(f) for f in config.fractions]
  if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions):
    raise ValueError(f"random_labels: fractions must be a non-empty list in [0, 1]; got "
                     f"{config.fractions}.")
  betas = common.beta_grid(config.sweep.beta_max, config.sweep.beta_min, config.sweep.num_betas)
  report_betas = [float(b) for b in config.sweep.report_betas]
  for beta in report_betas:
    if not any(math.isclose(beta, b) for b in betas):
      raise ValueError(f"random_labels: sweep.report_betas must be points of the beta grid "
                       f"{betas.tolist()}; got {beta}.")
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train,
                              seed=config.seed)
  num_classes = data.dataset_info(config.dataset, data_dir=config.data_dir).num_classes
  chance_loss = math.log(num_classes)
  input_shape = splits["train"]["image"].shape[1:]
  init_key, sweep_key = jax.random.split(jax.random.key(config.seed))
  apply_fn, initial = common.init_mlp(config.hidden_sizes, num_classes, input_shape, init_key)
  num_train = int(splits["train"]["label"].shape[0])

  loss_fn = common.mean_nll_fn(apply_fn)  # one loss and optimiser: the sweeps compile once
  sweep_optimizer = train.make_optimizer(config.sweep.optimizer, steps_per_epoch=1,
                                         num_epochs=config.sweep.num_steps)
  records, memorisation, sweeps, histories = [], [], {}, {}
  for index, fraction in enumerate(fractions):
    labels, _ = data.transforms.corrupt_labels(splits["train"]["label"], fraction=fraction,
                                               num_classes=num_classes, seed=config.seed + index)
    train_arrays = {"image": splits["train"]["image"], "label": labels}
    trained, history = common.train_classifier(
        apply_fn, initial, train_arrays, splits["test"], optimizer_config=config.optimizer,
        num_epochs=config.num_epochs, batch_size=config.batch_size, seed=config.seed)
    histories[fraction] = history
    records.extend({"kind": "sgd", "fraction": fraction, **r} for r in history)
    information = common.fisher_information(
        apply_fn, trained, common.as_batch(train_arrays), beta=config.fisher_beta,
        prior_variance=config.prior_variance, prior_mean=initial,
        chunk_size=config.fisher_chunk_size)
    last = history[-1]
    point = {"kind": "memorisation", "fraction": fraction,
             "train_accuracy": last["train_eval_accuracy"], "train_loss": last["train_eval_loss"],
             "test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
             "estimator": "closed form, exact true Fisher diagonal",
             "beta": config.fisher_beta, "prior_variance": config.prior_variance, **information}
    memorisation.append(point)
    records.append(point)
    sweeps[fraction] = common.lagrangian_sweep(
        loss_fn, initial, common.as_batch(train_arrays), betas,
        prior_variance=config.prior_variance, optimizer=sweep_optimizer,
        num_steps=config.sweep.num_steps,
        key=jax.random.fold_in(sweep_key, index), eval_samples=config.sweep.eval_samples)
    records.extend({"kind": "sweep", "fraction": fraction,
                    "estimator": "variational Gaussian fit of the information Lagrangian", **p}
                   for p in sweeps[fraction])

  summary = {
      "num_train": num_train, "num_parameters": common.num_parameters(initial),
      "fractions": fractions,
      "train_accuracy": [m["train_accuracy"] for m in memorisation],
      "test_accuracy": [m["test_accuracy"] for m in memorisation],
      "fisher_information": [m["information"] for m in memorisation]}
  for beta in report_betas:
    summary[f"information_beta_{beta:g}"] = [
        next(p["information"] for p in sweeps[f] if math.isclose(p["beta"], beta))
        for f in fractions]
  for fraction, name in ((0.0, "real"), (1.0, "random")):
    if fraction in sweeps:
      summary[f"threshold_beta_{name}"] = fitting_threshold(
          [p["beta"] for p in sweeps[fraction]], [p["expected_loss"] for p in sweeps[fraction]],
          chance_loss=chance_loss)

  common.write_records(os.path.join(workdir, common.METRICS_FILE), records)
  if io.is_primary_process():
    _plot_information(os.path.join(workdir, INFORMATION_PLOT), fractions, sweeps, memorisation,
                      report_betas)
    _plot_transition(os.path.join(workdir, TRANSITION_PLOT), fractions, sweeps, chance_loss)
    shown = {f: histories[f] for f in (0.0, 1.0) if f in histories} or {
        fractions[-1]: histories[fractions[-1]]}
    _plot_memorisation(os.path.join(workdir, MEMORISATION_PLOT), shown)
  lines = [f"random_labels: MLP {tuple(config.hidden_sizes)} ({summary['num_parameters']} "
           f"parameters) on {num_train} {config.dataset} training examples; prior N(w0, "
           f"{config.prior_variance:g} I) at the initialisation; beta for the summed loss (nats)."]
  for m in memorisation:
    lines.append(
        f"fraction {m['fraction']:.2f}: SGD train accuracy {m['train_accuracy']:.4f}, test "
        f"accuracy {m['test_accuracy']:.4f}; closed-form information at beta={m['beta']:g}: "
        f"{m['information']:.1f} nats ({m['information_mean_term']:.1f} from ||w*-w0||^2).")
  for beta in report_betas:
    values = ", ".join(f"{v:.1f}" for v in summary[f"information_beta_{beta:g}"])
    lines.append(f"variational KL(Q*||P) at beta={beta:g} per fraction: {values} nats.")
  for name in ("real", "random"):
    if f"threshold_beta_{name}" in summary:
      lines.append(f"{name} labels: Q fits (E_Q L_D <= log|Y|/2) for beta below "
                   f"{summary[f'threshold_beta_{name}']:.3g}.")
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
