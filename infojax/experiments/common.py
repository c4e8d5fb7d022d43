"""What several experiments share: data splits, the MLP and its training, the closed-form and
variational information in the weights, and the JSON-lines records and text summaries.

Used by the weights experiments (`random_labels`, `pac_bayes_bound`, `structure_function`,
`bias_variance`) and by every experiment that writes ``metrics.jsonl`` and ``summary.txt``. The
information estimators follow science.md §2.6 (closed form, corrected) and §4.4 (the Lagrangian
sweep); Achille & Soatto, "Emergence of invariance and disentanglement in deep representations"
(JMLR 2018).
"""

import functools
import json
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.stats

from infojax import data
from infojax import fisher
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import train
from infojax import weights
from infojax.io import tensorboard as tensorboard_lib

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"


def load_splits(dataset: str, *, data_dir: Optional[str] = None, normalize: bool = True,
                num_train: Optional[int] = None, seed: int = 0,
                process_local: bool = False) -> dict:
  """The train and test splits as ``{"train": {"image", "label"}, "test": {...}}`` numpy arrays.

  By default every process loads the whole splits: small experiments are computations that each
  process of a multi-process run carries out whole on its own devices, so every process holds the
  numbers of a single-process run (process 0 writes them). With ``process_local``, for data too
  large for one host, each process reads only its share (``tfds.split_for_jax_process``) and the
  standardisation statistics are pooled over the processes (the same on every process).

  Args:
    dataset: a dataset name for `infojax.data.load` (offline: ``"digits"``, ``"mnist1d"``).
    data_dir: the TFDS data directory; ``None`` for the default.
    normalize: standardise each input channel with the training split's mean and std.
    num_train: keep a seeded random subset of this many training examples (``None``: all); not
      with ``process_local``.
    seed: the subset's seed.
    process_local: read this process's share of each split only.

  Returns:
    The splits; images float32 ``(N, ...)``, labels int32 ``(N,)`` (``N`` of this process's share
    with ``process_local``).

  Cost: the splits in host memory (this process's share with ``process_local``).
  """
  if process_local and num_train is not None:
    raise ValueError("load_splits: num_train (a subset of the whole training split) cannot be "
                     "combined with process_local; use num_train=None.")
  splits = {}
  for split in ("train", "test"):
    arrays = data.load(dataset, split, data_dir=data_dir, process_local=process_local)
    splits[split] = {"image": arrays["image"], "label": arrays["label"]}
  size = splits["train"]["label"].shape[0]
  if num_train is not None:
    if isinstance(num_train, bool) or int(num_train) != num_train or not 1 <= num_train <= size:
      raise ValueError(f"load_splits: num_train must be an integer in [1, {size}] (the training "
                       f"split of {dataset!r}); got {num_train!r}.")
    index = np.sort(np.random.default_rng(seed).permutation(size)[:num_train])
    splits["train"] = {key: values[index] for key, values in splits["train"].items()}
  if normalize:
    standardise(splits, across_processes=process_local)
  return splits


def standardise(splits: dict, *, across_processes: bool = False) -> None:
  """Standardises every split's ``image`` in place with the training split's channel mean and std
  (`infojax.data.transforms.standardize`; channels of zero spread keep their scale).

  Args:
    splits: ``{split: {"image", ...}}`` with a ``"train"`` split.
    across_processes: each process holds its share of the splits: pool the statistics over the
      processes (`infojax.data.transforms.channel_stats`).
  """
  names = ["train"] + [name for name in splits if name != "train"]
  standardized = data.transforms.standardize(*(splits[name]["image"] for name in names),
                                             across_processes=across_processes)
  for name, images in zip(names, standardized):
    splits[name]["image"] = images


