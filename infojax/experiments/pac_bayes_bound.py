"""Non-vacuous PAC-Bayes bounds for an over-parameterised network; vacuous ones on random labels.

Dziugaite & Roy, "Computing nonvacuous generalization bounds for deep (stochastic) neural networks
with many more parameters than training data" (UAI 2017; code gkdziugaite/pacbayes-opt;
science.md §11), and the training objectives of Perez-Ortiz, Rivasplata, Shawe-Taylor & Szepesvari,
"Tighter risk certificates for neural networks" (JMLR 2021; code mperezortiz/PBB), on a binary task
(label = digit >= 5) with a one-hidden-layer MLP (two logits with softmax cross-entropy: the
logistic loss of their difference, as Dziugaite & Roy's single output):

1. SGD to a solution ``w*`` from the initialisation ``w0`` (momentum 0.9, learning rate 0.01,
   batch 100, 20 epochs); ``w0`` is kept: it is the prior mean, chosen before seeing the data.
2. For each training objective in ``config.objectives``, optimise a Gaussian post-distribution
   ``Q = N(mean, diag var)`` (mean from ``w*``, standard deviations from ``2 |w*|``), the prior
   variance ``lambda`` of ``P = N(w0, lambda I)`` (projected onto ``lambda <= c exp(-1/b)``, the
   top of the grid) and, for ``f_lambda``, its trade-off ``l``, with RMSProp and one weight draw
   per minibatch (`make_posterior_fit`):

   * ``dziugaite_roy``: ``E_Q[logistic loss / log 2] + sqrt(B_RE / 2)``
     (`infojax.weights.pac_bayes.dziugaite_roy_objective`);
   * ``f_quad``: `infojax.weights.pac_bayes.f_quad` and ``f_lambda``:
     `infojax.weights.pac_bayes.f_lambda` with ``l = 2 sigmoid(t)`` trained by gradient jointly
     with Q (Perez-Ortiz et al.), both on their bounded cross-entropy
     ``min(-log p_y, log(1/p_min)) / log(1/p_min)`` in [0, 1] (the log-probability of the label
     clamped at ``log p_min``; `bounded_cross_entropy_fn`), with Maurer's budget
     ``(KL + log(2 sqrt(m)/delta)) / m`` charged ``2 log j + log(pi^2/6)`` more for choosing
     ``lambda`` on the grid (`union_kl`). Both are closed-form upper bounds on Maurer's
     ``kl^-1`` and ``min_l f_lambda = f_quad`` (the AM-GM step of Thiemann et al. 2017 is tight at
     `infojax.weights.pac_bayes.f_lambda_trade_off`), so the two differ only in how the optimiser
     reaches the minimum. Neither needs the kl-inverse; training on Maurer's ``kl^-1`` itself
     (`infojax.weights.pac_bayes.maurer_bound`) stalls from this start, where the KL of ~10^4 nats
     puts ``kl^-1`` at 1 in float32 and its gradient at 0. The default ``p_min = 1/2`` makes the
     surrogate the bits of cross-entropy clipped at 1, ``min(-log2 p_y, 1)``: Dziugaite & Roy's
     surrogate bounded to [0, 1], still an upper bound on the 0-1 error. The paper's
     ``p_min = 1e-5`` (for MNIST) puts chance-level predictions at a loss of
     ``log 2 / log 1e5 = 0.06``, below any bound a KL of hundreds of nats allows at m = 1,437, so
     Q then collapses onto the prior.

3. Certify every objective's Q the same way (`certify_posterior`, with
   `infojax.weights.pac_bayes.dziugaite_roy_certificate`): round ``lambda`` onto the grid
   ``c exp(-j/b)`` (union bound over ``j``), estimate the training error of the stochastic network
   from sampled networks, bound it with a Chernoff (kl) bound at ``delta'`` and invert the
   PAC-Bayes-kl bound: ``e(Q) <= kl^-1(kl^-1(e_mc, log(2/delta')/n), B_RE)`` with probability at
   least ``1 - delta - delta'``. The reference: the test-set (binomial tail) bound
   (`infojax.weights.pac_bayes.test_set_bound`) of the stochastic network's, the mean network's
   and the SGD network's test errors at the same confidence. The KL at the certified ``lambda`` is
   split into its distance term ``||mean - prior mean||^2 / (2 lambda)`` and the rest (the
   variance term).

A data-dependent prior (Parrado-Hernandez et al. 2012; Dziugaite & Roy 2018; Perez-Ortiz et al.
2021) is the objective name with the suffix ``_data_dependent`` (e.g. ``f_lambda_data_dependent``):
the training set, in an order fixed by the seed before any training, is split
(`infojax.weights.pac_bayes.split_batch`) into the prior's first ``pac_bayes.prior_fraction`` and
the bound's rest; the prior mean is SGD from ``w0`` on the prior's part (step 1's optimiser and
epochs), Q starts there (`initial_posterior` of the prior mean) and is trained on the whole set
with the objective charging m = the bound's part, and the certificate is
`infojax.weights.pac_bayes.data_dependent_prior_certificate` on the bound's part only.

The same pipeline runs on uniformly random training labels (and random test labels), where no
bound can be small: it must come out vacuous. A bound is called vacuous here when it is at least
0.5, the error of guessing on a binary task.

Every seed of ``config.seeds`` draws its own initialisation ``w0``, random labels, training order
(and so the data-dependent prior's part), minibatches and weight draws (and, with
``config.num_train``, the training subset); the summary reports each term as the mean over the
seeds with a 95% Student-t interval (`infojax.experiments.common.mean_interval`).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (records tagged by ``"kind"`` and
``"seed"``: ``"sgd"`` per epoch and labels, ``"pac_bayes"`` every ``pac_bayes.log_every`` epochs per
labels and objective (``objective_value`` and the other metrics, means over those epochs),
``"certificate"`` per labels and objective with every term of the bound), ``pac_bayes_bound.png``
(the first seed's traces, the certificates' means), ``summary.txt`` and ``checkpoints/``. A rerun
resumes: each unit (seed, labels, objective) whose certificate is in ``metrics.jsonl`` is kept, the
SGD resumes from its checkpoints (`infojax.experiments.common.train_classifier` in
``checkpoints/seed<seed>_<labels>/sgd``, the data-dependent prior's in ``.../prior_sgd``) and the
posterior fit from its last checkpoint (every ``pac_bayes.checkpoint_every`` epochs, in
``.../pac_bayes_<objective>``), with the same records as an uninterrupted run.
"""

