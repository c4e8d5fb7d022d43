"""The distance between learning tasks: the information a second task adds to the first.

Achille, Paolini, Mbeng & Soatto, "The information complexity of learning tasks, their structure
and their distance" (arXiv 1904.03292; Information and Inference 10(1), 2021), Definition 6.1 and
Corollary 4.5 (science.md §3.4): the asymmetric distance from task D1 to task D2 is

    d_beta(D1 -> D2) = I(D1 D2; w) - I(D1; w),

the information in the weights of the joint task ``D1 u D2`` (the disjoint union: one network,
inputs tagged by their task) minus that of D1. Each information is the corrected finite-``lambda``
Gaussian information of science.md §2.6 around the task's minimum ``w*``, for the prior
``P = N(w0, lambda^2 I)``:

    I(D; w) = KL(Q* || P) = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta),

``g(s) = log(1 + s) - s/(1 + s)``, ``h_j`` the eigenvalues of the curvature (Fisher or exact
Hessian) of the task's loss at ``w*``. A diagonal curvature (a pytree like ``params``) goes to
``ij.weights.gaussian_information``; a dense one (a ``(P, P)`` matrix over the parameters in
``jax.flatten_util.ravel_pytree`` order, e.g. ``ij.fisher.reference.matrix``) to
`dense_gaussian_information`, which uses its spectrum. With one network for all tasks, the joint
task's loss is the sum of the tasks' losses, so its curvature at ``w*_12`` is the sum of the tasks'
curvatures there (`joint_curvature`).

For unique optima, ``d(1->2) - d(2->1) = I(D2) - I(D1)`` and
``d(1->2) + d(2->1) = 2 I(D1 D2) - I(D1) - I(D2)``: the asymmetric part of a distance matrix is a
difference of one number per task (science.md §3.4).

The exact linear-Gaussian instance (science.md §3.4, §15 B.18): task t has targets
``y = x^T (w_shared + w_t) + noise`` with noise variance ``sigma^2`` and ``X_t^T X_t = N_t I``;
the weights are ``w = (w_shared, w_1, ..., w_T)``, the tagged parameterisation. The loss is
quadratic, so the Gibbs post-distribution ``Q* propto P exp(-L/beta)`` is exactly
``N(m, beta (H + beta/lambda^2 I)^-1)`` and the formula above is exact with ``w* = m``, the
minimiser of ``L + beta ||w||^2 / (2 lambda^2)`` (`linear_gaussian_tasks`,
`linear_gaussian_posterior_mean`). A task is then 31.058 nats from an exact copy of itself at
``N = 100``, ``k = 10``, ``lambda = 3``, ``beta = 1``: each newly curved direction costs about
``1/2 log N``.

Conventions. All values in nats. Curvature and ``beta`` are those of the **summed** loss
``sum_i -log p(y_i | x_i, w)`` (science.md §3; ``beta = 1`` gives the Bayesian posterior), so that
the joint task's curvature is the sum of the tasks'. ``ij.fisher`` returns curvatures of the mean
loss: multiply a task's by its number of examples N first.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import flatten_util

from infojax._validation import host_value
from infojax.weights import posterior
from infojax.weights.posterior import check_like
from infojax.weights.posterior import positive_scalar
from infojax.weights.posterior import prior_mean_tree


class LinearGaussianTasks(NamedTuple):
  """The summed-loss quadratic of each task of the linear-Gaussian instance.

  Task t's loss is ``L_t(w) = 1/2 w^T H_t w - b_t^T w + const`` over the tagged weights
  ``w = (w_shared, w_1, ..., w_T)``, each block of ``k`` entries (``P = (T + 1) k``).

  Attributes:
    curvature: ``(T, P, P)``, ``H_t = Z_t^T Z_t / sigma^2`` (Hessian = Fisher), ``Z_t`` the tagged
      inputs of task t.
    correlation: ``(T, P)``, ``b_t = Z_t^T y_t / sigma^2``.
  """
  curvature: jax.Array
  correlation: jax.Array


# ----------------------------------------------------------------------------------------------
# The information of one task.
# ----------------------------------------------------------------------------------------------


def _num_params(params) -> int:
  return sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(params))


def _is_dense(curvature, params) -> bool:
  """Whether ``curvature`` is a dense ``(P, P)`` matrix (else a diagonal shaped like ``params``)."""
  same_structure = jax.tree.structure(curvature) == jax.tree.structure(params)
  if same_structure and all(jnp.shape(c) == jnp.shape(w) for c, w in
                            zip(jax.tree.leaves(curvature), jax.tree.leaves(params))):
    return False
  size = _num_params(params)
  if (jax.tree_util.treedef_is_leaf(jax.tree.structure(curvature))
      and jnp.shape(curvature) == (size, size)):
    return True
  raise ValueError(
      f"curvature must be either a diagonal with the pytree structure and leaf shapes of params, "
      f"or a dense ({size}, {size}) matrix over the {size} parameters (ravel_pytree order); got "
      f"{jax.tree.map(jnp.shape, curvature)} for params {jax.tree.map(jnp.shape, params)}.")


def _check_symmetric(curvature: jax.Array, tolerance: float) -> None:
  host = host_value(curvature)
  if host is None:
    return
  asymmetry = np.max(np.abs(host - host.T), initial=0.0)
  if not asymmetry <= tolerance * np.max(np.abs(host), initial=0.0):
    raise ValueError(f"curvature must be a symmetric matrix; got max |H - H^T| = {asymmetry}.")


def dense_gaussian_information(curvature, params, *, beta, prior_variance, prior_mean=None):
  """The corrected Gaussian information in the weights ``KL(Q* || P)`` from a dense curvature.

  Science.md §2.6 with a full curvature matrix ``H``: ``Q* = N(w*, beta (H + beta/lambda^2 I)^-1)``
  and ``KL = ||w* - w0||^2 / (2 lambda^2) + 1/2 sum_j g(lambda^2 h_j / beta)`` over the eigenvalues
  ``h_j`` of ``H`` (`ij.weights.information_per_direction`). For a diagonal ``H`` it equals
  ``ij.weights.gaussian_information``.

  Args:
    curvature: ``(P, P)``, symmetric positive semi-definite, over the parameters in
      ``jax.flatten_util.ravel_pytree(params)`` order, in the convention of ``beta``. Eigenvalues
      below zero by rounding (relative to the largest, up to ``sqrt(eps)``) count as zero; a more
      negative one raises when the values are concrete (under ``jit`` they are clipped at 0).
    params: ``w*``, any pytree with P entries in all.
    beta: the trade-off, > 0.
    prior_variance: ``lambda^2 > 0``.
    prior_mean: ``w0``, a pytree like ``params``; ``None`` for zero.

  Returns:
    A scalar, in nats.

  Cost: one symmetric eigendecomposition, ``O(P^3)`` time, ``O(P^2)`` memory.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  prior_mean = prior_mean_tree(prior_mean, params)
  flat_params, _ = flatten_util.ravel_pytree(params)
  flat_prior_mean, _ = flatten_util.ravel_pytree(prior_mean)
  curvature = jnp.asarray(curvature)
  size = flat_params.shape[0]
  if curvature.shape != (size, size):
    raise ValueError(f"curvature must be a ({size}, {size}) matrix over the {size} entries of "
                     f"params; got shape {curvature.shape}.")
  if not jnp.issubdtype(curvature.dtype, jnp.floating):
    curvature = curvature.astype(jnp.result_type(float))
  tolerance = float(np.sqrt(np.finfo(curvature.dtype).eps))
  _check_symmetric(curvature, tolerance)
  value, smallest, largest = _dense_information(curvature, flat_params, flat_prior_mean, beta,
                                                prior_variance)
  smallest, largest = host_value(smallest), host_value(largest)
  if smallest is not None and smallest < -tolerance * largest:
    raise ValueError(
        f"curvature must be positive semi-definite (a Fisher, or a Hessian at a minimum); its "
        f"smallest eigenvalue is {smallest} (largest magnitude {largest}).")
  return value


