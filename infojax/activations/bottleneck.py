"""The exact information bottleneck of a small discrete joint p(x, y): Blahut-Arimoto iterations.

Tishby, Pereira & Bialek (1999), "The information bottleneck method" (Allerton; arXiv
physics/0004057; science.md §8): find the encoder ``q(t|x)`` minimising
``L = I(X;T) - beta I(T;Y)`` (Tishby's convention: ``beta`` weighs the relevant information; the
lecture's ``H(y|z) + beta I(z;x)`` has ``beta_lecture = 1 / beta``). The optimum satisfies the
self-consistent equations

    q(t|x) = p(t) exp(-beta KL[p(y|x) || p(y|t)]) / Z(x, beta),
    p(t) = sum_x p(x) q(t|x),    p(y|t) = sum_x p(y|x) q(t|x) p(x) / p(t),

and iterating them (`init` / `update`, driven by `lax.while_loop` in `blahut_arimoto`) decreases
``L`` to a local optimum; restarts from random encoders keep the lowest ``L``. The update is done in
log space (``log q(t|x) = log p(t) - beta d(x, t) - logsumexp``), so it stays exact at large
``beta``, where ``exp(-beta d)`` underflows. ``method="deterministic"`` is the deterministic IB of
Strouse & Schwab (2017), "The deterministic information bottleneck" (Neural Computation 29(6)):
``q(t|x)`` is the indicator of ``argmax_t [log p(t) - beta d(x, t)]`` and the objective is
``H(T) - beta I(T;Y)``.

All information quantities are in nats. Run in float64 (``jax_enable_x64``) for tolerances below
about 1e-6.
"""

import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp
from jax.scipy.special import xlogy

from infojax._validation import is_concrete

METHODS = ("ib", "deterministic")


class BottleneckState(NamedTuple):
  """The state of the iterations.

  Attributes:
    log_p_t_given_x: ``(X, T)`` the log encoder ``log q(t|x)``.
    change: the largest change of ``q(t|x)`` in the last update (``inf`` before the first).
    iteration: updates done.
  """
  log_p_t_given_x: jax.Array
  change: jax.Array
  iteration: jax.Array


class BottleneckResult(NamedTuple):
  """An encoder and its information plane coordinates.

  Attributes:
    p_t_given_x: ``(X, T)`` the encoder ``q(t|x)`` (rows sum to 1).
    p_t: ``(T,)`` the marginal of T.
    p_y_given_t: ``(T, Y)`` the decoder ``p(y|t)`` (rows of clusters with ``p(t) = 0`` are 0).
    i_xt: ``I(X;T)`` in nats.
    i_ty: ``I(T;Y)`` in nats.
    lagrangian: ``I(X;T) - beta I(T;Y)`` (``H(T) - beta I(T;Y)`` for the deterministic IB).
    converged: whether the last change was below ``tol``.
    num_iterations: updates done.
  """
  p_t_given_x: jax.Array
  p_t: jax.Array
  p_y_given_t: jax.Array
  i_xt: jax.Array
  i_ty: jax.Array
  lagrangian: jax.Array
  converged: jax.Array
  num_iterations: jax.Array


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}.")


def _check_joint(p_xy) -> jax.Array:
  p_xy = jnp.asarray(p_xy)
  if p_xy.ndim != 2 or min(p_xy.shape) < 1:
    raise ValueError(f"p_xy must be a joint table of shape (X, Y); got shape {p_xy.shape}.")
  if not jnp.issubdtype(p_xy.dtype, jnp.floating):
    raise TypeError(f"p_xy must be floating point; got dtype {p_xy.dtype}.")
  if is_concrete(p_xy):
    values = np.asarray(p_xy, np.float64)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
      raise ValueError("p_xy must have finite, non-negative entries.")
    total = values.sum()
    if abs(total - 1.0) > 1e-5:
      raise ValueError(f"p_xy must sum to 1 (a joint distribution); it sums to {total:.6g}.")
    if np.any(values.sum(axis=1) <= 0):
      raise ValueError("p_xy: every x must have p(x) > 0; drop the rows of zero probability.")
  return p_xy


