"""Information in the weights: Gaussian post-distributions and the information Lagrangian.

Achille, Paolini & Soatto, "Where is the information in a deep neural network?" (arXiv 1905.12213),
Definition 2.1: for a pre-distribution (prior) ``P = N(w0, lambda^2 I)`` chosen before the data and
a post-distribution ``Q = N(mean, diag variance)``, the information Lagrangian is

    C_beta(Q) = E_{w ~ Q}[L_D(w)] + beta KL(Q || P),

and the information in the weights is ``KL(Q* || P)`` at its minimiser (science.md §2.2). Two ways
to get it here:

* closed form around a minimum ``w*`` from a curvature diagonal ``h`` (Fisher or Hessian diagonal),
  science.md §2.6 (corrected form): ``Sigma* = beta / (h + beta/lambda^2)`` and
  ``KL(Q*||P) = ||w* - w0||^2/(2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta)``,
  ``g(s) = log(1+s) - s/(1+s)``; `gaussian_information`, `information_per_weight`,
  `optimal_posterior_variance`, `optimal_lagrangian`. ``paper_convention=True`` reproduces Eq. (8)
  as printed (``Sigma* = (beta/2)(H + beta/(2 lambda^2))^-1``; its KL is off by ``k/2``) for
  comparison;
* a variational fit of the mean and the per-weight log-variance by stochastic gradient on ``C_beta``
  with the reparameterisation trick (Kingma & Welling 2014; Blundell et al. 2015),
  `information_lagrangian_fit`, an ``init``/``update`` pair run by the `fit` driver (one
  `lax.scan`). It is built on `gaussian_posterior_fit`, which takes any penalty of the KL (the
  Dziugaite-Roy PAC-Bayes objective in `infojax.weights.pac_bayes` is another).

Conventions. All quantities are in nats. Curvature, loss and ``beta`` must share one convention
(science.md §0.2, §13.4): with the **mean** loss ``L_D = (1/N) sum_i l_i`` the curvature is the
Hessian of the mean loss (``~ F``, the per-example Fisher); with the **summed** loss it is
``~ N F``. The closed forms are invariant under the joint rescaling, so they need no
``reduction``; `convert_beta` moves ``beta`` between conventions (``beta_mean = beta_sum / N``;
the PAC-Bayes ``beta`` of the Achille-Soatto linear bound is ``N beta_mean = beta_sum``).

Per-weight values (pytrees like ``params``) aggregate with `sum_per_leaf` (per parameter tensor),
`sum_per_filter` (per output unit / filter: all axes but the last of a Dense or Conv kernel) and
``ij.fisher.per_layer`` (per layer): "where is the information".
"""

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infojax import info
from infojax._validation import host_value

REDUCTIONS = ("mean", "sum")

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch], jax.Array]
PenaltyFn = Callable[[jax.Array, jax.Array], jax.Array]


# ----------------------------------------------------------------------------------------------
# Validation helpers (public: `infojax.tasks.distance` validates its arguments with them).
# ----------------------------------------------------------------------------------------------


def positive_scalar(name: str, value) -> jax.Array:
  """``value`` as a floating scalar array, checked to be positive when it is concrete.

  Args:
    name: the argument's name, for the error message.
    value: a number or a 0-d array (a tracer is accepted and not checked).

  Returns:
    A 0-d floating array (integers are cast to the default float dtype).

  Raises:
    ValueError: if ``value`` is not a scalar, or is concrete and not ``> 0``.
  """
  value = jnp.asarray(value)
  if value.ndim != 0:
    raise ValueError(f"{name} must be a scalar; got shape {value.shape}.")
  if not jnp.issubdtype(value.dtype, jnp.floating):
    value = value.astype(jnp.result_type(float))
  host = host_value(value)
  if host is not None and not host > 0:
    raise ValueError(f"{name} must be positive; got {host}.")
  return value