import math
import os
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import likelihoods
from infojax import train
from infojax import weights
from infojax.experiments import common
from infojax.weights import pac_bayes

PLOT_FILE = "pac_bayes_bound.png"
VACUOUS = 0.5  # the error of guessing on a binary task
LABELS = ("real", "random")
OBJECTIVES = ("dziugaite_roy", "f_quad", "f_lambda")
DATA_DEPENDENT = "_data_dependent"  # an objective's suffix for its data-dependent prior variant
UNITS = OBJECTIVES + tuple(objective + DATA_DEPENDENT for objective in OBJECTIVES)
# The certificate terms reported over the seeds (mean and 95% t interval).
SUMMARY_TERMS = ("bound", "pinsker_bound", "train_error", "monte_carlo_error_bound", "kl",
                 "kl_distance", "kl_variance", "b_re", "prior_variance", "snn_test_error",
                 "snn_test_set_bound", "mean_test_set_bound", "objective_change",
                 "prior_mean_shift")
SGD_TERMS = ("sgd_train_error", "sgd_test_error", "sgd_test_set_bound")
CONVERGENCE_WINDOW = 0.1  # the objective's change is reported over this last fraction of epochs


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


def bounded_cross_entropy_fn(apply_fn, *, min_probability: float):
  """``loss(params, (inputs, labels))``: Perez-Ortiz et al.'s cross-entropy bounded in [0, 1].

  ``mean(min(-log p_y, log(1/p_min))) / log(1/p_min)``: the log-probability of the label clamped
  at ``log p_min`` and divided by its range (mperezortiz/PBB, ``pmin = 1e-5``), a loss in [0, 1]
  as `infojax.weights.pac_bayes.f_quad` and `f_lambda` require.
  """
  if not 0.0 < min_probability < 1.0:
    raise ValueError(f"min_probability must lie in (0, 1); got {min_probability}.")
  likelihood = likelihoods.categorical()
  scale = -math.log(min_probability)

  def loss(params, batch):
    inputs, labels = batch
    nll = likelihood.nll(apply_fn(params, inputs), labels)
    return jnp.mean(jnp.minimum(nll, scale)) / scale

  return loss


def union_kl(kl, prior_variance, *, b: float, c: float) -> jax.Array:
  """``KL + 2 log j + log(pi^2 / 6)``: the KL charged for choosing ``lambda = c exp(-j/b)``.

  The union bound that spends ``6 delta / (pi^2 j^2)`` on grid point ``j`` turns Maurer's
  ``log(2 sqrt(m)/delta)`` into ``log(2 sqrt(m)/delta) + 2 log j + log(pi^2/6)``; ``j`` is the
  continuous index, clipped at 1 (`infojax.weights.pac_bayes.union_bound_term`), in training.
  """
  return kl + pac_bayes.union_bound_term(prior_variance, b=b, c=c) + math.log(math.pi ** 2 / 6.0)


class BoundFitState(NamedTuple):
  """The state of `make_posterior_fit`: a `infojax.weights.PosteriorState` and ``f_lambda``'s ``l``.

  Attributes:
    posterior: the current `infojax.weights.GaussianPosterior`.
    prior_mean: the prior mean (``w0``, or a data-dependent one), a pytree like the weights; held
      fixed (in the state, so that one compiled fit serves every seed's prior).
    log_prior_variance: ``log lambda``, a scalar.
    trade_off_logit: ``t`` with ``l = 2 sigmoid(t)`` in (0, 2), a scalar (trained by ``f_lambda``
      only; the other objectives leave it at its start).
    opt_state: the optax state of ``(posterior, log_prior_variance, trade_off_logit)``.
    key: a typed PRNG key; step s draws weights with ``jax.random.fold_in(key, s)``.
    step: the number of updates done, an int32 scalar.
  """
  posterior: weights.GaussianPosterior
  prior_mean: Any
  log_prior_variance: jax.Array
  trade_off_logit: jax.Array
  opt_state: Any
  key: jax.Array
  step: jax.Array


