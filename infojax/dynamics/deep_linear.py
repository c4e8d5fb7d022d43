"""Exact learning dynamics of deep linear networks, in closed form and by gradient descent.

Saxe, McClelland & Ganguli, "Exact solutions to the nonlinear dynamics of learning in deep linear
neural networks" (ICLR 2014, arXiv 1312.6120; science.md §10, §15 A.9). A network of ``D`` weight
matrices maps ``x -> W_D ... W_2 W_1 x`` and is trained on the squared error
``L = 1/2 E||y - W x||^2``, whose gradient depends on the data only through the input correlation
``Sigma11 = E[x x^T]`` and the input-output correlation ``Sigma31 = E[y x^T] = U S V^T``. With
whitened inputs (``Sigma11 = I``) and an aligned, balanced initialisation whose end-to-end map is
``u0 U V^T``, every mode ``alpha`` learns on its own: its strength ``u = (U^T W V)_{alpha alpha}``
follows, in time ``t`` (``t / tau = learning_rate * steps`` for full-batch gradient descent on the
mean loss),

* ``D = 1`` (shallow): ``tau du/dt = s - u``, ``u = s (1 - e^{-t/tau}) + u0 e^{-t/tau}``: one time
  constant ``tau`` for every mode (`shallow_mode_strength`);
* ``D = 2``: ``tau du/dt = 2 u (s - u)``, the sigmoid
  ``u = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)`` (`mode_strength`), learnt in a time
  ``~ (tau / 2s) ln(s / u0)``: stronger modes first (`learning_time`);
* ``D >= 1`` balanced: each of the ``D`` factors of a mode is ``a = u^{1/D}``, with
  ``tau da/dt = a^{D-1} (s - a^D)``, so ``tau du/dt = D u^{2 - 2/D} (s - u)`` (science.md §10.2
  states this, tagged as recalled, with ``N_l - 1 = D``). Gradient descent on the balanced aligned
  network is exactly the Euler discretisation of the factor equation, and the tests check that it
  converges to `mode_strength_ode` at first order in the learning rate at depth 3.

Gradient descent itself is `simulate`: one compiled ``lax.scan`` over the steps, on the correlation
matrices of a `LinearTask` (built with prescribed singular values by `linear_task`, or from data by
`task_from_data`; `task_data` realises one as a dataset), recording each mode's strength, the part
of the end-to-end map off the task's modes and the loss. `balanced_init` gives the decoupled
initialisation of the theory and `random_init` a small random one. Everything is pure and composes
with ``jit`` and ``vmap`` (over keys, initial scales and learning rates).

Networks are tuples ``(W_1, ..., W_D)`` with ``W_1`` the input layer, shape ``(hidden, n1)``,
and ``W_D`` the output layer, shape ``(n3, hidden)`` (``(n3, n1)`` for ``D = 1``).

Two pathways and a deficit (Kleinman, Achille & Soatto, "Critical Learning Periods Emerge Even in
Deep Linear Networks", ICLR 2024; science.md §1.5, §15 B.20): `hierarchical_task` (the paper's
task), `multipath_init`, `simulate_multipath` (gradient descent on the summed output of two
pathways, one of them gated during a window of steps), `deficit_sweep` (every initialisation and
window as one program), `pathway_strengths` and `pathway_imbalance`.
"""

import functools
import math
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from infojax._validation import is_concrete
from infojax.dynamics import _checks
from infojax.dynamics import loops


class LinearTask(NamedTuple):
  """The second-order statistics of a regression task ``x -> y``, all a linear network's gradient
  descent on the squared error needs.

  Attributes:
    input_correlation: ``Sigma11 = E[x x^T]``, shape ``(n1, n1)``.
    input_output_correlation: ``Sigma31 = E[y x^T]``, shape ``(n3, n1)``.
    output_correlation: ``Sigma33 = E[y y^T]``, shape ``(n3, n3)`` (only the loss's constant).
    singular_values: ``s``, shape ``(k,)``: the modes of ``Sigma31 = U diag(s) V^T`` followed.
    left: ``U``, shape ``(n3, k)``, orthonormal columns (output directions of the modes).
    right: ``V``, shape ``(n1, k)``, orthonormal columns (input directions of the modes).
  """
  input_correlation: jax.Array
  input_output_correlation: jax.Array
  output_correlation: jax.Array
  singular_values: jax.Array
  left: jax.Array
  right: jax.Array


class Trajectory(NamedTuple):
  """The end of a gradient-descent run and what was recorded along it.

  Attributes:
    weights: the final ``(W_1, ..., W_D)``.
    history: arrays with a leading axis of ``num_steps // record_every + 1`` records, the first at
      the initialisation: ``"step"`` (steps taken), ``"time"`` (``t / tau = learning_rate *
      step``), ``"strength"`` (``(R + 1, k)``, each mode's strength ``diag(U^T W V)`` of the
      end-to-end map ``W``), ``"off_mode"`` (``||W - U diag(strength) V^T||_F``, the part of the
      map outside the task's modes), ``"loss"`` (``1/2 E||y - W x||^2``) and, with
      ``record_map``, ``"map"`` (``(R + 1, n3, n1)``, ``W`` itself, e.g. for its singular values).
  """
  weights: tuple
  history: dict


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _float_dtype(*values):
  dtype = jnp.result_type(*values, 1.0)
  return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(1.0)


def _check_array(name: str, value, *, minimum: float, strict: bool):
  """``value`` as a float array; a ``ValueError`` where a concrete entry is not finite and above
  ``minimum`` (``>=`` unless ``strict``); traced values are not inspected."""
  if isinstance(value, (str, bytes)) or value is None:
    raise TypeError(f"{name} must be a number or an array of numbers; got {value!r}.")
  if is_concrete(value):
    array = np.asarray(value, dtype=np.float64)
    ok = np.isfinite(array) & ((array > minimum) if strict else (array >= minimum))
    if not np.all(ok):
      bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
      bad = array[~ok].ravel()[:3].tolist()
      raise ValueError(f"{name} must be finite and {bound}; got {bad} among its entries.")
  return value


def _check_depth(depth) -> int:
  return _checks.check_positive_int("depth", depth)


def _check_weights(task: LinearTask, weights) -> tuple:
  if not isinstance(weights, (tuple, list)) or not weights:
    raise TypeError("weights must be a non-empty tuple (W_1, ..., W_D) of matrices, the input "
                    f"layer first; got {type(weights).__name__}.")
  weights = tuple(weights)
  n3, n1 = jnp.shape(task.input_output_correlation)
  for index, w in enumerate(weights):
    if jnp.ndim(w) != 2:
      raise ValueError(f"weights[{index}] must be a matrix; got shape {jnp.shape(w)}.")
  if jnp.shape(weights[0])[1] != n1 or jnp.shape(weights[-1])[0] != n3:
    raise ValueError(f"weights must map n1 = {n1} inputs to n3 = {n3} outputs (W_1 has {n1} "
                     f"columns, W_D has {n3} rows); got shapes "
                     f"{[tuple(jnp.shape(w)) for w in weights]}.")
  for index in range(1, len(weights)):
    if jnp.shape(weights[index])[1] != jnp.shape(weights[index - 1])[0]:
      raise ValueError(f"weights[{index}] has {jnp.shape(weights[index])[1]} columns but "
                       f"weights[{index - 1}] has {jnp.shape(weights[index - 1])[0]} rows; got "
                       f"shapes {[tuple(jnp.shape(w)) for w in weights]}.")
  return weights