def check_like(name: str, tree, reference_name: str, reference) -> None:
  """Checks that ``tree`` has the structure and leaf shapes of ``reference``.

  Args:
    name, reference_name: the two arguments' names, for the error message.
    tree, reference: pytrees of arrays.

  Raises:
    ValueError: naming the first leaf whose shape differs, or the two structures.
  """
  if jax.tree.structure(tree) != jax.tree.structure(reference):
    raise ValueError(
        f"{name} must have the pytree structure of {reference_name}; got "
        f"{jax.tree.structure(tree)} vs {jax.tree.structure(reference)}.")
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  for (path, leaf), ref in zip(leaves, jax.tree.leaves(reference)):
    if jnp.shape(leaf) != jnp.shape(ref):
      raise ValueError(
          f"{name}: leaf {jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}, but the "
          f"matching leaf of {reference_name} has shape {jnp.shape(ref)}.")


def _check_curvature(curvature, params=None) -> None:
  """Checks that ``curvature`` is non-negative (when concrete) and shaped like ``params``."""
  if params is not None:
    check_like("curvature", curvature, "params", params)
  for path, leaf in jax.tree_util.tree_leaves_with_path(curvature):
    host = host_value(leaf)
    if host is not None and host.size and not np.all(host >= 0):
      raise ValueError(
          f"curvature must be non-negative (a Fisher diagonal, or a Hessian diagonal at a "
          f"minimum; clip negative entries at 0 if intended); leaf {jax.tree_util.keystr(path)} "
          f"has minimum {host.min()}.")


def prior_mean_tree(prior_mean, params):
  """The prior mean as a pytree like ``params``.

  Args:
    prior_mean: ``None`` (zeros) or a pytree with the structure and leaf shapes of ``params``
      (checked by `check_like`).
    params: the reference pytree.

  Returns:
    ``prior_mean``, or zeros like ``params``.
  """
  if prior_mean is None:
    return jax.tree.map(jnp.zeros_like, params)
  check_like("prior_mean", prior_mean, "params", params)
  return prior_mean


