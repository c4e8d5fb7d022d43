"""Effective information in the activations: the Fisher of noisy activations about the input.

Achille, Paolini & Soatto, "Where is the information in a deep network?" (arXiv 1905.12213), Sec. 3;
science.md §2.9. Perturb the weights with the noise of the optimal post-distribution,
``n ~ N(0, beta F_w^{-1})``, and look at the activations ``z = f_{w+n}(x)`` of one layer as a noisy
channel from the input. Definition 3.1: ``I_eff,beta(x; z) = I(x; f_{w+n}(x))``. Linearising in the
noise, ``z | x ~ N(f_w(x), C(x))`` with ``C = beta J_f F_w^{-1} J_f^T`` and ``J_f = dz/dw``, and the
Fisher of ``z`` about ``x`` (its mean term; a covariance term of order one in beta is dropped) is

    F_{z|x} = grad_x f^T C^{-1} grad_x f                                  (corrected, the default)

while Proposition 3.2 prints ``F_{z|x} = (1/beta) grad_x f^T J_f F_w J_f^T grad_x f``
(``paper_convention=True``): it overstates the Fisher, scales as the square of the input instead of
its inverse square, and ignores correlations between the weights (science.md §2.9). The
Brunel-Nadal approximation (Eq. 10) then gives

    I_eff(x; z) ~ H(x) - E_x 1/2 log((2 pi e)^d / |F_{z|x}|),       d = dim x.

Where the noise covariance ``C`` is singular (a layer with more activations than the weights it
reads, e.g. a convolution with shared weights, or dead units), the linearised channel is degenerate:
moving the input out of the range of ``C`` carries infinite information. The functions here take
the exact path: the pseudo-inverse on the range of ``C`` when ``grad_x f`` lies in it (dead units
are constant and carry nothing), and a ``ValueError`` otherwise, unless the caller adds an isotropic
Gaussian noise of variance ``activation_noise`` to the activations (``C + activation_noise I``).
"""

from typing import NamedTuple, Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from infojax import _validation
from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding
from infojax.fisher import jacobians

ROUTES = ("auto", "jacobian", "products")

# Bound on the intermediate entries alive at once: the engine's Jacobian budget (512 MiB float32).
_BUDGET = jacobians._JACOBIAN_BUDGET


class EffectiveInformation(NamedTuple):
  """The effective information of a layer, in nats.

  Attributes:
    information: ``input_entropy + mean(per_example)``, a scalar.
    per_example: ``(N,)``: ``-1/2 log((2 pi e)^r / |F_{z|x_n}|)``, with ``r = d`` (or the rank of
      ``F_{z|x_n}`` for the pseudo-determinant).
    log_determinant: ``(N,)``: ``log |F_{z|x_n}|`` (or its log pseudo-determinant).
    rank: ``(N,)`` integers: the numerical rank of ``F_{z|x_n}``.
  """
  information: jax.Array
  per_example: jax.Array
  log_determinant: jax.Array
  rank: jax.Array


# --- the activations -----------------------------------------------------------------------------

def _module_path(layer) -> tuple:
  if isinstance(layer, str):
    path = tuple(part for part in layer.split("/") if part)
  elif isinstance(layer, (tuple, list)) and all(isinstance(part, str) for part in layer):
    path = tuple(layer)
  else:
    raise TypeError("layer must be None (the outputs), a flax module path (a string such as "
                    f"'Dense_0' or 'Block_0/Conv_1', or a tuple of names), or a function of the "
                    f"outputs; got {layer!r}.")
  if not path:
    raise ValueError(f"layer: the module path {layer!r} is empty; pass None for the outputs.")
  return path