def _check_hidden_dim(hidden_dim, depth: int, num_modes: int) -> Optional[int]:
  if depth == 1:
    return None
  hidden_dim = _checks.check_positive_int("hidden_dim", hidden_dim)
  if hidden_dim < num_modes:
    raise ValueError(f"hidden_dim must be at least the number of modes k = {num_modes}, so that "
                     f"every mode passes through the hidden layers; got {hidden_dim}.")
  return hidden_dim


# ----------------------------------------------------------------------------------------------
# Closed forms.
# ----------------------------------------------------------------------------------------------


def _broadcast(*values):
  """Float arrays of one broadcast shape (explicit, so strict rank promotion is not tripped)."""
  dtype = _float_dtype(*values)
  arrays = [jnp.asarray(v, dtype) for v in values]
  shape = np.broadcast_shapes(*(a.shape for a in arrays))
  return [jnp.broadcast_to(a, shape) for a in arrays]


def mode_strength(t, s, u0, *, tau=1.0):
  """Saxe et al.'s closed form for one mode of a two-layer linear network (science.md §10.2).

  ``u(t) = s e^{2st/tau} / (e^{2st/tau} - 1 + s/u0)``, the solution of ``tau du/dt = 2u(s - u)``,
  ``u(0) = u0``. Evaluated as ``1 / ((2t/tau) g(x) + e^{-x} / u0)`` with ``x = 2st/tau`` and
  ``g(x) = (1 - e^{-x}) / x`` (``g(0) = 1``), which never overflows and gives the ``s = 0`` limit
  ``u0 / (1 + 2 u0 t / tau)`` exactly.

  Args:
    t: times ``>= 0`` (any shape; ``t / tau = learning_rate * steps`` for gradient descent).
    s: singular values ``>= 0`` of ``Sigma31``.
    u0: initial strengths ``> 0``.
    tau: the time constant ``> 0``.
    ``t``, ``s`` and ``u0`` broadcast against each other (numpy rules).

  Returns:
    ``u(t)``, the broadcast shape, floating.

  Raises:
    ValueError: for a negative time or singular value, a non-positive ``u0`` or ``tau``
      (checked where the values are concrete).
  """
  _check_array("t", t, minimum=0.0, strict=False)
  _check_array("s", s, minimum=0.0, strict=False)
  _check_array("u0", u0, minimum=0.0, strict=True)
  _checks.check_real("tau", tau)
  return _mode_strength(*_broadcast(t, s, u0), tau)


@jax.jit
def _mode_strength(t, s, u0, tau):
  time = t / tau
  x = 2.0 * s * time
  nonzero = x > 0
  g = jnp.where(nonzero, -jnp.expm1(-x) / jnp.where(nonzero, x, 1.0), 1.0)
  return 1.0 / (2.0 * time * g + jnp.exp(-x) / u0)


def shallow_mode_strength(t, s, u0, *, tau=1.0):
  """One mode of a shallow (single-matrix) linear network: ``s (1 - e^{-t/tau}) + u0 e^{-t/tau}``.

  The solution of ``tau du/dt = s - u`` (science.md §10.2): every mode relaxes with the same time
  constant ``tau``, whatever its singular value. Arguments, shapes and errors as `mode_strength`
  (here ``s`` may have any sign and ``u0 >= 0``).
  """
  _check_array("t", t, minimum=0.0, strict=False)
  _check_array("s", s, minimum=-math.inf, strict=True)
  _check_array("u0", u0, minimum=0.0, strict=False)
  _checks.check_real("tau", tau)
  return _shallow_mode_strength(*_broadcast(t, s, u0), tau)


@jax.jit
def _shallow_mode_strength(t, s, u0, tau):
  return -s * jnp.expm1(-t / tau) + u0 * jnp.exp(-t / tau)


def mode_strength_ode(t, s, u0, *, depth: int, tau=1.0, substeps: int = 100):
  """One mode of a balanced, aligned linear network of ``depth`` matrices, by integrating its ODE.

  ``tau du/dt = D u^{2 - 2/D} (s - u)``: with ``D`` equal factors ``a = u^{1/D}`` and
  ``tau da/dt = a^{D-1} (s - a^D)``, which is what is integrated (classical Runge-Kutta, fourth
  order, ``substeps`` steps between consecutive times). ``D = 1`` and ``D = 2`` reproduce
  `shallow_mode_strength` and `mode_strength`; for ``D >= 3`` there is no explicit solution
  (science.md §10.2 gives the ODE, tagged there as recalled; the tests check it against
  `simulate`).

  Args:
    t: times, a 1-D array ``0 <= t_0 <= t_1 <= ...``, shape ``(R,)``.
    s: singular values ``>= 0`` (any shape, broadcast with ``u0``; e.g. ``(k,)``).
    u0: initial strengths ``> 0``.
    depth: ``D >= 1``.
    tau: the time constant ``> 0``.
    substeps: Runge-Kutta steps per interval (the first interval is ``[0, t_0]``); the error is
      ``O((dt / substeps)^4)`` per unit time, with stiffness ``D s^{2 - 2/D} / tau`` near
      convergence, so keep ``D s^{2 - 2/D} dt / substeps`` well below 1.

  Returns:
    ``u(t)``, shape ``(R,) + broadcast(s, u0).shape``.

  Cost: ``R * substeps * 4`` evaluations of the right-hand side, one ``lax.scan``; ``jit`` and
  ``vmap`` compose (``depth`` and ``substeps`` are static).
  """
  depth = _check_depth(depth)
  substeps = _checks.check_positive_int("substeps", substeps)
  if jnp.ndim(t) != 1:
    raise ValueError(f"t must be a 1-D array of non-decreasing times; got shape {jnp.shape(t)}.")
  _check_array("t", t, minimum=0.0, strict=False)
  if is_concrete(t) and np.any(np.diff(np.asarray(t, np.float64)) < 0):
    raise ValueError("t must be non-decreasing.")
  _check_array("s", s, minimum=0.0, strict=False)
  _check_array("u0", u0, minimum=0.0, strict=True)
  _checks.check_real("tau", tau)
  dtype = _float_dtype(t, s, u0)
  s, u0 = _broadcast(s, u0)
  return _mode_strength_ode(jnp.asarray(t, dtype), s.astype(dtype), u0.astype(dtype), tau,
                            depth=depth, substeps=substeps)


