"""Information Dropout on cluttered digits: accuracy and KL against beta, and where the KL sits.

Achille & Soatto, "Information Dropout: learning optimal representations through noisy
computation" (PAMI 2018, arXiv:1611.01353; science.md §5, §15 C.27). Information Dropout minimises
the information Lagrangian of the activations, ``mean_i [CE_i + beta sum_units KL_i]`` (the
per-example convention of science.md §5.1; the official code's ``beta_code`` is ``beta N_train``,
`infojax.activations.layers`), with learned multiplicative log-normal noise. The paper's claims
(science.md §5.5): it matches or beats binary dropout, especially for small networks, and on
Cluttered MNIST its KL heat maps concentrate on the digit and ignore the clutter.

Data (`cluttered_digits`, seeded): each bundled 8x8 digit (1,437 train, 360 test) is pasted at a
uniformly random position of a ``canvas_size`` square canvas, together with ``num_fragments``
square ``fragment_size`` patches cut at random from other digits of the same split and pasted at
random positions (pixelwise maximum), as in Cluttered MNIST (Mnih et al. 2014, 8x8 fragments of
28x28 digits); the digit's bounding box is kept. Pixels are standardised with the training mean
and std.

Network (`ClutteredCNN`, the §5.3 recipe reduced; no BatchNorm): per block k, conv3x3(c_k) ReLU
and **pool**(c_k); then conv1x1(10), spatial mean, Dense(10), with ``c = round(filter_percentage *
base_channels)`` (default two blocks). Each pool is a stride-2 3x3 layer in one of three forms:
``"information"`` (`infojax.activations.layers.InformationDropout`, ReLU and the log-uniform
prior), ``"binary"`` (a stride-2 conv, ReLU and ``nn.Dropout(dropout_rate)``, the official
baseline with keep probability 0.5) or ``"none"`` (the stride-2 conv alone).

Protocol: for every filter percentage, method (information dropout at every ``beta`` of the grid,
binary dropout, none) and seed, Adam on the loss above (one noise draw per example and step) for
``num_epochs`` epochs; then, with the noise off, the test accuracy, the test cross-entropy, the
KL term (sum over units, mean over the test images) and its share per pool, and on the test
images the fraction of each pool's KL mass whose receptive-field centre lies in the digit's
bounding box against the fraction of the pool's cells there (a ratio above 1 means the KL
concentrates on the digit), and the KL per cell on the digit, on the clutter and on the empty
background (`kl_regions`).

Cost: compilation would dominate these small runs, so beta rides in the training state
(``model_state = {"beta"}``) and one compiled program per (method, width) serves every beta and
seed (cached per process), initial weights are drawn on the host (`init_params`), and the noise
uses "rbg" keys (`run_key`).
Convergence: the relative change of the training loss between the last two tenths of the epochs
(`infojax.experiments.effective_information.relative_change`).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"point"`` record per (method,
filter percentage, beta, seed), with the training-loss curve and, for information dropout, the KL
maps of the first ``num_heatmaps`` test images), ``information_dropout.png`` (test accuracy and
KL against beta per width, binary dropout and no dropout as bands),
``information_dropout_heatmaps.png`` (test images next to their KL maps) and ``summary.txt``. A
rerun in the same workdir resumes: points already in ``metrics.jsonl`` are kept, not recomputed.
"""

import functools
import json
import math
import os
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.stats

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import likelihoods
from infojax import train
from infojax.activations import layers
from infojax.experiments import effective_information
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "information_dropout.png"
HEATMAP_FILE = "information_dropout_heatmaps.png"
METHODS = ("information", "binary", "none")


def pool_names(num_blocks: int) -> tuple:
  """``("pool1", ..., "pool<num_blocks>")``: the pools of a `ClutteredCNN`, input side first."""
  return tuple(f"pool{index}" for index in range(1, num_blocks + 1))


# ----------------------------------------------------------------------------------------------
# Data: cluttered digits.
# ----------------------------------------------------------------------------------------------


