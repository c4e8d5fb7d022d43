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

This module also holds the pieces shared by the other weights experiments (`pac_bayes_bound`,
`structure_function`, `bias_variance`): data splits, the MLP, SGD training, the two information
estimators and the JSON-lines records.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (records tagged by ``"kind"``: ``"sgd"``
per epoch, ``"memorisation"`` per fraction, ``"sweep"`` per fraction and ``beta``),
``random_labels_information.png``, ``random_labels_phase_transition.png``,
``random_labels_memorisation.png`` and ``summary.txt``. A rerun in the same workdir starts over.
"""

import json
import math
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from infojax import config as config_lib
from infojax import data
from infojax import fisher
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import train
from infojax import weights

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
INFORMATION_PLOT = "random_labels_information.png"
TRANSITION_PLOT = "random_labels_phase_transition.png"
MEMORISATION_PLOT = "random_labels_memorisation.png"


# ----------------------------------------------------------------------------------------------
# Pieces shared by the weights experiments.
# ----------------------------------------------------------------------------------------------


def load_splits(dataset: str, *, data_dir: Optional[str] = None, normalize: bool = True,
                num_train: Optional[int] = None, seed: int = 0) -> dict:
  """The train and test splits as ``{"train": {"image", "label"}, "test": {...}}`` numpy arrays.

  Args:
    dataset: a dataset name for `infojax.data.load` (offline: ``"digits"``, ``"mnist1d"``).
    data_dir: the TFDS data directory; ``None`` for the default.
    normalize: standardise each input channel with the training split's mean and std.
    num_train: keep a seeded random subset of this many training examples (``None``: all).
    seed: the subset's seed.

  Returns:
    The splits; images float32 ``(N, ...)``, labels int32 ``(N,)``. Every process loads the whole
    splits: the weights experiments are small full-batch computations that each process of a
    multi-process run carries out whole on its own devices, so every process holds the numbers of
    a single-process run (process 0 writes them).
  """
  splits = {}
  for split in ("train", "test"):
    arrays = data.load(dataset, split, data_dir=data_dir, process_local=False)
    splits[split] = {"image": arrays["image"], "label": arrays["label"]}
  size = splits["train"]["label"].shape[0]
  if num_train is not None:
    if isinstance(num_train, bool) or int(num_train) != num_train or not 1 <= num_train <= size:
      raise ValueError(f"load_splits: num_train must be an integer in [1, {size}] (the training "
                       f"split of {dataset!r}); got {num_train!r}.")
    index = np.sort(np.random.default_rng(seed).permutation(size)[:num_train])
    splits["train"] = {key: values[index] for key, values in splits["train"].items()}
  if normalize:
    standardise(splits)
  return splits


def standardise(splits: dict) -> None:
  """Standardises every split's ``image`` in place with the training split's channel mean and std
  (channels of zero spread keep their scale)."""
  mean, std = data.transforms.channel_stats(splits["train"]["image"])
  std = np.where(std > 0, std, 1.0).astype(np.float32)
  for arrays in splits.values():
    arrays["image"] = data.transforms.normalize(arrays["image"], mean=mean, std=std)


def init_mlp(hidden_sizes: Sequence[int], num_classes: int, input_shape: Sequence[int],
             key: jax.Array):
  """An `infojax.models.MLP` and its initial weights ``w0``.

  Returns:
    ``(apply_fn, params)`` as in `infojax.models.init`.
  """
  model = models.MLP(tuple(int(size) for size in hidden_sizes), int(num_classes))
  return models.init(model, key, (1, *tuple(input_shape)))


def num_parameters(params) -> int:
  """The number of scalar parameters of a pytree."""
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def mean_nll_fn(apply_fn: Callable) -> Callable:
  """``loss(params, (inputs, labels))``: the mean softmax cross-entropy in nats."""
  likelihood = likelihoods.categorical()

  def loss(params, batch):
    inputs, labels = batch
    return jnp.mean(likelihood.nll(apply_fn(params, inputs), labels))

  return loss


def error_rate_fn(apply_fn: Callable) -> Callable:
  """``error(params, (inputs, labels))``: the mean 0-1 error of the arg-max prediction."""

  def error(params, batch):
    inputs, labels = batch
    return jnp.mean((jnp.argmax(apply_fn(params, inputs), axis=-1) != labels).astype(jnp.float32))

  return error


def as_batch(arrays: dict) -> tuple:
  """``(inputs, labels)`` from a split's ``{"image", "label"}``."""
  return arrays["image"], arrays["label"]