@functools.partial(jax.jit, static_argnames=("depth", "substeps"))
def _mode_strength_ode(t, s, u0, tau, *, depth, substeps):
  dtype = t.dtype
  times = t / tau

  def rate(a):
    power = a ** (depth - 1) if depth > 1 else jnp.ones_like(a)
    return power * (s - a ** depth)

  def interval(state, end):
    a, start = state
    h = (end - start) / substeps

    def rk4(a, _):
      k1 = rate(a)
      k2 = rate(a + 0.5 * h * k1)
      k3 = rate(a + 0.5 * h * k2)
      k4 = rate(a + h * k3)
      return a + (h / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4), None

    a, _ = lax.scan(rk4, a, None, length=substeps)
    return (a, end), a ** depth

  initial = (u0 ** (1.0 / depth), jnp.zeros((), dtype))
  _, strengths = lax.scan(interval, initial, times)
  return strengths


def predicted_mode_strength(t, s, u0, *, depth: int, tau=1.0, substeps: int = 100):
  """The theory's mode strength for a network of ``depth`` matrices: `shallow_mode_strength`
  (``D = 1``), `mode_strength` (``D = 2``) or `mode_strength_ode` (``D >= 3``).

  Args:
    t: times, shape ``(R,)`` (1-D, non-decreasing).
    s, u0, tau: as in `mode_strength`; ``s`` and ``u0`` broadcast to a mode shape such as ``(k,)``.
    depth: ``D >= 1``.
    substeps: for ``D >= 3``, as in `mode_strength_ode`.

  Returns:
    shape ``(R,) + broadcast(s, u0).shape``.
  """
  depth = _check_depth(depth)
  if depth >= 3:
    return mode_strength_ode(t, s, u0, depth=depth, tau=tau, substeps=substeps)
  if jnp.ndim(t) != 1:
    raise ValueError(f"t must be a 1-D array of times; got shape {jnp.shape(t)}.")
  s, u0 = _broadcast(s, u0)
  times = jnp.reshape(jnp.asarray(t), (-1,) + (1,) * s.ndim)
  function = shallow_mode_strength if depth == 1 else mode_strength
  return function(times, s[None], u0[None], tau=tau)


def learning_time(s, u0, u_final, *, tau=1.0, depth: int = 2):
  """The time a mode takes from strength ``u0`` to ``u_final`` (science.md §10.2).

  * ``depth = 2``: ``t = (tau / 2s) ln[u_final (s - u0) / (u0 (s - u_final))]``; from a small
    ``u0`` to ``s / 2`` this is ``~ (tau / 2s) ln(s / u0)``, so the time scales as ``1/s``
    (``s = 0``: the limit ``(tau / 2)(1 / u_final - 1 / u0)``);
  * ``depth = 1``: ``t = tau ln[(s - u0) / (s - u_final)]``; to ``s / 2`` from a small ``u0``
    this is ``~ tau ln 2`` for every ``s``.

  For deeper networks integrate with `mode_strength_ode` and read the time with `crossing_time`.

  Args:
    s: singular values ``>= 0`` (``depth = 2``; any real for ``depth = 1``).
    u0: initial strengths ``> 0``.
    u_final: target strengths, between ``u0`` (included) and ``s`` (excluded), where the mode
      moves monotonically from ``u0`` towards ``s``.
    tau: the time constant ``> 0``.
    depth: 1 or 2.
    ``s``, ``u0`` and ``u_final`` broadcast against each other.

  Returns:
    The times, the broadcast shape.

  Raises:
    ValueError: for a ``u_final`` the mode never reaches, a non-positive ``u0`` or ``tau``, a
      negative ``s`` at depth 2, or a depth other than 1 or 2.
  """
  depth = _check_depth(depth)
  if depth > 2:
    raise ValueError(f"learning_time has closed forms for depth 1 and 2; got depth={depth}. For "
                     "deeper networks use mode_strength_ode and crossing_time.")
  _check_array("s", s, minimum=0.0 if depth == 2 else -math.inf, strict=depth != 2)
  _check_array("u0", u0, minimum=0.0, strict=True)
  _check_array("u_final", u_final, minimum=0.0, strict=True)
  _checks.check_real("tau", tau)
  if is_concrete((s, u0, u_final)):
    s_, u0_, uf_ = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (s, u0, u_final)))
    reachable = ((u0_ <= uf_) & (uf_ < s_)) | ((s_ < uf_) & (uf_ <= u0_))
    if not np.all(reachable):
      raise ValueError("u_final must lie between u0 (included) and s (excluded): the mode moves "
                       "monotonically from u0 towards s and never reaches s; got "
                       f"s={s!r}, u0={u0!r}, u_final={u_final!r}.")
  return _learning_time(*_broadcast(s, u0, u_final), tau, depth=depth)


@functools.partial(jax.jit, static_argnames=("depth",))
def _learning_time(s, u0, u_final, tau, *, depth):
  if depth == 1:
    return tau * (jnp.log(jnp.abs(s - u0)) - jnp.log(jnp.abs(s - u_final)))
  # ln|1 - s/u0| - ln|1 - s/u_final|, divided by 2s; log1p where s lies below both.
  small = s < jnp.minimum(u0, u_final)
  logs = jnp.where(small, jnp.log1p(-s / u0) - jnp.log1p(-s / u_final),
                   jnp.log(jnp.abs(1.0 - s / u0)) - jnp.log(jnp.abs(1.0 - s / u_final)))
  nonzero = s > 0
  general = logs / (2.0 * jnp.where(nonzero, s, 1.0))
  return tau * jnp.where(nonzero, general, 0.5 * (1.0 / u_final - 1.0 / u0))


def crossing_time(times, values, level):
  """The first time a recorded trajectory reaches ``level``, by linear interpolation.

  Args:
    times: shape ``(R,)``, increasing.
    values: shape ``(R,) + S`` (e.g. mode strengths ``(R, k)``).
    level: broadcastable to ``S`` (e.g. ``s / 2`` per mode).

  Returns:
    Shape ``S``: the interpolated time of the first record at or above ``level`` (``times[0]``
    if the first already is), ``nan`` where it is never reached. ``jit``/``vmap`` compose.
  """
  times = jnp.asarray(times)
  values = jnp.asarray(values)
  if times.ndim != 1 or values.ndim < 1 or values.shape[0] != times.shape[0]:
    raise ValueError(f"times must have shape (R,) and values (R, ...); got {times.shape} and "
                     f"{values.shape}.")
  dtype = _float_dtype(times, values, level)
  level = jnp.broadcast_to(jnp.asarray(level, dtype), values.shape[1:])
  return _crossing_time(times.astype(dtype), values.astype(dtype), level)