def cluttered_digits(images, labels, *, canvas_size: int, num_fragments: int, fragment_size: int,
                     seed: int) -> dict:
  """Digits pasted at random positions of a larger canvas with clutter cut from other digits.

  Args:
    images: ``(N, h, w, 1)`` digits in ``[0, 1]``, ``N >= 2``.
    labels: ``(N,)`` integer labels.
    canvas_size: the side of the square canvas, at least ``max(h, w)``.
    num_fragments: clutter patches per image (>= 0).
    fragment_size: the side of each patch, at most ``min(h, w)``.
    seed: the placement seed (``np.random.default_rng(seed)``).

  Returns:
    ``{"image": (N, S, S, 1) float32, "label": (N,), "box": (N, 4) int32, "clutter": (N, S, S)
    bool}``: ``box`` the digit's ``(top, left, bottom, right)`` (exclusive), ``clutter`` the
    pixels outside the box where a fragment is non-zero. Fragments come from the other digits of
    the same arrays and are combined with the pixelwise maximum (they may overlap the digit).
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 1 or images.shape[0] < 2:
    raise ValueError(f"cluttered_digits: images must have shape (N >= 2, h, w, 1); got "
                     f"{images.shape}.")
  count, height, width, _ = images.shape
  if int(canvas_size) != canvas_size or canvas_size < max(height, width):
    raise ValueError(f"cluttered_digits: canvas_size must be an integer >= {max(height, width)}; "
                     f"got {canvas_size!r}.")
  if int(num_fragments) != num_fragments or num_fragments < 0:
    raise ValueError(f"cluttered_digits: num_fragments must be an integer >= 0; got "
                     f"{num_fragments!r}.")
  if int(fragment_size) != fragment_size or not 1 <= fragment_size <= min(height, width):
    raise ValueError(f"cluttered_digits: fragment_size must be an integer in [1, "
                     f"{min(height, width)}]; got {fragment_size!r}.")
  rng = np.random.default_rng(seed)
  canvas = np.zeros((count, canvas_size, canvas_size, 1), np.float32)
  tops = rng.integers(0, canvas_size - height + 1, count)
  lefts = rng.integers(0, canvas_size - width + 1, count)
  sources = (np.arange(count)[:, None] + rng.integers(1, count, (count, num_fragments))) % count
  cut = rng.integers(0, [height - fragment_size + 1, width - fragment_size + 1],
                     (count, num_fragments, 2))
  paste = rng.integers(0, canvas_size - fragment_size + 1, (count, num_fragments, 2))
  for n in range(count):
    canvas[n, tops[n]:tops[n] + height, lefts[n]:lefts[n] + width] = images[n]
    for k in range(num_fragments):
      (r, c), (y, x) = cut[n, k], paste[n, k]
      patch = images[sources[n, k], r:r + fragment_size, c:c + fragment_size]
      region = canvas[n, y:y + fragment_size, x:x + fragment_size]
      np.maximum(region, patch, out=region)
  box = np.stack([tops, lefts, tops + height, lefts + width], axis=1).astype(np.int32)
  clutter = canvas[..., 0] > 0
  for n in range(count):
    clutter[n, tops[n]:tops[n] + height, lefts[n]:lefts[n] + width] = False
  return {"image": canvas, "label": np.asarray(labels), "box": box, "clutter": clutter}


def load_cluttered_splits(config) -> dict:
  """The cluttered train and test splits of ``config.dataset``, standardised with training stats.

  Each split is cluttered with its own seed (``config.data_seed`` and ``+ 1``) from its own
  digits. Every process builds the whole splits (small replicated runs).
  """
  raw = common.load_splits(config.dataset, data_dir=config.data_dir, normalize=False)
  splits = {name: cluttered_digits(raw[name]["image"], raw[name]["label"],
                                   canvas_size=config.canvas_size,
                                   num_fragments=config.num_fragments,
                                   fragment_size=config.fragment_size,
                                   seed=config.data_seed + offset)
            for name, offset in (("train", 0), ("test", 1))}
  common.standardise(splits)
  return splits


# ----------------------------------------------------------------------------------------------
# The network and its objective.
# ----------------------------------------------------------------------------------------------


class ClutteredCNN(nn.Module):
  """conv, pool, conv, pool, conv1x1, spatial mean, Dense; pools as information/binary/none.

  Attributes:
    channels: ``(c1, c2, ...)``, the channels of each block (one pool per block).
    num_classes: the logits.
    method: ``"information"``, ``"binary"`` or ``"none"`` (module docstring).
    alpha_max: the information pools' largest noise scale.
    dropout_rate: the binary pools' drop probability.
  """
  channels: Sequence[int]
  num_classes: int
  method: str
  alpha_max: float = 1.0
  dropout_rate: float = 0.5

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"ClutteredCNN: method must be one of {METHODS}; got {self.method!r}.")
    if not self.channels or any(int(c) != c or c < 1 for c in self.channels):
      raise ValueError(f"ClutteredCNN: channels must be a non-empty sequence of positive ints; "
                       f"got {self.channels!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool = True):
    """``(B, S, S, 1)`` images -> ``(logits (B, C), {pool: KL map (B, H, W)})``.

    The KL maps are the pools' elementwise KL summed over channels (zeros for binary dropout and
    none); noise (and binary dropout) use the ``"dropout"`` rng unless ``deterministic``.
    """
    x, maps = inputs, {}
    for name, features in zip(pool_names(len(self.channels)), self.channels):
      x = nn.relu(nn.Conv(features, (3, 3))(x))
      if self.method == "information":
        x, kl = layers.InformationDropout(features, kernel_size=(3, 3), strides=2,
                                          alpha_max=self.alpha_max, name=name)(
                                              x, deterministic=deterministic)
        maps[name] = jnp.sum(kl, axis=-1)
      else:
        x = nn.relu(nn.Conv(features, (3, 3), strides=2, name=name)(x))
        if self.method == "binary":
          x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        maps[name] = jnp.zeros(x.shape[:-1], x.dtype)
    x = jnp.mean(nn.Conv(self.num_classes, (1, 1))(x), axis=(1, 2))
    return nn.Dense(self.num_classes)(x), maps


def _total_kl(maps) -> jax.Array:
  """``(B,)``: the KL summed over every pool's units."""
  return sum(jnp.sum(m, axis=(1, 2)) for m in maps.values())


