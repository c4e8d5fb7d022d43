"""Deep variational information bottleneck: test error and the IB bounds against beta.

Alemi, Fischer, Dillon & Murphy, "Deep variational information bottleneck" (ICLR 2017;
science.md §9.1, §15 B.22): an encoder ``p(z|x) = N(mu(x), diag sigma(x)^2)`` (an MLP and
`infojax.activations.layers.VariationalBottleneck`), a softmax decoder ``q(y|z)`` and the marginal
``r(z) = N(0, I)``, trained on

  ``J = (1/N) sum_n E_{eps} [-log q(y_n | mu(x_n) + sigma(x_n) eps)] + beta KL(p(z|x_n) || r(z))``

with one reparameterised code per example and step. ``J`` bounds ``-(I(Z;Y) - beta I(Z;X))``:
``I(Z;X) <= E_x KL(p(z|x) || r(z))`` (the *rate*) and ``I(Z;Y) >= H(Y) - E[-log q(y|z)]``.

Protocol, on the bundled 8x8 digits (standardised pixels; 1,437 train, 360 test images):

1. For each ``beta`` of ``config.betas`` (``0`` keeps the noise without a penalty) and for the
   deterministic network (the same encoder with a plain ``Dense(K)`` code, no noise), and each
   seed: Adam for ``num_epochs`` epochs of batch ``batch_size`` with `infojax.train.fit` (exact
   evaluation of the mean code on the test split every epoch).
2. At the end, on the test split: the error of the prediction averaged over ``test_samples``
   codes (``log mean_s softmax``, `infojax.activations.layers.average_log_probs`) and of the mean
   code, the rate, the sampled cross-entropy and the lower bound on ``I(Z;Y)``.

The claim checked (Alemi et al. on MNIST): the error is flat (or slightly better than the
deterministic network) for small ``beta`` and degrades above ``beta ~ 1e-2``. `degradation_beta`
says where it degrades here: the smallest ``beta`` from which on the mean error exceeds the
sweep's best mean error by more than twice the standard error of their difference over seeds.
Convergence: the change of the training objective between the means of its last two tenths of
epochs, in nats and relative to the objective (`absolute_change` and `relative_change` of
`infojax.experiments.effective_information`; the relative one reported where the objective stays
above 0.05 nats: the deterministic network and ``beta = 0`` fit the training set to a loss near 0).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"run"`` record per (method,
``beta``, seed) with the per-epoch curves), ``vib.png`` (error against ``beta`` and the
information plane) and ``summary.txt``. A rerun in the same workdir resumes: the points already in
``metrics.jsonl`` are kept and not recomputed.
"""

import functools
import math
import os
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import info
from infojax import io
from infojax import likelihoods
from infojax import train
from infojax.activations import layers
from infojax.experiments import effective_information
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "vib.png"
DETERMINISTIC = "deterministic"
VIB = "vib"


class VIBClassifier(nn.Module):
  """An MLP encoder, a Gaussian code of ``code_size`` units (or a plain one) and a softmax decoder.

  Attributes:
    hidden_sizes: the encoder's ReLU layers.
    code_size: K, the code's dimension.
    num_classes: the decoder's classes.
    scale_bias: `infojax.activations.layers.VariationalBottleneck`'s ``scale_bias``.
    stochastic: the VIB code (``True``) or a deterministic ``Dense(K)`` code with zero KL.
  """
  hidden_sizes: Sequence[int]
  code_size: int
  num_classes: int
  scale_bias: float = -5.0
  stochastic: bool = True

  @nn.compact
  def __call__(self, inputs, *, deterministic: bool = True):
    """``(B, ...)`` inputs -> ``(logits (B, C), kl (B,))``; the code is sampled with the
    ``"dropout"`` rng unless ``deterministic``."""
    hidden = inputs.reshape((inputs.shape[0], -1))
    for size in self.hidden_sizes:
      hidden = nn.relu(nn.Dense(size)(hidden))
    if self.stochastic:
      code, kl = layers.VariationalBottleneck(self.code_size, scale_bias=self.scale_bias)(
          hidden, deterministic=deterministic)
    else:
      code = nn.Dense(self.code_size)(hidden)
      kl = jnp.zeros(hidden.shape[:1], hidden.dtype)
    return nn.Dense(self.num_classes)(code), kl