@jax.jit
def _crossing_time(times, values, level):
  above = values >= level[None]
  first = jnp.argmax(above, axis=0)
  reached = jnp.any(above, axis=0)
  previous = jnp.maximum(first - 1, 0)
  v1 = jnp.take_along_axis(values, first[None], axis=0)[0]
  v0 = jnp.take_along_axis(values, previous[None], axis=0)[0]
  t1, t0 = times[first], times[previous]
  step = v1 - v0
  fraction = jnp.where(step > 0, (level - v0) / jnp.where(step > 0, step, 1.0), 1.0)
  crossing = jnp.where(first == 0, times[0], t0 + jnp.clip(fraction, 0.0, 1.0) * (t1 - t0))
  return jnp.where(reached, crossing, jnp.nan)


# ----------------------------------------------------------------------------------------------
# Tasks.
# ----------------------------------------------------------------------------------------------


def _normal_matrices(key, shapes, dtype) -> list:
  """Independent standard normal matrices of the given shapes, from one draw (one threefry in the
  compiled program, which keeps compilation short)."""
  sizes = [rows * columns for rows, columns in shapes]
  flat = jax.random.normal(key, (sum(sizes),), dtype)
  offsets = np.cumsum([0] + sizes)
  return [flat[start:start + size].reshape(shape)
          for start, size, shape in zip(offsets[:-1], sizes, shapes)]


def _orthonormalise(gaussian):
  """The Q factor of a Gaussian ``(rows, columns)`` matrix with the signs fixed by ``diag R > 0``:
  Haar-distributed orthonormal columns."""
  q, r = jnp.linalg.qr(gaussian)
  return q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(q.dtype)[None, :]


def linear_task(singular_values, *, input_dim: int, output_dim: int, key,
                dtype=None) -> LinearTask:
  """A task with whitened inputs and an input-output correlation of prescribed singular values.

  ``Sigma11 = I``, ``Sigma31 = U diag(s) V^T`` with Haar-random ``U`` (``(n3, k)``) and ``V``
  (``(n1, k)``), and ``Sigma33 = Sigma31 Sigma31^T`` (the targets of `task_data`, ``y = Sigma31
  x``, so the loss reaches 0). science.md §10.3 uses ``n1 = 8, n3 = 6, s = (3, 2, 1, 0.5, 0, 0)``.

  Args:
    singular_values: ``s``, shape ``(k,)``, entries ``>= 0``, ``k <= min(n1, n3)``.
    input_dim: ``n1``.
    output_dim: ``n3``.
    key: the PRNG key of ``U`` and ``V``.
    dtype: the floating dtype (default: that of ``singular_values``, at least the default float).

  Returns:
    A `LinearTask`.
  """
  input_dim = _checks.check_positive_int("input_dim", input_dim)
  output_dim = _checks.check_positive_int("output_dim", output_dim)
  if jnp.ndim(singular_values) != 1:
    raise ValueError(f"singular_values must be a 1-D array; got shape "
                     f"{jnp.shape(singular_values)}.")
  _check_array("singular_values", singular_values, minimum=0.0, strict=False)
  num_modes = int(jnp.shape(singular_values)[0])
  if not 1 <= num_modes <= min(input_dim, output_dim):
    raise ValueError(f"the number of singular values must be between 1 and min(input_dim, "
                     f"output_dim) = {min(input_dim, output_dim)}; got {num_modes}.")
  dtype = _float_dtype(singular_values) if dtype is None else dtype
  return _linear_task(jnp.asarray(singular_values, dtype), key, input_dim=input_dim,
                      output_dim=output_dim)


@functools.partial(jax.jit, static_argnames=("input_dim", "output_dim"))
def _linear_task(s, key, *, input_dim, output_dim):
  num_modes, dtype = s.shape[0], s.dtype
  left, right = map(_orthonormalise, _normal_matrices(
      key, [(output_dim, num_modes), (input_dim, num_modes)], dtype))
  sigma31 = (left * s[None, :]) @ right.T
  return LinearTask(input_correlation=jnp.eye(input_dim, dtype=dtype),
                    input_output_correlation=sigma31, output_correlation=sigma31 @ sigma31.T,
                    singular_values=s, left=left, right=right)


def task_data(task: LinearTask, *, num_examples: int, key):
  """A dataset realising ``task`` exactly: inputs with ``X^T X / N = Sigma11`` and ``y = Sigma31
  Sigma11^{-1} x``.

  The inputs are ``sqrt(N) Q L^T`` for a Haar-random ``Q`` with orthonormal columns (``(N, n1)``)
  and ``L`` the Cholesky factor of ``Sigma11``, so the empirical correlations are the task's to
  rounding (``Sigma33`` becomes ``Sigma31 Sigma11^{-1} Sigma13``).

  Args:
    task: a `LinearTask` (``Sigma11`` positive definite).
    num_examples: ``N >= n1``.
    key: the PRNG key.

  Returns:
    ``(inputs, targets)``, shapes ``(N, n1)`` and ``(N, n3)``.
  """
  n1 = jnp.shape(task.input_correlation)[0]
  num_examples = _checks.check_positive_int("num_examples", num_examples)
  if num_examples < n1:
    raise ValueError(f"num_examples must be at least input_dim = {n1} to realise Sigma11; got "
                     f"{num_examples}.")
  return _task_data(task, key, num_examples=num_examples)


@functools.partial(jax.jit, static_argnames=("num_examples",))
def _task_data(task, key, *, num_examples):
  n1, dtype = task.input_correlation.shape[0], task.input_correlation.dtype
  (q,) = map(_orthonormalise, _normal_matrices(key, [(num_examples, n1)], dtype))
  chol = jnp.linalg.cholesky(task.input_correlation)
  inputs = jnp.sqrt(jnp.asarray(num_examples, dtype)) * q @ chol.T
  solve = jnp.linalg.solve(task.input_correlation, task.input_output_correlation.T)
  return inputs, inputs @ solve


def task_from_data(inputs, targets, *, num_modes: Optional[int] = None) -> LinearTask:
  """The `LinearTask` of a dataset: its correlations and the SVD of ``Sigma31``.

  Args:
    inputs: ``(N, n1)``.
    targets: ``(N, n3)``.
    num_modes: the ``k`` leading modes kept (default ``min(n1, n3)``).

  Returns:
    A `LinearTask` with ``Sigma11 = X^T X / N``, ``Sigma31 = Y^T X / N``, ``Sigma33 = Y^T Y / N``
    and the leading ``k`` singular triplets of ``Sigma31`` (descending). The modes decouple only
    if ``Sigma11 = I`` (whitened inputs).
  """
  if jnp.ndim(inputs) != 2 or jnp.ndim(targets) != 2 or (
      jnp.shape(inputs)[0] != jnp.shape(targets)[0]):
    raise ValueError(f"inputs and targets must be (N, n1) and (N, n3) arrays with the same N; got "
                     f"{jnp.shape(inputs)} and {jnp.shape(targets)}.")
  dtype = _float_dtype(inputs, targets)
  inputs, targets = jnp.asarray(inputs, dtype), jnp.asarray(targets, dtype)
  num_examples, n1 = inputs.shape
  n3 = targets.shape[1]
  k = min(n1, n3) if num_modes is None else _checks.check_positive_int("num_modes", num_modes)
  if k > min(n1, n3):
    raise ValueError(f"num_modes must be at most min(n1, n3) = {min(n1, n3)}; got {k}.")
  return _task_from_data(inputs, targets, num_modes=k)


