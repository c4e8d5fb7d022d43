"""Float64 brute-force references for every quantity of the engine.

Explicit Python loops over examples (and, for ``kind="true"``, over the output-Fisher columns), one
``jax.grad``/``jax.vjp`` at a time, in float64, with dense matrices where a product is asked for.
Slow by design: they are the ground truth that tests, and users checking their own models, compare
against. Labels for ``kind="mc"`` are drawn exactly as the engine draws them
(``columns.sample_targets`` on the model as given), then everything is recomputed in float64.

Requires ``jax.config.update("jax_enable_x64", True)``.
"""

import jax
import jax.numpy as jnp
import numpy as np

from infojax.fisher import _checks
from infojax.fisher import columns as columns_lib


def _require_x64():
  if not jax.config.jax_enable_x64:
    raise RuntimeError('infojax.fisher.reference computes in float64: call '
                       'jax.config.update("jax_enable_x64", True) first.')


def _to64(tree):
  return jax.tree.map(
      lambda x: jnp.asarray(x, jnp.float64) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
      else jnp.asarray(x), tree)


def _example(tree, n):
  return jax.tree.map(lambda x: x[n:n + 1], tree)


def _columns(apply_fn, params, batch, likelihood, kind, key, mc_samples):
  """Yields ``(x_n, list of output-space columns)`` per example, in float64."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples)
  sampled = None
  if kind == "mc":
    sampled = columns_lib.sample_targets(apply_fn, params, inputs, likelihood=likelihood, key=key,
                                         mc_samples=mc_samples)
  params64, inputs64, targets64 = _to64(params), _to64(inputs), _to64(targets)
  outputs_fn = jax.jit(lambda p, x: apply_fn(p, x)[0])
  for n in range(num_examples):
    x_n = _example(inputs64, n)
    z_n = outputs_fn(params64, x_n)
    y_n = jax.tree.map(lambda t: t[n], targets64)
    if kind == "empirical":
      cols = [columns_lib.nll_gradient(likelihood, z_n, y_n)]
    elif kind == "true":
      factor = likelihood.fisher_factor(z_n)
      cols = [factor[k] for k in range(factor.shape[0])]
    else:
      scale = 1.0 / np.sqrt(mc_samples)
      cols = [scale * columns_lib.nll_gradient(likelihood, z_n, _to64(sampled[n, s]))
              for s in range(mc_samples)]
    yield x_n, cols


def _pullback_fn(apply_fn):
  """``(params, x_n, column) -> J_n^T column`` for one example, compiled once."""
  return jax.jit(lambda p, x, u: jax.vjp(lambda q: apply_fn(q, x)[0], p)[1](u)[0])


def per_example_grads(apply_fn, params, batch, *, likelihood):
  """Float64 per-example gradients of the nll: a pytree with leading axis N."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(apply_fn, params, batch, likelihood)
  params64, inputs64, targets64 = _to64(params), _to64(inputs), _to64(targets)
  grad_fn = jax.jit(jax.grad(lambda p, x, y: jnp.sum(likelihood.nll(apply_fn(p, x), y))))
  grads = [grad_fn(params64, _example(inputs64, n), _example(targets64, n))
           for n in range(num_examples)]
  return jax.tree.map(lambda *g: jnp.stack(g), *grads)


def per_example_grad_norms(apply_fn, params, batch, *, likelihood):
  """Float64 L2 norms of the per-example gradients, shape (N,)."""
  grads = per_example_grads(apply_fn, params, batch, likelihood=likelihood)
  squares = [jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads)]
  return jnp.sqrt(sum(squares))


def diagonal(apply_fn, params, batch, *, likelihood, kind="empirical", mc_samples=1, key=None):
  """Float64 Fisher diagonal by explicit loops over examples and output columns."""
  pullback = _pullback_fn(apply_fn)
  params64 = _to64(params)
  total, num_examples = None, 0
  for x_n, cols in _columns(apply_fn, params, batch, likelihood, kind, key, mc_samples):
    for column in cols:
      squared = jax.tree.map(lambda x: x * x, pullback(params64, x_n, column))
      total = squared if total is None else jax.tree.map(jnp.add, total, squared)
    num_examples += 1
  return jax.tree.map(lambda x: x / num_examples, total)


def trace(apply_fn, params, batch, *, likelihood, kind="empirical", mc_samples=1, key=None):
  """Float64 Fisher trace, the sum of the reference diagonal."""
  diag = diagonal(apply_fn, params, batch, likelihood=likelihood, kind=kind,
                  mc_samples=mc_samples, key=key)
  return sum(jnp.sum(x) for x in jax.tree.leaves(diag))


def matrix(apply_fn, params, batch, *, likelihood, kind="true", mc_samples=1, key=None):
  """The dense Fisher matrix (P x P, float64) over the flattened parameters (small models only)."""
  flat, unravel = jax.flatten_util.ravel_pytree(_to64(params))
  pullback = jax.jit(lambda f, x, u: jax.vjp(lambda q: apply_fn(unravel(q), x)[0], f)[1](u)[0])
  total, num_examples = None, 0
  for x_n, cols in _columns(apply_fn, params, batch, likelihood, kind, key, mc_samples):
    for column in cols:
      g = pullback(flat, x_n, column)
      total = jnp.outer(g, g) if total is None else total + jnp.outer(g, g)
    num_examples += 1
  return total / num_examples


def vector_product(apply_fn, params, batch, vector, *, likelihood, kind="true", mc_samples=1,
                   key=None):
  """Float64 ``F v`` through the dense Fisher matrix."""
  fisher = matrix(apply_fn, params, batch, likelihood=likelihood, kind=kind,
                  mc_samples=mc_samples, key=key)
  flat_vector, unravel = jax.flatten_util.ravel_pytree(_to64(vector))
  return unravel(fisher @ flat_vector)


def hessian(apply_fn, params, batch, *, likelihood):
  """The dense Hessian (P x P, float64) of the mean nll, by explicit loops over examples."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(apply_fn, params, batch, likelihood)
  params64, inputs64, targets64 = _to64(params), _to64(inputs), _to64(targets)
  flat, unravel = jax.flatten_util.ravel_pytree(params64)
  hessian_fn = jax.jit(jax.hessian(
      lambda f, x, y: jnp.sum(likelihood.nll(apply_fn(unravel(f), x), y))))
  total = sum(hessian_fn(flat, _example(inputs64, n), _example(targets64, n))
              for n in range(num_examples))
  return total / num_examples


def hessian_vector_product(apply_fn, params, batch, vector, *, likelihood):
  """Float64 ``H v`` through the dense Hessian."""
  flat_vector, unravel = jax.flatten_util.ravel_pytree(_to64(vector))
  return unravel(hessian(apply_fn, params, batch, likelihood=likelihood) @ flat_vector)