def _module_output(apply_fn, path):
  """``(params, inputs) -> the output of the flax module at ``path`` in ``apply_fn``."""
  try:
    import flax.linen as nn
  except ImportError as error:
    raise TypeError("layer: a module path needs flax; pass a function of the outputs "
                    "instead.") from error

  def fn(params, inputs):
    found, seen = [], set()

    def interceptor(next_fun, args, kwargs, context):
      output = next_fun(*args, **kwargs)
      if context.method_name == "__call__":
        module_path = tuple(context.module.path)
        seen.add(module_path)
        if module_path == path:
          found.append(output)
      return output

    with nn.intercept_methods(interceptor):
      apply_fn(params, inputs)
    if not found:
      known = ", ".join("/".join(p) for p in sorted(seen) if p) or "none"
      raise ValueError(f"layer: apply_fn calls no flax module at {'/'.join(path)!r}; the "
                       f"modules it calls are: {known}.")
    if len(found) > 1:
      raise ValueError(f"layer: the flax module {'/'.join(path)!r} is called {len(found)} times; "
                       "its activations are ambiguous. Return the activations you want from the "
                       "model and pass a function of the outputs.")
    if not isinstance(found[0], jax.Array) and not hasattr(found[0], "shape"):
      raise TypeError(f"layer: the module {'/'.join(path)!r} returns {type(found[0]).__name__}, "
                      "not one array of activations.")
    return found[0]

  return fn


def activations_fn(apply_fn, layer=None):
  """The activations of ``layer`` as a function ``(params, inputs) -> (N, k)``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs``.
    layer: ``None`` (the outputs), a flax module path (``"Dense_0"``, ``"Block_0/Conv_1"`` or a
      tuple of names: that module's output, e.g. the pre-activations of a ``Dense``), or a function
      of the outputs (``lambda logits: jax.nn.log_softmax(logits)``).

  Returns:
    ``fn(params, inputs)``: the activations of each example, flattened to ``(N, k)``.
  """
  if layer is None:
    select = apply_fn
  elif callable(layer):
    def select(params, inputs):
      return layer(apply_fn(params, inputs))
  else:
    select = _module_output(apply_fn, _module_path(layer))

  def fn(params, inputs):
    z = select(params, inputs)
    num_examples = jax.tree.leaves(inputs)[0].shape[0]
    if not hasattr(z, "shape") or z.ndim < 1 or z.shape[0] != num_examples:
      raise ValueError(f"layer: the activations must be one array with the leading example axis "
                       f"N = {num_examples}; got {getattr(z, 'shape', type(z).__name__)}.")
    return z.reshape(num_examples, -1)

  return fn


# --- the weight Fisher ---------------------------------------------------------------------------

class _WeightMetric(NamedTuple):
  """``M`` in ``J M J^T``: the weight Fisher (printed form) or its inverse (corrected form), as a
  diagonal ``(P,)`` (``M`` itself), the dense ``(P, P)`` Fisher, or its Cholesky factor."""
  diagonal: Optional[jax.Array]
  cholesky: Optional[jax.Array]
  dense: Optional[jax.Array]
  inverse: bool


