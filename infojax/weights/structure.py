"""The structure function of a task, traced through the information Lagrangian.

Achille, Paolini, Mbeng & Soatto, "The information complexity of learning tasks, their structure and
their distance" (arXiv 1904.03292), science.md §3.1-3.2: the structure function

    S(t) = min_{KL(Q || P) <= t} E_{w ~ Q}[L_D(w)]

is traced by minimising the Lagrangian ``E_Q L_D + beta KL(Q || P)`` for a sweep of ``beta``: each
minimiser is a point ``(KL(Q*_beta || P), E_{Q*_beta} L_D)`` of (the lower convex hull of) S, where
S has slope ``-beta`` (in the loss units of ``beta``). The sweep runs from large ``beta`` to small,
each fit warm-started from the previous solution: at large ``beta`` the optimum is near the prior (a
unique, simple solution, and the natural start ``Q = P``), and lowering ``beta`` adds information a
little at a time, the annealing of the paper's Proposition 6.4.

The knee. With the **summed** loss ``N L_D`` in nats, ``S(t) + t`` is the two-part code length of
the data (model, then labels given the model). Kolmogorov's minimal sufficient statistic is the
simplest model that reaches the minimal total code length, after which S decreases with slope -1
(one nat of information buys only one nat of loss: memorisation of noise). `kolmogorov_knee` returns
that point: the smallest information among the traced points whose ``N E_Q L_D + KL`` is within
``tolerance`` of its minimum; equivalently where the slope of S crosses -1, i.e. ``beta_sum = 1``.
For random labels ``S(t) ~ N log|Y| - t`` from the start, and the knee is the uniform model at
``t = 0``. Since it minimises the ``beta = 1`` Lagrangian, this knee lies at ``beta_sum = 1`` by
construction. `hull_knee` reads the same point off the curve's geometry instead, without
presupposing ``beta = 1``: the vertex of the lower convex hull of the traced points where the hull's
slope, fitted segment by segment, crosses -1.

Convergence. Each ``beta``'s fit can run to a stated criterion: chunks of ``check_every`` steps
until the relative change of the chunk-mean objective between two consecutive chunks is at most
``tolerance`` (or ``num_steps`` steps); the steps run and the criterion's last value are returned.
"""

import functools
from typing import Any, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infojax.weights import posterior as posterior_lib


class StructureFunction(NamedTuple):
  """Points of the structure function from a ``beta`` sweep, in sweep order (``beta`` decreasing).

  Attributes:
    beta: ``(K,)``, the trade-offs, in the ``reduction`` they were given in.
    information: ``(K,)``, ``KL(Q_beta || P)`` in nats (exact for the fitted Q).
    expected_loss: ``(K,)``, ``E_{Q_beta} L_D`` (mean loss, as ``loss_fn`` returns it), a
      Monte-Carlo estimate.
    lagrangian: ``(K,)``, ``expected_loss + beta_mean * information`` (mean-loss units).
    information_per_leaf: a pytree like the weights with ``(K,)`` leaves: where the information is.
    distance: ``(K,)``, the mean's part of the information, ``||mean - w0||^2 / (2 lambda^2)``
      (nats); ``information - distance`` is the variances' part.
    steps: ``(K,)`` int32, the optimisation steps run for each ``beta``.
    relative_change: ``(K,)``, the convergence criterion's last value: the relative change of the
      chunk-mean objective between the last two chunks of ``check_every`` steps (``nan`` when the
      fit ran one chunk).
  """
  beta: jax.Array
  information: jax.Array
  expected_loss: jax.Array
  lagrangian: jax.Array
  information_per_leaf: Any
  distance: Any = None
  steps: Any = None
  relative_change: Any = None