@jax.jit
def _dense_information(curvature, params, prior_mean, beta, prior_variance):
  """The information, and the smallest and largest-magnitude eigenvalues of ``curvature``."""
  eigenvalues = jnp.linalg.eigvalsh(curvature)
  signal_to_prior = prior_variance * jnp.maximum(eigenvalues, 0.0) / beta
  mean_term = jnp.sum(jnp.square(params - prior_mean)) / (2.0 * prior_variance)
  value = mean_term + jnp.sum(posterior.information_per_direction(signal_to_prior))
  return value, jnp.min(eigenvalues), jnp.max(jnp.abs(eigenvalues))


def task_information(curvature, params, *, beta, prior_variance, prior_mean=None):
  """The Gaussian information ``I(D; w) = KL(Q* || P)`` of a task, from any curvature.

  Science.md §2.6 (corrected, finite ``lambda``). A curvature with the structure and leaf shapes of
  ``params`` is a diagonal (``ij.weights.gaussian_information``); a single ``(P, P)`` array is a
  dense matrix (`dense_gaussian_information`).

  Args:
    curvature: the curvature of the task's summed loss at ``params`` (Fisher or Hessian), diagonal
      (a pytree like ``params``, non-negative) or dense (``(P, P)``, ravel_pytree order).
    params: ``w*``, the task's minimum.
    beta: the trade-off of the summed loss, > 0.
    prior_variance: ``lambda^2 > 0``.
    prior_mean: ``w0``, a pytree like ``params``; ``None`` for zero.

  Returns:
    A scalar, in nats.

  Cost: element-wise for a diagonal; ``O(P^3)`` for a dense curvature.
  """
  if _is_dense(curvature, params):
    return dense_gaussian_information(curvature, params, beta=beta, prior_variance=prior_variance,
                                      prior_mean=prior_mean)
  return posterior.gaussian_information(curvature, params, beta=beta,
                                        prior_variance=prior_variance, prior_mean=prior_mean)