def _check_beta(beta) -> None:
  if jnp.ndim(beta) != 0:
    raise ValueError(f"beta must be a scalar; got shape {jnp.shape(beta)}.")
  if is_concrete(beta) and not (np.isfinite(float(beta)) and float(beta) > 0):
    raise ValueError(f"beta must be a finite number > 0; got {beta!r}.")


def _check_tol(tol) -> float:
  if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)) or not (
      math.isfinite(tol) and tol >= 0):
    raise ValueError(f"tol must be a finite number >= 0; got {tol!r}.")
  return float(tol)


def _check_count(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")
  return int(value)


def _marginals(p_xy):
  p_x = jnp.sum(p_xy, axis=1)
  return p_x, p_xy / p_x[:, None]


def _decoder(p_xy, p_t_given_x):
  """``p(t)`` ``(T,)``, ``p(t, y)`` ``(T, Y)`` and ``p(y|t)`` (0 rows where ``p(t) = 0``)."""
  p_x, _ = _marginals(p_xy)
  p_t = p_x @ p_t_given_x
  p_ty = p_t_given_x.T @ p_xy
  safe = jnp.where(p_t > 0, p_t, 1.0)
  return p_t, p_ty, jnp.where((p_t > 0)[:, None], p_ty / safe[:, None], 0.0)


def _distortion(p_xy, p_y_given_t):
  """``d(x, t) = KL[p(y|x) || p(y|t)]``, ``(X, T)``; ``inf`` where ``p(y|t)`` misses ``p(y|x)``."""
  _, p_y_given_x = _marginals(p_xy)
  negative_entropy = jnp.sum(xlogy(p_y_given_x, p_y_given_x), axis=1)            # (X,)
  log_decoder = jnp.where(p_y_given_t > 0, jnp.log(jnp.where(p_y_given_t > 0, p_y_given_t, 1.0)),
                          -jnp.inf)                                             # (T, Y)
  cross = jnp.where(p_y_given_x[:, None, :] > 0,
                    p_y_given_x[:, None, :] * log_decoder[None, :, :], 0.0)      # (X, T, Y)
  return negative_entropy[:, None] - jnp.sum(cross, axis=2)


def init(p_xy, *, num_clusters: int, key, p_t_given_x=None) -> BottleneckState:
  """A random encoder (rows uniform on the simplex), or ``p_t_given_x`` if given (a warm start)."""
  p_xy = _check_joint(p_xy)
  num_clusters = _check_count("num_clusters", num_clusters)
  if p_t_given_x is None:
    # Dirichlet(1, ..., 1) rows as normalised exponentials: the same law as
    # jax.random.dirichlet, without its gamma sampler's compile time (seconds per program).
    draws = jax.random.exponential(key, (p_xy.shape[0], num_clusters), p_xy.dtype)
    p_t_given_x = draws / jnp.sum(draws, axis=1, keepdims=True)
  elif jnp.shape(p_t_given_x) != (p_xy.shape[0], num_clusters):
    raise ValueError(f"p_t_given_x must have shape (X, T) = ({p_xy.shape[0]}, {num_clusters}); "
                     f"got {jnp.shape(p_t_given_x)}.")
  log_q = jnp.log(jnp.asarray(p_t_given_x, p_xy.dtype))
  return BottleneckState(log_q, jnp.asarray(jnp.inf, p_xy.dtype), jnp.asarray(0))


def update(state: BottleneckState, p_xy, beta, *, method: str = "ib") -> BottleneckState:
  """One pass of the self-consistent equations (science.md §8.2-8.3), in log space."""
  q = jnp.exp(state.log_p_t_given_x)
  p_t, _, p_y_given_t = _decoder(p_xy, q)
  log_p_t = jnp.where(p_t > 0, jnp.log(jnp.where(p_t > 0, p_t, 1.0)), -jnp.inf)
  logits = log_p_t[None, :] - beta * _distortion(p_xy, p_y_given_t)
  if method == "deterministic":
    best = jnp.argmax(logits, axis=1)
    log_q = jnp.where(jnp.arange(q.shape[1])[None, :] == best[:, None], 0.0, -jnp.inf)
  else:
    log_q = logits - logsumexp(logits, axis=1, keepdims=True)
  change = jnp.max(jnp.abs(jnp.exp(log_q) - q))
  return BottleneckState(log_q.astype(q.dtype), change, state.iteration + 1)


def _result(p_xy, state: BottleneckState, beta, method: str, tol) -> BottleneckResult:
  q = jnp.exp(state.log_p_t_given_x)
  p_x, _ = _marginals(p_xy)
  p_t, p_ty, p_y_given_t = _decoder(p_xy, q)
  p_y = jnp.sum(p_xy, axis=0)
  p_xt = p_x[:, None] * q
  i_xt = jnp.sum(xlogy(p_xt, p_xt)) - jnp.sum(xlogy(p_x, p_x)) - jnp.sum(xlogy(p_t, p_t))
  i_ty = jnp.sum(xlogy(p_ty, p_ty)) - jnp.sum(xlogy(p_t, p_t)) - jnp.sum(xlogy(p_y, p_y))
  compression = -jnp.sum(xlogy(p_t, p_t)) if method == "deterministic" else i_xt
  return BottleneckResult(q, p_t, p_y_given_t, i_xt, i_ty, compression - beta * i_ty,
                          state.change <= tol, state.iteration)


def _solve(p_xy, beta, key, initial, *, num_clusters, tol, max_iter, method):
  state = init(p_xy, num_clusters=num_clusters, key=key, p_t_given_x=initial)
  state = lax.while_loop(lambda s: (s.iteration < max_iter) & (s.change > tol),
                         lambda s: update(s, p_xy, beta, method=method), state)
  return _result(p_xy, state, beta, method, tol)


def _best(results: BottleneckResult) -> BottleneckResult:
  best = jnp.argmin(results.lagrangian)
  return jax.tree.map(lambda x: x[best], results)


def blahut_arimoto(p_xy, *, beta, num_clusters: int, key, tol: float = 1e-10,
                   max_iter: int = 10_000, restarts: int = 1, method: str = "ib",
                   p_t_given_x: Optional[jax.Array] = None) -> BottleneckResult:
  """The information bottleneck encoder of ``p_xy`` at ``beta``, by iterating its equations.

  Args:
    p_xy: ``(X, Y)`` a joint distribution (non-negative, summing to 1, every ``p(x) > 0``).
    beta: ``> 0``, the weight of ``I(T;Y)`` in ``I(X;T) - beta I(T;Y)``; may be traced (``vmap``
      over it: `ib_curve`).
    num_clusters: ``|T|``.
    key: the PRNG key of the random initial encoders.
    tol: stop when no entry of ``q(t|x)`` changes by more than this.
    max_iter: the most updates per restart.
    restarts: random initial encoders, run in one ``vmap``; the lowest Lagrangian is kept.
    method: ``"ib"`` (Tishby et al.) or ``"deterministic"`` (Strouse & Schwab).
    p_t_given_x: an ``(X, T)`` initial encoder (a warm start) instead of random ones; with it,
      ``restarts`` must be 1.

  Returns:
    A `BottleneckResult` (nats).

  Cost: ``O(X T Y)`` per update, ``restarts x`` at most ``max_iter`` updates. ``jit`` and ``vmap``
  compose (``num_clusters``, ``max_iter``, ``restarts``, ``method`` static).
  """
  _check_method(method)
  p_xy = _check_joint(p_xy)
  _check_beta(beta)
  num_clusters = _check_count("num_clusters", num_clusters)
  restarts = _check_count("restarts", restarts)
  max_iter = _check_count("max_iter", max_iter)
  tol = _check_tol(tol)
  if p_t_given_x is not None and restarts != 1:
    raise ValueError("p_t_given_x is one warm start; use restarts=1 with it.")
  options = dict(num_clusters=num_clusters, tol=tol, max_iter=max_iter, method=method)
  if p_t_given_x is not None:
    return _solve(p_xy, beta, key, p_t_given_x, **options)
  keys = jax.random.split(key, restarts)
  return _best(jax.vmap(lambda k: _solve(p_xy, beta, k, None, **options))(keys))


def ib_curve(p_xy, betas, *, num_clusters: int, key, tol: float = 1e-10, max_iter: int = 10_000,
             restarts: int = 1, method: str = "ib", anneal: bool = False,
             anneal_noise: float = 1e-2) -> BottleneckResult:
  """The IB curve: `blahut_arimoto` at every ``beta`` of ``betas``, as one compiled program.

  Args:
    p_xy, num_clusters, tol, max_iter, restarts, method: as in `blahut_arimoto`.
    betas: ``(B,)`` values of ``beta``.
    key: the PRNG key (each ``beta`` gets its own).
    anneal: ``False``: every ``beta`` from random encoders, all in one ``vmap``. ``True``:
      deterministic annealing in the order of ``betas`` (a ``lax.scan``): each ``beta`` starts
      from the previous solution mixed with ``anneal_noise`` of a random encoder (the noise lets
      clusters split at phase transitions), and also from ``restarts`` random encoders.
    anneal_noise: the weight of the random encoder in a warm start.

  Returns:
    A `BottleneckResult` whose fields have a leading axis B.
  """
  _check_method(method)
  p_xy = _check_joint(p_xy)
  betas = jnp.asarray(betas, p_xy.dtype)
  if betas.ndim != 1 or betas.shape[0] < 1:
    raise ValueError(f"betas must be a non-empty vector; got shape {betas.shape}.")
  if is_concrete(betas) and not np.all(np.asarray(betas) > 0):
    raise ValueError("betas must all be > 0.")
  options = dict(num_clusters=num_clusters, tol=tol, max_iter=max_iter, restarts=restarts,
                 method=method)
  first_key, key = jax.random.split(key)
  keys = jax.random.split(key, betas.shape[0])
  if not anneal:
    return jax.vmap(lambda b, k: blahut_arimoto(p_xy, beta=b, key=k, **options))(betas, keys)
  single = dict(options, restarts=1)

  def step(previous, inputs):
    beta, k = inputs
    noise_key, start_key, fresh_key = jax.random.split(k, 3)
    noise = jax.random.dirichlet(noise_key, jnp.ones(num_clusters, p_xy.dtype),
                                 (p_xy.shape[0],))
    warm = blahut_arimoto(p_xy, beta=beta, key=start_key,
                          p_t_given_x=(1 - anneal_noise) * previous + anneal_noise * noise,
                          **single)
    fresh = blahut_arimoto(p_xy, beta=beta, key=fresh_key, **options)
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), warm, fresh)
    best = _best(both)
    return best.p_t_given_x, best

  first = jax.random.dirichlet(first_key, jnp.ones(num_clusters, p_xy.dtype), (p_xy.shape[0],))
  _, results = lax.scan(step, first, (betas, keys))
  return results