def objective(model: ClutteredCNN) -> train.Objective:
  """``mean(CE) + beta mean(sum_units KL)`` with one noise draw per example; ``beta`` is read from
  ``model_state["beta"]`` (a scalar), so that one compiled program serves every beta.

  Training metrics: ``accuracy``, ``cross_entropy``, ``kl`` (batch means). Evaluation (noise off):
  per-example ``loss`` (cross-entropy), ``accuracy``, ``kl`` and ``kl_<pool>``.
  """
  likelihood = likelihoods.categorical()

  def loss(params, model_state, batch, key):
    logits, maps = model.apply({"params": params}, batch["image"], deterministic=False,
                               rngs={"dropout": key})
    nll = likelihood.nll(logits, batch["label"])
    kl = _total_kl(maps)
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    value = jnp.mean(nll) + model_state["beta"] * jnp.mean(kl)
    return value, (model_state, {"accuracy": jnp.mean(correct), "cross_entropy": jnp.mean(nll),
                                 "kl": jnp.mean(kl)})

  def evaluate(params, model_state, batch):
    del model_state
    logits, maps = model.apply({"params": params}, batch["image"], deterministic=True)
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    return {"loss": likelihood.nll(logits, batch["label"]), "accuracy": correct,
            "kl": _total_kl(maps), **{f"kl_{name}": jnp.sum(m, axis=(1, 2))
                                      for name, m in maps.items()}}

  return train.Objective(loss=loss, evaluate=evaluate)


# ----------------------------------------------------------------------------------------------
# Where the KL sits.
# ----------------------------------------------------------------------------------------------


