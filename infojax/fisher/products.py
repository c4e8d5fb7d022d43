"""Fisher-vector and Hessian-vector products (matrix-free).

``F v = (1/N) sum_n J_n^T M_n J_n v`` with the output-space Fisher ``M_n = sum_k u_nk u_nk^T`` of
the chosen kind: one linearisation of the model (``jax.linearize``), a JVP, K inner products per
example in output space, and the transposed JVP (a VJP). For ``kind="true"`` this is the generalised
Gauss-Newton product of Schraudolph (2002), "Fast curvature matrix-vector products for second-order
gradient descent", Neural Computation 14(7), equal to the Fisher for canonical likelihoods.
"""

import jax
import jax.numpy as jnp

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding
from infojax.fisher import columns as columns_lib
from infojax.fisher import per_example


def _check_vector(params, vector):
  if jax.tree.structure(params) != jax.tree.structure(vector):
    raise ValueError("vector must have the pytree structure of params; got "
                     f"{jax.tree.structure(vector)} for params {jax.tree.structure(params)}.")
  for p, v in zip(jax.tree.leaves(params), jax.tree.leaves(vector)):
    if jnp.shape(p) != jnp.shape(v):
      raise ValueError(f"vector leaves must have the shapes of params; got {jnp.shape(v)} where "
                       f"params has {jnp.shape(p)}.")


def _chunk_product(apply_fn, params, vector, column_fn, chunk):
  """``sum_n J_n^T M_n J_n v`` over one chunk of examples, through one linearisation."""
  inputs, targets, keys = chunk
  outputs, jvp_fn = jax.linearize(lambda p: apply_fn(p, inputs), params)
  columns = jax.vmap(column_fn)(jax.lax.stop_gradient(outputs), targets, keys)  # (n, K, *out)
  tangent = jvp_fn(vector)                                                       # (n, *out)
  axes = tuple(range(2, columns.ndim))
  weights = jnp.sum(columns * tangent[:, None], axis=axes)                       # (n, K)
  cotangent = jnp.einsum("nk,nk...->n...", weights, columns)
  (product,) = jax.linear_transpose(jvp_fn, params)(cotangent)
  return product


def _example_product(apply_fn, params, vector, column_fn, example):
  """``J_n^T M_n J_n v`` for one example, linearised on its own."""
  one = jax.tree.map(lambda x: x[None], example)
  return _chunk_product(apply_fn, params, vector, column_fn, one)


def vector_product(apply_fn, params, batch, vector, *, likelihood, kind="true", mc_samples=1,
                   key=None, method="auto", chunk_size=None):
  """The Fisher-vector product ``F v``, with ``F`` averaged over the examples of ``batch``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` with a leading example axis N.
    params: the parameter pytree.
    batch: ``(inputs, targets)`` with a leading example axis N (targets may be None for
      ``kind="true"`` and ``"mc"``).
    vector: a pytree like ``params``.
    likelihood: an ``infojax.likelihoods.Likelihood``.
    kind: ``"true"`` (exact; the GGN), ``"empirical"`` or ``"mc"`` (as in ``diagonal``).
    mc_samples, key: for ``kind="mc"``.
    method: ``"auto"`` and ``"factored"`` linearise each chunk of examples once (a product needs
      no per-layer algebra: ``J v`` and ``J^T u`` already cost a gradient; ``"factored"`` still
      raises, as elsewhere, when a parameter is outside the recognised layers); ``"vmap"``
      linearises every example on its own (``jax.vmap``), the same numbers.
    chunk_size: examples per chunk (a ``lax.scan`` over chunks bounds the memory of the
      linearisation); ``None``: the whole batch at once.

  Returns:
    ``F v``, a pytree like ``params``.

  Cost: about two gradients (a JVP and a VJP through one linearisation) plus K output-space inner
  products per example. Memory: the linearisation's residuals for one chunk (like a gradient).
  """
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples,
      method=method, chunk_size=chunk_size)
  _check_vector(params, vector)
  if method == "factored":
    per_example.resolve_plan(method, apply_fn, params, inputs)   # raises if not all factored
  keys = columns_lib.example_keys(key, num_examples) if kind == "mc" else None
  column_fn = columns_lib.make_column_fn(likelihood, kind, mc_samples)
  if method == "vmap":
    def fn(chunk):
      products = jax.vmap(lambda e: _example_product(apply_fn, params, vector, column_fn, e))(chunk)
      return jax.tree.map(lambda x: jnp.sum(x, axis=0), products)
  else:
    def fn(chunk):
      return _chunk_product(apply_fn, params, vector, column_fn, chunk)
  data = (inputs, targets, keys)
  if chunk_size is not None and chunk_size < num_examples:
    data = _sharding.replicated(data)
  total = _chunks.chunked_sum(fn, data, chunk_size)
  return jax.tree.map(lambda t, p: (t / num_examples).astype(p.dtype), total, params)


def hessian_vector_product(apply_fn, params, batch, vector, *, likelihood):
  """The Hessian-vector product ``H v`` of the mean negative log-likelihood over ``batch``.

  ``H = F_true + (1/N) sum_n sum_j (d nll / d z_nj) d^2 z_nj / dw^2`` (science.md §2.5), so
  comparing with ``vector_product(kind="true")`` measures the residual of the Gauss-Newton
  approximation.

  Cost: about two gradients (forward-over-reverse, Pearlmutter 1994).
  """
  inputs, targets, _, _ = _checks.check_call(apply_fn, params, batch, likelihood,
                                             per_example=False)
  _check_vector(params, vector)

  def mean_nll(p):
    values = likelihood.nll(apply_fn(p, inputs), targets)
    return jnp.sum(values) / values.shape[0]

  return jax.jvp(jax.grad(mean_nll), (params,), (vector,))[1]