def train_classifier(apply_fn: Callable, params, train_arrays: dict, test_arrays: dict, *,
                     optimizer_config, num_epochs: int, batch_size: int, seed: int,
                     eval_batch_size: int = 1000):
  """SGD on the mean cross-entropy with `infojax.train.fit` (in memory, no checkpoints).

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    params: the initial weights.
    train_arrays, test_arrays: ``{"image", "label"}`` splits.
    optimizer_config: see `infojax.train.make_optimizer`.
    num_epochs, batch_size, seed: as in `infojax.train.fit`.
    eval_batch_size: examples per evaluation batch.

  Returns:
    ``(params, history)``: the trained weights and the per-epoch records, each with the exact
    ``train_eval_{loss,accuracy}`` (on ``train_arrays``'s labels) and ``test_{loss,accuracy}`` at
    the end of the epoch (epoch 0: the initialisation).
  """
  num_train = train_arrays["label"].shape[0]
  if not 1 <= batch_size <= num_train:
    raise ValueError(f"train_classifier: batch_size must be in [1, {num_train}] (the training "
                     f"examples); got {batch_size}.")
  optimizer = train.make_optimizer(optimizer_config, steps_per_epoch=num_train // batch_size,
                                   num_epochs=num_epochs)
  state = train.init_state(params, optimizer, key=jax.random.key(seed))
  result = train.fit(
      train.classification(apply_fn), optimizer, state, train_data=train_arrays,
      batch_size=batch_size, seed=seed, num_epochs=num_epochs,
      eval_data={"train_eval": train_arrays, "test": test_arrays},
      eval_batch_size=eval_batch_size, workdir=None, checkpoint_every=0, progress=False)
  return result.state.params, result.history


def posterior_optimizer(optimizer_config, *, steps_per_epoch: int,
                        num_epochs: int) -> optax.GradientTransformation:
  """The optimiser of a Gaussian post-distribution fit, from an optimiser config.

  ``name="rmsprop"`` (Dziugaite & Roy's choice; decay 0.9) is handled here with the config's
  learning-rate schedule; every other name goes to `infojax.train.make_optimizer`.
  """
  if optimizer_config.name == "rmsprop":
    schedule = train.make_schedule(optimizer_config, steps_per_epoch=steps_per_epoch,
                                   num_epochs=num_epochs)
    return optax.rmsprop(schedule, decay=0.9)
  return train.make_optimizer(optimizer_config, steps_per_epoch=steps_per_epoch,
                              num_epochs=num_epochs)


def per_layer_values(per_leaf) -> dict:
  """``{layer: float}`` from a pytree of per-leaf scalars (e.g. the information per kernel)."""
  return {name: float(value) for name, value in weights.per_layer(per_leaf).items()}


def true_fisher_diagonal(apply_fn: Callable, params, batch, *, chunk_size: Optional[int] = None):
  """The exact true-Fisher diagonal on ``batch``: the curvature of the **mean** loss at ``params``.

  `infojax.fisher.diagonal` with ``kind="true"`` (labels drawn from the model, an exact expectation;
  science.md §0.3), averaged over the examples; ``batch[1]`` only sets the label shapes.

  Cost: about C backward passes per example for C classes.
  """
  return fisher.diagonal(apply_fn, params, tuple(batch), likelihood=likelihoods.categorical(),
                         kind="true", chunk_size=chunk_size)