class PosteriorFit(NamedTuple):
  """``init(posterior, prior_mean, key) -> BoundFitState``; ``update(state, batch)``.

  ``update`` returns ``(state, metrics)``, the ``metrics`` at the weights before the step:
  ``objective``, ``expected_loss`` (the surrogate loss of the step's weight draw), ``kl``,
  ``prior_variance`` and ``trade_off`` (``l``).
  """
  init: Any
  update: Any


def _bound_objective(objective: str, *, settings, num_examples: int):
  """``value(surrogate_loss, kl, prior_variance, trade_off)``, the bound ``objective`` trains."""
  delta, b, c = settings.delta, settings.grid_b, settings.grid_c
  if objective == "dziugaite_roy":
    return lambda loss, kl, variance, _: pac_bayes.dziugaite_roy_objective(
        loss, kl, num_examples, delta=delta, prior_variance=variance, b=b, c=c)
  if objective == "f_quad":
    return lambda loss, kl, variance, _: pac_bayes.f_quad(
        loss, union_kl(kl, variance, b=b, c=c), num_examples, delta=delta)
  return lambda loss, kl, variance, trade_off: pac_bayes.f_lambda(
      loss, union_kl(kl, variance, b=b, c=c), num_examples, delta=delta, trade_off=trade_off)


def make_posterior_fit(objective: str, apply_fn, *, num_train: int, settings,
                       num_bound_examples: Optional[int] = None) -> PosteriorFit:
  """Step 2's fit of ``Q``, ``lambda`` (and ``l``) on one training objective.

  Minimises the objective (see the module docstring) of one reparameterised weight draw per
  minibatch over the mean, the log-variances, ``log lambda`` and ``t`` (``l = 2 sigmoid(t)``)
  with ``settings.optimizer``; ``lambda`` is projected onto ``lambda <= c exp(-1/b)`` after each
  step, as in `infojax.weights.pac_bayes.dziugaite_roy_fit` (the same objective for
  ``dziugaite_roy``; f_quad and f_lambda are not ``E_Q L + penalty(KL)``, the form
  `infojax.weights.gaussian_posterior_fit` optimises).

  Args:
    objective: one of `OBJECTIVES`.
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    num_train: the training examples the fit's minibatches are drawn from (its epochs' length).
    settings: ``config.pac_bayes``.
    num_bound_examples: m of the bound the objective charges (the examples the certificate uses:
      fewer than ``num_train`` with a data-dependent prior); ``None``: ``num_train``.

  Returns:
    A `PosteriorFit`; run ``update`` with `infojax.weights.fit` (compiled once per fit object).
  """
  if objective not in OBJECTIVES:
    raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}.")
  if objective == "dziugaite_roy":
    nll = common.mean_nll_fn(apply_fn)
    surrogate = lambda params, batch: nll(params, batch) / math.log(2.0)  # noqa: E731
  else:
    surrogate = bounded_cross_entropy_fn(apply_fn, min_probability=settings.min_probability)
  bound = _bound_objective(objective, settings=settings, num_examples=(
      num_train if num_bound_examples is None else num_bound_examples))
  optimizer = train.make_optimizer(
      settings.optimizer, steps_per_epoch=num_train // settings.batch_size,
      num_epochs=settings.num_epochs)
  log_max_prior_variance = math.log(float(pac_bayes.prior_variance_from_index(
      1.0, b=settings.grid_b, c=settings.grid_c)))

  def init(posterior, prior_mean, key) -> BoundFitState:
    log_prior_variance = jnp.log(jnp.float32(settings.prior_variance_init))
    trade_off_logit = jnp.float32(math.log(settings.trade_off_init
                                           / (2.0 - settings.trade_off_init)))
    return BoundFitState(posterior, prior_mean, log_prior_variance, trade_off_logit,
                         opt_state=optimizer.init((posterior, log_prior_variance, trade_off_logit)),
                         key=key, step=jnp.zeros((), jnp.int32))

  def value(variables, prior_mean, batch, key):
    posterior, log_prior_variance, trade_off_logit = variables
    prior_variance = jnp.exp(log_prior_variance)
    loss = jnp.mean(weights.sampled_losses(surrogate, posterior, batch, key=key, num_samples=1))
    kl = weights.total(weights.kl_per_weight(posterior, prior_variance=prior_variance,
                                             prior_mean=prior_mean))
    trade_off = 2.0 * jax.nn.sigmoid(trade_off_logit)
    result = bound(loss, kl, prior_variance, trade_off)
    return result, {"objective": result, "expected_loss": loss, "kl": kl,
                    "prior_variance": prior_variance, "trade_off": trade_off}

  def update(state: BoundFitState, batch):
    variables = (state.posterior, state.log_prior_variance, state.trade_off_logit)
    grads, metrics = jax.grad(value, has_aux=True)(variables, state.prior_mean, batch,
                                                   jax.random.fold_in(state.key, state.step))
    updates, opt_state = optimizer.update(grads, state.opt_state, variables)
    posterior, log_prior_variance, trade_off_logit = optax.apply_updates(variables, updates)
    return BoundFitState(posterior, state.prior_mean,
                         jnp.minimum(log_prior_variance, log_max_prior_variance),
                         trade_off_logit, opt_state, state.key, state.step + 1), metrics

  return PosteriorFit(init=init, update=update)


