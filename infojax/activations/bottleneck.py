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
    p_t_given_x = jax.random.dirichlet(key, jnp.ones(num_clusters, p_xy.dtype),
                                       (p_xy.shape[0],))
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