def gaussian_information_terms(curvature, params, *, num_examples: int, beta: float,
                               prior_variance: float, prior_mean) -> dict:
  """The closed-form Gaussian information in the weights around trained weights ``w*``, split up.

  ``KL(Q*||P) = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta_mean)``
  (`infojax.weights.gaussian_information`, science.md §2.6, corrected form) with ``h`` the
  curvature of the mean loss (e.g. `true_fisher_diagonal`) and ``beta_mean = beta / N``: ``beta`` is
  given for the summed loss (science.md §0.2).

  Args:
    curvature: ``h``, a pytree like ``params``.
    params: ``w*``.
    num_examples: N, the examples ``curvature`` averages over.
    beta: the trade-off for the summed loss, > 0.
    prior_variance: ``lambda^2``.
    prior_mean: ``w0`` (the initialisation).

  Returns:
    ``{"information", "information_mean_term", "information_curvature_term"}`` (floats, nats) and
    ``"information_<layer>"`` for each layer.
  """
  beta_mean = weights.convert_beta(beta, num_examples=num_examples, from_reduction="sum",
                                   to_reduction="mean")
  per_leaf = weights.gaussian_information(curvature, params, beta=beta_mean,
                                          prior_variance=prior_variance, prior_mean=prior_mean,
                                          per_leaf=True)
  squared_distance = weights.total(jax.tree.map(lambda w, w0: jnp.square(w - w0), params,
                                                prior_mean))
  information = float(weights.total(per_leaf))
  mean_term = float(squared_distance) / (2.0 * prior_variance)
  result = {"information": information, "information_mean_term": mean_term,
            "information_curvature_term": information - mean_term}
  result.update({f"information_{name}": value
                 for name, value in per_layer_values(per_leaf).items()})
  return result


def fisher_information(apply_fn: Callable, params, batch, *, beta: float, prior_variance: float,
                       prior_mean, chunk_size: Optional[int] = None) -> dict:
  """`gaussian_information_terms` with the exact true-Fisher diagonal of ``batch`` at ``params``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    params: ``w*``.
    batch: ``(inputs, labels)``, the training set.
    beta: the trade-off for the summed loss, > 0.
    prior_variance: ``lambda^2``.
    prior_mean: ``w0`` (the initialisation).
    chunk_size: examples per chunk of the Fisher computation (memory bound).

  Returns:
    See `gaussian_information_terms`.
  """
  curvature = true_fisher_diagonal(apply_fn, params, batch, chunk_size=chunk_size)
  return gaussian_information_terms(curvature, params, num_examples=int(np.shape(batch[1])[0]),
                                    beta=beta, prior_variance=prior_variance,
                                    prior_mean=prior_mean)


def beta_grid(beta_max: float, beta_min: float, num_betas: int) -> np.ndarray:
  """``num_betas`` log-spaced trade-offs from ``beta_max`` down to ``beta_min`` (both > 0)."""
  if not 0 < beta_min <= beta_max or int(num_betas) != num_betas or num_betas < 1:
    raise ValueError(f"beta_grid: need 0 < beta_min <= beta_max and num_betas >= 1; got "
                     f"beta_min={beta_min}, beta_max={beta_max}, num_betas={num_betas}.")
  return np.geomspace(beta_max, beta_min, int(num_betas))


def lagrangian_sweep(apply_fn: Callable, prior_mean, batch, betas, *, prior_variance: float,
                     optimizer_config, num_steps: int, key: jax.Array,
                     eval_samples: int) -> list:
  """Minimises the information Lagrangian for each ``beta`` from ``Q = P``, warm-started.

  The variational estimator: `infojax.weights.trace_structure_function` on the mean cross-entropy
  with ``reduction="sum"`` (``betas`` weigh the summed loss, in nats), ``P = N(w0, lambda^2 I)``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    prior_mean: ``w0``, the initialisation; also the starting mean of Q.
    batch: ``(inputs, labels)``, the training set (full-batch steps).
    betas: trade-offs for the summed loss, swept from the largest.
    prior_variance: ``lambda^2``.
    optimizer_config: the optimiser of the fit (see `posterior_optimizer`).
    num_steps: full-batch steps per ``beta``.
    key: a PRNG key.
    eval_samples: weight draws for the reported ``E_Q L_D``.

  Returns:
    One dict per ``beta`` (largest first): ``beta``, ``information`` (``KL(Q||P)``, nats),
    ``expected_loss`` (``E_Q L_D``, mean nats per example), ``code_length``
    (``N E_Q L_D + KL``, nats) and ``information_<layer>``.
  """
  num_examples = int(np.shape(batch[1])[0])
  optimizer = posterior_optimizer(optimizer_config, steps_per_epoch=1, num_epochs=num_steps)
  curve = weights.trace_structure_function(
      mean_nll_fn(apply_fn), weights.gaussian_posterior(prior_mean, prior_variance),
      tuple(jnp.asarray(x) for x in batch), betas, key=key, optimizer=optimizer,
      prior_variance=prior_variance, num_steps=num_steps, prior_mean=prior_mean,
      eval_samples=eval_samples, reduction="sum", num_examples=num_examples)
  swept = np.sort(np.asarray(betas, np.float64))[::-1]  # the sweep's order, in float64
  points = []
  for k in range(len(swept)):
    information = float(curve.information[k])
    expected_loss = float(curve.expected_loss[k])
    point = {"beta": float(swept[k]), "information": information,
             "expected_loss": expected_loss,
             "code_length": num_examples * expected_loss + information}
    layers = per_layer_values(jax.tree.map(lambda leaf, k=k: leaf[k], curve.information_per_leaf))
    point.update({f"information_{name}": value for name, value in layers.items()})
    points.append(point)
  return points


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