def _trace_record(epoch: int, window: list) -> dict:
  """The means of the step metrics of the epochs in ``window`` (a list of `weights.fit` metrics)."""
  means = {name: float(jnp.mean(jnp.stack([m[name] for m in window])))
           for name in window[0]}
  return {"epoch": epoch, "objective_value": means["objective"],
          "expected_surrogate_loss": means["expected_loss"], "kl": means["kl"],
          "prior_variance": means["prior_variance"], "trade_off": means["trade_off"]}


def optimise_posterior(fit: PosteriorFit, start, prior_mean, train_arrays, settings, *,
                       seed: int, key: jax.Array, checkpointer: train.Checkpointer,
                       saved_trace: list, write_trace) -> tuple:
  """Step 2: runs ``fit`` from `initial_posterior` of ``start``, one epoch of batches at a time.

  ``start`` is the SGD solution ``w*`` (prior at the initialisation) or the data-dependent prior
  mean; ``prior_mean`` the prior's mean.

  Each epoch's shuffled batches (`infojax.data.batches`, seeded by ``seed`` and the epoch) are
  built on the host and streamed to one compiled scan over the epoch's steps, so the host holds
  one epoch of batches at a time (the training split's size), whatever ``settings.num_epochs``.

  A rerun resumes: the state is saved with ``checkpointer`` every ``settings.checkpoint_every``
  epochs (and at the last), after ``write_trace(trace)`` has written the records so far; a
  newer checkpoint's state is restored and ``saved_trace``'s records up to its epoch are kept.

  Returns:
    ``(state, trace)``: the final `BoundFitState` and one record every ``settings.log_every``
    epochs (and at the last) with the means over those epochs of ``objective_value``,
    ``expected_surrogate_loss``, ``kl``, ``prior_variance`` and ``trade_off``.
  """
  state = fit.init(initial_posterior(start, std_scale=settings.posterior_std_scale,
                                     min_variance=settings.posterior_min_variance), prior_mean, key)
  first, trace = 1, []
  saved = checkpointer.latest_epoch()
  if saved is not None:
    state = checkpointer.restore(saved, state)
    first, trace = saved + 1, [r for r in saved_trace if r["epoch"] <= saved]
  batch = common.as_batch(train_arrays)
  window = []
  for epoch in range(first, settings.num_epochs + 1):
    batches = data.batches(batch, settings.batch_size, seed=seed, epoch=epoch)
    state, metrics = weights.fit(fit.update, state, batches)  # jitted, compiled once per fit
    window.append(metrics)
    last = epoch == settings.num_epochs
    if epoch % settings.log_every == 0 or last:
      trace.append(_trace_record(epoch, window))
      window = []
    if epoch % settings.checkpoint_every == 0 or last:
      write_trace(trace)  # records first: a kill before the save redoes these epochs
      checkpointer.save(epoch, state)
  return state, trace


def objective_change(trace: list, num_epochs: int) -> float:
  """The convergence criterion: the objective's relative change over the last 10% of epochs.

  ``(o_end - o_start) / |o_start|`` with ``o_end`` the last record's objective and ``o_start`` that
  of the last record at or before epoch ``0.9 num_epochs`` (the first record if none is).
  """
  start_epoch = (1.0 - CONVERGENCE_WINDOW) * num_epochs
  start = [r for r in trace if r["epoch"] <= start_epoch] or trace[:1]
  first, last = start[-1]["objective_value"], trace[-1]["objective_value"]
  return (last - first) / abs(first)


def _split_kl(posterior, prior_mean, prior_variance: float, kl: float) -> dict:
  """The KL's distance term ``||mean - w0||^2 / (2 lambda)`` and the rest (the variance term)."""
  squared = weights.total(jax.tree.map(lambda m, w0: jnp.square(m - w0), posterior.mean,
                                       prior_mean))
  distance = float(squared) / (2.0 * prior_variance)
  return {"kl_distance": distance, "kl_variance": kl - distance}


def _test_set_bound(error: float, num_examples: int, delta: float) -> float:
  """`infojax.weights.pac_bayes.test_set_bound` of ``round(error * n)`` errors in ``n``."""
  return float(pac_bayes.test_set_bound(round(error * num_examples), num_examples, delta=delta))