# ----------------------------------------------------------------------------------------------
# The distance.
# ----------------------------------------------------------------------------------------------


def joint_curvature(*curvatures):
  """The curvature of the joint task ``D1 u D2 u ...``: the sum of the tasks' curvatures.

  With inputs tagged by task and one network, the joint summed loss is the sum of the tasks'
  losses, so at any weights its Hessian (and Fisher) is the sum of theirs. Evaluate each task's
  curvature at the joint task's minimum ``w*_12``.

  Args:
    *curvatures: one or more curvatures of one structure and shape (diagonal pytrees or dense
      matrices).

  Returns:
    Their sum, like each of them.
  """
  if not curvatures:
    raise ValueError("joint_curvature needs at least one curvature.")
  for index, curvature in enumerate(curvatures[1:], start=1):
    check_like(f"curvatures[{index}]", curvature, "curvatures[0]", curvatures[0])
  return functools.reduce(lambda a, b: jax.tree.map(jnp.add, a, b), curvatures)


def task_distance(curvature_first, params_first, curvature_joint, params_joint, *, beta,
                  prior_variance, prior_mean=None):
  """The task distance ``d_beta(D1 -> D2) = I(D1 D2; w) - I(D1; w)``, in nats.

  Achille, Paolini, Mbeng & Soatto (arXiv 1904.03292), Definition 6.1 (science.md §3.4), with the
  corrected Gaussian information of science.md §2.6 (`task_information`). Asymmetric; with the
  same joint task, ``d(1->2) - d(2->1) = I(D2) - I(D1)``. It can be negative when the joint
  minimum sits closer to the prior mean than the first task's.

  Args:
    curvature_first: the curvature of D1's summed loss at ``params_first``, diagonal (a pytree like
      the params) or dense ``(P, P)``.
    params_first: ``w*_1``, D1's minimum on the tagged parameterisation (the weights of the
      other tasks' inputs unused, e.g. at the prior mean).
    curvature_joint: the curvature of the joint task's summed loss at ``params_joint``: the sum of
      the tasks' curvatures there (`joint_curvature`).
    params_joint: ``w*_12``, the joint task's minimum, a pytree like ``params_first``.
    beta: the trade-off of the summed loss, > 0.
    prior_variance: ``lambda^2 > 0``.
    prior_mean: ``w0``, a pytree like the params; ``None`` for zero.

  Returns:
    A scalar.

  Cost: two `task_information` evaluations.
  """
  check_like("params_joint", params_joint, "params_first", params_first)
  joint = task_information(curvature_joint, params_joint, beta=beta, prior_variance=prior_variance,
                           prior_mean=prior_mean)
  first = task_information(curvature_first, params_first, beta=beta, prior_variance=prior_variance,
                           prior_mean=prior_mean)
  return joint - first


# ----------------------------------------------------------------------------------------------
# The exact linear-Gaussian instance (science.md §3.4).
# ----------------------------------------------------------------------------------------------