@functools.partial(jax.jit, static_argnames=("num_modes",))
def _task_from_data(inputs, targets, *, num_modes):
  num_examples, k = inputs.shape[0], num_modes
  sigma31 = targets.T @ inputs / num_examples
  left, s, right_t = jnp.linalg.svd(sigma31, full_matrices=False)
  return LinearTask(input_correlation=inputs.T @ inputs / num_examples,
                    input_output_correlation=sigma31,
                    output_correlation=targets.T @ targets / num_examples,
                    singular_values=s[:k], left=left[:, :k], right=right_t[:k].T)


# ----------------------------------------------------------------------------------------------
# Networks.
# ----------------------------------------------------------------------------------------------


def balanced_init(task: LinearTask, *, depth: int, hidden_dim: Optional[int] = None, u0,
                  key=None) -> tuple:
  """The aligned, decoupled, balanced initialisation of the theory (science.md §10.2).

  With ``a = u0^{1/D}`` and ``R_l`` (``(hidden, k)``) orthonormal columns: ``W_1 = a R_1 V^T``,
  ``W_l = a R_l R_{l-1}^T`` and ``W_D = a U R_{D-1}^T``, so the end-to-end map is ``u0 U V^T``
  (every mode at strength ``u0``), consecutive layers are balanced
  (``W_{l+1}^T W_{l+1} = W_l W_l^T``) and gradient descent keeps each mode on its own. ``D = 1``:
  ``W = u0 U V^T``.

  Args:
    task: a `LinearTask`.
    depth: ``D``, the number of weight matrices (1 = shallow).
    hidden_dim: the width of the hidden layers, at least ``k``; ignored for ``D = 1``.
    u0: the initial strength of every mode, ``> 0``; may be traced (``vmap`` over it).
    key: the PRNG key of the free rotations ``R_l`` (Haar); ``None``: ``R_l`` the first ``k``
      columns of the identity. The mode strengths of `simulate` do not depend on it.

  Returns:
    ``(W_1, ..., W_D)``, the dtype of the task.
  """
  depth = _check_depth(depth)
  num_modes = int(jnp.shape(task.singular_values)[0])
  hidden_dim = _check_hidden_dim(hidden_dim, depth, num_modes)
  _checks.check_real("u0", u0)
  return _balanced_init(task, u0, key, depth=depth, hidden_dim=hidden_dim)


@functools.partial(jax.jit, static_argnames=("depth", "hidden_dim"))
def _balanced_init(task, u0, key, *, depth, hidden_dim):
  num_modes = task.singular_values.shape[0]
  dtype = task.input_output_correlation.dtype
  # One factor per mode: u0 is a scalar (`balanced_init`) or per mode, (k,) (`multipath_init`).
  a = jnp.broadcast_to(jnp.asarray(u0, dtype) ** (1.0 / depth), (num_modes,))[None, :]
  if depth == 1:
    return ((a * task.left) @ task.right.T,)
  if key is None:
    rotations = [jnp.eye(hidden_dim, num_modes, dtype=dtype)] * (depth - 1)
  else:
    rotations = [_orthonormalise(g) for g in _normal_matrices(
        key, [(hidden_dim, num_modes)] * (depth - 1), dtype)]
  outputs = rotations + [task.left]
  inputs = [task.right] + rotations
  return tuple((a * out) @ inp.T for out, inp in zip(outputs, inputs))


def random_init(task: LinearTask, *, depth: int, hidden_dim: Optional[int] = None, scale,
                key) -> tuple:
  """A small random initialisation: every entry of every ``W_l`` i.i.d. ``N(0, scale^2)``.

  Not aligned with the task's modes nor balanced; the theory of `mode_strength` then holds only
  approximately (Saxe et al. report the same sigmoidal stage-like learning).

  Args:
    task: a `LinearTask` (its shapes and dtype).
    depth: ``D``.
    hidden_dim: the hidden width (``>= k``); ignored for ``D = 1``.
    scale: the standard deviation ``> 0``; may be traced.
    key: the PRNG key.

  Returns:
    ``(W_1, ..., W_D)``.
  """
  depth = _check_depth(depth)
  num_modes = int(jnp.shape(task.singular_values)[0])
  hidden_dim = _check_hidden_dim(hidden_dim, depth, num_modes)
  _checks.check_real("scale", scale)
  return _random_init(task, scale, key, depth=depth, hidden_dim=hidden_dim)


@functools.partial(jax.jit, static_argnames=("depth", "hidden_dim"))
def _random_init(task, scale, key, *, depth, hidden_dim):
  n3, n1 = task.input_output_correlation.shape
  dims = [n1] + [hidden_dim] * (depth - 1) + [n3]
  dtype = task.input_output_correlation.dtype
  shapes = [(dims[i + 1], dims[i]) for i in range(depth)]
  return tuple(jnp.asarray(scale, dtype) * g for g in _normal_matrices(key, shapes, dtype))


def end_to_end(weights: Sequence[jax.Array]) -> jax.Array:
  """The network's map ``W = W_D ... W_2 W_1``, shape ``(n3, n1)``."""
  total = weights[0]
  for w in weights[1:]:
    total = w @ total
  return total


def network_mode_strengths(task: LinearTask, weights) -> jax.Array:
  """Each mode's strength in the network: ``diag(U^T W V)``, shape ``(k,)``."""
  weights = _check_weights(task, weights)
  return _jit_strengths(task, end_to_end(weights))


def _strengths(task, total):
  return jnp.sum(task.left * (total @ task.right), axis=0)


def loss(task: LinearTask, weights) -> jax.Array:
  """The mean squared error ``1/2 E||y - W x||^2`` from the task's correlations.

  ``1/2 tr Sigma33 - tr(W^T Sigma31) + 1/2 tr(W Sigma11 W^T)``: exactly the data's mean loss for
  the data the correlations came from, at no cost in the number of examples.
  """
  weights = _check_weights(task, weights)
  return _jit_loss(task, end_to_end(weights))


def _loss(task, total):
  return (0.5 * jnp.trace(task.output_correlation)
          - jnp.sum(task.input_output_correlation * total)
          + 0.5 * jnp.sum((total @ task.input_correlation) * total))


_jit_strengths = jax.jit(_strengths)
_jit_loss = jax.jit(_loss)


def _gradients(task, weights):
  """``dL/dW_l = (W_D ... W_{l+1})^T (W Sigma11 - Sigma31) (W_{l-1} ... W_1)^T`` for every l."""
  return _backprop(task, weights, end_to_end(weights))