def certify_posterior(error_fn, sampled_test_errors, state: BoundFitState, initial, train_arrays,
                      test_arrays, settings, *, key: jax.Array,
                      num_prior_examples: int = 0) -> dict:
  """Step 3: the certificate with every term, the KL's split, and the test-set bounds.

  Args:
    error_fn: ``error_fn(params, (inputs, labels))``, the 0-1 error of one network.
    sampled_test_errors: ``(posterior, batch, key) -> (n,)`` errors of sampled networks.
    state: the optimised `BoundFitState` (its ``prior_mean`` is the prior's).
    initial: ``w0``, the initialisation.
    train_arrays, test_arrays: the splits.
    settings: ``config.pac_bayes``.
    key: a PRNG key.
    num_prior_examples: ``0``: the prior is ``N(w0, lambda I)`` and the bound uses every training
      example (`infojax.weights.pac_bayes.dziugaite_roy_certificate`); else the prior mean was
      learned on the first ``num_prior_examples`` training examples and the bound uses the others
      only (`infojax.weights.pac_bayes.data_dependent_prior_certificate`).

  Returns:
    A dict of floats: the `infojax.weights.pac_bayes.Certificate` fields, ``union_bound_term``,
    ``kl_distance``, ``kl_variance``, ``trade_off``, ``num_prior_examples``,
    ``prior_mean_shift`` (``||prior mean - w0||``), ``snn_test_error``, ``mean_train_error``,
    ``mean_test_error`` (the mean network), ``snn_test_set_bound`` and ``mean_test_set_bound``
    (the binomial-tail bounds at confidence ``1 - total_delta``; the stochastic network's from its
    Monte-Carlo test error, whose sampling error is not charged) and ``vacuous``.
  """
  certificate_key, test_key = jax.random.split(key)
  train_batch = common.as_batch(train_arrays)
  shared = dict(prior_mean=state.prior_mean, prior_variance=jnp.exp(state.log_prior_variance),
                key=certificate_key, num_mc_samples=settings.num_mc_samples, delta=settings.delta,
                delta_monte_carlo=settings.delta_monte_carlo, b=settings.grid_b, c=settings.grid_c)
  if num_prior_examples:
    certificate = pac_bayes.data_dependent_prior_certificate(
        error_fn, state.posterior, train_batch, num_prior_examples=num_prior_examples, **shared)
  else:
    certificate = pac_bayes.dziugaite_roy_certificate(
        error_fn, state.posterior, train_batch, num_examples=int(train_arrays["label"].shape[0]),
        **shared)
  terms = {name: io.to_json_value(value) for name, value in certificate._asdict().items()}
  terms["union_bound_term"] = float(pac_bayes.union_bound_term(
      certificate.prior_variance, b=settings.grid_b, c=settings.grid_c))
  terms.update(_split_kl(state.posterior, state.prior_mean, terms["prior_variance"], terms["kl"]))
  terms["trade_off"] = float(2.0 * jax.nn.sigmoid(state.trade_off_logit))
  terms["num_prior_examples"] = int(num_prior_examples)
  terms["prior_mean_shift"] = math.sqrt(float(weights.total(jax.tree.map(
      lambda p, w0: jnp.square(p - w0), state.prior_mean, initial))))
  test_batch = common.as_batch(test_arrays)
  num_test = int(test_arrays["label"].shape[0])
  terms["snn_test_error"] = float(jnp.mean(sampled_test_errors(state.posterior, test_batch,
                                                               test_key)))
  terms["mean_train_error"] = float(error_fn(state.posterior.mean, train_batch))
  terms["mean_test_error"] = float(error_fn(state.posterior.mean, test_batch))
  for name in ("snn", "mean"):
    terms[f"{name}_test_set_bound"] = _test_set_bound(terms[f"{name}_test_error"], num_test,
                                                      terms["total_delta"])
  terms["vacuous"] = terms["bound"] >= VACUOUS
  return terms


def _plot(path, traces, means):
  """The first seed's training traces and the certificates' means over the seeds."""
  from matplotlib.figure import Figure

  figure = Figure(figsize=(16.0, 4.5), layout="constrained")
  axes = figure.subplots(1, 3)
  for (labels, objective), records in traces.items():
    epochs = [r["epoch"] for r in records]
    name = f"{labels}, {objective}"
    axes[0].plot(epochs, [r["objective_value"] for r in records], marker="o", markersize=2,
                 label=name)
    axes[1].plot(epochs, [r["kl"] for r in records], marker="o", markersize=2, label=name)
  axes[0].set_ylabel("training objective (first seed)")
  axes[0].set_yscale("log")
  axes[1].set_ylabel("KL(Q || P) [nats] (first seed)")
  axes[1].set_yscale("log")
  for axis in axes[:2]:
    axis.set_xlabel("PAC-Bayes epoch")
  terms = [("train_error", "SNN train error (MC)"), ("snn_test_error", "SNN test error"),
           ("snn_test_set_bound", "test-set bound (SNN)"), ("bound", "PAC-Bayes-kl bound")]
  positions = np.arange(len(terms))
  width = 0.8 / max(len(means), 1)
  for index, ((labels, objective), values) in enumerate(means.items()):
    heights = [min(values[name][0], 1.0) for name, _ in terms]
    errors = np.array([[values[name][0] - values[name][1], values[name][2] - values[name][0]]
                       for name, _ in terms]).T
    axes[2].bar(positions + index * width, heights, width=width, yerr=errors, capsize=2,
                label=f"{labels}, {objective}")
  axes[2].axhline(VACUOUS, color="gray", linestyle=":", label="guessing (0.5)")
  axes[2].set_xticks(positions + 0.4 - width / 2, [t[1] for t in terms], rotation=15,
                     fontsize="small")
  axes[2].set_ylabel("error: mean over seeds, 95% t interval (bounds capped at 1)")
  for axis in axes:
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle("PAC-Bayes certificates (Dziugaite-Roy; Perez-Ortiz et al. f_quad, f_lambda; "
                  "priors at the initialisation and data-dependent)")
  figure.savefig(path, dpi=120)