def write_records(path: str, records: Sequence[dict]) -> None:
  """Writes records as JSON lines (process 0 only), replacing the file."""
  if not io.is_primary_process():
    return
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    f.writelines(json.dumps(io.to_json_value(record)) + "\n" for record in records)
  os.replace(temporary, path)


def write_summary(path: str, lines: Sequence[str]) -> None:
  """Writes a text summary (process 0 only)."""
  if io.is_primary_process():
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")


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
  betas = beta_grid(config.sweep.beta_max, config.sweep.beta_min, config.sweep.num_betas)
  report_betas = [float(b) for b in config.sweep.report_betas]
  for beta in report_betas:
    if not any(math.isclose(beta, b) for b in betas):
      raise ValueError(f"random_labels: sweep.report_betas must be points of the beta grid "
                       f"{betas.tolist()}; got {beta}.")
  splits = load_splits(config.dataset, data_dir=config.data_dir, normalize=config.normalize,
                       num_train=config.num_train, seed=config.seed)
  num_classes = data.dataset_info(config.dataset, data_dir=config.data_dir).num_classes
  chance_loss = math.log(num_classes)
  input_shape = splits["train"]["image"].shape[1:]
  init_key, sweep_key = jax.random.split(jax.random.key(config.seed))
  apply_fn, initial = init_mlp(config.hidden_sizes, num_classes, input_shape, init_key)
  num_train = int(splits["train"]["label"].shape[0])

  records, memorisation, sweeps, histories = [], [], {}, {}
  for index, fraction in enumerate(fractions):
    labels, _ = data.transforms.corrupt_labels(splits["train"]["label"], fraction=fraction,
                                               num_classes=num_classes, seed=config.seed + index)
    train_arrays = {"image": splits["train"]["image"], "label": labels}
    trained, history = train_classifier(
        apply_fn, initial, train_arrays, splits["test"], optimizer_config=config.optimizer,
        num_epochs=config.num_epochs, batch_size=config.batch_size, seed=config.seed)
    histories[fraction] = history
    records.extend({"kind": "sgd", "fraction": fraction, **r} for r in history)
    information = fisher_information(
        apply_fn, trained, as_batch(train_arrays), beta=config.fisher_beta,
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
    sweeps[fraction] = lagrangian_sweep(
        apply_fn, initial, as_batch(train_arrays), betas, prior_variance=config.prior_variance,
        optimizer_config=config.sweep.optimizer, num_steps=config.sweep.num_epochs,
        key=jax.random.fold_in(sweep_key, index), eval_samples=config.sweep.eval_samples)
    records.extend({"kind": "sweep", "fraction": fraction,
                    "estimator": "variational Gaussian fit of the information Lagrangian", **p}
                   for p in sweeps[fraction])

  summary = {
      "num_train": num_train, "num_parameters": num_parameters(initial), "fractions": fractions,
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

  write_records(os.path.join(workdir, METRICS_FILE), records)
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
  write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