def _backprop(task, weights, total):
  """The gradients of `_gradients` with the error ``total Sigma11 - Sigma31`` of a given
  end-to-end map ``total`` (that of the whole network, which for a pathway of a multi-pathway
  network is the sum over pathways)."""
  below = [None] * len(weights)  # W_{l-1} ... W_1 (None: the identity)
  for index in range(1, len(weights)):
    below[index] = weights[index - 1] if index == 1 else weights[index - 1] @ below[index - 1]
  error = total @ task.input_correlation - task.input_output_correlation  # (n3, n1)
  grads = [None] * len(weights)
  upstream = error  # (W_D ... W_{l+1})^T error, built from the output side
  for index in reversed(range(len(weights))):
    grads[index] = upstream if below[index] is None else upstream @ below[index].T
    upstream = weights[index].T @ upstream
  return grads


def _record(task, weights, step, learning_rate, record_map):
  total = end_to_end(weights)
  strength = _strengths(task, total)
  off_mode = total - (task.left * strength[None, :]) @ task.right.T
  dtype = total.dtype
  record = {"step": step, "time": jnp.asarray(learning_rate, dtype) * step.astype(dtype),
            "strength": strength, "off_mode": jnp.sqrt(jnp.sum(off_mode ** 2)),
            "loss": _loss(task, total)}
  if record_map:
    record["map"] = total
  return record


def simulate(task: LinearTask, weights, *, learning_rate, num_steps: int,
             record_every: int = 1, record_map: bool = False) -> Trajectory:
  """Full-batch gradient descent of a deep linear network on the task's mean squared error.

  ``W_l <- W_l - learning_rate * dL/dW_l`` with ``L = 1/2 E||y - W x||^2`` computed from the
  correlations (`loss`), ``dL/dW_l = (W_D ... W_{l+1})^T (W Sigma11 - Sigma31) (W_{l-1} ...
  W_1)^T``, so the cost does not grow with the number of examples. In the theory's time
  ``t / tau = learning_rate * step``.

  Args:
    task: a `LinearTask`.
    weights: ``(W_1, ..., W_D)``, e.g. from `balanced_init` or `random_init`; any depth ``>= 1``.
    learning_rate: ``> 0``; may be traced (``vmap`` over it).
    num_steps: the number of steps.
    record_every: record every this many steps; must divide ``num_steps``.
    record_map: also record the end-to-end map ``W`` (``"map"``, ``(R + 1, n3, n1)``), e.g. for
      its singular values under a random initialisation.

  Returns:
    A `Trajectory`: the final weights and the history of ``num_steps // record_every + 1``
    records (the initialisation first), with the mode strengths ``diag(U^T W V)``.

  Cost: per step ``O(D n^3)`` for width ``n`` (a few small matrix products); one compiled
  ``lax.scan`` (two nested: over records, and over the steps between them). ``jit`` and ``vmap``
  (over the weights, hence over keys and initial scales of the initialisation, and the learning
  rate) compose; ``num_steps``, ``record_every`` and ``record_map`` are static.
  """
  weights = _check_weights(task, weights)
  _checks.check_real("learning_rate", learning_rate)
  num_steps = _checks.check_positive_int("num_steps", num_steps)
  record_every = _checks.check_positive_int("record_every", record_every)
  if num_steps % record_every:
    raise ValueError(f"record_every must divide num_steps; got num_steps = {num_steps}, "
                     f"record_every = {record_every}.")
  return _simulate(task, weights, learning_rate, num_steps=num_steps, record_every=record_every,
                   record_map=bool(record_map))


@functools.partial(jax.jit, static_argnames=("num_steps", "record_every", "record_map"))
def _simulate(task, weights, learning_rate, *, num_steps, record_every, record_map):
  def step_fn(weights, step):
    grads = _gradients(task, weights)
    return tuple((w - learning_rate * g).astype(w.dtype) for w, g in zip(weights, grads)), None

  def record(weights, step):
    return _record(task, weights, step, learning_rate, record_map)

  final, history = loops._scan_path(step_fn, weights, num_steps=num_steps,
                                    record_every=record_every, record_fn=record)
  first = record(weights, jnp.zeros((), jnp.int32))
  history = {name: jnp.concatenate([jnp.asarray(first[name])[None].astype(values.dtype), values])
             for name, values in history.items()}
  return Trajectory(final, history)


# ----------------------------------------------------------------------------------------------
# Two pathways and a deficit (Kleinman, Achille & Soatto 2024).
# ----------------------------------------------------------------------------------------------

# Saxe et al.'s hierarchy of 8 items and 15 features (the paper's task): rows are items, columns
# the features "living thing", "animal" / "plant", four families, then one feature per item.
_HIERARCHY = np.concatenate([
    np.ones((8, 1)), np.kron(np.eye(2), np.ones((4, 1))), np.kron(np.eye(4), np.ones((2, 1))),
    np.eye(8)], axis=1)


def hierarchical_task(dtype=None) -> LinearTask:
  """Saxe et al.'s 8-item, 15-feature hierarchy with one-hot items, for the summed loss.

  The task of Kleinman, Achille & Soatto's multi-pathway experiment (ICLR 2024, "Critical Learning
  Periods Emerge Even in Deep Linear Networks", science.md §1.5; the authors' code trains on the
  loss ``1/2 sum_i ||y_i - W x_i||^2`` summed over the items). With one-hot inputs that loss is
  ``1/2 ||Y^T - W||_F^2``: the task has ``Sigma11 = I_8``, ``Sigma31 = Y^T`` (``(15, 8)``) and
  singular values ``sqrt(15), sqrt(7), sqrt(3), sqrt(3), 1, 1, 1, 1``, so `loss` and `simulate`
  with ``learning_rate = dt`` are the paper's loss and step.

  Args:
    dtype: the floating dtype (default: the default float).

  Returns:
    A `LinearTask` with ``k = 8`` modes (the degenerate ones in an arbitrary orthonormal basis).
  """
  dtype = jnp.result_type(1.0) if dtype is None else dtype
  scale = math.sqrt(_HIERARCHY.shape[0])  # the summed loss is the mean loss of scaled items
  return task_from_data(jnp.asarray(scale * np.eye(_HIERARCHY.shape[0]), dtype),
                        jnp.asarray(scale * _HIERARCHY, dtype))


def _check_pathways(task: LinearTask, pathways) -> tuple:
  if not isinstance(pathways, (tuple, list)) or len(pathways) != 2:
    raise TypeError("pathways must be a pair (pathway_a, pathway_b), each a tuple (W_1, ..., W_D); "
                    f"got {type(pathways).__name__}"
                    + (f" of length {len(pathways)}." if isinstance(pathways, (tuple, list))
                       else "."))
  return tuple(_check_weights(task, pathway) for pathway in pathways)