def objective_prior(name: str) -> tuple:
  """``(objective, data_dependent)`` of a `UNITS` name: ``"f_quad_data_dependent"`` is
  ``("f_quad", True)``."""
  if name not in UNITS:
    raise ValueError(f"objective must be one of {UNITS}; got {name!r}.")
  base = name.removesuffix(DATA_DEPENDENT)
  return base, base != name


def _check_config(config):
  for field, values, allowed in (("labels", config.labels, LABELS),
                                 ("objectives", config.objectives, UNITS)):
    if not values or set(values) - set(allowed) or len(set(values)) != len(values):
      raise ValueError(f"pac_bayes_bound: {field} must be a non-empty subset of {allowed} without "
                       f"repeats; got {tuple(values)}.")
  seeds = tuple(config.seeds)
  if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or (
      len(set(seeds)) != len(seeds)):
    raise ValueError(f"pac_bayes_bound: seeds must be distinct non-negative ints (at least one); "
                     f"got {config.seeds!r}.")
  settings = config.pac_bayes
  for field in ("num_epochs", "log_every", "checkpoint_every"):
    value = settings[field]
    if isinstance(value, bool) or int(value) != value or value < 1:
      raise ValueError(f"pac_bayes_bound: pac_bayes.{field} must be a positive integer; got "
                       f"{value!r}.")
  if settings.checkpoint_every % settings.log_every:
    raise ValueError(f"pac_bayes_bound: pac_bayes.checkpoint_every ({settings.checkpoint_every}) "
                     f"must be a multiple of pac_bayes.log_every ({settings.log_every}), so that "
                     "every record's epochs lie between two checkpoints.")
  if not 0.0 < settings.trade_off_init < 2.0:
    raise ValueError(f"pac_bayes_bound: pac_bayes.trade_off_init (f_lambda's l) must lie in "
                     f"(0, 2); got {settings.trade_off_init}.")
  if not 0.0 < settings.prior_fraction < 1.0:
    raise ValueError(f"pac_bayes_bound: pac_bayes.prior_fraction (the training examples the "
                     f"data-dependent prior sees) must lie in (0, 1); got "
                     f"{settings.prior_fraction}.")


def _binary_splits(config, seed: int) -> dict:
  """The splits of ``seed`` (its training subset, if ``config.num_train``) with binary labels."""
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train, seed=seed)
  for arrays in splits.values():
    arrays["label"] = binary_labels(arrays["label"], threshold=config.binary_threshold)
  return splits


def _labelled_splits(splits: dict, labels: str, seed: int) -> tuple:
  """The train and test arrays of ``labels``, the training set in a seeded random order.

  The labels are the binary ones or uniformly random ones. The order (fixed by ``seed`` before
  any training) decides the data-dependent prior's part, its first examples.
  """
  order = np.random.default_rng(seed).permutation(splits["train"]["label"].shape[0])
  train_arrays = {name: values[order] for name, values in splits["train"].items()}
  test_arrays = dict(splits["test"])
  if labels == "random":
    for offset, arrays in enumerate((train_arrays, test_arrays)):
      arrays["label"], _ = data.transforms.corrupt_labels(
          arrays["label"], fraction=1.0, num_classes=2, seed=seed + offset)
  return train_arrays, test_arrays


def over_seeds(certificates: dict, seeds, labels: str, objective: str) -> dict:
  """``{term: (mean, low, high)}`` over ``seeds`` of the unit's certificate terms
  (`common.mean_interval`, 95% Student-t)."""
  return {name: common.mean_interval([certificates[s, labels, objective][name] for s in seeds])
          for name in SUMMARY_TERMS}