def _weight_metric(weight_fisher, params, *, inverse: bool, num_weights: int, dtype):
  """Validates ``weight_fisher`` (a diagonal like ``params`` or a dense ``(P, P)`` matrix)."""
  like_params = (jax.tree.structure(weight_fisher) == jax.tree.structure(params)
                 and all(np.shape(f) == np.shape(p) for f, p in
                         zip(jax.tree.leaves(weight_fisher), jax.tree.leaves(params))))
  if like_params:
    diagonal = jax.flatten_util.ravel_pytree(
        jax.tree.map(lambda f: jnp.asarray(f, dtype), weight_fisher))[0]
    if _validation.is_concrete(diagonal):
      values = np.asarray(diagonal)
      bad = ~np.isfinite(values) | ((values <= 0) if inverse else (values < 0))
      if bad.any():
        index = int(np.argmax(bad))
        requirement = ("positive (the corrected form inverts it: add the prior's precision, "
                       "F + beta / prior_variance, or a damping)" if inverse else
                       "finite and non-negative")
        raise ValueError(f"weight_fisher: every entry must be {requirement}; {int(bad.sum())} of "
                         f"{values.size} are not (the first, flat index {index}, is "
                         f"{values[index]!r}).")
    return _WeightMetric(1.0 / diagonal if inverse else diagonal, None, None, inverse)
  shape = np.shape(weight_fisher) if hasattr(weight_fisher, "shape") else None
  if shape != (num_weights, num_weights):
    raise ValueError(
        "weight_fisher must be a pytree like params (a diagonal Fisher, e.g. from "
        f"ij.fisher.diagonal) or a dense (P, P) = ({num_weights}, {num_weights}) matrix in the "
        "order of jax.flatten_util.ravel_pytree(params); got "
        f"{jax.tree.structure(weight_fisher)} with shapes "
        f"{[np.shape(f) for f in jax.tree.leaves(weight_fisher)]} for params "
        f"{jax.tree.structure(params)} with shapes "
        f"{[np.shape(p) for p in jax.tree.leaves(params)]}.")
  dense = jnp.asarray(weight_fisher, dtype)
  if _validation.is_concrete(dense):
    values = np.asarray(dense)
    symmetric = np.allclose(values, values.T, rtol=1e-5, atol=1e-6 * np.abs(values).max())
    if not np.all(np.isfinite(values)) or not symmetric:
      raise ValueError("weight_fisher: a dense Fisher must be a finite symmetric (P, P) matrix.")
  if not inverse:
    return _WeightMetric(None, None, dense, inverse)
  cholesky = jnp.linalg.cholesky(0.5 * (dense + dense.T))
  if _validation.is_concrete(cholesky) and not np.all(np.isfinite(np.asarray(cholesky))):
    raise ValueError("weight_fisher: the corrected form inverts the dense Fisher, which must be "
                     "positive definite (add the prior's precision, F + beta / prior_variance I, "
                     "or a damping).")
  return _WeightMetric(None, cholesky, None, inverse)


def _sandwich(metric: _WeightMetric, jacobian):
  """``J M J^T`` for a Jacobian ``(k, P)``."""
  if metric.diagonal is not None:
    return (jacobian * metric.diagonal[None, :]) @ jacobian.T
  if metric.inverse:
    half = jax.scipy.linalg.solve_triangular(metric.cholesky, jacobian.T, lower=True)
    return half.T @ half
  return jacobian @ metric.dense @ jacobian.T


def _apply(metric: _WeightMetric, vectors):
  """``M v`` for weight vectors ``(P, m)``."""
  if metric.diagonal is not None:
    return metric.diagonal[:, None] * vectors
  if metric.inverse:
    return jax.scipy.linalg.cho_solve((metric.cholesky, True), vectors)
  return metric.dense @ vectors


# --- one example ---------------------------------------------------------------------------------

def _jacobian(fn, primal, num_outputs):
  size = primal.size
  return (jax.jacfwd if size < num_outputs else jax.jacrev)(fn)(primal)


def _corrected_from_covariance(covariance, input_jacobian):
  """``(G^T C^+ G, ok)``: the pseudo-inverse on the range of ``C``; ``ok`` is false when ``G``
  leaves that range (the Fisher is then infinite)."""
  k = covariance.shape[0]
  eps = jnp.finfo(covariance.dtype).eps
  values, vectors = jnp.linalg.eigh(0.5 * (covariance + covariance.T))
  keep = values > k * eps * jnp.maximum(values[-1], jnp.finfo(covariance.dtype).tiny)
  projected = vectors.T @ input_jacobian                                   # (k, d)
  outside = jnp.where(keep[:, None], 0.0, projected)
  scale = jnp.sqrt(jnp.sum(input_jacobian ** 2))
  ok = jnp.sqrt(jnp.sum(outside ** 2)) <= jnp.sqrt(eps) * scale
  inverse = jnp.where(keep, 1.0 / jnp.where(keep, values, 1.0), 0.0)
  return projected.T @ (inverse[:, None] * projected), ok