# ----------------------------------------------------------------------------------------------
# The maximal correlation of a discrete joint: where the trivial encoder stops being a minimum.
# ----------------------------------------------------------------------------------------------


def maximal_correlation(p_xy) -> jax.Array:
  """The Hirschfeld-Gebelein-Renyi maximal correlation ``rho_m(X;Y)`` of a discrete joint.

  ``rho_m = sup corr(f(X), g(Y))`` over real functions, the second singular value of
  ``B[x, y] = p(x, y) / sqrt(p(x) p(y))`` (the first is 1, with singular vectors ``sqrt(p(x))``
  and ``sqrt(p(y))``), computed as the spectral norm of ``B - sqrt(p_x) sqrt(p_y)^T``
  (Witsenhausen 1975, "On sequences of pairs of dependent random variables", SIAM J. Appl. Math.).

  Its use here: expanding ``I(X;T) - beta I(T;Y)`` to second order around the trivial encoder
  ``q(t|x) = q(t)`` gives ``E f^2 - beta E[E[f|Y]^2]`` per cluster, for zero-mean ``f(x)``, and
  ``sup E[E[f|Y]^2] / E f^2 = rho_m^2``; so the trivial encoder is a local minimum for
  ``beta < 1 / rho_m^2`` and a saddle above it. ``1 / rho_m^2`` is the IB-learnability threshold
  of Wu, Fischer, Chuang & Tegmark (2019), "Learnability for the information bottleneck" (UAI;
  science.md §8.5: ``1 / (1 - 2 e)^2`` for the binary symmetric pair); the global onset of a
  non-trivial optimum can lie below it where the strong data-processing constant of the joint
  exceeds ``rho_m^2``.

  Args:
    p_xy: ``(X, Y)`` a joint distribution (as in `blahut_arimoto`; columns with ``p(y) = 0`` are
      allowed).

  Returns:
    ``rho_m`` in ``[0, 1]`` (0 for independent variables or ``min(X, Y) = 1``).

  Cost: one SVD of an ``X x Y`` matrix, ``O(X Y min(X, Y))``. ``jit`` and ``vmap`` compose.
  """
  p_xy = _check_joint(p_xy)
  p_x, p_y = jnp.sum(p_xy, axis=1), jnp.sum(p_xy, axis=0)
  root_y = jnp.sqrt(p_y)
  safe_root_y = jnp.where(root_y > 0, root_y, 1.0)
  scaled = p_xy / jnp.sqrt(p_x)[:, None] / safe_root_y[None, :]
  residual = scaled - jnp.sqrt(p_x)[:, None] * root_y[None, :]
  return jnp.linalg.norm(residual, ord=2)