class HullKnee(NamedTuple):
  """The knee of a traced structure function read off its lower convex hull (`hull_knee`).

  Attributes:
    index: the index (into the given points) of the knee, a hull vertex.
    hull: the indices of the lower-convex-hull vertices, in increasing information.
    slopes: ``(len(hull) - 1,)``, the slope of each hull segment in summed nats of loss per nat of
      information (non-decreasing: the hull is convex).
  """
  index: int
  hull: np.ndarray
  slopes: np.ndarray


def trace_structure_function(loss_fn, posterior: posterior_lib.GaussianPosterior, batch, betas, *,
                             key: jax.Array, optimizer: optax.GradientTransformation,
                             prior_variance, num_steps: int, prior_mean=None, num_samples: int = 1,
                             eval_samples: int = 64, reduction: str = "mean",
                             num_examples: Optional[int] = None, tolerance: Optional[float] = None,
                             check_every: Optional[int] = None, return_posterior: bool = False):
  """Traces ``S(t)`` by minimising the information Lagrangian for each ``beta``, warm-started.

  For each ``beta`` (largest first): full-batch steps of
  `infojax.weights.posterior.information_lagrangian_fit` from the previous ``beta``'s Q (with a
  fresh optimiser state), in chunks of ``check_every`` steps, until the relative change of the
  chunk-mean objective ``|m_k - m_{k-1}| / |m_{k-1}|`` is at most ``tolerance`` or ``num_steps``
  steps have run; then ``E_Q L_D`` from ``eval_samples`` weight draws and the exact KL. The
  whole sweep is one compiled program (a `lax.scan` over ``beta`` around the `lax.scan` over steps),
  compiled once per ``loss_fn`` and ``optimizer`` object, integer settings and shapes: repeated
  calls with new data, ``betas`` (of one length), keys or prior reuse it (so build ``loss_fn`` and
  ``optimizer`` once, not per call). For minibatches, drive `information_lagrangian_fit` directly.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean data loss (hashable; static).
    posterior: the starting `GaussianPosterior`; ``gaussian_posterior(prior_mean, prior_variance)``
      (the prior, the large-``beta`` optimum) or one around a trained network.
    batch: the training set, passed to ``loss_fn``.
    betas: the trade-offs (> 0), in the convention of ``reduction``; swept in decreasing order.
    key: a PRNG key (fits and evaluations use keys split from it).
    optimizer: an optax transformation, e.g. ``optax.adam(1e-2)`` (static).
    prior_variance: ``lambda^2``.
    num_steps: optimisation steps per ``beta`` (the most, with ``tolerance``).
    prior_mean: ``w0``; ``None`` for zero.
    num_samples: weight draws per optimisation step.
    eval_samples: weight draws for the reported ``E_Q L_D``.
    reduction: ``"mean"`` or ``"sum"``, the loss ``betas`` refer to (see ``convert_beta``).
    num_examples: N, needed for ``reduction="sum"``.
    tolerance: stop a ``beta``'s fit once the relative change of the chunk-mean objective is at
      most this (> 0); ``None`` runs ``num_steps`` steps (the criterion is still reported). The
      objective is a Monte-Carlo estimate: choose ``check_every`` (and ``num_samples``) so that the
      noise of a chunk's mean is well below ``tolerance``, or a chance agreement of two noisy
      chunks stops the fit early.
    check_every: steps per chunk; must divide ``num_steps``; ``None``: ``num_steps`` (one chunk).
    return_posterior: also return the last ``beta``'s Q (to continue a sweep, e.g. after a
      checkpoint).

  Returns:
    A `StructureFunction`, or ``(StructureFunction, GaussianPosterior)`` with ``return_posterior``.

  Cost: at most ``len(betas) * (num_steps * num_samples + eval_samples)`` evaluations of
  ``loss_fn``.
  """
  betas = np.asarray(betas, dtype=np.float64)
  if betas.ndim != 1 or betas.size < 1 or not np.all(betas > 0):
    raise ValueError(f"betas must be a non-empty 1-D sequence of positive values; got {betas}.")
  betas = np.sort(betas)[::-1]
  if not isinstance(posterior, posterior_lib.GaussianPosterior):
    raise TypeError(f"posterior must be a GaussianPosterior; got {type(posterior).__name__}.")
  dtype = jnp.result_type(*jax.tree.leaves(posterior.mean))
  prior_variance = posterior_lib.positive_scalar("prior_variance", prior_variance)
  posterior_lib._check_count("num_steps", num_steps)  # pylint: disable=protected-access
  check_every = num_steps if check_every is None else check_every
  posterior_lib._check_count("check_every", check_every)  # pylint: disable=protected-access
  if num_steps % check_every:
    raise ValueError(f"check_every must divide num_steps; got check_every={check_every} and "
                     f"num_steps={num_steps}.")
  if tolerance is not None and not (isinstance(tolerance, (int, float)) and tolerance > 0):
    raise ValueError(f"tolerance must be None or a positive number; got {tolerance!r}.")
  fit_keys, eval_keys = jnp.split(jax.random.split(key, 2 * betas.size), 2)
  posterior, curve = _sweep(
      posterior, batch, jnp.asarray(betas, dtype), fit_keys, eval_keys, prior_variance,
      prior_mean, jnp.asarray(-1.0 if tolerance is None else tolerance, dtype), loss_fn=loss_fn,
      optimizer=optimizer, num_chunks=num_steps // check_every, check_every=check_every,
      num_samples=num_samples, eval_samples=eval_samples, reduction=reduction,
      num_examples=num_examples)
  return (curve, posterior) if return_posterior else curve