def _conjugate_gradient(operator, right, *, tolerance, max_iterations):
  """Solves ``A X = B`` for a PSD operator on ``(k, m)`` columns at once; returns ``(X, ok)``.

  Columns of ``B`` in the range of a singular ``A`` converge to the minimum-norm solution (the
  Krylov spaces stay in the range); others do not converge and make ``ok`` false.
  """
  def norms(x):
    return jnp.sqrt(jnp.sum(x ** 2, axis=0))

  target = tolerance * norms(right)

  def cond(state):
    iteration, _, residual, _, _ = state
    return (iteration < max_iterations) & jnp.any(norms(residual) > target)

  def body(state):
    iteration, x, residual, direction, residual_sq = state
    image = operator(direction)
    curvature = jnp.sum(direction * image, axis=0)
    step = jnp.where(curvature > 0, residual_sq / jnp.where(curvature > 0, curvature, 1.0), 0.0)
    x = x + step[None] * direction
    residual = residual - step[None] * image
    new_sq = jnp.sum(residual ** 2, axis=0)
    ratio = jnp.where(residual_sq > 0, new_sq / jnp.where(residual_sq > 0, residual_sq, 1.0), 0.0)
    return iteration + 1, x, residual, residual + ratio[None] * direction, new_sq

  zeros = jnp.zeros_like(right)
  state = (0, zeros, right, right, jnp.sum(right ** 2, axis=0))
  _, x, _, _, _ = jax.lax.while_loop(cond, body, state)
  ok = jnp.all(norms(right - operator(x)) <= 2 * target + jnp.finfo(right.dtype).tiny)
  return x, ok


class _Options(NamedTuple):
  beta: jax.Array
  activation_noise: jax.Array
  paper_convention: bool
  route: str
  column_chunk: Optional[int]
  tolerance: float
  max_iterations: int


def _one_example(z_of, weights, metric, options: _Options, example):
  """``(F_{z|x} (d, d), ok)`` for one example ``(input_shape)``."""
  shape = example.shape
  flat_input = example.reshape(-1)
  num_activations = jax.eval_shape(z_of, weights, example).shape[0]
  input_jacobian = _jacobian(lambda x: z_of(weights, x.reshape(shape)), flat_input,
                             num_activations)                                  # G (k, d)
  corrected = not options.paper_convention
  scale = options.beta if corrected else 1.0 / options.beta
  if options.route == "jacobian":
    weight_jacobian = _jacobian(lambda w: z_of(w, example), weights, num_activations)  # (k, P)
    covariance = scale * _sandwich(metric, weight_jacobian)
    if not corrected:
      fisher = input_jacobian.T @ covariance @ input_jacobian
      return 0.5 * (fisher + fisher.T), jnp.bool_(True)
    covariance = covariance + options.activation_noise * jnp.eye(num_activations,
                                                                 dtype=covariance.dtype)
    fisher, ok = _corrected_from_covariance(covariance, input_jacobian)
    return 0.5 * (fisher + fisher.T), ok

  _, forward = jax.linearize(lambda w: z_of(w, example), weights)
  backward = jax.linear_transpose(forward, weights)

  def one_column(v):
    return forward(_apply(metric, backward(v)[0][:, None])[:, 0])

  def operator(columns):                                       # (k, m) -> (k, m)
    mapped = _chunks.chunked_map(jax.vmap(one_column), columns.T, options.column_chunk)
    return scale * mapped.T + (options.activation_noise * columns if corrected else 0.0)

  if not corrected:
    fisher = input_jacobian.T @ operator(input_jacobian)
    return 0.5 * (fisher + fisher.T), jnp.bool_(True)
  solution, ok = _conjugate_gradient(operator, input_jacobian, tolerance=options.tolerance,
                                     max_iterations=options.max_iterations)
  fisher = input_jacobian.T @ solution
  return 0.5 * (fisher + fisher.T), ok