# ----------------------------------------------------------------------------------------------
# The Gaussian information bottleneck (closed form).
# ----------------------------------------------------------------------------------------------


class GaussianIBResult(NamedTuple):
  """The optimal Gaussian IB encoder ``T = A X + xi``, ``xi ~ N(0, I)``, and its information.

  Attributes:
    projection: ``(d_x, d_x)`` the matrix ``A``: row ``i`` is ``alpha_i v_i^T`` (0 for the
      eigenvectors whose critical ``beta`` is not passed), in the order of ``eigenvalues``.
    eigenvalues: ``(d_x,)`` ``lambda_i`` of ``Sigma_{x|y} Sigma_x^{-1}``, ascending, in ``(0, 1]``.
    eigenvectors: ``(d_x, d_x)`` row ``i`` the left eigenvector ``v_i``
      (``v_i^T Sigma_{x|y} Sigma_x^{-1} = lambda_i v_i^T``), scaled so that
      ``r_i = v_i^T Sigma_x v_i = 1``.
    critical_betas: ``(d_x,)`` ``beta_i = 1 / (1 - lambda_i)`` (``inf`` where ``lambda_i = 1``;
      the ``d_x - d_y`` directions that carry nothing about ``Y`` when ``d_y < d_x`` come out of
      the eigendecomposition as ``1 - O(eps)``, so with critical betas of order ``1 / eps``).
    i_xt: ``I(X;T)`` in nats.
    i_ty: ``I(T;Y)`` in nats.
    lagrangian: ``I(X;T) - beta I(T;Y)``.
    num_active: how many rows of ``A`` are non-zero (``beta > beta_i``).
  """
  projection: jax.Array
  eigenvalues: jax.Array
  eigenvectors: jax.Array
  critical_betas: jax.Array
  i_xt: jax.Array
  i_ty: jax.Array
  lagrangian: jax.Array
  num_active: jax.Array