def objective(model: VIBClassifier, *, beta: float) -> train.Objective:
  """The VIB loss ``mean(CE) + beta mean(KL)`` of one sampled code per example.

  Training metrics: ``accuracy``, ``cross_entropy`` and ``kl`` (batch means). Evaluation (the mean
  code, no noise): per-example ``loss`` (cross-entropy), ``accuracy`` and ``kl``.
  """
  if not beta >= 0:
    raise ValueError(f"objective: beta must be non-negative; got {beta!r}.")
  likelihood = likelihoods.categorical()

  def loss(params, model_state, batch, key):
    logits, kl = model.apply({"params": params}, batch["image"], deterministic=False,
                             rngs={"dropout": key})
    nll = likelihood.nll(logits, batch["label"])
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    value = jnp.mean(nll) + beta * jnp.mean(kl)
    return value, (model_state, {"accuracy": jnp.mean(correct), "cross_entropy": jnp.mean(nll),
                                 "kl": jnp.mean(kl)})

  def evaluate(params, model_state, batch):
    del model_state
    logits, kl = model.apply({"params": params}, batch["image"], deterministic=True)
    correct = (jnp.argmax(logits, axis=-1) == batch["label"]).astype(jnp.float32)
    return {"loss": likelihood.nll(logits, batch["label"]), "accuracy": correct, "kl": kl}

  return train.Objective(loss=loss, evaluate=evaluate)


def sampled_evaluation(model: VIBClassifier, params, arrays: dict, *, key,
                       num_samples: int) -> dict:
  """Test-time measurements with ``num_samples`` codes per example.

  Returns:
    ``error`` (of the prediction averaged over the codes, ``log mean_s softmax``),
    ``error_mean_code`` (of the mean code), ``cross_entropy`` (``E_z[-log q(y|z)]``, the mean
    over codes and examples, nats) and ``rate`` (``E_x KL(p(z|x) || N(0, I))``, nats).
  """
  measured = _sampled_evaluation(model, num_samples, params, jnp.asarray(arrays["image"]),
                                 jnp.asarray(arrays["label"]), key)
  return {name: float(value) for name, value in measured.items()}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _sampled_evaluation(model, num_samples, params, inputs, labels, key):
  likelihood = likelihoods.categorical()

  def one(sample_key):
    return model.apply({"params": params}, inputs, deterministic=False,
                       rngs={"dropout": sample_key})[0]

  logits = jax.lax.map(one, jax.random.split(key, num_samples))       # (S, B, C)
  mean_logits, kl = model.apply({"params": params}, inputs, deterministic=True)
  averaged = layers.average_log_probs(logits)
  nll = jax.vmap(lambda sample: likelihood.nll(sample, labels))(logits)
  return {"error": jnp.mean(jnp.argmax(averaged, -1) != labels),
          "error_mean_code": jnp.mean(jnp.argmax(mean_logits, -1) != labels),
          "cross_entropy": jnp.mean(nll), "rate": jnp.mean(kl)}


@functools.partial(jax.jit, static_argnums=0)
def _init(model, key, inputs):
  return model.init(key, inputs)["params"]


def label_entropy(labels, num_classes: int) -> float:
  """H(Y) of the empirical label distribution, nats."""
  counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.float64)
  return float(info.entropy(counts / counts.sum()))


def degradation_beta(betas: Sequence[float], errors) -> Optional[float]:
  """Where the error degrades along a sweep of ``beta``.

  Args:
    betas: ``(B,)`` increasing values.
    errors: ``(S, B)`` test errors, one row per seed.

  Returns:
    The smallest ``beta`` from which on (for it and every larger one) the mean error exceeds the
    lowest mean error of the sweep by more than twice the standard error of the difference
    (``sqrt(var_b / S + var_best / S)``, sample variances over seeds; with one seed, any excess),
    or ``None`` when the last ``beta`` does not.
  """
  errors = np.asarray(errors, np.float64)
  betas = np.asarray(betas, np.float64)
  if errors.ndim != 2 or errors.shape[1] != betas.size or betas.size == 0:
    raise ValueError(f"degradation_beta: errors must have shape (seeds, {betas.size}); got "
                     f"{errors.shape}.")
  if np.any(np.diff(betas) <= 0):
    raise ValueError(f"degradation_beta: betas must increase; got {betas.tolist()}.")
  mean = errors.mean(0)
  num_seeds = errors.shape[0]
  variance = errors.var(0, ddof=1) if num_seeds > 1 else np.zeros_like(mean)
  best = int(np.argmin(mean))
  margin = 2.0 * np.sqrt((variance + variance[best]) / num_seeds)
  worse = mean - mean[best] > margin
  first = betas.size
  while first > 0 and worse[first - 1]:
    first -= 1
  return None if first == betas.size else float(betas[first])