def multipath_init(task: LinearTask, u0, *, depth: int, hidden_dim: Optional[int] = None,
                   key=None) -> tuple:
  """Two pathways, each an aligned, balanced deep linear network (`balanced_init`) with its own
  initial strength per mode.

  Kleinman et al.'s initialisation: pathway ``p`` is ``W_1 = R_1 A_p V^T``, ``W_l = R_l A_p
  R_{l-1}^T``, ``W_D = U A_p R_{D-1}^T`` with ``A_p = diag(u0[p])^{1/D}``, so its end-to-end map
  is ``U diag(u0[p]) V^T``. The authors' code gives both pathways the same
  ``u0 = eps (1 + 0.1 xi)`` (``eps = 0.01``, ``xi`` standard normal per mode, sorted descending).

  Args:
    task: a `LinearTask` with ``k`` modes.
    u0: initial strengths ``> 0``, shape ``(2, k)`` (pathway a, then b); may be traced.
    depth: ``D >= 1``, the number of weight matrices of each pathway.
    hidden_dim: the hidden width, ``>= k``; ignored for ``D = 1``.
    key: the PRNG key of the free rotations ``R_l`` (``None``: identity columns); the mode
      strengths do not depend on it.

  Returns:
    ``(pathway_a, pathway_b)``, each ``(W_1, ..., W_D)``.
  """
  depth = _check_depth(depth)
  num_modes = int(jnp.shape(task.singular_values)[0])
  hidden_dim = _check_hidden_dim(hidden_dim, depth, num_modes)
  if jnp.shape(u0) != (2, num_modes):
    raise ValueError(f"u0 must have shape (2, k) = (2, {num_modes}), one row per pathway; got "
                     f"{jnp.shape(u0)}.")
  _check_array("u0", u0, minimum=0.0, strict=True)
  keys = (None, None) if key is None else tuple(jax.random.split(key))
  return tuple(_balanced_init(task, u0[p], keys[p], depth=depth, hidden_dim=hidden_dim)
               for p in range(2))


def pathway_strengths(task: LinearTask, pathways) -> jax.Array:
  """Each pathway's strength per mode, ``K_{p, alpha} = (U^T W_p V)_{alpha alpha}`` of its
  end-to-end map ``W_p`` (the paper's "path singular values"), shape ``(2, k)``."""
  pathways = _check_pathways(task, pathways)
  return jnp.stack([_jit_strengths(task, end_to_end(pathway)) for pathway in pathways])


def pathway_imbalance(strengths, *, per_mode: bool = False) -> jax.Array:
  """How much more of the task pathway a carries than pathway b.

  ``sum_alpha (K_a - K_b) / sum_alpha (K_a + K_b)``, in ``[-1, 1]`` for non-negative strengths:
  0 when the pathways share every mode equally, 1 when pathway a carries all of it (Kleinman et
  al. plot ``K_a`` and ``K_b`` per mode; this is their difference as a fraction of what is
  learnt, weighted by mode, so modes not yet learnt count little). With ``per_mode``, the ratio
  ``(K_a - K_b) / (K_a + K_b)`` of each mode.

  Args:
    strengths: shape ``(..., 2, k)``, e.g. from `pathway_strengths` or a `simulate_multipath`
      history.
    per_mode: return one value per mode.

  Returns:
    shape ``(...)`` (``(..., k)`` with ``per_mode``).
  """
  if jnp.ndim(strengths) < 2 or jnp.shape(strengths)[-2] != 2:
    raise ValueError(f"strengths must have shape (..., 2, k); got {jnp.shape(strengths)}.")
  difference = strengths[..., 0, :] - strengths[..., 1, :]
  total = strengths[..., 0, :] + strengths[..., 1, :]
  if per_mode:
    return difference / total
  return jnp.sum(difference, axis=-1) / jnp.sum(total, axis=-1)


def _check_windows(onsets, lengths, num_steps: int):
  """Deficit windows ``[onset, onset + length)`` inside ``[0, num_steps]`` (concrete values)."""
  for name, value in (("deficit_onset", onsets), ("deficit_length", lengths)):
    if isinstance(value, (str, bytes, bool)) or value is None:
      raise TypeError(f"{name} must be an integer or an array of integers; got {value!r}.")
    if is_concrete(value):
      array = np.asarray(value)
      if not np.issubdtype(array.dtype, np.integer) or np.any(array < 0):
        raise ValueError(f"{name} must be integers >= 0 (steps); got {array.ravel()[:3].tolist()}.")
  if is_concrete(onsets) and is_concrete(lengths):
    end = np.asarray(onsets) + np.asarray(lengths)
    if np.any(end > num_steps):
      raise ValueError(f"the deficit window [deficit_onset, deficit_onset + deficit_length) must "
                       f"lie inside the run of num_steps = {num_steps} steps; it ends at "
                       f"{end.ravel()[np.argmax(end.ravel())]}.")


def _check_schedule(num_steps, record_every, deficit_pathway) -> tuple:
  num_steps = _checks.check_positive_int("num_steps", num_steps)
  record_every = _checks.check_positive_int("record_every", record_every)
  if num_steps % record_every:
    raise ValueError(f"record_every must divide num_steps; got num_steps = {num_steps}, "
                     f"record_every = {record_every}.")
  if deficit_pathway not in (0, 1) or isinstance(deficit_pathway, bool):
    raise ValueError(f"deficit_pathway must be 0 or 1; got {deficit_pathway!r}.")
  return num_steps, record_every, int(deficit_pathway)