def _check_gaussian(cov_x, cov_xy, cov_y):
  cov_x, cov_xy, cov_y = (jnp.asarray(c) for c in (cov_x, cov_xy, cov_y))
  for name, value in (("cov_x", cov_x), ("cov_xy", cov_xy), ("cov_y", cov_y)):
    if not jnp.issubdtype(value.dtype, jnp.floating):
      raise TypeError(f"{name} must be floating point; got dtype {value.dtype}.")
  if (cov_x.ndim != 2 or cov_y.ndim != 2 or cov_x.shape[0] != cov_x.shape[1]
      or cov_y.shape[0] != cov_y.shape[1] or cov_x.shape[0] < 1 or cov_y.shape[0] < 1
      or cov_xy.shape != (cov_x.shape[0], cov_y.shape[0])):
    raise ValueError("cov_x must be (d_x, d_x), cov_y (d_y, d_y) and cov_xy (d_x, d_y); got "
                     f"{cov_x.shape}, {cov_y.shape} and {cov_xy.shape}.")
  dtype = jnp.result_type(cov_x, cov_xy, cov_y)
  cov_x, cov_xy, cov_y = (c.astype(dtype) for c in (cov_x, cov_xy, cov_y))
  if is_concrete((cov_x, cov_xy, cov_y)):
    joint = np.block([[np.asarray(cov_x, np.float64), np.asarray(cov_xy, np.float64)],
                      [np.asarray(cov_xy, np.float64).T, np.asarray(cov_y, np.float64)]])
    if not np.all(np.isfinite(joint)) or not np.allclose(joint, joint.T, rtol=1e-5, atol=1e-8):
      raise ValueError("cov_x and cov_y must be finite and symmetric.")
    if np.linalg.eigvalsh(joint)[0] <= 0:
      raise ValueError("the joint covariance [[cov_x, cov_xy], [cov_xy^T, cov_y]] must be "
                       "positive definite (so that I(X;Y) is finite).")
  return cov_x, cov_xy, cov_y