def _fit_to_tolerance(update, state, batch, tolerance, *, num_chunks, check_every):
  """Chunks of ``check_every`` steps until the chunk-mean objective's relative change is at most
  ``tolerance`` (never, for a negative one) or ``num_chunks`` chunks ran.

  Returns:
    ``(state, chunks_run, relative_change)``; the change is ``nan`` after a single chunk.
  """

  def chunk(carry):
    state, previous, _, chunks = carry
    state, metrics = posterior_lib.fit(update, state, batch, num_steps=check_every)
    current = jnp.mean(metrics["objective"])
    change = jnp.abs(current - previous) / jnp.maximum(jnp.abs(previous),
                                                       jnp.finfo(current.dtype).tiny)
    return state, current, change, chunks + 1

  def going_on(carry):
    _, _, change, chunks = carry
    return (chunks < num_chunks) & ~(change <= tolerance)

  nan = jnp.full((), jnp.nan, tolerance.dtype)
  state, _, change, chunks = jax.lax.while_loop(
      going_on, chunk, (state, nan, nan, jnp.zeros((), jnp.int32)))
  return state, chunks, change


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "num_chunks", "check_every",
                                             "num_samples", "eval_samples", "reduction",
                                             "num_examples"))
def _sweep(start, batch, betas, fit_keys, eval_keys, prior_variance, prior_mean, tolerance, *,
           loss_fn, optimizer, num_chunks, check_every, num_samples, eval_samples, reduction,
           num_examples):
  """`trace_structure_function`'s compiled sweep: a `lax.scan` over ``betas`` (decreasing).

  Module-level, so repeated calls with the same ``loss_fn`` and ``optimizer`` objects, the same
  integer settings and the same shapes reuse one compilation; the data, the trade-offs, the keys,
  the prior variance, the prior mean and the tolerance are traced arguments.

  Returns:
    ``(last posterior, StructureFunction)``.
  """

  def sweep_step(current, inputs):
    beta, fit_key, eval_key = inputs
    lagrangian_fit = posterior_lib.information_lagrangian_fit(
        loss_fn, beta=beta, optimizer=optimizer, prior_mean=prior_mean, num_samples=num_samples,
        reduction=reduction, num_examples=num_examples)
    state = lagrangian_fit.init(current, fit_key, prior_variance=prior_variance)
    state, chunks, change = _fit_to_tolerance(lagrangian_fit.update, state, batch, tolerance,
                                              num_chunks=num_chunks, check_every=check_every)
    per_weight = lagrangian_fit.information(state)
    information = posterior_lib.total(per_weight)
    expected_loss = jnp.mean(posterior_lib.sampled_losses(
        loss_fn, state.posterior, batch, key=eval_key, num_samples=eval_samples))
    beta_mean = posterior_lib.convert_beta(beta, num_examples=num_examples,
                                           from_reduction=reduction, to_reduction="mean")
    mean = state.posterior.mean
    centre = posterior_lib.prior_mean_tree(prior_mean, mean)
    squared = posterior_lib.total(jax.tree.map(lambda m, m0: jnp.square(m - m0), mean, centre))
    point = StructureFunction(beta=beta, information=information, expected_loss=expected_loss,
                              lagrangian=expected_loss + beta_mean * information,
                              information_per_leaf=posterior_lib.sum_per_leaf(per_weight),
                              distance=squared / (2.0 * prior_variance),
                              steps=chunks * check_every, relative_change=change)
    return state.posterior, point

  return jax.lax.scan(sweep_step, start, (betas, fit_keys, eval_keys))