def _check_count(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _check_reduction(name: str, reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(f"{name} must be one of {REDUCTIONS}; got {reduction!r}.")


# ----------------------------------------------------------------------------------------------
# Conventions and aggregation.
# ----------------------------------------------------------------------------------------------


def convert_beta(beta, *, num_examples: Optional[int] = None, from_reduction: str,
                 to_reduction: str):
  """Expresses the Lagrangian's ``beta`` for a data loss with another reduction.

  ``C = L_mean + beta_mean KL`` and ``C = L_sum + beta_sum KL`` (``L_sum = N L_mean``) have the same
  minimiser iff ``beta_sum = N beta_mean`` (science.md §0.2). The PAC-Bayes ``beta`` of the
  Achille-Soatto bound ``E_Q L_D + (beta/N) KL`` (mean loss) is the ``"sum"`` one.

  Args:
    beta: the trade-off under ``from_reduction`` (scalar or array).
    num_examples: N, needed when the two reductions differ.
    from_reduction, to_reduction: ``"mean"`` or ``"sum"``.

  Returns:
    ``beta`` under ``to_reduction``.
  """
  _check_reduction("from_reduction", from_reduction)
  _check_reduction("to_reduction", to_reduction)
  if from_reduction == to_reduction:
    return beta
  if num_examples is None or isinstance(num_examples, bool) or int(num_examples) != num_examples \
      or num_examples < 1:
    raise ValueError(f"num_examples must be a positive integer to convert beta from "
                     f"{from_reduction!r} to {to_reduction!r}; got {num_examples!r}.")
  return beta * num_examples if to_reduction == "sum" else beta / num_examples


def sum_per_leaf(tree):
  """Sums each leaf of a per-weight pytree (per-tensor totals, e.g. the information per kernel)."""
  return jax.tree.map(jnp.sum, tree)


def sum_per_filter(tree):
  """Sums each leaf over all axes but the last, i.e. per output unit of a Dense or Conv kernel.

  Leaves of rank 0 or 1 (biases, scales) are returned unchanged.

  Returns:
    A pytree like ``tree`` with leaves of shape ``(leaf.shape[-1],)`` (or unchanged).
  """
  return jax.tree.map(
      lambda x: jnp.sum(x, axis=tuple(range(x.ndim - 1))) if x.ndim > 1 else x, tree)


def total(tree) -> jax.Array:
  """The sum of all entries of a pytree (e.g. the total information in the weights)."""
  return sum(jnp.sum(leaf) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------------------
# Closed forms around a minimum (science.md §2.6).
# ----------------------------------------------------------------------------------------------

# g(s) = sum_{n >= 2} (-1)^n (n - 1)/n s^n; used below _SERIES_BELOW, where log1p(s) - s/(1+s)
# cancels. Truncation error relative to g: about 1.8 s^7 (2e-14 at the threshold).
_SERIES_BELOW = 1e-2
_SERIES_COEFFICIENTS = tuple((-1) ** n * (n - 1) / n for n in range(2, 9))


@jax.jit
def information_per_direction(signal_to_prior):
  """The information ``g(s)/2`` of one curvature direction, ``g(s) = log(1+s) - s/(1+s)``, in nats.

  ``s = lambda^2 h / beta`` is the curvature in units of the prior's: the corrected Gaussian
  information in the weights is ``||w* - w0||^2 / (2 lambda^2) + sum_j g(s_j)/2`` (science.md §2.6).
  ``g(0) = 0``, ``g(s) ~ s^2/2`` for small s (flat directions cost nothing), and
  ``g(s)/2 ~ log(s)/2 - 1/2`` for large s. Computed by its power series for ``s < 1e-2`` and with
  ``log1p`` above, so it is accurate to rounding over the whole range, finite for huge s.

  Args:
    signal_to_prior: ``s >= 0``, any shape.

  Returns:
    ``g(s)/2``, same shape.
  """
  s = jnp.asarray(signal_to_prior)
  if not jnp.issubdtype(s.dtype, jnp.floating):
    s = s.astype(jnp.result_type(float))
  small = s < _SERIES_BELOW
  s_small = jnp.where(small, s, 0.0)
  series = jnp.zeros_like(s_small)
  for coefficient in reversed(_SERIES_COEFFICIENTS):
    series = coefficient + s_small * series
  s_large = jnp.where(small, 1.0, s)
  direct = jnp.log1p(s_large) - s_large / (1.0 + s_large)
  return 0.5 * jnp.where(small, jnp.square(s_small) * series, direct)


def optimal_posterior_variance(curvature, *, beta, prior_variance, paper_convention: bool = False):
  """The variances ``Sigma*`` of the optimal Gaussian post-distribution around a minimum.

  Corrected (science.md §2.6): ``Sigma*_j = beta / (h_j + beta / lambda^2)``, exactly the Gibbs
  covariance ``(H/beta + I/lambda^2)^-1`` of the quadratic problem. ``paper_convention=True`` gives
  Eq. (8) as printed, ``(beta/2) / (h_j + beta/(2 lambda^2))`` (the Taylor term's 1/2 dropped).

  Args:
    curvature: ``h``, a pytree of non-negative curvature diagonals (Fisher or Hessian diagonal, in
      the convention of ``beta``).
    beta: the Lagrangian's trade-off, > 0.
    prior_variance: ``lambda^2 > 0``, the variance of the isotropic prior.
    paper_convention: use the printed Eq. (8).

  Returns:
    A pytree like ``curvature``.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  _check_curvature(curvature)
  scale = 2.0 if paper_convention else 1.0
  return _optimal_posterior_variance(curvature, beta, prior_variance, scale)


@jax.jit
def _optimal_posterior_variance(curvature, beta, prior_variance, scale):
  return jax.tree.map(lambda h: beta / (scale * h + beta / prior_variance), curvature)


def information_per_weight(curvature, params, *, beta, prior_variance, prior_mean=None,
                           paper_convention: bool = False):
  """Each weight's share of ``KL(Q* || P)`` at the optimal Gaussian around a minimum, in nats.

  Corrected (science.md §2.6): ``(w_j - w0_j)^2 / (2 lambda^2) + g(s_j)/2`` with
  ``s_j = lambda^2 h_j / beta``. With ``paper_convention=True``, the per-weight terms of Eq. (8) as
  printed: ``log(1 + 2 s_j)/2 - 1 + (Sigma_j + (w_j - w0_j)^2) / (2 lambda^2)`` with the printed
  ``Sigma_j``; it is ``-1/2`` for a flat direction (the printed ``-k`` should be ``-k/2``).

  Args:
    curvature: ``h``, a pytree like ``params`` of non-negative curvature diagonals.
    params: ``w*``, the minimum (the mean of ``Q*``).
    beta: the trade-off, > 0, in the convention of ``curvature``.
    prior_variance: ``lambda^2 > 0``.
    prior_mean: ``w0``, a pytree like ``params`` (e.g. the initialisation); ``None`` for zero.
    paper_convention: use the printed Eq. (8).

  Returns:
    A pytree like ``params``; its total is `gaussian_information`. Aggregate with `sum_per_leaf`,
    `sum_per_filter` or ``ij.fisher.per_layer``.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  _check_curvature(curvature, params)
  prior_mean = prior_mean_tree(prior_mean, params)
  return _information_per_weight(curvature, params, prior_mean, beta, prior_variance,
                                 paper_convention)


@functools.partial(jax.jit, static_argnums=5)
def _information_per_weight(curvature, params, prior_mean, beta, prior_variance, paper_convention):
  def per_weight(h, w, w0):
    s = prior_variance * h / beta
    mean_term = jnp.square(w - w0) / (2.0 * prior_variance)
    if paper_convention:
      return 0.5 * jnp.log1p(2.0 * s) - 1.0 + 0.5 / (1.0 + 2.0 * s) + mean_term
    return information_per_direction(s) + mean_term

  return jax.tree.map(per_weight, curvature, params, prior_mean)


def gaussian_information(curvature, params, *, beta, prior_variance, prior_mean=None,
                         paper_convention: bool = False, per_leaf: bool = False):
  """The Gaussian information in the weights ``KL(Q* || P)`` around a minimum, in nats.

  Achille, Paolini & Soatto (arXiv 1905.12213), Proposition 2.5 / Eq. (8), in its corrected finite-
  ``lambda`` form (science.md §2.6):
  ``KL = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j [log(1 + s_j) - s_j/(1 + s_j)]``,
  ``s_j = lambda^2 h_j / beta``. With a summed loss, ``h = N F`` and ``beta = 1`` this is the
  lecture's ``1/2 log|2 lambda^2 N F + I|`` up to the corrections; ``paper_convention=True`` returns
  Eq. (8) as printed instead.

  Args:
    curvature, params, beta, prior_variance, prior_mean, paper_convention: as in
      `information_per_weight`.
    per_leaf: return a pytree of per-leaf totals instead of the scalar total.

  Returns:
    A scalar, or with ``per_leaf`` a pytree of scalars like ``params``.

  Cost: a few element-wise operations per weight.
  """
  per_weight = information_per_weight(curvature, params, beta=beta, prior_variance=prior_variance,
                                      prior_mean=prior_mean, paper_convention=paper_convention)
  return sum_per_leaf(per_weight) if per_leaf else total(per_weight)


def expected_loss_quadratic(loss_at_minimum, curvature, posterior_variance):
  """``E_Q L = L(w*) + 1/2 sum_j h_j Sigma_j`` for ``Q = N(w*, diag Sigma)`` and a quadratic loss.

  Exact for ``L(w) = L(w*) + 1/2 (w - w*)^T diag(h) (w - w*)``; the second-order approximation
  otherwise (science.md §2.6, with the 1/2 that Eq. (8) drops).

  Args:
    loss_at_minimum: ``L(w*)``, a scalar.
    curvature: ``h``, a pytree.
    posterior_variance: ``Sigma``, a pytree like ``curvature``.

  Returns:
    A scalar.
  """
  check_like("posterior_variance", posterior_variance, "curvature", curvature)
  return _expected_loss_quadratic(loss_at_minimum, curvature, posterior_variance)


@jax.jit
def _expected_loss_quadratic(loss_at_minimum, curvature, posterior_variance):
  return loss_at_minimum + 0.5 * total(jax.tree.map(jnp.multiply, curvature, posterior_variance))


def quadratic_lagrangian(loss_at_minimum, curvature, params, posterior_variance, *, beta,
                         prior_variance, prior_mean=None):
  """``C_beta(Q) = E_Q L + beta KL(Q || P)`` at ``Q = N(w*, diag Sigma)``, quadratic loss model.

  Evaluates the (correct) Lagrangian at any variances, e.g. to compare `optimal_posterior_variance`
  with its paper convention (science.md §15 A.2).

  Args:
    loss_at_minimum: ``L(w*)``.
    curvature: ``h``, a pytree like ``params``.
    params: ``w*``, the mean of Q.
    posterior_variance: ``Sigma``, a pytree like ``params`` (positive).
    beta, prior_variance, prior_mean: as in `information_per_weight`.

  Returns:
    A scalar.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  _check_curvature(curvature, params)
  check_like("posterior_variance", posterior_variance, "params", params)
  posterior = gaussian_posterior(params, posterior_variance)
  kl = total(kl_per_weight(posterior, prior_variance=prior_variance, prior_mean=prior_mean))
  return expected_loss_quadratic(loss_at_minimum, curvature, posterior_variance) + beta * kl


def optimal_lagrangian(loss_at_minimum, curvature, params, *, beta, prior_variance,
                       prior_mean=None):
  """The minimum over ``Sigma`` of the Lagrangian around a minimum, the Laplace "Occam factor".

  ``C*_beta = L(w*) + beta ||w* - w0||^2 / (2 lambda^2) + (beta/2) sum_j log(1 + s_j)`` with
  ``s_j = lambda^2 h_j / beta`` (science.md §2.6), attained at `optimal_posterior_variance`.

  Args:
    loss_at_minimum, curvature, params, beta, prior_variance, prior_mean: as in
      `quadratic_lagrangian`.

  Returns:
    A scalar.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  _check_curvature(curvature, params)
  prior_mean = prior_mean_tree(prior_mean, params)
  return _optimal_lagrangian(loss_at_minimum, curvature, params, prior_mean, beta, prior_variance)


@jax.jit
def _optimal_lagrangian(loss_at_minimum, curvature, params, prior_mean, beta, prior_variance):
  distance = total(jax.tree.map(lambda w, w0: jnp.square(w - w0), params, prior_mean))
  log_det = total(jax.tree.map(lambda h: jnp.log1p(prior_variance * h / beta), curvature))
  return loss_at_minimum + beta * distance / (2.0 * prior_variance) + 0.5 * beta * log_det


# ----------------------------------------------------------------------------------------------
# Diagonal Gaussian post-distributions over a parameter pytree.
# ----------------------------------------------------------------------------------------------


class GaussianPosterior(NamedTuple):
  """``Q = N(mean, diag exp(log_variance))`` over a parameter pytree.

  Attributes:
    mean: a pytree like ``params``.
    log_variance: a pytree like ``params``, the log of each weight's variance.
  """
  mean: Params
  log_variance: Params


def gaussian_posterior(params, variance) -> GaussianPosterior:
  """``Q = N(params, diag variance)``.

  Args:
    params: the mean, a pytree of floating arrays.
    variance: a positive scalar (the same for every weight) or a pytree like ``params``.

  Returns:
    A `GaussianPosterior` with ``log_variance`` in the dtype of each leaf.
  """
  if jax.tree_util.treedef_is_leaf(jax.tree.structure(variance)) and jnp.ndim(variance) == 0:
    variance = positive_scalar("variance", variance)
    log_variance = jax.tree.map(lambda w: jnp.full_like(w, jnp.log(variance)), params)
  else:
    check_like("variance", variance, "params", params)
    for leaf in jax.tree.leaves(variance):
      host = host_value(leaf)
      if host is not None and not np.all(host > 0):
        raise ValueError(
            f"variance must be positive in every entry; got a minimum of {host.min()}.")
    log_variance = jax.tree.map(lambda v, w: jnp.log(v).astype(w.dtype), variance, params)
  return GaussianPosterior(mean=params, log_variance=log_variance)


def kl_per_weight(posterior: GaussianPosterior, *, prior_variance, prior_mean=None):
  """Each weight's term of ``KL(Q || N(w0, lambda^2 I))`` for a diagonal Gaussian Q, in nats.

  Args:
    posterior: a `GaussianPosterior`.
    prior_variance: ``lambda^2 > 0``, a scalar.
    prior_mean: ``w0``, a pytree like ``posterior.mean``; ``None`` for zero.

  Returns:
    A pytree like ``posterior.mean``; `total` gives ``KL(Q || P)``.
  """
  prior_variance = positive_scalar("prior_variance", prior_variance)
  check_like("posterior.log_variance", posterior.log_variance, "posterior.mean", posterior.mean)
  prior_mean = prior_mean_tree(prior_mean, posterior.mean)
  return _kl_per_weight(posterior, prior_mean, prior_variance)


@jax.jit
def _kl_per_weight(posterior, prior_mean, prior_variance):
  log_prior_variance = jnp.log(prior_variance)
  return jax.tree.map(
      lambda m, lv, m0: info.gaussian_kl_elementwise(m, lv, m0, log_prior_variance).astype(m.dtype),
      posterior.mean, posterior.log_variance, prior_mean)


def sample_weights(key: jax.Array, posterior: GaussianPosterior):
  """One draw ``w = mean + exp(log_variance / 2) * eps``, ``eps ~ N(0, I)`` (reparameterised).

  Differentiable in ``posterior`` (the reparameterisation trick, Kingma & Welling 2014).

  Args:
    key: a PRNG key; leaf i uses ``jax.random.split(key, num_leaves)[i]``.
    posterior: a `GaussianPosterior`.

  Returns:
    A pytree like ``posterior.mean``.
  """
  leaves, treedef = jax.tree.flatten(posterior.mean)
  keys = jax.random.split(key, len(leaves))
  noise = [jax.random.normal(k, jnp.shape(m), jnp.result_type(m)) for k, m in zip(keys, leaves)]
  return jax.tree.map(lambda m, lv, e: m + jnp.exp(0.5 * lv) * e, posterior.mean,
                      posterior.log_variance, jax.tree.unflatten(treedef, noise))


def sampled_losses(loss_fn: LossFn, posterior: GaussianPosterior, batch, *, key: jax.Array,
                   num_samples: int) -> jax.Array:
  """The loss at ``num_samples`` weight draws from Q; their mean estimates ``E_{w~Q} L(w)``.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``.
    posterior: a `GaussianPosterior`.
    batch: passed to ``loss_fn`` unchanged.
    key: a PRNG key; draw i uses ``jax.random.split(key, num_samples)[i]``.
    num_samples: the number of draws.

  Returns:
    ``(num_samples,)``.

  Cost: ``num_samples`` evaluations of ``loss_fn``, run one after another (`lax.map`), so memory
  does not grow with ``num_samples``.
  """
  _check_count("num_samples", num_samples)
  keys = jax.random.split(key, num_samples)
  return jax.lax.map(lambda k: loss_fn(sample_weights(k, posterior), batch), keys)


# ----------------------------------------------------------------------------------------------
# Stochastic fits: init/update pairs and the scanned driver.
# ----------------------------------------------------------------------------------------------


class PosteriorState(NamedTuple):
  """The state of a Gaussian post-distribution fit.

  Attributes:
    posterior: the current `GaussianPosterior`.
    log_prior_variance: ``log lambda^2``, a scalar (trained only when the fit learns it).
    opt_state: the optax state of the trained variables.
    key: the PRNG key; step t draws weights with ``jax.random.fold_in(key, t)``.
    step: the number of updates done, an int32 scalar.
  """
  posterior: GaussianPosterior
  log_prior_variance: jax.Array
  opt_state: Any
  key: jax.Array
  step: jax.Array


class PosteriorFit(NamedTuple):
  """A stochastic fit of a diagonal Gaussian post-distribution, as pure functions.

  Attributes:
    init: ``init(posterior, key, *, prior_variance) -> PosteriorState``; ``posterior`` is the
      starting `GaussianPosterior` (see `gaussian_posterior`), ``prior_variance`` the (initial)
      ``lambda^2``.
    update: ``update(state, batch) -> (state, metrics)``, one optimiser step. ``metrics`` is a dict
      of scalars at the weights before the step: ``objective``, ``expected_loss`` (the Monte-Carlo
      estimate of ``E_Q L`` used in the step), ``kl`` (exact ``KL(Q || P)``) and ``prior_variance``.
    information: ``information(state) -> pytree``, each weight's term of ``KL(Q || P)`` (exact; see
      `kl_per_weight`); `total`, `sum_per_leaf` and `sum_per_filter` aggregate it.
  """
  init: Callable[..., PosteriorState]
  update: Callable[[PosteriorState, Batch], tuple]
  information: Callable[[PosteriorState], Params]


def gaussian_posterior_fit(loss_fn: LossFn, penalty_fn: PenaltyFn, *,
                           optimizer: optax.GradientTransformation, prior_mean=None,
                           num_samples: int = 1, learn_prior_variance: bool = False,
                           max_prior_variance: Optional[float] = None) -> PosteriorFit:
  """Fits ``Q = N(mean, diag variance)`` by minimising ``E_Q L + penalty_fn(KL(Q||P), lambda^2)``.

  The expectation is estimated with ``num_samples`` reparameterised weight draws per step; the KL to
  ``P = N(w0, lambda^2 I)`` is exact. The trained variables are the mean and the per-weight
  log-variance, plus ``log lambda^2`` when ``learn_prior_variance``. Local reparameterisation
  (Kingma, Salimans & Welling 2015) would need the model's layers, so it is not used: ``loss_fn`` is
  any function of the weights.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar``, the data loss (a mean over the batch), e.g.
      ``lambda p, b: jnp.mean(likelihood.nll(apply_fn(p, b[0]), b[1]))``.
    penalty_fn: ``penalty_fn(kl, prior_variance) -> scalar``, differentiable; ``beta * kl`` gives
      the information Lagrangian (`information_lagrangian_fit`).
    optimizer: an optax transformation applied to the trained variables.
    prior_mean: ``w0``, a pytree like the weights (e.g. the initialisation); ``None`` for zero.
    num_samples: weight draws per step.
    learn_prior_variance: also train ``log lambda^2`` (the Dziugaite-Roy procedure).
    max_prior_variance: with ``learn_prior_variance``, project ``lambda^2`` back to at most this
      value after each step (projected gradient), e.g. the top of a union-bound grid.

  Returns:
    A `PosteriorFit`; run it with `fit`.

  Cost per step: ``num_samples`` forward and backward passes of ``loss_fn``; memory: three
  parameter-sized pytrees plus the optimiser's state.
  """
  if not callable(loss_fn):
    raise TypeError(f"loss_fn must be callable as loss_fn(params, batch); got {loss_fn!r}.")
  if not callable(penalty_fn):
    raise TypeError(f"penalty_fn must be callable as penalty_fn(kl, prior_variance); got "
                    f"{penalty_fn!r}.")
  if not isinstance(optimizer, optax.GradientTransformation):
    raise TypeError(f"optimizer must be an optax.GradientTransformation; got {optimizer!r}.")
  _check_count("num_samples", num_samples)
  if max_prior_variance is not None:
    if not learn_prior_variance:
      raise ValueError("max_prior_variance applies only with learn_prior_variance=True.")
    log_max_prior_variance = jnp.log(positive_scalar("max_prior_variance", max_prior_variance))

  def trainable(posterior, log_prior_variance):
    return (posterior, log_prior_variance) if learn_prior_variance else posterior

  def information(state):
    return kl_per_weight(state.posterior, prior_variance=jnp.exp(state.log_prior_variance),
                         prior_mean=prior_mean)

  def init(posterior: GaussianPosterior, key: jax.Array, *, prior_variance) -> PosteriorState:
    if not isinstance(posterior, GaussianPosterior):
      raise TypeError("init: posterior must be a GaussianPosterior (see gaussian_posterior(params, "
                      f"variance)); got {type(posterior).__name__}.")
    check_like("posterior.log_variance", posterior.log_variance, "posterior.mean", posterior.mean)
    if prior_mean is not None:
      check_like("prior_mean", prior_mean, "posterior.mean", posterior.mean)
    dtype = jnp.result_type(*jax.tree.leaves(posterior.mean))
    log_prior_variance = jnp.log(positive_scalar("prior_variance", prior_variance)).astype(dtype)
    return PosteriorState(
        posterior=posterior, log_prior_variance=log_prior_variance,
        opt_state=optimizer.init(trainable(posterior, log_prior_variance)), key=key,
        step=jnp.zeros((), jnp.int32))

  def objective(variables, log_prior_variance, batch, key):
    if learn_prior_variance:
      posterior, log_prior_variance = variables
    else:
      posterior = variables
    prior_variance = jnp.exp(log_prior_variance)
    losses = sampled_losses(loss_fn, posterior, batch, key=key, num_samples=num_samples)
    expected_loss = jnp.mean(losses)
    kl = total(kl_per_weight(posterior, prior_variance=prior_variance, prior_mean=prior_mean))
    value = expected_loss + penalty_fn(kl, prior_variance)
    return value, {"objective": value, "expected_loss": expected_loss, "kl": kl,
                   "prior_variance": prior_variance}

  def update(state: PosteriorState, batch):
    variables = trainable(state.posterior, state.log_prior_variance)
    key = jax.random.fold_in(state.key, state.step)
    grads, metrics = jax.grad(objective, has_aux=True)(variables, state.log_prior_variance,
                                                       batch, key)
    updates, opt_state = optimizer.update(grads, state.opt_state, variables)
    variables = optax.apply_updates(variables, updates)
    if learn_prior_variance:
      posterior, log_prior_variance = variables
      if max_prior_variance is not None:
        log_prior_variance = jnp.minimum(log_prior_variance, log_max_prior_variance)
    else:
      posterior, log_prior_variance = variables, state.log_prior_variance
    return state._replace(posterior=posterior, log_prior_variance=log_prior_variance,
                          opt_state=opt_state, step=state.step + 1), metrics

  return PosteriorFit(init=init, update=update, information=information)


def information_lagrangian_fit(loss_fn: LossFn, *, beta, optimizer: optax.GradientTransformation,
                               prior_mean=None, num_samples: int = 1, reduction: str = "mean",
                               num_examples: Optional[int] = None) -> PosteriorFit:
  """The variational fit of the information Lagrangian ``C_beta = E_Q L_D + beta KL(Q || P)``.

  Achille, Paolini & Soatto (arXiv 1905.12213), Definition 2.1. ``loss_fn`` returns the mean loss;
  with ``reduction="sum"``, ``beta`` is the trade-off for the summed loss ``N L_D`` and is converted
  to ``beta / N`` (`convert_beta`): the same minimiser, and the step sizes of the mean objective.
  At the optimum, ``fit.information(state)`` is the information in the weights per weight.

  Args:
    loss_fn: ``loss_fn(params, batch) -> scalar`` mean data loss (see `gaussian_posterior_fit`).
    beta: the trade-off (> 0) under ``reduction``; may be a traced value (e.g. inside a sweep).
    optimizer: an optax transformation, e.g. ``optax.adam(1e-2)``.
    prior_mean: ``w0``; ``None`` for zero.
    num_samples: weight draws per step.
    reduction: ``"mean"`` or ``"sum"``, the loss ``beta`` refers to.
    num_examples: N, needed for ``reduction="sum"``.

  Returns:
    A `PosteriorFit` whose objective is ``E_Q L_mean + beta_mean KL``; the prior variance is fixed
    at the value given to ``init``.
  """
  _check_reduction("reduction", reduction)
  positive_scalar("beta", beta)
  beta_mean = convert_beta(beta, num_examples=num_examples, from_reduction=reduction,
                           to_reduction="mean")
  return gaussian_posterior_fit(loss_fn, lambda kl, prior_variance: beta_mean * kl,
                                optimizer=optimizer, prior_mean=prior_mean, num_samples=num_samples)


@functools.partial(jax.jit, static_argnums=0, static_argnames="num_steps")
def fit(update: Callable, state, batches, *, num_steps: Optional[int] = None):
  """Runs ``update`` steps in one compiled `lax.scan`.

  Args:
    update: ``update(state, batch) -> (state, metrics)`` (e.g. ``PosteriorFit.update``); static.
    state: the initial state.
    batches: with ``num_steps=None``, batches stacked on a leading steps axis (one step each);
      otherwise one batch used at every step (full-batch optimisation).
    num_steps: the number of steps for a single batch; ``None`` to scan over ``batches``.

  Returns:
    ``(state, metrics)`` with each metric stacked over the steps.
  """
  if num_steps is None:
    return jax.lax.scan(update, state, batches)
  _check_count("num_steps", num_steps)
  return jax.lax.scan(lambda carry, _: update(carry, batches), state, None, length=num_steps)