def _gaussian_spectrum(cov_x, cov_xy, cov_y):
  """``lambda`` ascending ``(d_x,)`` and left eigenvectors (rows, ``v^T Sigma_x v = 1``) of
  ``Sigma_{x|y} Sigma_x^{-1}``, from the symmetric problem ``L^-1 Sigma_{x|y} L^-T``
  (``Sigma_x = L L^T``): ``Sigma_{x|y} v = lambda Sigma_x v`` with ``v = L^-T u``."""
  cov_x_given_y = cov_x - cov_xy @ jax.scipy.linalg.cho_solve(
      jax.scipy.linalg.cho_factor(cov_y), cov_xy.T)
  chol = jnp.linalg.cholesky(cov_x)
  half = jax.scipy.linalg.solve_triangular(chol, cov_x_given_y, lower=True)
  whitened = jax.scipy.linalg.solve_triangular(chol, half.T, lower=True)
  eigenvalues, vectors = jnp.linalg.eigh(0.5 * (whitened + whitened.T))
  eigenvectors = jax.scipy.linalg.solve_triangular(chol.T, vectors, lower=False).T
  return jnp.clip(eigenvalues, 0.0, 1.0), eigenvectors


def _gaussian_solution(eigenvalues, eigenvectors, beta) -> GaussianIBResult:
  complement = 1.0 - eigenvalues
  active = beta * complement > 1.0
  safe = lambda value: jnp.where(active, value, 1.0)  # noqa: E731
  alpha = jnp.sqrt(jnp.where(active, (beta * complement - 1.0) / safe(eigenvalues), 0.0))
  i_xt = 0.5 * jnp.sum(jnp.where(
      active, jnp.log(safe((beta - 1.0) * complement / safe(eigenvalues))), 0.0))
  i_ty = i_xt - 0.5 * jnp.sum(jnp.where(active, jnp.log(safe(beta * complement)), 0.0))
  critical = jnp.where(complement > 0, 1.0 / jnp.where(complement > 0, complement, 1.0), jnp.inf)
  return GaussianIBResult(alpha[:, None] * eigenvectors, eigenvalues, eigenvectors, critical,
                          i_xt, i_ty, i_xt - beta * i_ty, jnp.sum(active))