def _interval(values: tuple, digits: int = 4) -> str:
  """``"mean [low, high]"`` (just ``"mean"`` for one seed, where ``low = high = mean``)."""
  mean, low, high = values
  if low == high:
    return f"{mean:.{digits}f}"
  return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _summary_lines(config, summary, means, best) -> list:
  seeds = tuple(config.seeds)

  def interval(name, digits=4):
    return _interval(tuple(summary[f"{name}{end}"] for end in ("", "_low", "_high")), digits)

  def examples(objective):
    return summary["num_train"] - (summary["num_prior_examples"] if objective_prior(objective)[1]
                                   else 0)

  lines = [f"pac_bayes_bound: {config.dataset} (label = digit >= {config.binary_threshold}), "
           f"m = {summary['num_train']}, MLP {tuple(config.hidden_sizes)} with "
           f"{summary['num_parameters']} parameters; {config.pac_bayes.num_epochs} PAC-Bayes "
           f"epochs per objective; seeds {seeds} (each its own w0, random labels, batches and "
           f"noise): mean [95% t interval] over the {len(seeds)} seed(s). Priors: N(w0, lambda I) "
           f"at the initialisation, or (objective suffix {DATA_DEPENDENT}) a data-dependent mean "
           f"learned by SGD on {summary['num_prior_examples']} training examples, the bound on the "
           f"other {summary['num_train'] - summary['num_prior_examples']}."]
  for labels in config.labels:
    lines.append(f"{labels} labels: SGD train error {interval(f'{labels}_sgd_train_error')}, "
                 f"test error {interval(f'{labels}_sgd_test_error')} (test-set bound "
                 f"{interval(f'{labels}_sgd_test_set_bound')} on {summary['num_test']} held-out "
                 "examples, the reference every certificate is compared with).")
  for (labels, objective), t in means.items():
    lines.append(
        f"{labels} labels, {objective}: PAC-Bayes-kl bound {_interval(t['bound'])} (m = "
        f"{examples(objective)}; vacuous at >= {VACUOUS}); SNN train error (MC) "
        f"{_interval(t['train_error'])}, SNN test error {_interval(t['snn_test_error'])} "
        f"(test-set bound {_interval(t['snn_test_set_bound'])}); KL {_interval(t['kl'], 1)} nats "
        f"= distance ||mean - prior mean||^2/(2 lambda) {_interval(t['kl_distance'], 1)} + "
        f"variance {_interval(t['kl_variance'], 1)}; objective's relative change over the last 10% "
        f"of epochs {_interval(t['objective_change'], 5)}.")
  for labels, (objective, t) in best.items():
    lines.append(f"{labels} labels: the best certificate is {_interval(t['bound'])} ({objective}, "
                 f"best by mean over the seeds).")
  for labels in config.labels:
    for objective in config.objectives:
      base, data_dependent = objective_prior(objective)
      if not data_dependent:
        continue
      others = [o for o in config.objectives if not objective_prior(o)[1]]
      if not others:
        continue
      reference = base if base in others else min(
          others, key=lambda o, labels=labels: means[labels, o]["bound"][0])
      mine, theirs = means[labels, objective]["bound"], means[labels, reference]["bound"]
      if len(seeds) == 1:
        verdict = (f"{'tightens' if mine[0] < theirs[0] else 'does not tighten'} the bound on "
                   "this one seed (no interval)")
      else:
        verdict = ("tightens the bound (disjoint 95% intervals)" if mine[2] < theirs[1] else
                   "loosens the bound (disjoint 95% intervals)" if mine[1] > theirs[2] else
                   "does not change the bound beyond the seeds' spread (overlapping intervals)")
      lines.append(
          f"{labels} labels: the data-dependent prior ({objective}, bound {_interval(mine)} on m = "
          f"{examples(objective)}) against the prior at the initialisation ({reference}, "
          f"{_interval(theirs)} on m = {summary['num_train']}): it "
          f"{verdict}: its KL is {_interval(means[labels, objective]['kl'], 1)} nats against "
          f"{_interval(means[labels, reference]['kl'], 1)}, bought with fewer examples.")
  lines.append(
      "Published: Dziugaite & Roy (2017) certify 0.161 on binary MNIST (T-600); Perez-Ortiz et al. "
      "(2021) certify lower. Digits is not MNIST: 1,437 training examples of 8x8 pixels against "
      "55,000-60,000 of 28x28, and a bound's complexity term shrinks like 1/m, so the figures "
      "are not comparable; run MNIST with the TFDS command in configs/pac_bayes_bound.py.")
  return lines


