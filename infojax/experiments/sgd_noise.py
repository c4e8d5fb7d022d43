"""The noise of SGD over training: the gradient-covariance and Hessian spectra of a digits MLP.

Chaudhari & Soatto (2018), "Stochastic gradient descent performs variational inference, converges
to limit cycles for deep networks" (ICLR; science.md §12): the per-example gradient covariance
``D(w)``, which sets SGD's diffusion at temperature ``eta / (2B)``, is far from isotropic and of low
rank ("as small as 1% of its dimension"), so SGD's stationary law is not ``exp(-f / T)``. This
experiment trains an MLP on the bundled 8x8 digits with `infojax.dynamics.sgd_path` (all seeds
vmapped into one program), keeps the weights at ``num_checkpoints + 1`` points of training, and at
each one measures with `infojax.dynamics.sgd_noise.noise_statistics`, on the training set:

* ``tr D`` (exact) and the top ``k`` eigenvalues of ``D`` (Lanczos on matrix-free products);
* the stable rank ``tr D / lambda_1``, the share of ``tr D`` in the top ``k`` directions and the
  number of directions that hold 90% of it (when ``k`` suffice), as a fraction of the dimension P;
* the anisotropy ``lambda_1 P / tr D`` (1 for isotropic noise);
* the top ``k`` Hessian eigenvalues, the overlap of the two top-``k`` subspaces (``k / P`` for
  random ones) and the true-Fisher trace.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"point"`` record per seed and
checkpoint), ``sgd_noise.png`` and ``summary.txt``. A rerun in the same workdir retrains (one
compiled program, seconds) and measures only the points missing from ``metrics.jsonl``.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import io
from infojax import likelihoods
from infojax.dynamics import loops
from infojax.dynamics import sgd_noise
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "sgd_noise.png"
SUMMARY_FILE = "summary.txt"
CAPTURE_LEVEL = 0.9


def train_paths(apply_fn, initial, train_batch, *, learning_rate, batch_size, num_steps,
                num_checkpoints, keys):
  """SGD from each initialisation (vmapped over seeds); the weights at every checkpoint.

  Returns:
    ``(weights, history)``: ``weights`` a pytree like ``initial`` whose leaves have axes
    ``(seeds, num_checkpoints + 1, ...)`` (checkpoint 0 is the initialisation), ``history`` the
    path's ``"step"`` and ``"loss"`` ``(seeds, num_checkpoints)``.
  """
  loss_fn = loops.per_example_nll(apply_fn, likelihoods.categorical())

  def one(params, key):
    path = loops.sgd_path(loss_fn, params, train_batch, learning_rate=learning_rate,
                          batch_size=batch_size, num_steps=num_steps, key=key,
                          record_every=num_steps // num_checkpoints,
                          metrics={"weights": lambda p, step: p})
    weights = jax.tree.map(lambda w0, ws: jnp.concatenate([w0[None], ws]), params,
                           path.history.pop("weights"))
    return weights, path.history

  return jax.jit(jax.vmap(one))(initial, keys)


def measure_fn(apply_fn, train_batch, test_batch, *, k, num_iterations):
  """A jitted ``(params, key) -> dict`` of the noise statistics and the fit at one point."""
  likelihood = likelihoods.categorical()
  mean_nll = common.mean_nll_fn(apply_fn)
  error = common.error_rate_fn(apply_fn)

  def measure(params, key):
    stats = sgd_noise.noise_statistics(apply_fn, params, train_batch, likelihood=likelihood, k=k,
                                       num_iterations=num_iterations, key=key)
    return {"train_loss": mean_nll(params, train_batch),
            "train_accuracy": 1.0 - error(params, train_batch),
            "test_accuracy": 1.0 - error(params, test_batch),
            "noise_trace": stats.noise.trace, "noise_eigenvalues": stats.noise.eigenvalues,
            "hessian_eigenvalues": stats.hessian.eigenvalues,
            "fisher_trace": stats.fisher_trace, "stable_rank": stats.stable_rank,
            "captured_fraction": stats.captured_fraction, "anisotropy": stats.anisotropy,
            "overlap": stats.overlap}

  return jax.jit(measure)


def rank_at(captured_fraction, level: float = CAPTURE_LEVEL):
  """The number of top directions holding ``level`` of ``tr D``, or None when the top k do not."""
  reached = np.flatnonzero(np.asarray(captured_fraction) >= level)
  return int(reached[0]) + 1 if reached.size else None


def _verdict(ranks, num_parameters, *, k, captured):
  """Whether 90% of ``tr D`` lies in at most 1% of the directions, for every seed."""
  limit = 0.01 * num_parameters
  if all(rank is not None and rank <= limit for rank in ranks):
    return (f"reproduced: {max(ranks)} directions or fewer ({max(ranks) / num_parameters:.2%} "
            f"of P) hold 90% of tr D.")
  if any(rank is not None and rank > limit for rank in ranks) or k >= limit:
    return f"not reproduced: 90% of tr D needs more than 1% of the P = {num_parameters} directions."
  return (f"undetermined at k = {k}: the top {k} directions ({k / num_parameters:.2%} of P) hold "
          f"{captured:.0%} of tr D; raise k to {int(limit)} to decide.")


def _mean_std(records, name):
  values = np.array([r[name] for r in records], np.float64)
  return float(np.mean(values)), float(np.std(values))


def _plot(path, records, seeds, *, num_parameters, k):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11.0, 8.0), layout="constrained")
  axes = figure.subplots(2, 2)
  steps = sorted({r["step"] for r in records})

  def band(ax, name, label, scale=1.0):
    values = np.array([[next(r[name] for r in records if r["seed"] == s and r["step"] == t)
                        for t in steps] for s in seeds], np.float64) * scale
    mean, std = values.mean(axis=0), values.std(axis=0)
    (line,) = ax.plot(steps, mean, marker="o", markersize=3, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)

  band(axes[0, 0], "noise_trace", "tr D (gradient covariance)")
  band(axes[0, 0], "fisher_trace", "tr F (true Fisher)")
  axes[0, 0].set(yscale="log", xlabel="SGD step", title="traces (mean +- std over seeds)")
  band(axes[0, 1], "stable_rank", "stable rank tr D / lambda_1")
  band(axes[0, 1], "anisotropy", "anisotropy lambda_1 P / tr D")
  axes[0, 1].set(yscale="log", xlabel="SGD step",
                 title=f"how far from isotropic (P = {num_parameters})")
  for step in (steps[0], steps[len(steps) // 2], steps[-1]):
    point = [r for r in records if r["step"] == step and r["seed"] == seeds[0]][0]
    index = np.arange(1, k + 1)
    (line,) = axes[1, 0].plot(index, point["noise_eigenvalues"], marker="o", markersize=3,
                              label=f"D, step {step}")
    axes[1, 0].plot(index, np.maximum(point["hessian_eigenvalues"], 1e-12), linestyle="--",
                    color=line.get_color(), label=f"H, step {step}")
  axes[1, 0].set(yscale="log", xlabel="eigenvalue index", title=f"top {k} eigenvalues (seed "
                 f"{seeds[0]})")
  band(axes[1, 1], "overlap", "top-k subspaces of D and H")
  axes[1, 1].axhline(k / num_parameters, color="gray", linestyle=":", label="random subspaces")
  axes[1, 1].set(xlabel="SGD step", ylim=(0, 1), title="alignment of noise and curvature")
  for ax in axes.flat:
    ax.legend(fontsize=7)
  figure.savefig(path, dpi=110)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the MLP for every seed and measures the SGD noise at each checkpoint.

  Args:
    config: see ``configs/sgd_noise.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary: at
    the last checkpoint, the mean and std over seeds of ``noise_trace``, ``stable_rank``,
    ``anisotropy``, ``captured_fraction`` (top k), ``overlap``, ``test_accuracy``; and
    ``num_parameters``, ``temperature``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  if config.num_steps % config.num_checkpoints:
    raise ValueError(f"sgd_noise: num_checkpoints must divide num_steps; got "
                     f"{config.num_checkpoints} and {config.num_steps}.")
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              num_train=config.num_train, seed=0)
  train_batch = common.as_batch(splits["train"])
  test_batch = common.as_batch(splits["test"])
  seeds = [int(s) for s in config.seeds]
  inits = [common.init_mlp(config.hidden_sizes, 10, train_batch[0].shape[1:],
                           jax.random.key(seed)) for seed in seeds]
  apply_fn = inits[0][0]
  initial = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[params for _, params in inits])
  num_parameters = common.num_parameters(inits[0][1])
  keys = jnp.stack([jax.random.fold_in(jax.random.key(seed), 1) for seed in seeds])
  weights, history = train_paths(apply_fn, initial, train_batch,
                                 learning_rate=config.learning_rate,
                                 batch_size=config.batch_size, num_steps=config.num_steps,
                                 num_checkpoints=config.num_checkpoints, keys=keys)
  steps = [0] + [int(s) for s in np.asarray(history["step"][0])]
  metrics_path = os.path.join(workdir, METRICS_FILE)
  done = {}
  if os.path.exists(metrics_path):
    done = {(r["seed"], r["step"]): r for r in io.read_metrics(metrics_path)
            if r.get("kind") == "point"}
  measure = measure_fn(apply_fn, train_batch, test_batch, k=config.k,
                       num_iterations=config.num_iterations)
  temperature = float(sgd_noise.sgd_temperature(config.learning_rate, config.batch_size))
  records = []
  steps_per_epoch = len(train_batch[1]) // config.batch_size
  for i, seed in enumerate(seeds):
    for j, step in enumerate(steps):
      if (seed, step) in done:
        records.append(done[(seed, step)])
        continue
      params = jax.tree.map(lambda w: w[i, j], weights)
      values = measure(params, jax.random.fold_in(jax.random.key(seed), 2 + j))
      values = {name: np.asarray(value).tolist() for name, value in values.items()}
      if not all(np.all(np.isfinite(v)) for v in values.values()):
        raise FloatingPointError(f"sgd_noise: non-finite statistics at seed {seed}, step {step} "
                                 f"(learning_rate {config.learning_rate} may be too large).")
      records.append({"kind": "point", "seed": seed, "step": step,
                      "epoch": step / steps_per_epoch, "temperature": temperature,
                      "rank_90": rank_at(values["captured_fraction"]), **values})
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  if not io.is_primary_process():
    return {}
  final = [r for r in records if r["step"] == steps[-1]]
  for r in final:
    r["captured_fraction_k"] = r["captured_fraction"][-1]
  summary = {"num_parameters": num_parameters, "temperature": temperature}
  for name in ("noise_trace", "stable_rank", "anisotropy", "captured_fraction_k", "overlap",
               "test_accuracy", "fisher_trace"):
    summary[name], summary[name + "_std"] = _mean_std(final, name)
  _plot(os.path.join(workdir, PLOT_FILE), records, seeds, num_parameters=num_parameters,
        k=config.k)
  ranks = [r["rank_90"] for r in final]
  rank_text = ", ".join("> k" if rank is None else str(rank) for rank in ranks)
  lines = [
      f"sgd_noise: MLP {tuple(config.hidden_sizes)} on {config.dataset} ({len(train_batch[1])} "
      f"train examples, P = {num_parameters} weights), SGD lr {config.learning_rate}, batch "
      f"{config.batch_size} (temperature eta/2B = {temperature:.3g}), {config.num_steps} steps, "
      f"seeds {seeds}; D and H from Lanczos with {config.num_iterations} products, top "
      f"k = {config.k}.",
      f"at the end of training (mean +- std over seeds): test accuracy "
      f"{summary['test_accuracy']:.3f} +- {summary['test_accuracy_std']:.3f}; tr D "
      f"{summary['noise_trace']:.4g} +- {summary['noise_trace_std']:.2g}; stable rank "
      f"{summary['stable_rank']:.3g} +- {summary['stable_rank_std']:.2g} "
      f"({summary['stable_rank'] / num_parameters:.2%} of P); anisotropy lambda_1 P / tr D "
      f"{summary['anisotropy']:.3g} +- {summary['anisotropy_std']:.2g}; the top {config.k} "
      f"directions hold {summary['captured_fraction_k']:.1%} +- "
      f"{summary['captured_fraction_k_std']:.1%} of tr D; directions holding 90% of tr D per "
      f"seed: {rank_text}; overlap of the top-k subspaces of D and H "
      f"{summary['overlap']:.3f} +- {summary['overlap_std']:.3f} (random: "
      f"{config.k / num_parameters:.4f}).",
      "Chaudhari & Soatto's claim (the noise is far from isotropic, of rank as small as 1% of "
      "the dimension; read here as: 90% of tr D in at most 1% of the P directions): "
      + _verdict(ranks, num_parameters, k=config.k, captured=summary["captured_fraction_k"]),
  ]
  for step in steps:
    point = [r for r in records if r["step"] == step]
    mean, std = _mean_std(point, "stable_rank")
    trace, trace_std = _mean_std(point, "noise_trace")
    lines.append(f"  step {step:6d}: tr D {trace:.4g} +- {trace_std:.2g}, stable rank "
                 f"{mean:.3g} +- {std:.2g}, overlap {_mean_std(point, 'overlap')[0]:.3f}")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