# --- validation ----------------------------------------------------------------------------------

def _positive(name, value, *, allow_zero=False):
  array = jnp.asarray(value)
  if array.ndim != 0 or not (jnp.issubdtype(array.dtype, jnp.floating)
                             or jnp.issubdtype(array.dtype, jnp.integer)):
    raise TypeError(f"{name} must be a real scalar; got {value!r}.")
  if _validation.is_concrete(array):
    number = float(array)
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
      raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite; got "
                       f"{number!r}.")
  return array


def _positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive int; got {value!r}.")


def _prepare(apply_fn, params, inputs, *, weight_fisher, beta, layer, paper_convention,
             activation_noise, chunk_size, route, tolerance, max_iterations):
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable as apply_fn(params, inputs); got {apply_fn!r}.")
  if not isinstance(inputs, (jax.Array, np.ndarray)):
    raise TypeError("inputs must be one floating-point array (N, *input_shape): the Fisher is "
                    f"about the input x of dimension d = prod(input_shape); got "
                    f"{type(inputs).__name__}.")
  if inputs.ndim < 2 or not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise ValueError(f"inputs must be a floating-point array (N, *input_shape) with N >= 1; got "
                     f"shape {inputs.shape} and dtype {inputs.dtype}.")
  _checks.check_params(params)
  num_examples = _checks.check_inputs(inputs)
  if route not in ROUTES:
    raise ValueError(f"route must be one of {ROUTES}; got {route!r}.")
  _checks.check_chunk_size(chunk_size)
  _positive_int("max_iterations", max_iterations)
  if tolerance is not None and not (isinstance(tolerance, (float, int)) and 0 < tolerance < 1):
    raise ValueError(f"tolerance must be None or in (0, 1); got {tolerance!r}.")
  if not isinstance(paper_convention, bool):
    raise TypeError(f"paper_convention must be a bool; got {paper_convention!r}.")
  beta = _positive("beta", beta)
  activation_noise = _positive("activation_noise", activation_noise, allow_zero=True)
  if paper_convention and _validation.is_concrete(activation_noise) and float(activation_noise):
    raise ValueError("activation_noise applies to the corrected form only (the printed form does "
                     "not invert the noise covariance); pass paper_convention=False.")

  weights, unravel = jax.flatten_util.ravel_pytree(params)
  select = activations_fn(apply_fn, layer)
  activations = jax.eval_shape(select, params, inputs)
  _checks.check_independent(apply_fn, params, inputs)
  num_activations = activations.shape[1]
  input_dim = int(np.prod(inputs.shape[1:]))
  metric = _weight_metric(weight_fisher, params, inverse=not paper_convention,
                          num_weights=weights.size, dtype=weights.dtype)

  def z_of(w, example):
    return select(unravel(w), example[None])[0]

  per_example_jacobian = num_activations * weights.size + num_activations ** 2
  per_example_products = weights.size * input_dim
  if route == "auto":
    route = "jacobian" if per_example_jacobian <= _BUDGET else "products"
  common = num_activations * input_dim + input_dim ** 2
  per_example = common + (per_example_jacobian if route == "jacobian" else per_example_products)
  chunk = jacobians._default_chunk(num_examples, per_example, chunk_size)
  column_chunk = max(1, _BUDGET // max(1, weights.size))
  if tolerance is None:
    tolerance = float(np.sqrt(np.finfo(weights.dtype).eps))
  options = _Options(jnp.asarray(beta, weights.dtype), jnp.asarray(activation_noise, weights.dtype),
                     paper_convention, route, column_chunk, float(tolerance), int(max_iterations))
  return z_of, weights, metric, options, chunk, (num_examples, num_activations, input_dim)


def _fisher(prepared, inputs):
  """``F_{z|x}`` of every example from `_prepare`'s output; raises where it is infinite."""
  z_of, weights, metric, options, chunk, dims = prepared
  one = jax.vmap(lambda x: _one_example(z_of, weights, metric, options, x))
  fisher, ok = _chunks.chunked_map(one, _sharding.replicated(inputs), chunk)
  if _validation.is_concrete(ok) and not bool(np.all(np.asarray(ok))):
    num_examples, num_activations, _ = dims
    bad = np.flatnonzero(~np.asarray(ok))
    raise ValueError(
        f"activation_fisher: for {bad.size} of {num_examples} examples (the first is example "
        f"{int(bad[0])}) the input moves the activations out of the range of their noise "
        f"covariance beta J F^-1 J^T ({num_activations} x {num_activations}, from "
        f"{weights.size} weights): the linearised channel is degenerate and F_z|x is infinite. "
        "This happens when a layer has more activations than the weights it reads (a convolution "
        "shares its kernel across positions). Pass activation_noise > 0 (an isotropic Gaussian "
        "noise on the activations) for a finite Fisher"
        + (", or a larger max_iterations / tolerance for route='products'."
           if options.route == "products" else "."))
  return jnp.where(ok[:, None, None], fisher, jnp.nan)


_SHARED_ARGS = """    apply_fn: ``apply_fn(params, inputs) -> outputs``; must treat examples
      independently.
    params: the parameter pytree (floating leaves) at which the noise is centred.
    inputs: one floating-point array ``(N, *input_shape)``; ``d = prod(input_shape)``.
    weight_fisher: the weight Fisher ``F_w``: a pytree like ``params`` (a diagonal, e.g. from
      ``ij.fisher.diagonal``) or a dense ``(P, P)`` matrix in the order of
      ``jax.flatten_util.ravel_pytree(params)``. The corrected form inverts it, so its entries must
      be positive (for the noise of the optimal post-distribution under a prior
      ``N(w0, lambda^2 I)``, pass the posterior precision ``F + beta / lambda^2``).
    beta: the noise scale, ``n ~ N(0, beta F_w^{-1})``, > 0.
    layer: the activations ``z``: ``None`` (the outputs), a flax module path (``"Dense_0"``,
      ``"Block_0/Conv_1"``: that module's output), or a function of the outputs.
    paper_convention: ``True`` for the form printed as Proposition 3.2.
    activation_noise: variance of an isotropic Gaussian noise added to the activations
      (corrected form only); ``0`` for the definition as stated.
    chunk_size: examples per chunk (a ``lax.map`` over chunks, each a ``vmap``); ``None``: a
      budget of 2**27 intermediate entries and, on several devices, ``ceil(N / device_count)``.
    route: ``"jacobian"`` forms ``J_f`` (``k x P``) and ``C`` (``k x k``) per example;
      ``"products"`` never does: it applies ``J M J^T`` as one JVP after one VJP, solving the
      corrected form by conjugate gradients; ``"auto"``: ``"jacobian"`` when ``kP + k^2`` fits in
      2**27 entries.
    tolerance, max_iterations: the conjugate-gradient stopping rule of ``route="products"``: a
      relative residual per column below ``tolerance`` (``None``: ``sqrt(eps)`` of the dtype)."""

_COST = """  Cost per example, with ``k = dim z``, ``P`` weights, ``d = dim x``: ``min(k, d)``
  passes for ``grad_x f`` and, on the ``"jacobian"`` route, ``min(k, P)`` passes for ``J_f``,
  ``O(k^2 P)`` for ``C``, an ``O(k^3)`` eigendecomposition (corrected form) and
  ``O(k^2 d + k d^2)`` for ``F_{z|x}``; memory ``kP + k^2 + kd + d^2``. On the ``"products"``
  route, ``d`` JVP-VJP pairs for the printed form and as many per conjugate-gradient iteration
  (at most ``min(k, max_iterations)``) for the corrected one, memory ``kd + d^2`` plus one chunk
  of ``P``-vectors."""


def activation_fisher(apply_fn, params, inputs, *, weight_fisher, beta, layer=None,
                      paper_convention: bool = False, activation_noise=0.0, chunk_size=None,
                      route: str = "auto", tolerance=None, max_iterations: int = 1000):
  """The Fisher of the noisy activations about each input, ``F_{z|x}``, ``(N, d, d)``.

  Achille, Paolini & Soatto, "Where is the information in a deep network?", Prop. 3.2, with the
  correction of science.md §2.9: for weight noise ``n ~ N(0, beta F_w^{-1})`` and activations
  ``z = f_{w+n}(x)`` linearised in ``n``,
  ``F_{z|x} = grad_x f^T (beta J_f F_w^{-1} J_f^T + activation_noise I)^+ grad_x f`` (the
  pseudo-inverse acts on the range of the covariance, where the activations move at all), or
  ``(1/beta) grad_x f^T J_f F_w J_f^T grad_x f`` with ``paper_convention=True``.

  Args:
{args}

  Returns:
    An array ``(N, d, d)``, symmetric positive semi-definite. Under ``jit`` an example whose
    Fisher is infinite (see Raises) is all NaN.

  Raises:
    ValueError: for bad arguments (naming them), and, on concrete arguments, when the input moves
      the activations out of the range of a singular noise covariance (``F_{z|x}`` is infinite; a
      convolution has more activations than weights): pass ``activation_noise > 0``.

{cost}
  """
  prepared = _prepare(
      apply_fn, params, inputs, weight_fisher=weight_fisher, beta=beta, layer=layer,
      paper_convention=paper_convention, activation_noise=activation_noise, chunk_size=chunk_size,
      route=route, tolerance=tolerance, max_iterations=max_iterations)
  return _fisher(prepared, inputs)


activation_fisher.__doc__ = activation_fisher.__doc__.replace("{args}", _SHARED_ARGS).replace(
    "{cost}", _COST)


def noise_covariance(apply_fn, params, inputs, *, weight_fisher, beta, layer=None, chunk_size=None):
  """The covariance of the linearised noisy activations, ``beta J_f F_w^{-1} J_f^T``, ``(N, k, k)``.

  What ``z = f_{w+n}(x)``, ``n ~ N(0, beta F_w^{-1})``, has as covariance to first order in the
  noise (science.md §2.9): the quantity the corrected ``activation_fisher`` inverts, and what a
  Monte-Carlo estimate of ``Cov(z | x)`` converges to as ``beta -> 0`` (divided by ``beta``).

  Args: as `activation_fisher` (``weight_fisher`` entries positive).

  Cost: per example ``min(k, P)`` passes for ``J_f`` and ``O(k^2 P)``; memory ``kP + k^2``.
  """
  z_of, weights, metric, options, chunk, dims = _prepare(
      apply_fn, params, inputs, weight_fisher=weight_fisher, beta=beta, layer=layer,
      paper_convention=False, activation_noise=0.0, chunk_size=chunk_size, route="jacobian",
      tolerance=None, max_iterations=1)
  num_activations = dims[1]

  def one(example):
    jacobian = _jacobian(lambda w: z_of(w, example), weights, num_activations)
    return options.beta * _sandwich(metric, jacobian)

  return _chunks.chunked_map(jax.vmap(one), _sharding.replicated(inputs), chunk)


def log_determinant(fisher, *, pseudo_determinant: bool = False):
  """``(log |F|, rank)`` of a batch of symmetric PSD matrices ``(..., d, d)``.

  The rank counts eigenvalues above ``d * eps * max eigenvalue`` (as ``numpy.linalg.matrix_rank``);
  ``pseudo_determinant=True`` sums the logs of those only (the log pseudo-determinant on the
  range), otherwise a singular matrix has ``log |F| = -inf``.
  """
  values = jnp.linalg.eigvalsh(fisher)
  dim = fisher.shape[-1]
  cutoff = dim * jnp.finfo(values.dtype).eps * jnp.max(jnp.abs(values), axis=-1, keepdims=True)
  keep = values > cutoff
  rank = jnp.sum(keep, axis=-1)
  logs = jnp.log(jnp.where(keep, values, 1.0))
  total = jnp.sum(logs, axis=-1)
  if not pseudo_determinant:
    total = jnp.where(rank == dim, total, -jnp.inf)
  return total, rank


def effective_information(apply_fn, params, inputs, *, weight_fisher, beta, input_entropy=0.0,
                          layer=None, paper_convention: bool = False, activation_noise=0.0,
                          pseudo_determinant: bool = False, chunk_size=None, route: str = "auto",
                          tolerance=None, max_iterations: int = 1000
                          ) -> EffectiveInformation:
  """The effective information of a layer, ``H(x) - E_x 1/2 log((2 pi e)^d / |F_{z|x}|)``.

  Achille, Paolini & Soatto, "Where is the information in a deep network?", Def. 3.1 and Eq. 10
  (the Brunel-Nadal approximation), with ``F_{z|x}`` from `activation_fisher` (corrected by
  default; science.md §2.9). The expectation is the mean over ``inputs``.

  Args:
{args}
    input_entropy: ``H(x)`` in nats (differential entropy of the input distribution), added as
      is; the default 0 reports ``I_eff - H(x)``.
    pseudo_determinant: where ``F_{z|x}`` is singular (a layer narrower than its input, ``k < d``:
      Eq. 10 is then minus infinity), use the log pseudo-determinant on its range and
      ``(2 pi e)^r`` with ``r`` its rank; ``input_entropy`` should then be that of the input's
      projection on the range.

  Returns:
    An `EffectiveInformation` (nats).

  Raises:
    ValueError: as `activation_fisher`; and, unless ``pseudo_determinant``, when ``k < d`` (before
      any computation) or, on concrete arguments, when some ``F_{z|x}`` is numerically singular.

{cost}
  """
  prepared = _prepare(
      apply_fn, params, inputs, weight_fisher=weight_fisher, beta=beta, layer=layer,
      paper_convention=paper_convention, activation_noise=activation_noise, chunk_size=chunk_size,
      route=route, tolerance=tolerance, max_iterations=max_iterations)
  _, num_activations, input_dim = prepared[-1]
  if num_activations < input_dim and not pseudo_determinant:
    raise ValueError(
        f"effective_information: the layer has k = {num_activations} activations for inputs of "
        f"dimension d = {input_dim}; F_z|x (d x d) has rank at most k < d and Eq. 10 is minus "
        "infinity. Pass pseudo_determinant=True for the log pseudo-determinant on its range.")
  fisher = _fisher(prepared, inputs)
  logdet, rank = log_determinant(fisher, pseudo_determinant=pseudo_determinant)
  if (not pseudo_determinant and _validation.is_concrete(rank)
      and not bool(np.all(np.asarray(rank) == input_dim))):
    ranks = np.asarray(rank)
    bad = np.flatnonzero(ranks != input_dim)
    raise ValueError(
        f"effective_information: F_z|x is singular for {bad.size} of {ranks.size} examples "
        f"(example {int(bad[0])} has rank {int(ranks[bad[0]])} < d = {input_dim}), so Eq. 10 is "
        "minus infinity. Pass pseudo_determinant=True for the log pseudo-determinant on its range.")
  dims = rank if pseudo_determinant else input_dim
  per_example = 0.5 * logdet - 0.5 * dims * jnp.log(2 * jnp.pi * jnp.e)
  information = jnp.asarray(input_entropy, per_example.dtype) + jnp.mean(per_example)
  return EffectiveInformation(information, per_example, logdet, rank)


effective_information.__doc__ = effective_information.__doc__.replace(
    "{args}", _SHARED_ARGS).replace("{cost}", _COST)