def _data_dependent_prior(apply_fn, initial, train_arrays, test_arrays, config, *, seed: int,
                          workdir: str) -> tuple:
  """SGD from ``w0`` on the prior's part of the training set: the data-dependent prior mean.

  Returns:
    ``(prior_mean, num_prior_examples)``; the SGD's checkpoints are in ``workdir``.
  """
  num_train = int(train_arrays["label"].shape[0])
  num_prior = int(round(config.pac_bayes.prior_fraction * num_train))
  prior_arrays, _ = pac_bayes.split_batch(train_arrays, num_prior)
  prior_mean, _ = common.train_classifier(
      apply_fn, initial, prior_arrays, test_arrays, optimizer_config=config.optimizer,
      num_epochs=config.num_epochs, batch_size=min(config.batch_size, num_prior), seed=seed,
      workdir=workdir)
  return prior_mean, num_prior


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """SGD, the posterior fits and their certificates, for each seed, labels and objective.

  A rerun resumes (see the module docstring): completed units are read back from
  ``metrics.jsonl``, the SGD and the posterior fits resume from their checkpoints, and the records
  equal those of an uninterrupted run.

  Args:
    config: see ``configs/pac_bayes_bound.py``.
    workdir: the output directory.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary, the
    means over ``config.seeds`` with ``<name>_low`` and ``<name>_high`` their 95% Student-t
    interval: for each labels in ``config.labels`` and objective in ``config.objectives``,
    ``<labels>_<objective>_<term>`` for each term of `SUMMARY_TERMS`; ``<labels>_best_bound``
    (the smallest mean, with its interval) and ``<labels>_best_objective``;
    ``<labels>_sgd_train_error``, ``_sgd_test_error``, ``_sgd_test_set_bound``; plus
    ``num_train``, ``num_test``, ``num_parameters``, ``num_prior_examples`` and ``total_delta``.
  """
  _check_config(config)
  workdir = config_lib.prepare_workdir(config, workdir)
  seeds, settings = tuple(config.seeds), config.pac_bayes
  path = os.path.join(workdir, common.METRICS_FILE)
  saved = common.saved_records(path)
  records, traces, certificates, fits = [], {}, {}, {}
  for seed in seeds:
    splits = _binary_splits(config, seed)
    num_train = int(splits["train"]["label"].shape[0])
    num_test = int(splits["test"]["label"].shape[0])
    num_prior = int(round(settings.prior_fraction * num_train))
    init_key, key = jax.random.split(jax.random.key(seed))
    model_fn, initial = common.init_mlp(config.hidden_sizes, 2, splits["train"]["image"].shape[1:],
                                        init_key)
    if not fits:  # one compiled fit per objective, shared by the seeds (same sizes)
      apply_fn, error_fn = model_fn, common.error_rate_fn(model_fn)
      sampled_test_errors = jax.jit(lambda posterior, batch, k: weights.sampled_losses(
          error_fn, posterior, batch, key=k, num_samples=settings.test_mc_samples))
      for name in config.objectives:
        base, data_dependent = objective_prior(name)
        fits[name] = make_posterior_fit(
            base, apply_fn, num_train=num_train, settings=settings,
            num_bound_examples=num_train - num_prior if data_dependent else None)
    for index, labels in enumerate(config.labels):
      train_arrays, test_arrays = _labelled_splits(splits, labels, seed)
      checkpoints = os.path.join(workdir, "checkpoints", f"seed{seed}_{labels}")
      trained, history = common.train_classifier(
          apply_fn, initial, train_arrays, test_arrays, optimizer_config=config.optimizer,
          num_epochs=config.num_epochs, batch_size=config.batch_size, seed=seed,
          workdir=os.path.join(checkpoints, "sgd"))
      records.extend({"kind": "sgd", "seed": seed, "labels": labels, **r} for r in history)
      sgd = {"sgd_train_error": 1.0 - history[-1]["train_eval_accuracy"],
             "sgd_test_error": 1.0 - history[-1]["test_accuracy"]}
      prior = []  # the data-dependent prior mean, trained when a unit first needs it
      for position, objective in enumerate(config.objectives):
        unit = {"seed": seed, "labels": labels, "objective": objective}
        mine = [r for r in saved if all(r.get(k) == v for k, v in unit.items())]
        done = [r for r in mine if r["kind"] == "certificate"]
        trace = [r for r in mine if r["kind"] == "pac_bayes"]
        if not done:
          data_dependent = objective_prior(objective)[1]
          if data_dependent and not prior:
            prior.append(_data_dependent_prior(apply_fn, initial, train_arrays, test_arrays,
                                               config, seed=seed,
                                               workdir=os.path.join(checkpoints, "prior_sgd"))[0])
          start, prior_mean = (prior[0], prior[0]) if data_dependent else (trained, initial)
          fit_key, certificate_key = jax.random.split(
              jax.random.fold_in(jax.random.fold_in(key, index), position))
          directory = os.path.join(checkpoints, f"pac_bayes_{objective}")
          with train.Checkpointer(directory, max_to_keep=1) as checkpointer:
            state, trace_values = optimise_posterior(
                fits[objective], start, prior_mean, train_arrays, settings, seed=seed,
                key=fit_key, checkpointer=checkpointer, saved_trace=trace,
                write_trace=lambda t, unit=unit: common.write_records(
                    path, records + [{"kind": "pac_bayes", **unit, **r} for r in t],
                    tensorboard=config.tensorboard))
          trace = [{"kind": "pac_bayes", **unit, **r} for r in trace_values]
          terms = certify_posterior(error_fn, sampled_test_errors, state, initial, train_arrays,
                                    test_arrays, settings, key=certificate_key,
                                    num_prior_examples=num_prior if data_dependent else 0)
          terms.update(sgd)
          terms["sgd_test_set_bound"] = _test_set_bound(sgd["sgd_test_error"], num_test,
                                                        terms["total_delta"])
          terms["objective_change"] = objective_change(trace, settings.num_epochs)
          done = [{"kind": "certificate", **unit, **terms}]
        records.extend(trace + done)
        common.write_records(path, records, tensorboard=config.tensorboard)
        traces[seed, labels, objective] = trace
        certificates[seed, labels, objective] = done[0]

  summary = {"num_train": num_train, "num_test": num_test,
             "num_parameters": common.num_parameters(initial), "num_prior_examples": num_prior,
             "total_delta": certificates[seeds[0], config.labels[0],
                                         config.objectives[0]]["total_delta"]}
  means = {(labels, objective): over_seeds(certificates, seeds, labels, objective)
           for labels in config.labels for objective in config.objectives}
  for (labels, objective), values in means.items():
    for name, interval in values.items():
      _put(summary, f"{labels}_{objective}_{name}", interval)
  best = {}
  for labels in config.labels:
    objective = min(config.objectives, key=lambda o, labels=labels: means[labels, o]["bound"][0])
    best[labels] = (objective, means[labels, objective])
    _put(summary, f"{labels}_best_bound", best[labels][1]["bound"])
    summary[f"{labels}_best_objective"] = objective
    for name in SGD_TERMS:
      _put(summary, f"{labels}_{name}", common.mean_interval(
          [certificates[s, labels, config.objectives[0]][name] for s in seeds]))
  if io.is_primary_process():
    _plot(os.path.join(workdir, PLOT_FILE),
          {(labels, o): traces[seeds[0], labels, o] for labels, o in means}, means)
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE),
                       _summary_lines(config, summary, means, best))
  return summary if io.is_primary_process() else {}


def _put(summary: dict, name: str, interval: tuple) -> None:
  """``summary[name]`` the mean, ``<name>_low`` and ``<name>_high`` its interval."""
  summary[name], summary[f"{name}_low"], summary[f"{name}_high"] = interval