def cell_centres(size: int, num_pools: int) -> np.ndarray:
  """Input coordinates of the receptive-field centres of a map after ``num_pools`` pools.

  A stride-2 3x3 "SAME" pool maps ``n`` cells to ``m = ceil(n / 2)``, padding
  ``p = (2 (m - 1) + 3 - n) // 2`` cells before, so its cell ``i`` is centred on input cell
  ``2 i - p + 1``; the 3x3 stride-1 "SAME" convolutions keep the centres. Input pixel ``k`` is
  centred at ``k + 0.5``.

  Returns:
    ``(m,)`` centres along one axis, in input pixels.
  """
  centres = np.arange(size) + 0.5
  for _ in range(num_pools):
    cells = -(-centres.size // 2)
    before = max(2 * (cells - 1) + 3 - centres.size, 0) // 2
    centres = centres[2 * np.arange(cells) - before + 1]
  return centres


REGIONS = ("digit", "clutter", "background")


def kl_regions(maps, boxes, clutter, *, canvas_size: int, num_pools: int) -> dict:
  """Where a pool's KL sits: on the digit, on the clutter, or on the empty background.

  A cell of the pool's map belongs to the digit when its receptive-field centre
  (`cell_centres`) lies in the digit's box, else to the clutter when the pixel under its centre
  is clutter, else to the background.

  Args:
    maps: ``(N, H, W)`` non-negative KL maps of one pool.
    boxes: ``(N, 4)`` digit boxes ``(top, left, bottom, right)`` in input pixels.
    clutter: ``(N, S, S)`` clutter masks (`cluttered_digits`).
    canvas_size: the input side S.
    num_pools: the pool's depth (1 for ``pool1``).

  Returns:
    ``digit_mass_fraction`` and ``digit_area_fraction``: the means over images of
    ``sum_{digit cells} KL / sum KL`` and of the fraction of digit cells (their ratio is above 1
    when the KL concentrates on the digit); ``kl_per_cell_<region>``: the KL per cell of each
    region, pooled over the images (nats; NaN for a region without cells).
  """
  maps = np.asarray(maps, np.float64)
  boxes, clutter = np.asarray(boxes), np.asarray(clutter, bool)
  centres = cell_centres(canvas_size, num_pools)
  if maps.shape[1:] != (centres.size, centres.size):
    raise ValueError(f"kl_regions: maps of shape {maps.shape} do not match a {canvas_size}-pixel "
                     f"canvas after {num_pools} pools ({centres.size} cells).")
  rows = (centres[None] >= boxes[:, :1]) & (centres[None] < boxes[:, 2:3])
  cols = (centres[None] >= boxes[:, 1:2]) & (centres[None] < boxes[:, 3:4])
  digit = rows[:, :, None] & cols[:, None, :]
  pixels = np.floor(centres).astype(int)
  on_clutter = clutter[:, pixels][:, :, pixels] & ~digit
  masks = {"digit": digit, "clutter": on_clutter, "background": ~digit & ~on_clutter}
  mass = np.sum(maps * digit, axis=(1, 2)) / np.maximum(np.sum(maps, axis=(1, 2)), 1e-300)
  out = {"digit_mass_fraction": float(np.mean(mass)),
         "digit_area_fraction": float(np.mean(digit.mean(axis=(1, 2))))}
  for region, mask in masks.items():
    cells = int(mask.sum())
    out[f"kl_per_cell_{region}"] = float(np.sum(maps * mask) / cells) if cells else math.nan
  return out


# ----------------------------------------------------------------------------------------------
# Training points.
# ----------------------------------------------------------------------------------------------


class Programs(NamedTuple):
  """The compiled pieces of one (method, width): the model, its optimiser, the jitted training
  epoch and ``measure(params, batch) -> (per-example metrics of Objective.evaluate,
  {pool: KL map (N, H, W)})`` (noise off; the whole test split in one batch)."""
  model: ClutteredCNN
  optimizer: object
  train_epoch: object
  measure: object


def channels_for(config, filter_percentage: float) -> tuple:
  """``round(filter_percentage * base_channels)``, at least 1 each."""
  return tuple(max(1, int(round(filter_percentage * c))) for c in config.base_channels)


def make_programs(config, *, method: str, filter_percentage: float, num_classes: int,
                  num_train: int) -> Programs:
  """The model and its jitted training and evaluation for one method and width.

  Cached per process on everything they depend on, so that reruns (resumption) and every seed and
  beta of a sweep reuse one compilation.
  """
  optimizer = json.dumps(config_lib.config_to_dict(config.optimizer), sort_keys=True)
  return _programs(method, channels_for(config, filter_percentage), num_classes,
                   float(config.alpha_max), float(config.dropout_rate), optimizer,
                   num_train // config.batch_size, int(config.num_epochs))


@functools.lru_cache(maxsize=None)
def _programs(method, channels, num_classes, alpha_max, dropout_rate, optimizer, steps_per_epoch,
              num_epochs) -> Programs:
  model = ClutteredCNN(channels, num_classes, method, alpha_max=alpha_max,
                       dropout_rate=dropout_rate)
  optimizer = train.make_optimizer(ml_collections.ConfigDict(json.loads(optimizer)),
                                   steps_per_epoch=steps_per_epoch, num_epochs=num_epochs)
  target = objective(model)

  @jax.jit
  def measure(params, batch):   # one forward pass after XLA's common-subexpression elimination
    maps = model.apply({"params": params}, batch["image"], deterministic=True)[1]
    return target.evaluate(params, {}, batch), maps

  return Programs(model, optimizer, train.make_train_epoch(target, optimizer), measure)


def init_params(model: nn.Module, input_shape: Sequence[int], seed: int) -> dict:
  """Initial parameters drawn on the host with NumPy, from flax's default distributions.

  Kernels: LeCun normal, a normal truncated at 2 standard deviations and rescaled to variance
  ``1 / fan_in`` (``fan_in``: the product of all but the last axis), as
  ``flax.linen.initializers.lecun_normal``; biases (and any other parameter): 0. No compilation:
  under jax 0.10's ``jax_threefry_partitionable`` a jitted ``model.init`` compiles for seconds on
  XLA:CPU, which would dominate this experiment's small runs.

  Args:
    model: a flax module whose ``__call__`` takes a batch of inputs.
    input_shape: the shape of one batch of inputs, e.g. ``(1, S, S, 1)``.
    seed: ``np.random.default_rng(seed)``.

  Returns:
    The ``params`` pytree, float32 jax arrays.
  """
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(tuple(input_shape)))["params"]
  rng = np.random.default_rng(seed)
  std_of_truncated = float(scipy.stats.truncnorm.std(-2.0, 2.0))

  def draw(path, leaf):
    if jax.tree_util.keystr(path[-1:]) != "['kernel']":
      return jnp.zeros(leaf.shape, leaf.dtype)
    scale = 1.0 / math.sqrt(math.prod(leaf.shape[:-1])) / std_of_truncated
    values = scipy.stats.truncnorm.rvs(-2.0, 2.0, size=leaf.shape, random_state=rng)
    return jnp.asarray(values * scale, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def run_key(seed: int) -> jax.Array:
  """The training noise key of a seed: an "rbg" key (XLA's RngBitGenerator), whose bit
  generation compiles several times faster on XLA:CPU than threefry's under jax 0.10's
  ``jax_threefry_partitionable``; compilation dominates this experiment's small runs."""
  return jax.random.key(seed, impl="rbg")


def train_point(config, splits: dict, programs: Programs, *, method: str,
                filter_percentage: float, beta: Optional[float], seed: int) -> dict:
  """Trains one (method, width, beta, seed) point and measures it; returns its record."""
  train_arrays = {k: splits["train"][k] for k in ("image", "label")}
  test = splits["test"]
  params = init_params(programs.model, (1,) + train_arrays["image"].shape[1:], seed)
  state = train.init_state(params, programs.optimizer, key=run_key(seed),
                           model_state={"beta": jnp.float32(0.0 if beta is None else beta)})
  losses, kls = [], []
  for epoch in range(1, config.num_epochs + 1):
    batches = data.batches(train_arrays, config.batch_size, seed=seed, epoch=epoch)
    state, metrics = programs.train_epoch(state, jax.device_put(batches))
    losses.append(float(jnp.mean(metrics["loss"])))
    kls.append(float(jnp.mean(metrics["kl"])))
    if not math.isfinite(losses[-1]):
      raise FloatingPointError(f"information_dropout: non-finite training loss at epoch {epoch} "
                               f"({method}, filter percentage {filter_percentage}, beta {beta}, "
                               f"seed {seed}); lower the learning rate.")
  metrics, maps = programs.measure(state.params, {k: jnp.asarray(test[k])
                                                  for k in ("image", "label")})
  means = {name: float(np.mean(np.asarray(values, np.float64)))
           for name, values in metrics.items()}
  record = {"kind": "point", "method": method, "filter_percentage": float(filter_percentage),
            "channels": list(programs.model.channels), "beta": beta, "seed": seed,
            "test_accuracy": means["accuracy"], "test_error": 1.0 - means["accuracy"],
            "test_cross_entropy": means["loss"], "test_kl": means["kl"],
            **{f"test_kl_{name}": means[f"kl_{name}"] for name in maps},
            "train_loss": losses[-1], "train_kl": kls[-1],
            "train_loss_relative_change": effective_information.relative_change(losses),
            "train_loss_curve": losses}
  if method == "information":
    for depth, name in enumerate(pool_names(len(programs.model.channels)), start=1):
      regions = kl_regions(maps[name], test["box"], test["clutter"],
                           canvas_size=config.canvas_size, num_pools=depth)
      record.update({f"{name}_{key}": value for key, value in regions.items()})
      record[f"heatmap_{name}"] = np.asarray(maps[name][:config.num_heatmaps]).tolist()
  return io.to_json_value(record)


# ----------------------------------------------------------------------------------------------
# Summary and plots.
# ----------------------------------------------------------------------------------------------


def _point_key(record) -> tuple:
  return record["method"], record["filter_percentage"], record["beta"], record["seed"]


def settings(config) -> list:
  """``[(method, filter_percentage, beta)]`` in run order (beta None for binary and none)."""
  betas = sorted(float(b) for b in config.betas)
  if not betas or betas[0] < 0:
    raise ValueError(f"information_dropout: config.betas must be non-empty and non-negative; got "
                     f"{tuple(config.betas)}.")
  percentages = [float(p) for p in config.filter_percentages]
  if not percentages or min(percentages) <= 0:
    raise ValueError(f"information_dropout: config.filter_percentages must be positive; got "
                     f"{tuple(config.filter_percentages)}.")
  out = []
  for percentage in percentages:
    out += [("none", percentage, None), ("binary", percentage, None)]
    out += [("information", percentage, beta) for beta in betas]
  return out


def _column(records, method, percentage, beta, seeds, name) -> np.ndarray:
  return np.array([next(r[name] for r in records
                        if _point_key(r) == (method, percentage, beta, s)) for s in seeds])


def summarise(records, config, seeds) -> dict:
  """The summary of a sweep.

  Returns:
    ``<method>_w<p>[_beta<b>]_{test_accuracy,test_kl}`` (and ``_std``: over seeds); per width the
    best beta of information dropout (``w<p>_best_beta``, chosen on the test accuracy) and its
    accuracy gain over binary dropout and no dropout (``w<p>_information_minus_<baseline>``, and
    ``_se``: the standard error over seeds of the paired difference); per beta and pool the
    `kl_regions` statistics (``beta<b>_<pool>_<statistic>``, means over widths and seeds); and
    ``worst_relative_change`` and ``median_relative_change``, the convergence criterion over the
    points.
  """
  summary = {}
  betas = sorted(float(b) for b in config.betas)
  for method, percentage, beta in settings(config):
    name = f"{method}_w{percentage:g}" + ("" if beta is None else f"_beta{beta:g}")
    for quantity in ("test_accuracy", "test_kl"):
      column = _column(records, method, percentage, beta, seeds, quantity)
      summary[f"{name}_{quantity}"] = float(column.mean())
      summary[f"{name}_{quantity}_std"] = float(column.std())
  for percentage in sorted({p for _, p, _ in settings(config)}):
    accuracies = np.stack([_column(records, "information", percentage, b, seeds,
                                   "test_accuracy") for b in betas])
    best = int(np.argmax(accuracies.mean(1)))
    summary[f"w{percentage:g}_best_beta"] = betas[best]
    for baseline in ("binary", "none"):
      difference = accuracies[best] - _column(records, baseline, percentage, None, seeds,
                                              "test_accuracy")
      name = f"w{percentage:g}_information_minus_{baseline}"
      summary[name] = float(difference.mean())
      summary[name + "_se"] = float(difference.std(ddof=1) / math.sqrt(len(seeds))
                                    if len(seeds) > 1 else math.nan)
  for beta in betas:   # where the KL sits, per beta (mean over widths and seeds)
    points = [r for r in records if r["method"] == "information" and r["beta"] == beta]
    for name in pool_names(len(config.base_channels)):
      for quantity in ("digit_mass_fraction", "digit_area_fraction") + tuple(
          f"kl_per_cell_{region}" for region in REGIONS):
        summary[f"beta{beta:g}_{name}_{quantity}"] = float(np.nanmean(
            [r[f"{name}_{quantity}"] for r in points]))
  changes = [r["train_loss_relative_change"] for r in records]
  summary["worst_relative_change"] = float(np.max(changes))
  summary["median_relative_change"] = float(np.median(changes))
  return summary


def _plot(path, records, config, seeds):
  from matplotlib.figure import Figure

  percentages = sorted({p for _, p, _ in settings(config)})
  betas = sorted(float(b) for b in config.betas)
  figure = Figure(figsize=(4.0 * len(percentages), 7.0), layout="constrained")
  axes = figure.subplots(2, len(percentages), squeeze=False)
  for column, percentage in enumerate(percentages):
    top, bottom = axes[0, column], axes[1, column]
    for quantity, axis in (("test_accuracy", top), ("test_kl", bottom)):
      values = np.stack([_column(records, "information", percentage, b, seeds, quantity)
                         for b in betas], axis=1)
      axis.errorbar(betas, values.mean(0), yerr=values.std(0), marker="o", capsize=2,
                    label="information dropout")
    for method, color in (("binary", "tab:orange"), ("none", "tab:gray")):
      accuracy = _column(records, method, percentage, None, seeds, "test_accuracy")
      top.axhspan(accuracy.mean() - accuracy.std(), accuracy.mean() + accuracy.std(),
                  color=color, alpha=0.25)
      top.axhline(accuracy.mean(), color=color, label=_LABELS[method])
    channels = channels_for(config, percentage)
    top.set_title(f"filter percentage {percentage:g} (channels {channels})", fontsize="small")
    top.set_ylabel("test accuracy (noise off)")
    bottom.set_ylabel("test KL term: sum over units [nats]")
    bottom.set_yscale("log")
    for axis in (top, bottom):
      axis.set_xscale("log")
      axis.set_xlabel("beta (per-example convention)")
      axis.grid(alpha=0.3)
    top.legend(fontsize="x-small")
  figure.suptitle(f"Information dropout on cluttered digits ({len(seeds)} seeds, mean and std)")
  figure.savefig(path, dpi=110)


def _plot_heatmaps(path, records, splits, config):
  from matplotlib.figure import Figure

  percentage = max(float(p) for p in config.filter_percentages)
  seed = int(config.seeds[0])
  pools = pool_names(len(config.base_channels))
  columns = [(float(beta), name) for beta in config.heatmap_betas for name in pools]
  chosen = {beta: next(r for r in records
                       if _point_key(r) == ("information", percentage, beta, seed))
            for beta, _ in columns}
  images = splits["test"]["image"][:config.num_heatmaps, ..., 0]
  boxes = splits["test"]["box"][:config.num_heatmaps]
  size = config.canvas_size
  figure = Figure(figsize=(2.3 * (1 + len(columns)), 2.1 * len(images)), layout="constrained")
  axes = figure.subplots(len(images), 1 + len(columns), squeeze=False)
  for row, (image, box) in enumerate(zip(images, boxes)):
    panels = [("input", image)] + [
        (f"{name}, beta {beta:g}", np.asarray(chosen[beta][f"heatmap_{name}"][row]))
        for beta, name in columns]
    for column, (title, values) in enumerate(panels):
      axis = axes[row, column]
      shown = axis.imshow(values, cmap="gray" if column == 0 else "inferno",
                          extent=(0, size, size, 0), interpolation="nearest")
      top, left, bottom, right = box
      axis.plot([left, right, right, left, left], [top, top, bottom, bottom, top], color="cyan",
                linewidth=0.8)
      axis.set_xticks([])
      axis.set_yticks([])
      if row == 0:
        axis.set_title(title, fontsize="small")
      if column:
        figure.colorbar(shown, ax=axis, fraction=0.046)
  figure.suptitle(f"KL maps [nats, summed over channels] of test images (filter percentage "
                  f"{percentage:g}, seed {seed}); cyan: the digit's box", fontsize="small")
  figure.savefig(path, dpi=100)


_LABELS = {"binary": "binary dropout", "none": "no dropout"}


def _verdict(difference: float, standard_error: float) -> str:
  """"beats" / "matches" / "is worse than" at 2 standard errors (the sign alone for one seed)."""
  if math.isnan(standard_error):
    return "beats" if difference > 0 else "does not beat"
  if difference > 2 * standard_error:
    return "beats"
  return "matches" if difference >= -2 * standard_error else "is worse than"


def _summary_lines(summary, config, seeds) -> list:
  betas = sorted(float(b) for b in config.betas)
  percentages = sorted({p for _, p, _ in settings(config)})

  def accuracy(name):
    return f"{summary[name + '_test_accuracy']:.4f}+-{summary[name + '_test_accuracy_std']:.4f}"

  lines = [
      f"information_dropout: {config.dataset} (8x8) on a {config.canvas_size}x"
      f"{config.canvas_size} canvas with {config.num_fragments} clutter fragments of "
      f"{config.fragment_size}x{config.fragment_size}; CNN base channels "
      f"{tuple(config.base_channels)} x filter percentages {tuple(percentages)}; "
      f"{config.num_epochs} epochs of batch {config.batch_size} ({config.optimizer.name}, lr "
      f"{config.optimizer.lr:g}); alpha_max {config.alpha_max:g}, binary drop rate "
      f"{config.dropout_rate:g}; {len(seeds)} seeds. beta is per example (official beta_code = "
      "beta x N_train). Test accuracy with the noise off (mean +- std over seeds):"]
  for percentage in percentages:
    parts = [f"none {accuracy(f'none_w{percentage:g}')}",
             f"binary {accuracy(f'binary_w{percentage:g}')}"]
    for b in betas:
      name = f"information_w{percentage:g}_beta{b:g}"
      parts.append(f"info beta={b:g} {accuracy(name)} (KL {summary[name + '_test_kl']:.1f} nats)")
    lines.append(f"  filter percentage {percentage:g} {channels_for(config, percentage)}: "
                 + "; ".join(parts))
  verdicts = {}
  for percentage in percentages:
    for baseline in ("binary", "none"):
      name = f"w{percentage:g}_information_minus_{baseline}"
      verdicts[(percentage, baseline)] = _verdict(summary[name], summary[name + "_se"])
    lines.append(
        f"  width {percentage:g}: best information dropout (beta "
        f"{summary[f'w{percentage:g}_best_beta']:g}, chosen on the test set: optimistic) minus "
        + "; minus ".join(
            f"{_LABELS[baseline]} {summary[f'w{percentage:g}_information_minus_{baseline}']:+.4f} "
            f"(standard error over seeds "
            f"{summary[f'w{percentage:g}_information_minus_{baseline}_se']:.4f}: "
            f"{verdicts[(percentage, baseline)]})" for baseline in ("binary", "none"))
        + " (verdicts at 2 standard errors).")
  small_gap = summary[f"w{percentages[0]:g}_information_minus_binary"]
  large_gap = summary[f"w{percentages[-1]:g}_information_minus_binary"]
  reproduces = all(verdicts[(p, "binary")] in ("beats", "matches") for p in percentages) and (
      small_gap >= large_gap)
  worse_binary = [p for p in percentages if summary[f"none_w{p:g}_test_accuracy"]
                  > summary[f"binary_w{p:g}_test_accuracy"]]
  lines.append(
      "paper's claim (matches or beats binary dropout, with a larger gain at small widths): "
      + ("reproduces here" if reproduces else "does not reproduce fully here")
      + f" (gain over binary dropout at the smallest width {small_gap:+.4f}, at the largest "
      f"{large_gap:+.4f}). Binary dropout at rate {config.dropout_rate:g} is worse than no "
      f"dropout at the widths {worse_binary} of these small networks, so beating it says little; "
      "against no dropout see the verdicts above. Caveats: 1,437 training images, no BatchNorm "
      "or input dropout, a short schedule, an untuned beta grid, few seeds.")
  lines.append("where the KL sits (test images, mean over widths and seeds; a cell is on the "
               "digit when its receptive-field centre is in the digit's box):")
  for beta in betas:
    for name in pool_names(len(config.base_channels)):
      prefix = f"beta{beta:g}_{name}_"
      mass, area = summary[prefix + "digit_mass_fraction"], summary[prefix + "digit_area_fraction"]
      per_cell = {region: summary[prefix + f"kl_per_cell_{region}"] for region in REGIONS}
      on_digit = per_cell["digit"] > per_cell["clutter"]
      lines.append(
          f"  beta {beta:g}, {name}: {mass:.3f} of the KL mass on the digit's box, which holds "
          f"{area:.3f} of the cells (ratio {mass / area if area else math.nan:.2f}); KL per cell "
          + ", ".join(f"{region} {value:.3g}" for region, value in per_cell.items())
          + f" nats: {'more' if on_digit else 'not more'} on the digit than on the clutter.")
  lines.append(
      "convergence: relative change of the training loss between the last two tenths of the "
      f"epochs: median over the points {summary['median_relative_change']:.2e}, worst "
      f"{summary['worst_relative_change']:.2e} (minibatch and noise included; above a few "
      "percent the point is still training).")
  return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every (setting, seed) point; writes metrics, plots and the summary (process 0).

  Args:
    config: see ``configs/information_dropout.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): `summarise`.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  done = {_point_key(r): r for r in io.read_metrics(metrics_path) if r.get("kind") == "point"}
  seeds = [int(seed) for seed in config.seeds]
  splits = load_cluttered_splits(config)
  num_classes = int(np.max(splits["train"]["label"])) + 1
  records = []
  for method, percentage, beta in settings(config):
    for seed in seeds:
      record = done.get((method, percentage, beta, seed))
      if record is None:
        programs = make_programs(config, method=method, filter_percentage=percentage,
                                 num_classes=num_classes,
                                 num_train=splits["train"]["label"].shape[0])
        record = train_point(config, splits, programs, method=method,
                             filter_percentage=percentage, beta=beta, seed=seed)
      records.append(record)
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  summary = summarise(records, config, seeds)
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), records, config, seeds)
  _plot_heatmaps(os.path.join(workdir, HEATMAP_FILE), records, splits, config)
  common.write_summary(os.path.join(workdir, SUMMARY_FILE),
                       _summary_lines(summary, config, seeds))
  return summary