def simulate_multipath(task: LinearTask, pathways, *, learning_rate, num_steps: int,
                       deficit_onset=0, deficit_length=0, deficit_pathway: int = 1,
                       record_every: int = 1) -> Trajectory:
  """Full-batch gradient descent of a two-pathway linear network with a deficit on one pathway.

  Kleinman, Achille & Soatto, "Critical Learning Periods Emerge Even in Deep Linear Networks"
  (ICLR 2024; science.md §1.5, §15 B.20). Both pathways read the same input and their outputs
  add: ``y = (W_a + W_b) x`` with ``W_p`` the end-to-end map of pathway ``p``; the loss is
  `loss` of the sum. During the deficit, steps ``deficit_onset <= step < deficit_onset +
  deficit_length`` (0-based), the deficit pathway is gated: it still contributes to the output
  but receives no gradient (the authors' ``gate_path`` deficit, a ``detach`` of its output), so
  only the other pathway learns. ``deficit_length = 0``: no deficit.

  For aligned, balanced pathways (`multipath_init`) every mode's factors ``p_a, p_b`` follow
  exactly the authors' recursion ``p <- p + learning_rate p^{D-1} (s - K_a - K_b)``, ``K = p^D``.
  Outside the deficit both pathways receive the same error, which conserves
  ``c(K_a) - c(K_b)`` under gradient flow, ``c(K) = K`` (``D = 1``), ``ln K`` (``D = 2``),
  ``-K^{-(D-2)/D}`` (``D >= 3``): what the deficit changes stays changed. The depth sets how
  steep ``c`` is at small strengths, hence how much an early deficit shifts the final split.

  Args:
    task: a `LinearTask` (e.g. `hierarchical_task`).
    pathways: ``(pathway_a, pathway_b)``, each ``(W_1, ..., W_D)``; any depth, the two may differ.
    learning_rate: ``> 0``; may be traced.
    num_steps: the number of steps.
    deficit_onset: the first step of the deficit, an integer ``>= 0``; may be traced (``vmap`` over
      onsets).
    deficit_length: the number of steps of the deficit, ``>= 0``; may be traced. The window must
      end by ``num_steps`` (checked where the values are concrete).
    deficit_pathway: 0 or 1, the gated pathway (default b).
    record_every: record every this many steps; must divide ``num_steps``.

  Returns:
    A `Trajectory`: the final ``(pathway_a, pathway_b)`` and ``num_steps // record_every + 1``
    records (the initialisation first): ``"step"``, ``"time"`` (``learning_rate * step``),
    ``"strength"`` (``(R + 1, 2, k)``, `pathway_strengths`), ``"imbalance"``
    (`pathway_imbalance`) and ``"loss"`` (of the summed map).

  Cost: per step ``O(D n^3)`` per pathway for width ``n``; one compiled ``lax.scan``. ``jit`` and
  ``vmap`` compose (over the weights, the learning rate and the deficit window and pathway);
  ``num_steps`` and ``record_every`` are static.
  """
  pathways = _check_pathways(task, pathways)
  _checks.check_real("learning_rate", learning_rate)
  num_steps, record_every, deficit_pathway = _check_schedule(num_steps, record_every,
                                                             deficit_pathway)
  for name, value in (("deficit_onset", deficit_onset), ("deficit_length", deficit_length)):
    if jnp.ndim(value) != 0:
      raise ValueError(f"{name} must be a scalar (vmap to sweep); got shape {jnp.shape(value)}.")
  _check_windows(deficit_onset, deficit_length, num_steps)
  return _simulate_multipath(task, pathways, learning_rate, jnp.asarray(deficit_onset, jnp.int32),
                             jnp.asarray(deficit_length, jnp.int32),
                             jnp.asarray(deficit_pathway, jnp.int32), num_steps=num_steps,
                             record_every=record_every)


def _record_multipath(task, pathways, step, learning_rate):
  maps = [end_to_end(pathway) for pathway in pathways]
  strength = jnp.stack([_strengths(task, m) for m in maps])
  dtype = strength.dtype
  return {"step": step, "time": jnp.asarray(learning_rate, dtype) * step.astype(dtype),
          "strength": strength, "imbalance": pathway_imbalance(strength),
          "loss": _loss(task, maps[0] + maps[1])}


@functools.partial(jax.jit, static_argnames=("num_steps", "record_every"))
def _simulate_multipath(task, pathways, learning_rate, onset, length, deficit_pathway, *,
                        num_steps, record_every):
  def step_fn(pathways, step):
    total = end_to_end(pathways[0]) + end_to_end(pathways[1])
    gated = (step >= onset) & (step < onset + length)
    new = []
    for index, pathway in enumerate(pathways):
      rate = jnp.where(gated & (deficit_pathway == index), jnp.zeros_like(learning_rate),
                       learning_rate)
      grads = _backprop(task, pathway, total)
      new.append(tuple((w - rate * g).astype(w.dtype) for w, g in zip(pathway, grads)))
    return tuple(new), None

  def record(pathways, step):
    return _record_multipath(task, pathways, step, learning_rate)

  final, history = loops._scan_path(step_fn, pathways, num_steps=num_steps,
                                    record_every=record_every, record_fn=record)
  first = record(pathways, jnp.zeros((), jnp.int32))
  history = {name: jnp.concatenate([jnp.asarray(first[name])[None].astype(values.dtype), values])
             for name, values in history.items()}
  return Trajectory(final, history)


def deficit_sweep(task: LinearTask, pathways, *, learning_rate, num_steps: int, deficit_onsets,
                  deficit_lengths, deficit_pathway: int = 1, record_every: int = 1) -> Trajectory:
  """`simulate_multipath` for every initialisation and every deficit window, as one program.

  Args:
    task: a `LinearTask`.
    pathways: ``(pathway_a, pathway_b)`` whose matrices carry a leading axis of ``S``
      initialisations (e.g. seeds: a vmapped `multipath_init`).
    learning_rate, num_steps, deficit_pathway, record_every: as in `simulate_multipath`.
    deficit_onsets: shape ``(O,)``, integers ``>= 0``.
    deficit_lengths: shape ``(O,)`` or a scalar, integers ``>= 0`` (0: the run without deficit);
      every window must end by ``num_steps`` (checked: the values must be concrete).

  Returns:
    A `Trajectory` whose arrays carry leading axes ``(S, O)``: entry ``[i, j]`` equals
    `simulate_multipath` of initialisation ``i`` with window ``j``.

  Cost: ``S * O`` runs of `simulate_multipath`, vmapped in one compiled program.
  """
  if jnp.ndim(deficit_onsets) != 1:
    raise ValueError(f"deficit_onsets must be a 1-D array; got shape "
                     f"{jnp.shape(deficit_onsets)}.")
  if not (is_concrete(deficit_onsets) and is_concrete(deficit_lengths)):
    raise ValueError("deficit_onsets and deficit_lengths must be concrete (they are checked "
                     "against num_steps); vmap simulate_multipath for traced windows.")
  onsets = np.asarray(deficit_onsets)
  lengths = np.broadcast_to(np.asarray(deficit_lengths), onsets.shape)
  num_steps, record_every, deficit_pathway = _check_schedule(num_steps, record_every,
                                                             deficit_pathway)
  _check_windows(onsets, lengths, num_steps)
  if not (isinstance(pathways, (tuple, list)) and len(pathways) == 2):
    _check_pathways(task, pathways)  # raises: not a pair
  if any(jnp.ndim(w) != 3 for pathway in pathways for w in pathway):
    raise ValueError("every matrix of pathways must carry a leading axis of initialisations.")
  _check_pathways(task, tuple(tuple(w[0] for w in pathway) for pathway in pathways))
  _checks.check_real("learning_rate", learning_rate)
  return _deficit_sweep(task, tuple(tuple(pathway) for pathway in pathways), learning_rate,
                        jnp.asarray(onsets, jnp.int32), jnp.asarray(lengths, jnp.int32),
                        jnp.asarray(deficit_pathway, jnp.int32), num_steps=num_steps,
                        record_every=record_every)


@functools.partial(jax.jit, static_argnames=("num_steps", "record_every"))
def _deficit_sweep(task, pathways, learning_rate, onsets, lengths, deficit_pathway, *, num_steps,
                   record_every):
  def one(pathways, onset, length):
    return _simulate_multipath(task, pathways, learning_rate, onset, length, deficit_pathway,
                               num_steps=num_steps, record_every=record_every)

  windows = jax.vmap(one, in_axes=(None, 0, 0))
  return jax.vmap(windows, in_axes=(0, None, None))(pathways, onsets, lengths)
