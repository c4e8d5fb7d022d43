"""Information in the weights, effective information in the activations, and invariance.

The lecture's bridge between the two bottlenecks (Achille & Soatto, "Emergence of invariance and
disentanglement in deep representations", JMLR 2018, science.md §4.5; Achille, Paolini & Soatto,
"Where is the information in a deep network?", Sec. 3, science.md §2.9): weights that hold little
information make activations that hold little information about the input, hence representations
invariant to nuisances. Measured on procedural sprites (science.md §9.4) rendered small, where the
task is the shape and position, scale and orientation are known nuisances:

1. Train a small CNN (`infojax.models.ConvNet`) on the shape, giving ``w*``.
2. For each ``beta`` (summed-loss convention, nats), fit the information Lagrangian
   ``E_Q L_D + beta KL(Q || P)`` over diagonal Gaussians ``Q = N(mu, diag s^2)`` from ``w*``
   (`infojax.weights.information_lagrangian_fit`, minibatch Adam), ``P = N(w0, lambda^2 I)``, and
   record the convergence criteria (the relative change of the information and of the objective
   between the last two tenths of the fit).
3. At ``Q``, for each layer (each module's output: pre-activations): the information in that
   layer's weights (``KL``), the effective information of its activations ``I_eff - H(x)`` with
   the weight noise of ``Q`` (``weight_fisher = 1 / s^2``, ``beta = 1``: ``n ~ N(0, diag s^2)``)
   in the corrected form (with an isotropic activation noise ``activation_noise``: a convolution
   has more activations than weights, so without it the linearised channel is degenerate) and in
   the printed form of Prop. 3.2 (both on ``num_probe`` test images, log pseudo-determinants with
   their rank recorded), and, on noisy activations sampled from ``Q`` (plus the same activation
   noise), held-out softmax decoders (the Barber-Agakov lower bound,
   `infojax.activations.decoder_lower_bound`) of each nuisance and of the shape on the other test
   images (``I(z; n)``, folds by image) and of the image identity on the probe images (``I(z; x)``
   for ``x`` uniform over them, folds by weight draw, at most ``log num_probe``).

The claim measured: as ``beta`` grows, the information in the weights falls, and with it the
effective information and ``I(z; nuisance)`` (more invariance), and ``I(z; nuisance)`` tracks
``I(z; x)`` ("invariant iff minimal", science.md §4.1). The summary reports the Spearman rank
correlations across ``beta`` (per layer, mean and spread over seeds) and says where the printed
and corrected forms disagree.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"train"`` records per seed, one
``"beta"`` record per seed and ``beta``, with per-layer values), ``effective_information.png``
(per-layer quantities against ``beta``), ``invariance.png`` (``I(z; n)`` against ``I(z; x)``) and
``summary.txt``. A rerun in the same workdir resumes: the (seed, ``beta``) points already in
``metrics.jsonl`` are kept and not recomputed (training is deterministic, so it is redone).
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import scipy.stats

from infojax import activations
from infojax import config as config_lib
from infojax import io
from infojax import models
from infojax import weights
from infojax.data.builders import sprites
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
SWEEP_PLOT = "effective_information.png"
INVARIANCE_PLOT = "invariance.png"
NUISANCES = ("scale", "orientation", "position_x", "position_y")


def sprite_splits(*, image_size: int, scale_stride: int, orientation_stride: int,
                  position_stride: int, num_test: int, seed: int) -> dict:
  """Sprites rendered at ``image_size``, split at random into train and test.

  Returns:
    ``{"train": {...}, "test": {...}}``, each with ``image`` float32 ``(N, S, S, 1)`` standardised
    with the training mean and std, ``label`` (the shape, int32) and ``factors`` ``(N, 5)`` (the
    factor indices, `infojax.data.builders.sprites.FACTOR_NAMES`).
  """
  grid = sprites.factor_grid(scale_stride=scale_stride, orientation_stride=orientation_stride,
                             position_stride=position_stride)
  if not 1 <= num_test < grid.shape[0]:
    raise ValueError(f"sprite_splits: num_test must be in [1, {grid.shape[0] - 1}] (the grid has "
                     f"{grid.shape[0]} sprites); got {num_test!r}.")
  images = sprites.render(sprites.factor_values(grid), image_size=image_size)
  images = (images.astype(np.float32) / 255.0)[..., None]
  order = np.random.default_rng(seed).permutation(grid.shape[0])
  parts = {"test": order[:num_test], "train": order[num_test:]}
  splits = {name: {"image": images[index], "label": grid[index, 0].astype(np.int32),
                   "factors": grid[index]} for name, index in parts.items()}
  common.standardise(splits)
  return splits


def layer_names(params) -> list:
  """The parameterised layers of the ConvNet, in order (``Conv_0``, ..., ``Dense_0``)."""
  return [name for name in params if name.startswith("Conv_")] + ["Dense_0"]


def _spearman(x, y) -> float:
  if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return math.nan
  return float(scipy.stats.spearmanr(x, y).statistic)


def _noisy_activations(apply_fn, posterior, inputs, *, layer, key, num_samples, activation_noise):
  """``(S, M, k)`` activations of ``layer`` at ``S`` weight draws from Q, plus activation noise."""
  select = activations.activations_fn(apply_fn, layer)

  def one(sample_key):
    weight_key, noise_key = jax.random.split(sample_key)
    z = select(weights.sample_weights(weight_key, posterior), inputs)
    return z + jnp.sqrt(activation_noise) * jax.random.normal(noise_key, z.shape, z.dtype)

  return jax.lax.map(one, jax.random.split(key, num_samples))


def layer_measurements(apply_fn, layer, *, activation_noise: float, num_samples: int,
                       decoder_draws: int):
  """A function of Q measuring one layer's activations, compiled once for a whole sweep.

  Returns:
    ``fn(posterior, probe_inputs, decoder_inputs, key) -> (corrected, rank, printed,
    probe_samples, decoder_samples)``: the effective information ``I_eff - H(x)`` (nats; log
    pseudo-determinants, since a layer narrower than the input has a singular ``F_{z|x}``) in the
    corrected form with ``activation_noise`` and its smallest rank over the probe inputs, the
    printed form, and noisy activations, ``(num_samples, M, k)`` of the probe inputs and
    ``(decoder_draws, M', k)`` of the decoder inputs, all for the weight noise of ``Q``
    (``weight_fisher = 1 / s^2``, ``beta = 1``).
  """
  def effective(posterior, inputs, paper_convention):
    noise_fisher = jax.tree.map(lambda log_variance: jnp.exp(-log_variance),
                                posterior.log_variance)
    result = activations.effective_information(
        apply_fn, posterior.mean, inputs, weight_fisher=noise_fisher, beta=1.0, layer=layer,
        pseudo_determinant=True, paper_convention=paper_convention,
        activation_noise=0.0 if paper_convention else activation_noise)
    return result.information, jnp.min(result.rank)

  def samples(posterior, probe_inputs, decoder_inputs, key):
    probe_key, decoder_key = jax.random.split(key)
    return (_noisy_activations(apply_fn, posterior, probe_inputs, layer=layer, key=probe_key,
                               num_samples=num_samples, activation_noise=activation_noise),
            _noisy_activations(apply_fn, posterior, decoder_inputs, layer=layer,
                               key=decoder_key, num_samples=decoder_draws,
                               activation_noise=activation_noise))

  corrected = jax.jit(lambda posterior, inputs: effective(posterior, inputs, False))
  printed = jax.jit(lambda posterior, inputs: effective(posterior, inputs, True))
  samples = jax.jit(samples)

  # Separate programs, run one after the other: XLA:CPU (jaxlib 0.10.2) deadlocks, every thread
  # idle, when the corrected and printed forms of a convolution layer are one program.
  def fn(posterior, probe_inputs, decoder_inputs, key):
    corrected_information, rank = jax.block_until_ready(corrected(posterior, probe_inputs))
    printed_information, _ = jax.block_until_ready(printed(posterior, probe_inputs))
    probe_samples, decoder_samples = samples(posterior, probe_inputs, decoder_inputs, key)
    return corrected_information, rank, printed_information, probe_samples, decoder_samples

  return fn


def measure(measurements: dict, posterior, probe: dict, decoder_set: dict, *, decoder_l2: float,
            key) -> dict:
  """The per-layer activation measurements at a Gaussian post-distribution Q.

  The Fishers are computed in float64 (the log-determinants of ``d x d`` Fishers with condition
  numbers beyond 1e5, a strided convolution, need it); the decoders run in the default precision.

  Args:
    measurements: ``{layer: layer_measurements(...)}``.
    posterior: Q, a `infojax.weights.GaussianPosterior`.
    probe: ``{"image", "label", "factors"}`` of the probe images (Fishers, ``I(z; x)``).
    decoder_set: the same for the images on which ``I(z; nuisance)`` is decoded.
    decoder_l2: the decoders' L2 penalty (`infojax.activations.decoder_lower_bound`).
    key: a PRNG key.

  Returns:
    A flat dict: for each layer ``<layer>_``: ``num_activations``, ``effective_corrected``,
    ``effective_printed``, ``rank`` (see `layer_measurements`), ``information_image`` (``I(z; x)``
    for ``x`` uniform over the probe images: the decoder bound, folds by weight draw, at most
    ``log M``), ``information_shape`` and ``information_<nuisance>`` (the decoder bound on the
    decoder set, folds by image), nats.
  """
  values, decoded = {}, {}
  with jax.enable_x64(True):
    to64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)  # noqa: E731
    posterior64 = to64(posterior)
    inputs, decoder_inputs = to64(jnp.asarray(probe["image"])), to64(
        jnp.asarray(decoder_set["image"]))
    for index, (layer, fn) in enumerate(measurements.items()):
      corrected, rank, printed, probe_samples, decoder_samples = fn(
          posterior64, inputs, decoder_inputs, jax.random.fold_in(key, index))
      prefix = f"{layer}_"
      values[prefix + "num_activations"] = int(probe_samples.shape[-1])
      values[prefix + "effective_corrected"] = float(corrected)
      values[prefix + "effective_printed"] = float(printed)
      values[prefix + "rank"] = int(rank)
      decoded[layer] = (np.asarray(probe_samples, np.float64),
                        np.asarray(decoder_samples, np.float64))
  targets = {"shape": decoder_set["label"], **{
      name: decoder_set["factors"][:, sprites.FACTOR_NAMES.index(name)] for name in NUISANCES}}
  for layer, (probe_samples, decoder_samples) in decoded.items():
    draws, num_probe, num_activations = probe_samples.shape
    values[f"{layer}_information_image"] = float(activations.decoder_lower_bound(
        probe_samples.reshape(-1, num_activations), np.tile(np.arange(num_probe), draws),
        groups=np.repeat(np.arange(draws), num_probe), l2=decoder_l2))
    draws, num_images, _ = decoder_samples.shape
    for name, target in targets.items():
      values[f"{layer}_information_{name}"] = float(activations.decoder_lower_bound(
          decoder_samples.reshape(-1, num_activations), np.tile(np.asarray(target), draws),
          groups=np.tile(np.arange(num_images), draws), l2=decoder_l2))
  bad = sorted(name for name, value in values.items() if not math.isfinite(value))
  if bad:        # under jit an infinite F_z|x is NaN; never record it as a number
    raise ValueError(f"measure: non-finite measurements {bad}: the linearised channel of these "
                     "layers is degenerate (raise activation_noise).")
  return values


def lagrangian_fit(apply_fn, config, *, num_examples: int):
  """A jitted fit of Q minimising ``E_Q L_D + beta KL(Q || P)`` from ``N(w*, init_variance)``,
  compiled once for a whole sweep (``beta`` is traced).

  ``config.fit_steps`` Adam steps (``config.fit_lr``) of
  `infojax.weights.information_lagrangian_fit`, each on ``config.fit_batch_size`` training examples
  drawn uniformly with replacement (an unbiased estimate of the mean loss), one weight draw each.

  Returns:
    ``fn(trained, initial, batch, beta, key) -> (Q, information per leaf, objective per step,
    KL per step)``.
  """
  loss_fn = common.mean_nll_fn(apply_fn)

  @jax.jit
  def fn(trained, initial, batch, beta, key):
    lagrangian = weights.information_lagrangian_fit(
        loss_fn, beta=beta, optimizer=optax.adam(config.fit_lr), prior_mean=initial,
        reduction="sum", num_examples=num_examples)
    init_key, batch_key = jax.random.split(key)
    state = lagrangian.init(weights.gaussian_posterior(trained, config.init_variance), init_key,
                            prior_variance=config.prior_variance)

    def step(state, step_key):
      index = jax.random.randint(step_key, (config.fit_batch_size,), 0, num_examples)
      return lagrangian.update(state, jax.tree.map(lambda x: x[index], batch))

    state, metrics = jax.lax.scan(step, state, jax.random.split(batch_key, config.fit_steps))
    return (state.posterior, weights.sum_per_leaf(lagrangian.information(state)),
            metrics["objective"], metrics["kl"])

  return fn


def _share_range(records) -> tuple:
  """The smallest and largest share of the distance term in the information, over the fits."""
  shares = [r["information_distance"] / r["information"] for r in records if r["information"] > 0]
  return (min(shares), max(shares)) if shares else (math.nan, math.nan)


def _last_two_tenths(trace) -> tuple:
  """The means of the last and of the previous tenth of a trace, in float64."""
  trace = np.asarray(trace, np.float64)
  tenth = max(1, trace.size // 10)
  return trace[-tenth:].mean(), trace[-2 * tenth:-tenth].mean()


def absolute_change(trace) -> float:
  """``|mean(last tenth) - mean(previous tenth)|`` of a trace over the steps of a fit (in the
  trace's units), for traces that approach 0, where `relative_change` says nothing."""
  last, previous = _last_two_tenths(trace)
  return float(abs(last - previous))


def relative_change(trace) -> float:
  """The convergence criterion: ``|mean(last tenth) - mean(previous tenth)| / |mean(previous)|``
  of a trace over the steps of a fit."""
  last, previous = _last_two_tenths(trace)
  return float(abs(last - previous) / max(abs(previous), 1e-12))


def _saved(path) -> list:
  return io.read_metrics(path) if os.path.exists(path) else []


def _plot_sweep(path, records, layers, seeds):
  from matplotlib.figure import Figure

  panels = (("information_weights", "information in the layer's weights KL [nats]"),
            ("effective_corrected", "I_eff - H(x), corrected [nats]"),
            ("effective_printed", "I_eff - H(x), printed Prop. 3.2 [nats]"),
            ("information_position_x", "I(z; position x) [nats]"))
  figure = Figure(figsize=(15.0, 3.8), layout="constrained")
  axes = figure.subplots(1, len(panels))
  for axis, (quantity, title) in zip(axes, panels):
    for layer in layers:
      betas = sorted({r["beta"] for r in records})
      values = np.array([[next(r[f"{layer}_{quantity}"] for r in records
                               if r["seed"] == s and r["beta"] == b) for b in betas]
                         for s in seeds])
      axis.errorbar(betas, values.mean(0), yerr=values.std(0), marker="o", markersize=3,
                    capsize=2, label=layer)
    axis.set_xscale("log")
    axis.set_xlabel("beta (summed-loss convention)")
    axis.set_title(title, fontsize="small")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle(f"Effective information and invariance against beta ({len(seeds)} seeds, mean "
                  "and std)")
  figure.savefig(path, dpi=110)


def _plot_invariance(path, records, layers):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(4.2 * len(layers), 3.8), layout="constrained")
  axes = np.atleast_1d(figure.subplots(1, len(layers)))
  for axis, layer in zip(axes, layers):
    x = [r[f"{layer}_information_image"] for r in records]
    for name in NUISANCES:
      axis.plot(x, [r[f"{layer}_information_{name}"] for r in records], "o", markersize=3,
                label=name)
    axis.set_xlabel("I(z; x) over the probe images, decoder bound [nats]")
    axis.set_ylabel("I(z; nuisance) [nats]")
    axis.set_title(layer, fontsize="small")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle("Invariant iff minimal: I(z; nuisance) against I(z; x), every seed and beta")
  figure.savefig(path, dpi=110)


def _correlations(records, layers, seeds) -> dict:
  """Spearman correlations across beta (per seed), then mean and std over seeds."""
  quantities = ("information_weights", "effective_corrected", "effective_printed",
                "information_image") + tuple(f"information_{n}" for n in NUISANCES)
  out = {}
  for layer in layers:
    for quantity in quantities:
      per_seed = []
      for seed in seeds:
        points = sorted((r for r in records if r["seed"] == seed), key=lambda r: r["beta"])
        per_seed.append(_spearman([p["beta"] for p in points],
                                  [p[f"{layer}_{quantity}"] for p in points]))
      out[f"{layer}_{quantity}_vs_beta"] = (float(np.nanmean(per_seed)),
                                            float(np.nanstd(per_seed)))
    per_seed = []
    for seed in seeds:
      points = [r for r in records if r["seed"] == seed]
      per_seed.append(_spearman([p[f"{layer}_information_image"] for p in points],
                                [p[f"{layer}_information_position_x"] for p in points]))
    out[f"{layer}_nuisance_tracks_zx"] = (float(np.nanmean(per_seed)), float(np.nanstd(per_seed)))
  return out


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the sweep for every seed; writes metrics, plots and the summary (process 0).

  Args:
    config: see ``configs/effective_information.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): the test
    accuracy of ``w*`` per seed (``seed<s>_test_accuracy``) and, per layer and quantity, the
    Spearman correlation with ``beta`` across the sweep (``<layer>_<quantity>_vs_beta``, mean over
    seeds, and ``..._std``), and ``<layer>_nuisance_tracks_zx`` (``I(z; position x)`` against
    ``I(z; x)``).
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = _saved(metrics_path)
  done = {(r["seed"], r["beta"]): r for r in saved if r.get("kind") == "beta"}
  written = [r for r in saved if r.get("kind") == "train"]
  splits = sprite_splits(image_size=config.image_size, scale_stride=config.scale_stride,
                         orientation_stride=config.orientation_stride,
                         position_stride=config.position_stride, num_test=config.num_test,
                         seed=config.data_seed)
  train_arrays, test_arrays = splits["train"], splits["test"]
  probe = {key: value[:config.num_probe] for key, value in test_arrays.items()}
  decoder_set = {key: value[config.num_probe:] for key, value in test_arrays.items()}
  batch = (jnp.asarray(train_arrays["image"]), jnp.asarray(train_arrays["label"]))
  betas = sorted(float(b) for b in config.betas)
  records, summary = [], {}
  model = models.ConvNet(channels=tuple(config.channels), strides=tuple(config.strides),
                         num_classes=len(sprites.SHAPE_NAMES))
  apply_fn = models.make_apply_fn(model)
  fit = lagrangian_fit(apply_fn, config, num_examples=int(batch[1].shape[0]))
  measurements = None
  for seed in config.seeds:
    _, initial = models.init(model, jax.random.key(seed), (1,) + train_arrays["image"].shape[1:])
    if measurements is None:
      layers = layer_names(initial)
      measurements = {layer: layer_measurements(apply_fn, layer,
                                                activation_noise=config.activation_noise,
                                                num_samples=config.num_samples,
                                                decoder_draws=config.decoder_draws)
                      for layer in layers}
    trained, history = common.train_classifier(
        apply_fn, initial, {k: train_arrays[k] for k in ("image", "label")},
        {k: test_arrays[k] for k in ("image", "label")}, optimizer_config=config.optimizer,
        num_epochs=config.num_epochs, batch_size=config.batch_size, seed=seed)
    final = history[-1]
    summary[f"seed{seed}_test_accuracy"] = float(final["test_accuracy"])
    if not any(r["seed"] == seed for r in written):
      written.append({"kind": "train", "seed": seed, **final})
      common.write_records(metrics_path, written + records, tensorboard=config.tensorboard)
    for index, beta in enumerate(betas):
      if (seed, beta) in done:
        records.append(done[(seed, beta)])
        continue
      key = jax.random.fold_in(jax.random.key(seed), 1000 + index)
      posterior, per_leaf, objective, kl = fit(trained, initial, batch, beta, key)
      per_layer = common.per_layer_values(per_leaf)
      expected_loss = float(jnp.mean(weights.sampled_losses(
          common.mean_nll_fn(apply_fn), posterior, batch, key=jax.random.fold_in(key, 1),
          num_samples=config.num_samples)))
      information = float(sum(per_layer.values()))
      distance = common.distance_term(posterior.mean, initial, config.prior_variance)
      record = {"kind": "beta", "seed": seed, "beta": beta, "information": information,
                "information_distance": distance, "information_variance": information - distance,
                "expected_loss": expected_loss,
                "objective_relative_change": relative_change(objective),
                "information_relative_change": relative_change(kl),
                **{f"{layer}_information_weights": float(per_layer[layer]) for layer in layers}}
      record.update(measure(measurements, posterior, probe, decoder_set,
                            decoder_l2=config.decoder_l2,
                            key=jax.random.fold_in(key, 2)))
      records.append(io.to_json_value(record))
      # Atomic: a resume point.
      common.write_records(metrics_path, written + records, tensorboard=config.tensorboard)
  seeds = list(config.seeds)
  correlations = _correlations(records, layers, seeds)
  reported = ("information_weights_vs_beta", "effective_corrected_vs_beta",
              "effective_printed_vs_beta", "information_position_x_vs_beta", "nuisance_tracks_zx")
  for name, (mean, std) in correlations.items():
    if name.endswith(reported):
      summary[name] = mean
      summary[name + "_std"] = std
  if not io.is_primary_process():
    return {}
  _plot_sweep(os.path.join(workdir, SWEEP_PLOT), records, layers, seeds)
  _plot_invariance(os.path.join(workdir, INVARIANCE_PLOT), records, layers)
  lines = [
      f"effective_information: ConvNet {tuple(config.channels)} on {config.image_size}x"
      f"{config.image_size} sprites (task: shape; {len(train_arrays['label'])} train, "
      f"{config.num_probe} probe images), beta (summed loss) in {betas}, {len(seeds)} seeds, "
      f"prior N(w0, {config.prior_variance:g} I), {config.fit_steps} Adam steps of "
      f"{config.fit_batch_size} examples per beta, "
      f"activation noise {config.activation_noise:g}.",
      "test accuracy of w*: " + ", ".join(
          f"{summary[f'seed{s}_test_accuracy']:.3f}" for s in seeds),
      "convergence (relative change between the last two tenths of a fit, worst over the sweep): "
      f"information {max(r['information_relative_change'] for r in records):.2e}, objective "
      f"{max(r['objective_relative_change'] for r in records):.2e} (minibatch noise included)",
      "information in the weights: the distance term ||mean - w0||^2/(2 lambda^2) is "
      + "{:.0%}-{:.0%}".format(*_share_range(records)) + " of the KL across the fits, the "
      "variances' term the rest",
      "Spearman correlation with beta across the sweep (mean +- std over seeds):"]
  for layer in layers:
    values = ", ".join(
        f"{quantity} {correlations[f'{layer}_{quantity}_vs_beta'][0]:+.2f}"
        f"+-{correlations[f'{layer}_{quantity}_vs_beta'][1]:.2f}"
        for quantity in ("information_weights", "effective_corrected", "effective_printed",
                         "information_position_x", "information_image"))
    tracks = correlations[f"{layer}_nuisance_tracks_zx"]
    lines.append(f"  {layer}: {values}; I(z; position x) vs I(z; x): {tracks[0]:+.2f}"
                 f"+-{tracks[1]:.2f}")
  disagree = [layer for layer in layers
              if np.sign(correlations[f"{layer}_effective_corrected_vs_beta"][0])
              != np.sign(correlations[f"{layer}_effective_printed_vs_beta"][0])]
  varying = [layer for layer in layers
             if len({(r["seed"], r[f"{layer}_rank"]) for r in records}) > len(seeds)]
  lines.append("layers whose corrected F_z|x rank changes along the sweep (pseudo-determinants "
               "of different ranks: effective information not comparable across beta): "
               + (", ".join(varying) if varying else "none"))
  lines.append("printed and corrected forms move in opposite directions with beta for: "
               + (", ".join(disagree) if disagree else "no layer"))
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