def gaussian_ib(cov_x, cov_xy, cov_y, *, beta) -> GaussianIBResult:
  """The information bottleneck of jointly Gaussian ``(X, Y)`` at ``beta``, in closed form.

  Chechik, Globerson, Tishby & Weiss (2005), "Information bottleneck for Gaussian variables"
  (JMLR 6:165-188; science.md §8.5), with ``beta`` weighing ``I(T;Y)`` in
  ``I(X;T) - beta I(T;Y)`` as in `blahut_arimoto`. Theorem 3.1: the optimal ``T`` is the noisy
  projection ``A X + xi``, ``xi ~ N(0, I)``, whose rows are ``alpha_i v_i^T`` for the left
  eigenvectors ``v_i`` of ``Sigma_{x|y} Sigma_x^{-1}`` with eigenvalues ``lambda_1 <= lambda_2 <=
  ...``, ``alpha_i = sqrt((beta (1 - lambda_i) - 1) / (lambda_i r_i))``, ``r_i = v_i^T Sigma_x
  v_i``, for ``beta`` above the critical ``beta_i = 1 / (1 - lambda_i)``, and ``alpha_i = 0``
  below it (so ``T`` carries nothing for ``beta < beta_1``). Substituting it in
  ``I(X;T) = 1/2 log|A Sigma_x A^T + I|`` and ``I(T;Y) = I(X;T) - 1/2 log|A Sigma_{x|y} A^T + I|``
  (``A Sigma_x A^T`` and ``A Sigma_{x|y} A^T`` are diagonal in this basis) gives the paper's
  information curve (its Section 4), over the active ``i``::

      I(X;T) = 1/2 sum_i log((beta - 1)(1 - lambda_i) / lambda_i),
      I(T;Y) = I(X;T) - 1/2 sum_i log(beta (1 - lambda_i)),

  equivalently ``I(T;Y) = I(X;T) - n/2 log(prod(1 - lambda_i)^(1/n) + e^(2 I(X;T)/n)
  prod(lambda_i)^(1/n))`` for ``n`` active eigenvectors; its slope ``dI(T;Y)/dI(X;T)`` is
  ``1/beta`` and ``I(T;Y) -> I(X;Y) = -1/2 sum_i log lambda_i`` as ``beta -> inf``. The paper's
  printed ``I(X;T)`` was not read; the form above follows from Theorem 3.1 (a third-party summary
  quotes Theorem 3.1 with these ``alpha_i``, ``r_i`` and ``beta_i``; the tests check all of it
  against Gaussian log-determinants).

  Args:
    cov_x: ``(d_x, d_x)`` ``Sigma_x``.
    cov_xy: ``(d_x, d_y)`` ``Cov(X, Y)``.
    cov_y: ``(d_y, d_y)`` ``Sigma_y``; the joint covariance must be positive definite.
    beta: ``> 0``; may be traced.

  Returns:
    A `GaussianIBResult` (nats); the eigenvectors are scaled to ``r_i = 1``.

  Cost: Cholesky factorisations, triangular solves and one symmetric eigendecomposition,
  ``O(d_x^3 + d_y^3 + d_x^2 d_y)``. ``jit`` and ``vmap`` compose (the input checks run on
  concrete values only; a traced covariance that is not positive definite gives NaNs).
  """
  cov_x, cov_xy, cov_y = _check_gaussian(cov_x, cov_xy, cov_y)
  _check_beta(beta)
  return _gaussian_solution(*_gaussian_spectrum(cov_x, cov_xy, cov_y), beta)


def gaussian_ib_curve(cov_x, cov_xy, cov_y, betas) -> GaussianIBResult:
  """`gaussian_ib` at every ``beta`` of ``betas``: the analytic Gaussian IB curve.

  Args:
    cov_x, cov_xy, cov_y: as in `gaussian_ib`.
    betas: ``(B,)`` values of ``beta > 0``.

  Returns:
    A `GaussianIBResult` whose fields have a leading axis B.

  Cost: one eigendecomposition (as `gaussian_ib`), then ``O(B d_x^2)``.
  """
  cov_x, cov_xy, cov_y = _check_gaussian(cov_x, cov_xy, cov_y)
  betas = jnp.asarray(betas, cov_x.dtype)
  if betas.ndim != 1 or betas.shape[0] < 1:
    raise ValueError(f"betas must be a non-empty vector; got shape {betas.shape}.")
  if is_concrete(betas) and not np.all(np.isfinite(np.asarray(betas)) & (np.asarray(betas) > 0)):
    raise ValueError("betas must all be finite and > 0.")
  eigenvalues, eigenvectors = _gaussian_spectrum(cov_x, cov_xy, cov_y)
  return jax.vmap(lambda beta: _gaussian_solution(eigenvalues, eigenvectors, beta))(betas)