def _point_key(record) -> tuple:
  return record["method"], record["beta"], record["seed"]


def _settings(config) -> list:
  """``[(method, beta)]``: the deterministic network, then VIB at each beta (increasing)."""
  betas = sorted(float(b) for b in config.betas)
  if not betas or betas[0] < 0:
    raise ValueError(f"vib: config.betas must be non-empty and non-negative; got "
                     f"{tuple(config.betas)}.")
  return [(DETERMINISTIC, None)] + [(VIB, beta) for beta in betas]


def train_point(config, splits: dict, *, method: str, beta: Optional[float], seed: int) -> dict:
  """Trains one (method, beta, seed) point and measures it; returns its record."""
  num_classes = int(np.max(splits["train"]["label"])) + 1
  model = VIBClassifier(tuple(config.hidden_sizes), int(config.code_size), num_classes,
                        scale_bias=float(config.scale_bias), stochastic=method == VIB)
  init_key, run_key, test_key = jax.random.split(jax.random.key(seed), 3)
  params = _init(model, init_key, jnp.asarray(splits["train"]["image"][:1]))
  num_train = splits["train"]["label"].shape[0]
  optimizer = train.make_optimizer(config.optimizer, steps_per_epoch=num_train // config.batch_size,
                                   num_epochs=config.num_epochs)
  result = train.fit(
      objective(model, beta=0.0 if beta is None else beta), optimizer,
      train.init_state(params, optimizer, key=run_key), train_data=splits["train"],
      batch_size=config.batch_size, seed=seed, num_epochs=config.num_epochs,
      eval_data={"test": splits["test"]}, workdir=None, checkpoint_every=0, log_initial=False,
      progress=False)
  history = result.history
  measured = sampled_evaluation(model, result.state.params, splits["test"], key=test_key,
                                num_samples=config.test_samples)
  entropy = label_entropy(splits["train"]["label"], num_classes)
  train_objective = [r["train_loss"] for r in history]
  return io.to_json_value({
      "kind": "run", "method": method, "beta": beta, "seed": seed,
      "test_samples": int(config.test_samples),
      "test_error": measured["error"], "test_error_mean_code": measured["error_mean_code"],
      "test_cross_entropy": measured["cross_entropy"], "rate": measured["rate"],
      "label_entropy": entropy, "i_zy_lower_bound": entropy - measured["cross_entropy"],
      "train_objective_relative_change": effective_information.relative_change(
          train_objective),
      "train_objective": train_objective,
      "train_kl": [r["train_kl"] for r in history],
      "test_accuracy_mean_code": [r["test_accuracy"] for r in history]})