def check_seeds(experiment: str, seeds) -> list:
  """``config.seeds`` validated: a non-empty sequence of distinct non-negative ints.

  Raises:
    ValueError: naming ``seeds`` and the experiment.
  """
  values = list(seeds) if isinstance(seeds, (list, tuple)) else None
  if (not values or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in values)
      or len(set(values)) < len(values)):
    raise ValueError(f"{experiment}: seeds must be a non-empty list of distinct non-negative ints; "
                     f"got {seeds!r}.")
  return values


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
                     eval_batch_size: int = 1000, workdir: Optional[str] = None,
                     checkpoint_every: int = 1):
  """SGD on the mean cross-entropy with `infojax.train.fit`.

  In memory by default; with a ``workdir``, `infojax.train.fit` writes its records and orbax
  checkpoints there, and a rerun with the same arguments resumes from the newest checkpoint to the
  same weights and history as an uninterrupted run.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    params: the initial weights.
    train_arrays, test_arrays: ``{"image", "label"}`` splits.
    optimizer_config: see `infojax.train.make_optimizer`.
    num_epochs, batch_size, seed: as in `infojax.train.fit`.
    eval_batch_size: examples per evaluation batch.
    workdir: where the training's ``metrics.jsonl`` and ``checkpoints/`` go (e.g. a unit's folder
      in the experiment's workdir); ``None``: in memory.
    checkpoint_every: epochs per checkpoint, with a ``workdir``.

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
      eval_batch_size=eval_batch_size, workdir=workdir,
      checkpoint_every=checkpoint_every if workdir is not None else 0,
      max_checkpoints_to_keep=1, progress=False)
  return result.state.params, result.history


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


def distance_term(mean, prior_mean, prior_variance: float) -> float:
  """``||mean - w0||^2 / (2 lambda^2)`` (nats): the part of ``KL(Q || N(w0, lambda^2 I))`` that the
  mean of ``Q`` pays, whatever its variances (the rest is the variances' part)."""
  squared = weights.total(jax.tree.map(lambda w, w0: jnp.square(w - w0), mean, prior_mean))
  return float(squared) / (2.0 * prior_variance)


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
  information = float(weights.total(per_leaf))
  mean_term = distance_term(params, prior_mean, prior_variance)
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


SWEEP_DIR = "sweep"
SWEEP_POINTS_FILE = "points.json"


def lagrangian_sweep(loss_fn: Callable, prior_mean, batch, betas, *, prior_variance: float,
                     optimizer: optax.GradientTransformation, num_steps: int, key: jax.Array,
                     eval_samples: int, tolerance: Optional[float] = None,
                     check_every: Optional[int] = None, workdir: Optional[str] = None) -> list:
  """Minimises the information Lagrangian for each ``beta`` from ``Q = P``, warm-started.

  The variational estimator: `infojax.weights.trace_structure_function` on the mean loss with
  ``reduction="sum"`` (``betas`` weigh the summed loss, in nats), ``P = N(w0, lambda^2 I)``, one
  ``beta`` per call (the largest first) from the previous ``beta``'s Q, with the key
  ``fold_in(key, k)`` for the k-th: one compiled program for every point, and the same points
  whether or not the sweep was interrupted. Each fit runs to the convergence criterion of
  `trace_structure_function` (``tolerance``, ``check_every``) or ``num_steps`` steps.

  With a ``workdir``, after each ``beta`` the points so far are written to
  ``workdir/sweep/points.json`` (process 0) and Q is saved there with orbax
  (`infojax.train.Checkpointer`; all processes); a rerun resumes after the newest saved point.

  Args:
    loss_fn: ``loss_fn(params, (inputs, labels))``, the mean loss in nats (e.g. `mean_nll_fn`).
    prior_mean: ``w0``, the initialisation; also the starting mean of Q.
    batch: ``(inputs, labels)``, the training set (full-batch steps).
    betas: trade-offs for the summed loss, swept from the largest.
    prior_variance: ``lambda^2``.
    optimizer: the optimiser of the fit, with at most ``num_steps`` steps per ``beta`` (e.g.
      `infojax.train.make_optimizer` with ``steps_per_epoch=1, num_epochs=num_steps``).
    num_steps: full-batch steps per ``beta`` (the most, with ``tolerance``).
    key: a PRNG key.
    eval_samples: weight draws for the reported ``E_Q L_D``.
    tolerance, check_every: the convergence criterion (see `trace_structure_function`).
    workdir: where the sweep checkpoints; ``None``: in memory.

  Returns:
    One dict per ``beta`` (largest first): ``beta``, ``information`` (``KL(Q||P)``, nats),
    ``information_distance`` (``||mean - w0||^2 / 2 lambda^2``) and ``information_variance`` (the
    rest), ``expected_loss`` (``E_Q L_D``, mean nats per example), ``code_length``
    (``N E_Q L_D + KL``, nats), ``steps`` and ``relative_change`` (the criterion's last value), and
    ``information_<layer>``.
  """
  num_examples = int(np.shape(batch[1])[0])
  swept = np.sort(np.asarray(betas, np.float64))[::-1]
  batch = tuple(jnp.asarray(x) for x in batch)
  posterior = weights.gaussian_posterior(prior_mean, prior_variance)
  points, start, checkpointer = [], 0, None
  if workdir is not None:
    directory = os.path.join(workdir, SWEEP_DIR)
    checkpointer = train.Checkpointer(directory, max_to_keep=1)
    latest = checkpointer.latest_epoch()
    if latest is not None:
      posterior = checkpointer.restore(latest, posterior)
      with open(os.path.join(directory, SWEEP_POINTS_FILE)) as f:
        points = json.load(f)[:latest + 1]
      start = latest + 1
  try:
    for k in range(start, len(swept)):
      curve, posterior = weights.trace_structure_function(
          loss_fn, posterior, batch, swept[k:k + 1], key=jax.random.fold_in(key, k),
          optimizer=optimizer, prior_variance=prior_variance, num_steps=num_steps,
          prior_mean=prior_mean, eval_samples=eval_samples, reduction="sum",
          num_examples=num_examples, tolerance=tolerance, check_every=check_every,
          return_posterior=True)
      points.append(_sweep_point(curve, float(swept[k]), num_examples))
      if checkpointer is not None:
        _write_json(os.path.join(workdir, SWEEP_DIR, SWEEP_POINTS_FILE), points)
        checkpointer.save(k, posterior)
  finally:
    if checkpointer is not None:
      checkpointer.close()
  return points


def _sweep_point(curve, beta: float, num_examples: int) -> dict:
  """A `lagrangian_sweep` record from a one-point `StructureFunction`."""
  information = float(curve.information[0])
  distance = float(curve.distance[0])
  expected_loss = float(curve.expected_loss[0])
  point = {"beta": beta, "information": information, "information_distance": distance,
           "information_variance": information - distance, "expected_loss": expected_loss,
           "code_length": num_examples * expected_loss + information,
           "steps": int(curve.steps[0]), "relative_change": float(curve.relative_change[0])}
  layers = per_layer_values(jax.tree.map(lambda leaf: leaf[0], curve.information_per_leaf))
  point.update({f"information_{name}": value for name, value in layers.items()})
  return point


def _replace_file(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` atomically (a temporary file, then a rename)."""
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    f.write(text)
  os.replace(temporary, path)


def _write_json(path: str, value) -> None:
  """Writes ``value`` as JSON atomically (process 0 only)."""
  if io.is_primary_process():
    _replace_file(path, json.dumps(io.to_json_value(value)))


def mean_interval(values, *, confidence: float = 0.95) -> tuple:
  """The mean over seeds and its Student-t confidence interval.

  Args:
    values: ``(n,)`` finite values, one per seed.
    confidence: the interval's coverage, in (0, 1).

  Returns:
    ``(mean, low, high)`` floats: ``mean -+ t_{(1+confidence)/2, n-1} s / sqrt(n)`` with ``s``
    the sample standard deviation; ``low = high = mean`` for a single value.
  """
  values = np.asarray(values, np.float64)
  if values.ndim != 1 or values.size < 1 or not np.all(np.isfinite(values)):
    raise ValueError(f"mean_interval: values must be a non-empty 1-D array of finite numbers; got "
                     f"{values!r}.")
  if not 0 < confidence < 1:
    raise ValueError(f"mean_interval: confidence must be in (0, 1); got {confidence}.")
  mean = float(np.mean(values))
  if values.size == 1:
    return mean, mean, mean
  half = float(scipy.stats.t.ppf(0.5 + confidence / 2, values.size - 1)
               * np.std(values, ddof=1) / np.sqrt(values.size))
  return mean, mean - half, mean + half


def saved_records(path: str) -> list:
  """The records of an existing metrics file (a resumed run's), or ``[]``."""
  return io.read_metrics(path) if os.path.exists(path) else []


_MIRRORED = {}  # metrics path -> records this process mirrored (write_records(tensorboard=True))


def write_records(path: str, records: Sequence[dict], *, tensorboard: bool = False) -> None:
  """Writes records as JSON lines (process 0 only), replacing the file.

  With ``tensorboard``, the records are also mirrored as TensorBoard scalars
  (`infojax.io.tensorboard.EventWriter`, the optional tensorboardX) in the ``tensorboard`` folder
  next to ``path``, at step = the record's index, so a run can be watched live: each call writes,
  in a new event file closed before it returns, the records beyond those this process already
  mirrored. A process's first call (or one with fewer records than mirrored) starts with a purge
  marker at its first step, so a resumed run's events replace the interrupted run's.
  """
  if not io.is_primary_process():
    return
  _replace_file(path, "".join(json.dumps(io.to_json_value(record)) + "\n" for record in records))
  if tensorboard:
    mirrored = _MIRRORED.get(path)
    purge = mirrored is None or mirrored > len(records)
    start = 0 if mirrored is None else min(mirrored, len(records))
    logdir = os.path.join(os.path.dirname(os.path.abspath(path)), tensorboard_lib.TENSORBOARD_DIR)
    with tensorboard_lib.EventWriter(logdir, purge_step=start if purge else None) as writer:
      for index in range(start, len(records)):
        writer.write(records[index], step=index)
    _MIRRORED[path] = len(records)


@functools.lru_cache(maxsize=None)
def dense_head(num_classes: int) -> Callable:
  """``apply_fn(params, features)`` of a ``flax.linen.Dense(num_classes)`` head, one object per
  class count, so that programs compiled for it (`infojax.tasks.task2vec.fit_head`) are reused
  across tasks."""
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  return models.make_apply_fn(nn.Dense(num_classes))


def write_summary(path: str, lines: Sequence[str]) -> None:
  """Writes a text summary (process 0 only), then the run's page ``index.html`` next to it.

  Every experiment writes its summary last, after its plots, so the page
  (`infojax.io.write_run_page`) shows the run's summary, plots, metrics and config.
  """
  if io.is_primary_process():
    with open(path, "w") as f:
      f.write("\n".join(lines) + "\n")
    io.write_run_page(os.path.dirname(os.path.abspath(path)))