def kolmogorov_knee(information, expected_loss, *, num_examples, tolerance: float = 1.0):
  """The index of the Kolmogorov-minimal-sufficient point of a traced structure function.

  Among the points, the one of smallest information whose two-part code length
  ``num_examples * expected_loss + information`` (summed nats) is within ``tolerance`` of the
  minimum (science.md §3.1; see the module docstring). Sufficiency is defined up to additive
  constants; ``tolerance`` (1 nat by default, which also absorbs rounding) should be raised to the
  Monte-Carlo noise of ``num_examples * expected_loss`` when that is larger.

  Args:
    information: ``(K,)``, nats.
    expected_loss: ``(K,)``, the mean loss in nats (multiplied by ``num_examples``; pass
      ``num_examples=1`` for a loss that is already summed).
    num_examples: N.
    tolerance: nats of code length.

  Returns:
    An int32 scalar index (jit-able).
  """
  information = jnp.asarray(information)
  expected_loss = jnp.asarray(expected_loss)
  if information.ndim != 1 or information.shape != expected_loss.shape or information.size < 1:
    raise ValueError(f"information and expected_loss must be 1-D of one length >= 1; got shapes "
                     f"{information.shape} and {expected_loss.shape}.")
  code_length = num_examples * expected_loss + information
  near_minimal = code_length <= jnp.min(code_length) + tolerance
  return jnp.argmin(jnp.where(near_minimal, information, jnp.inf)).astype(jnp.int32)