def _plot(path, records, settings, seeds, *, summary):
  from matplotlib.figure import Figure

  def values(method, beta, name):
    return np.array([next(r[name] for r in records if _point_key(r) == (method, beta, s))
                     for s in seeds])

  figure = Figure(figsize=(11.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 2)
  betas = [beta for method, beta in settings if method == VIB and beta > 0]
  errors = np.stack([values(VIB, b, "test_error") for b in betas], axis=1)
  axes[0].errorbar(betas, errors.mean(0), yerr=errors.std(0), marker="o", capsize=2,
                   label=f"VIB, {len(seeds)} seeds (mean, std)")
  for method, beta, style in ((DETERMINISTIC, None, "--"), (VIB, 0.0, ":")):
    if (method, beta) in settings:
      error = values(method, beta, "test_error")
      axes[0].axhline(error.mean(), linestyle=style, color="gray",
                      label="deterministic" if method == DETERMINISTIC else "VIB, beta = 0")
  if not math.isnan(summary["degradation_beta"]):
    axes[0].axvline(summary["degradation_beta"], color="red", alpha=0.4,
                    label="error degrades from here")
  axes[0].set_xscale("log")
  axes[0].set_yscale("log")
  axes[0].set_xlabel("beta (per-example KL, nats)")
  axes[0].set_ylabel(f"test error ({records[0].get('test_samples', '')} codes averaged)")
  axes[0].legend(fontsize="x-small")
  axes[0].grid(alpha=0.3)
  for beta in betas:
    rate, relevance = values(VIB, beta, "rate"), values(VIB, beta, "i_zy_lower_bound")
    axes[1].plot(rate, relevance, "o", markersize=4, label=f"beta = {beta:g}")
  axes[1].axhline(records[0]["label_entropy"], color="gray", linestyle="--", label="H(Y)")
  axes[1].set_xscale("log")
  axes[1].set_xlabel("rate E KL(p(z|x) || N(0, I)) >= I(Z;X) [nats]")
  axes[1].set_ylabel("H(Y) - test cross-entropy <= I(Z;Y) [nats]")
  axes[1].legend(fontsize="x-small")
  axes[1].grid(alpha=0.3)
  figure.suptitle("Deep VIB on digits (Alemi et al. 2017)")
  figure.savefig(path, dpi=110)


def summarise(records, settings, seeds) -> dict:
  """The summary: per setting the mean and std over seeds of the test error, rate and
  ``I(Z;Y)`` bound (``<method>[_beta<b>]_<quantity>``), and `degradation_beta` over the betas."""
  summary = {}
  for method, beta in settings:
    points = [next(r for r in records if _point_key(r) == (method, beta, s)) for s in seeds]
    name = method if beta is None else f"{method}_beta{beta:g}"
    for quantity in ("test_error", "test_error_mean_code", "rate", "i_zy_lower_bound"):
      column = np.array([p[quantity] for p in points])
      summary[f"{name}_{quantity}"] = float(column.mean())
      summary[f"{name}_{quantity}_std"] = float(column.std())
  vib_settings = [beta for method, beta in settings if method == VIB]
  errors = np.array([[next(r["test_error"] for r in records if _point_key(r) == (VIB, b, s))
                      for b in vib_settings] for s in seeds])
  degraded = degradation_beta(vib_settings, errors)
  summary["degradation_beta"] = math.nan if degraded is None else degraded
  changes = [effective_information.absolute_change(r["train_objective"]) for r in records]
  summary["worst_absolute_change"] = max(changes)
  relative = [r["train_objective_relative_change"] for r in records
              if r["train_objective"][-1] > 0.05]
  summary["worst_relative_change"] = max(relative) if relative else math.nan
  return summary


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains every (setting, seed) point; writes metrics, the plot and the summary (process 0).

  Args:
    config: see ``configs/vib.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): `summarise`.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = io.read_metrics(metrics_path) if os.path.exists(metrics_path) else []
  done = {_point_key(r): r for r in saved if r.get("kind") == "run"}
  settings = _settings(config)
  seeds = [int(seed) for seed in config.seeds]
  splits = common.load_splits(config.dataset, data_dir=config.data_dir)
  records = []
  for method, beta in settings:
    for seed in seeds:
      record = done.get((method, beta, seed))
      if record is None:
        record = train_point(config, splits, method=method, beta=beta, seed=seed)
      records.append(record)
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  summary = summarise(records, settings, seeds)
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), records, settings, seeds, summary=summary)
  lines = [
      f"vib: Deep VIB (Alemi et al. 2017) on {config.dataset}: MLP {tuple(config.hidden_sizes)}, "
      f"code K = {config.code_size}, {config.num_epochs} epochs of batch {config.batch_size} "
      f"({config.optimizer.name}, lr {config.optimizer.lr:g}), {len(seeds)} seeds, test error "
      f"of the prediction averaged over {config.test_samples} codes (mean +- std over seeds):"]
  for method, beta in settings:
    name = method if beta is None else f"{method}_beta{beta:g}"
    label = "deterministic" if beta is None else f"VIB beta = {beta:g}"
    lines.append(
        f"  {label}: error {summary[name + '_test_error']:.4f} +- "
        f"{summary[name + '_test_error_std']:.4f} (mean code "
        f"{summary[name + '_test_error_mean_code']:.4f}), rate {summary[name + '_rate']:.3f} "
        f"nats, I(Z;Y) >= {summary[name + '_i_zy_lower_bound']:.3f} nats")
  degraded = summary["degradation_beta"]
  lines.append(
      "error degrades (mean exceeds the best mean by > 2 standard errors, for this beta and "
      "every larger one) from beta = "
      + ("never within the sweep" if math.isnan(degraded) else f"{degraded:g}")
      + "; Alemi et al. report flat error up to 1e-3 and degradation above ~1e-2 on MNIST.")
  lines.append(
      "convergence: change of the training objective between the means of the last two tenths "
      f"of the epochs, worst over all points: {summary['worst_absolute_change']:.2e} nats; "
      f"relative to the objective, worst over the points whose objective stays above 0.05 nats: "
      f"{summary['worst_relative_change']:.2e} (minibatch noise included; the others fit the "
      "training set to a loss near 0).")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
