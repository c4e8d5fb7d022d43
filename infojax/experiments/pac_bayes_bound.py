"""A non-vacuous PAC-Bayes bound for an over-parameterised network; a vacuous one on random labels.

Dziugaite & Roy, "Computing nonvacuous generalization bounds for deep (stochastic) neural networks
with many more parameters than training data" (UAI 2017; code gkdziugaite/pacbayes-opt;
science.md §11), on a binary task (label = digit >= 5) with a one-hidden-layer MLP (two logits
with softmax cross-entropy: the logistic loss of their difference, as the paper's single output):

1. SGD to a solution ``w*`` from the initialisation ``w0`` (momentum 0.9, learning rate 0.01,
   batch 100, 20 epochs); ``w0`` is kept: it is the prior mean, chosen before seeing the data.
2. Optimise a Gaussian post-distribution ``Q = N(mean, diag var)`` (mean from ``w*``, standard
   deviations from ``2 |w*|``) and the prior variance ``lambda`` of ``P = N(w0, lambda I)`` on the
   surrogate bound ``E_Q[logistic loss / log 2] + sqrt(B_RE / 2)`` with RMSProp, one weight draw per
   minibatch (`infojax.weights.pac_bayes.dziugaite_roy_fit`).
3. Certify (`certify_posterior`, with `infojax.weights.pac_bayes.dziugaite_roy_certificate`):
   round ``lambda`` onto the grid ``c exp(-j/b)`` (union bound over ``j``), estimate the training
   error of the stochastic network from sampled networks, bound it with a Chernoff (kl) bound at
   ``delta'``, and invert the PAC-Bayes-kl bound:
   ``e(Q) <= kl^-1(kl^-1(e_mc, log(2/delta')/n), B_RE)`` with probability at
   least ``1 - delta - delta'``.

The same pipeline runs on uniformly random training labels (and random test labels), where no
bound can be small: it must come out vacuous. A bound is called vacuous here when it is at least
0.5, the error of guessing on a binary task.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (records tagged by ``"kind"``: ``"sgd"``
per epoch, ``"pac_bayes"`` every ``pac_bayes.log_every`` epochs, ``"certificate"`` with every term
of the bound), ``pac_bayes_bound.png`` and ``summary.txt``. A rerun in the same workdir starts over.
"""

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import train
from infojax import weights
from infojax.experiments import common
from infojax.weights import pac_bayes

PLOT_FILE = "pac_bayes_bound.png"
VACUOUS = 0.5  # the error of guessing on a binary task
LABELS = ("real", "random")


def binary_labels(labels, *, threshold: int) -> np.ndarray:
  """``1`` where ``label >= threshold``, else ``0`` (Dziugaite & Roy's binary MNIST)."""
  return (np.asarray(labels) >= threshold).astype(np.int32)


def initial_posterior(params, *, std_scale: float, min_variance: float):
  """``Q = N(w*, diag max((std_scale |w*|)^2, min_variance))``: Dziugaite & Roy's start.

  ``min_variance`` keeps weights that are exactly 0 (the initial biases) from starting at an
  infinitely costly variance.
  """
  variance = jax.tree.map(lambda w: jnp.maximum(jnp.square(std_scale * w), min_variance), params)
  return weights.gaussian_posterior(params, variance)


def make_posterior_fit(apply_fn, initial, *, num_train: int, settings):
  """Step 2's fit: `infojax.weights.pac_bayes.dziugaite_roy_fit` on the bits of cross-entropy.

  The surrogate is the logistic loss in bits, ``cross-entropy / log 2``, an upper bound on the 0-1
  error of each sampled network.
  """
  nll = common.mean_nll_fn(apply_fn)
  optimizer = train.make_optimizer(
      settings.optimizer, steps_per_epoch=num_train // settings.batch_size,
      num_epochs=settings.num_epochs)
  return pac_bayes.dziugaite_roy_fit(
      lambda params, batch: nll(params, batch) / math.log(2.0), num_examples=num_train,
      optimizer=optimizer, prior_mean=initial, delta=settings.delta, b=settings.grid_b,
      c=settings.grid_c)