def linear_gaussian_tasks(task_weights, num_examples, *, noise_variance=1.0) -> LinearGaussianTasks:
  """The quadratic losses of T linear-Gaussian regression tasks on tagged inputs.

  Task t: ``y = x^T u_t + noise``, ``x in R^k``, with ``X_t^T X_t = N_t I`` and the noise-free
  targets ``y_t = X_t u_t`` (so ``X_t^T y_t = N_t u_t``); the likelihood has noise variance
  ``sigma^2``. The model is ``y = x^T (w_shared + w_t)`` (input x of task t is tagged:
  ``z = (x, 0, ..., x, ..., 0)`` with x in the shared block and block t), so
  ``H_t = (N_t / sigma^2) (e_0 + e_t)(e_0 + e_t)^T kron I_k`` and
  ``b_t = (N_t / sigma^2) (e_0 + e_t) kron u_t``. The joint task of a set of tasks has the sums of
  their ``H_t`` and ``b_t``; its minimum is `linear_gaussian_posterior_mean`.

  Args:
    task_weights: ``(T, k)``, the true weights ``u_t`` of each task.
    num_examples: ``(T,)``, positive, the examples ``N_t`` of each task.
    noise_variance: ``sigma^2 > 0``.

  Returns:
    A `LinearGaussianTasks` with ``P = (T + 1) k``, parameters ordered
    ``(w_shared, w_1, ..., w_T)``.

  Cost: ``O(T^3 k^2)`` memory for the curvatures.
  """
  task_weights = jnp.asarray(task_weights)
  if not jnp.issubdtype(task_weights.dtype, jnp.floating):
    task_weights = task_weights.astype(jnp.result_type(float))
  if task_weights.ndim != 2 or 0 in task_weights.shape:
    raise ValueError(f"task_weights must be a non-empty (num_tasks, num_inputs) array; got shape "
                     f"{task_weights.shape}.")
  num_examples = jnp.asarray(num_examples, dtype=task_weights.dtype)
  if num_examples.shape != task_weights.shape[:1]:
    raise ValueError(f"num_examples must have shape ({task_weights.shape[0]},), one count per "
                     f"task; got {num_examples.shape}.")
  host = host_value(num_examples)
  if host is not None and not np.all(host > 0):
    raise ValueError(f"num_examples must be positive; got {host}.")
  noise_variance = positive_scalar("noise_variance", noise_variance)
  return _linear_gaussian_tasks(task_weights, num_examples, noise_variance)


@jax.jit
def _linear_gaussian_tasks(task_weights, num_examples, noise_variance):
  num_tasks, num_inputs = task_weights.shape
  dtype = task_weights.dtype
  size = (num_tasks + 1) * num_inputs
  # blocks[t] = e_0 + e_{t+1}: the shared block and task t's own block.
  blocks = jnp.concatenate([jnp.ones((num_tasks, 1), dtype), jnp.eye(num_tasks, dtype=dtype)],
                           axis=1)
  scale = (num_examples / noise_variance).astype(dtype)
  identity = jnp.eye(num_inputs, dtype=dtype)
  curvature = jnp.einsum("t,ta,tb,ij->taibj", scale, blocks, blocks, identity)
  correlation = jnp.einsum("t,ta,ti->tai", scale, blocks, task_weights)
  return LinearGaussianTasks(curvature=curvature.reshape(num_tasks, size, size),
                             correlation=correlation.reshape(num_tasks, size))


def linear_gaussian_posterior_mean(curvature, correlation, *, beta, prior_variance):
  """The mean of the Gibbs post-distribution of a quadratic loss, ``(H + beta/lambda^2 I)^-1 b``.

  For ``L(w) = 1/2 w^T H w - b^T w`` and ``P = N(0, lambda^2 I)``, ``Q* propto P exp(-L/beta)`` is
  Gaussian ``N(m, beta (H + beta/lambda^2 I)^-1)`` with this mean ``m``, the minimiser of
  ``L + beta ||w||^2 / (2 lambda^2)``; `task_information` at ``(H, m)`` is then exactly
  ``KL(Q* || P)`` (science.md §2.2, §2.6).

  Args:
    curvature: ``(P, P)``, ``H``, symmetric positive semi-definite (e.g. a sum of
      `LinearGaussianTasks.curvature` entries).
    correlation: ``(P,)``, ``b``.
    beta: the trade-off of the summed loss, > 0.
    prior_variance: ``lambda^2 > 0``.

  Returns:
    ``(P,)``.

  Cost: one Cholesky factorisation, ``O(P^3)``.
  """
  beta = positive_scalar("beta", beta)
  prior_variance = positive_scalar("prior_variance", prior_variance)
  curvature = jnp.asarray(curvature)
  correlation = jnp.asarray(correlation)
  if correlation.ndim != 1 or curvature.shape != correlation.shape * 2:
    raise ValueError(f"curvature must be (P, P) and correlation (P,) with one P; got "
                     f"{curvature.shape} and {correlation.shape}.")
  return _linear_gaussian_posterior_mean(curvature, correlation, beta, prior_variance)


@jax.jit
def _linear_gaussian_posterior_mean(curvature, correlation, beta, prior_variance):
  size = correlation.shape[0]
  precision = curvature + (beta / prior_variance) * jnp.eye(size, dtype=curvature.dtype)
  return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(precision), correlation)