def hull_knee(information, expected_loss, *, num_examples) -> HullKnee:
  """The knee of a traced structure function on its lower convex hull, where the slope crosses -1.

  The traced points ``(t_k, N E_{Q_k} L_D)`` (summed nats) lie on or above ``S``; their lower convex
  hull is the part of the curve the Lagrangian can reach (science.md §3.1). Its segments' slopes
  increase from the steepest (information that buys much loss) towards 0; the knee is the hull
  vertex where they cross -1, the rate at which memorising noise buys loss: the left segment's
  slope is below -1 and the right one's at least -1. Unlike `kolmogorov_knee`, this does not
  presuppose ``beta = 1`` in the sweep: it is read off the curve's geometry, with slopes fitted on
  the hull's segments, not between grid end points. If every slope is at least -1 the knee is the
  first vertex (no information is worth its cost, e.g. random labels); if every slope is below -1,
  the last.

  Args:
    information: ``(K,)``, nats.
    expected_loss: ``(K,)``, the mean loss in nats (multiplied by ``num_examples``; pass
      ``num_examples=1`` for a summed loss).
    num_examples: N.

  Returns:
    A `HullKnee` (host numpy values; not jit-able: the hull has a data-dependent size).

  Cost: ``O(K log K)`` (Andrew's monotone chain on the lower side).
  """
  information = np.asarray(information, np.float64)
  loss = num_examples * np.asarray(expected_loss, np.float64)
  if information.ndim != 1 or information.shape != loss.shape or information.size < 1:
    raise ValueError(f"information and expected_loss must be 1-D of one length >= 1; got shapes "
                     f"{information.shape} and {np.shape(expected_loss)}.")
  if not (np.all(np.isfinite(information)) and np.all(np.isfinite(loss))):
    raise ValueError("hull_knee: information and expected_loss must be finite.")
  # Sort by information, then loss; of points with equal information only the lowest can be on
  # the lower hull.
  order = np.lexsort((loss, information))
  hull = []
  for k in order:
    if hull and information[hull[-1]] == information[k]:
      continue
    while len(hull) >= 2:
      (i, j) = hull[-2], hull[-1]
      cross = ((information[j] - information[i]) * (loss[k] - loss[i])
               - (loss[j] - loss[i]) * (information[k] - information[i]))
      if cross > 0:   # a strict left turn: j stays on the lower hull
        break
      hull.pop()
    hull.append(int(k))
  hull = np.asarray(hull, np.int64)
  slopes = np.diff(loss[hull]) / np.diff(information[hull])
  crossing = np.flatnonzero(slopes >= -1.0)
  position = int(crossing[0]) if crossing.size else len(hull) - 1
  return HullKnee(index=int(hull[position]), hull=hull, slopes=slopes)


def plot_structure_functions(curves: Mapping[str, StructureFunction], path: str, *,
                             num_examples: Optional[int] = None, tolerance: float = 1.0,
                             title: Optional[str] = None) -> str:
  """Draws ``E_Q L_D`` against ``KL(Q || P)`` for one or more traced structure functions, to a PNG.

  With ``num_examples``, each curve's `kolmogorov_knee` is marked and a dashed line of slope -1 in
  summed nats (``-1/N`` per nat for the mean loss) is drawn through it: the memorisation asymptote.
  matplotlib (Agg canvas, no pyplot state) is imported here, not with the module.

  Args:
    curves: label -> `StructureFunction`, e.g. ``{"real labels": ..., "random labels": ...}``.
    path: the output ``.png`` file.
    num_examples: N, to mark knees and slopes.
    tolerance: passed to `kolmogorov_knee`.
    title: a title over the figure.

  Returns:
    ``path``.
  """
  if not curves:
    raise ValueError("plot_structure_functions: curves must hold at least one StructureFunction.")
  from matplotlib.figure import Figure

  figure = Figure(figsize=(5.5, 4.0), layout="constrained")
  axis = figure.subplots()
  for label, curve in curves.items():
    information = np.asarray(curve.information)
    loss = np.asarray(curve.expected_loss)
    order = np.argsort(information)
    (line,) = axis.plot(information[order], loss[order], marker="o", markersize=3, label=label)
    if num_examples is not None:
      knee = int(kolmogorov_knee(information, loss, num_examples=num_examples,
                                 tolerance=tolerance))
      axis.plot(information[knee], loss[knee], marker="*", markersize=12, color=line.get_color(),
                linestyle="none", label=f"{label}: knee at {information[knee]:.3g} nats")
      span = np.array([information[knee], information.max()])
      axis.plot(span, loss[knee] - (span - information[knee]) / num_examples, linestyle="--",
                color=line.get_color(), alpha=0.6)
  axis.set_xlabel("information in the weights KL(Q || P) [nats]")
  axis.set_ylabel("expected training loss E_Q L_D [nats]")
  axis.grid(alpha=0.3)
  axis.legend(fontsize="small")
  if title:
    axis.set_title(title)
  figure.savefig(path, dpi=120)
  return path