def optimise_posterior(fit, trained, train_arrays, settings, *, seed: int, key: jax.Array):
  """Step 2: runs ``fit`` from `initial_posterior` of ``trained``, one epoch of batches at a time.

  Each epoch's shuffled batches (`infojax.data.batches`, seeded by ``seed`` and the epoch) are
  built on the host and streamed to one compiled scan over the epoch's steps, so the host holds
  one epoch of batches at a time (the training split's size), whatever ``settings.num_epochs``.

  Returns:
    ``(state, records)``: the final `infojax.weights.PosteriorState` and one record every
    ``settings.log_every`` epochs (and at the last) with that epoch's mean ``objective``,
    ``expected_surrogate_loss``, ``kl`` and ``prior_variance``.
  """
  state = fit.init(initial_posterior(trained, std_scale=settings.posterior_std_scale,
                                     min_variance=settings.posterior_min_variance),
                   key, prior_variance=settings.prior_variance_init)
  batch = common.as_batch(train_arrays)
  records = []
  for epoch in range(1, settings.num_epochs + 1):
    batches = data.batches(batch, settings.batch_size, seed=seed, epoch=epoch)
    state, metrics = weights.fit(fit.update, state, batches)  # jitted, compiled once per fit
    if epoch % settings.log_every == 0 or epoch == settings.num_epochs:
      means = jax.tree.map(lambda m: float(jnp.mean(m)), metrics)
      records.append({"epoch": epoch, "objective": means["objective"],
                      "expected_surrogate_loss": means["expected_loss"], "kl": means["kl"],
                      "prior_variance": means["prior_variance"]})
  return state, records


def certify_posterior(error_fn, sampled_test_errors, state, initial, train_arrays, test_arrays,
                      settings, *, key: jax.Array) -> dict:
  """Step 3: the certificate with every term, and the stochastic network's test error.

  Args:
    error_fn: ``error_fn(params, (inputs, labels))``, the 0-1 error of one network.
    sampled_test_errors: ``(posterior, batch, key) -> (n,)`` errors of sampled networks.
    state: the optimised `infojax.weights.PosteriorState`.
    initial: ``w0``, the prior mean.
    train_arrays, test_arrays: the splits.
    settings: ``config.pac_bayes``.
    key: a PRNG key.

  Returns:
    A dict of floats: the `infojax.weights.pac_bayes.Certificate` fields, ``union_bound_term``,
    ``snn_test_error``, ``mean_train_error``, ``mean_test_error`` (the mean network) and
    ``vacuous``.
  """
  certificate_key, test_key = jax.random.split(key)
  certificate = pac_bayes.dziugaite_roy_certificate(
      error_fn, state.posterior, common.as_batch(train_arrays),
      num_examples=int(train_arrays["label"].shape[0]), prior_mean=initial,
      prior_variance=jnp.exp(state.log_prior_variance), key=certificate_key,
      num_mc_samples=settings.num_mc_samples, delta=settings.delta,
      delta_monte_carlo=settings.delta_monte_carlo, b=settings.grid_b, c=settings.grid_c)
  terms = {name: io.to_json_value(value) for name, value in certificate._asdict().items()}
  terms["union_bound_term"] = float(pac_bayes.union_bound_term(
      certificate.prior_variance, b=settings.grid_b, c=settings.grid_c))
  terms["snn_test_error"] = float(jnp.mean(sampled_test_errors(
      state.posterior, common.as_batch(test_arrays), test_key)))
  terms["mean_train_error"] = float(error_fn(state.posterior.mean, common.as_batch(train_arrays)))
  terms["mean_test_error"] = float(error_fn(state.posterior.mean, common.as_batch(test_arrays)))
  terms["vacuous"] = terms["bound"] >= VACUOUS
  return terms


def _plot(path, traces, certificates):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.0), layout="constrained")
  axes = figure.subplots(1, 3)
  for labels, records in traces.items():
    epochs = [r["epoch"] for r in records]
    axes[0].plot(epochs, [r["objective"] for r in records], marker="o", markersize=2,
                 label=f"{labels} labels")
    axes[1].plot(epochs, [r["kl"] for r in records], marker="o", markersize=2,
                 label=f"{labels} labels")
  axes[0].set_ylabel("surrogate bound E_Q loss/log 2 + sqrt(B_RE/2)")
  axes[1].set_ylabel("KL(Q || P) [nats]")
  axes[1].set_yscale("log")
  for axis in axes[:2]:
    axis.set_xlabel("PAC-Bayes epoch")
  terms = [("sgd_test_error", "SGD test error"), ("train_error", "SNN train error (MC)"),
           ("snn_test_error", "SNN test error"), ("pinsker_bound", "Pinsker bound"),
           ("bound", "PAC-Bayes-kl bound")]
  positions = np.arange(len(terms))
  width = 0.8 / max(len(certificates), 1)
  for index, (labels, terms_of) in enumerate(certificates.items()):
    values = [min(terms_of[name], 1.0) for name, _ in terms]
    axes[2].bar(positions + index * width, values, width=width, label=f"{labels} labels")
  axes[2].axhline(VACUOUS, color="gray", linestyle=":", label="guessing (0.5)")
  axes[2].set_xticks(positions + 0.4 - width / 2, [t[1] for t in terms], rotation=20,
                     fontsize="small")
  axes[2].set_ylabel("error (bounds capped at 1)")
  for axis in axes:
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.suptitle("Dziugaite-Roy PAC-Bayes certificate")
  figure.savefig(path, dpi=120)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """SGD, PAC-Bayes optimisation and certification, for real and for random labels.

  Args:
    config: see ``configs/pac_bayes_bound.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary: for
    each of ``real`` and ``random`` (those in ``config.labels``): ``<labels>_bound`` (the certified
    bound), ``_pinsker_bound``, ``_train_error`` (Monte Carlo), ``_monte_carlo_error_bound``,
    ``_kl``, ``_b_re``, ``_prior_variance``, ``_snn_test_error``, ``_sgd_train_error``,
    ``_sgd_test_error``; plus ``num_train``, ``num_parameters`` and ``total_delta``.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  unknown = set(config.labels) - set(LABELS)
  if not config.labels or unknown:
    raise ValueError(f"pac_bayes_bound: labels must be a non-empty subset of {LABELS}; got "
                     f"{tuple(config.labels)}.")
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train,
                              seed=config.seed)
  for arrays in splits.values():
    arrays["label"] = binary_labels(arrays["label"], threshold=config.binary_threshold)
  num_train = int(splits["train"]["label"].shape[0])
  key = jax.random.key(config.seed)
  init_key, key = jax.random.split(key)
  apply_fn, initial = common.init_mlp(config.hidden_sizes, 2, splits["train"]["image"].shape[1:],
                                      init_key)
  fit = make_posterior_fit(apply_fn, initial, num_train=num_train, settings=config.pac_bayes)
  error_fn = common.error_rate_fn(apply_fn)
  sampled_test_errors = jax.jit(lambda posterior, batch, k: weights.sampled_losses(
      error_fn, posterior, batch, key=k, num_samples=config.pac_bayes.test_mc_samples))
  records, traces, certificates = [], {}, {}
  summary = {"num_train": num_train, "num_parameters": common.num_parameters(initial)}
  for index, labels in enumerate(config.labels):
    train_arrays, test_arrays = dict(splits["train"]), dict(splits["test"])
    if labels == "random":
      for offset, arrays in enumerate((train_arrays, test_arrays)):
        arrays["label"], _ = data.transforms.corrupt_labels(
            arrays["label"], fraction=1.0, num_classes=2, seed=config.seed + offset)
    trained, history = common.train_classifier(
        apply_fn, initial, train_arrays, test_arrays, optimizer_config=config.optimizer,
        num_epochs=config.num_epochs, batch_size=config.batch_size, seed=config.seed)
    records.extend({"kind": "sgd", "labels": labels, **r} for r in history)
    fit_key, certificate_key = jax.random.split(jax.random.fold_in(key, index))
    state, trace = optimise_posterior(fit, trained, train_arrays, config.pac_bayes,
                                      seed=config.seed, key=fit_key)
    traces[labels] = trace
    records.extend({"kind": "pac_bayes", "labels": labels, **r} for r in trace)
    terms = certify_posterior(error_fn, sampled_test_errors, state, initial, train_arrays,
                              test_arrays, config.pac_bayes, key=certificate_key)
    terms["sgd_train_error"] = 1.0 - history[-1]["train_eval_accuracy"]
    terms["sgd_test_error"] = 1.0 - history[-1]["test_accuracy"]
    certificates[labels] = terms
    records.append({"kind": "certificate", "labels": labels, **terms})
    summary.update({f"{labels}_{name}": terms[name] for name in (
        "bound", "pinsker_bound", "train_error", "monte_carlo_error_bound", "kl", "b_re",
        "prior_variance", "snn_test_error", "sgd_train_error", "sgd_test_error")})
    summary["total_delta"] = terms["total_delta"]

  common.write_records(os.path.join(workdir, common.METRICS_FILE), records)
  if io.is_primary_process():
    _plot(os.path.join(workdir, PLOT_FILE), traces, certificates)
  lines = [f"pac_bayes_bound: {config.dataset} (label = digit >= {config.binary_threshold}), "
           f"m = {num_train}, MLP {tuple(config.hidden_sizes)} with "
           f"{summary['num_parameters']} parameters; prior N(w0, lambda I) at the initialisation."]
  for labels, t in certificates.items():
    lines.append(
        f"{labels} labels: SGD train/test error {t['sgd_train_error']:.4f}/"
        f"{t['sgd_test_error']:.4f}; "
        f"SNN train error (MC, n={t['num_mc_samples']}) {t['train_error']:.4f}, Chernoff bound "
        f"{t['monte_carlo_error_bound']:.4f}; KL {t['kl']:.1f} nats at lambda = "
        f"{t['prior_variance']:.4g} (j = {int(t['prior_variance_index'])}, union term "
        f"{t['union_bound_term']:.2f}); B_RE {t['b_re']:.4f}; PAC-Bayes-kl bound {t['bound']:.4f} "
        f"(Pinsker {t['pinsker_bound']:.4f}) with probability >= {1 - t['total_delta']:.3f}; "
        f"SNN test error {t['snn_test_error']:.4f}; "
        f"{'vacuous' if t['vacuous'] else 'non-vacuous'} (vacuous: bound >= {VACUOUS}).")
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
