"""Float64 brute-force references for every quantity of the engine.

Explicit Python loops over examples (and, for ``kind="true"``, over the output-Fisher columns), one
``jax.grad``/``jax.vjp`` at a time, in float64, with dense matrices where a product is asked for. Slow
by design: they are the ground truth that tests, and users checking their own models, compare against.
Labels for ``kind="mc"`` are drawn exactly as the engine draws them (``columns.sample_targets`` on the
model as given), then everything is recomputed in float64.

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
  """Per example: (outputs_fn, list of output-space columns) in float64."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples)
  sampled = None
  if kind == "mc":
    sampled = columns_lib.sample_targets(apply_fn, params, inputs, likelihood=likelihood, key=key,
                                         mc_samples=mc_samples)
  params64, inputs64, targets64 = _to64(params), _to64(inputs), _to64(targets)
  for n in range(num_examples):
    x_n = _example(inputs64, n)

    def outputs_fn(p, x_n=x_n):
      return apply_fn(p, x_n)[0]

    z_n = outputs_fn(params64)
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
    yield outputs_fn, params64, cols


def per_example_grads(apply_fn, params, batch, *, likelihood):
  """Float64 per-example gradients of the nll: a pytree with leading axis N."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(apply_fn, params, batch, likelihood)
  params64, inputs64, targets64 = _to64(params), _to64(inputs), _to64(targets)
  grads = []
  for n in range(num_examples):
    x_n, y_n = _example(inputs64, n), _example(targets64, n)
    grads.append(jax.grad(lambda p: jnp.sum(likelihood.nll(apply_fn(p, x_n), y_n)))(params64))
  return jax.tree.map(lambda *g: jnp.stack(g), *grads)


def per_example_grad_norms(apply_fn, params, batch, *, likelihood):
  """Float64 L2 norms of the per-example gradients, shape (N,)."""
  grads = per_example_grads(apply_fn, params, batch, likelihood=likelihood)
  squares = [jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads)]
  return jnp.sqrt(sum(squares))


def diagonal(apply_fn, params, batch, *, likelihood, kind="empirical", mc_samples=1, key=None):
  """Float64 Fisher diagonal by explicit loops over examples and output columns."""
  total, num_examples = None, 0
  for outputs_fn, params64, cols in _columns(apply_fn, params, batch, likelihood, kind, key,
                                             mc_samples):
    _, pullback = jax.vjp(outputs_fn, params64)
    for column in cols:
      (g,) = pullback(column)
      squared = jax.tree.map(lambda x: x * x, g)
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
  total, num_examples = None, 0
  for outputs_fn, params64, cols in _columns(apply_fn, params, batch, likelihood, kind, key,
                                             mc_samples):
    flat, unravel = jax.flatten_util.ravel_pytree(params64)
    _, pullback = jax.vjp(lambda f: outputs_fn(unravel(f)), flat)
    for column in cols:
      (g,) = pullback(column)
      outer = jnp.outer(g, g)
      total = outer if total is None else total + outer
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
  total = 0.0
  for n in range(num_examples):
    x_n, y_n = _example(inputs64, n), _example(targets64, n)
    total = total + jax.hessian(
        lambda f: jnp.sum(likelihood.nll(apply_fn(unravel(f), x_n), y_n)))(flat)
  return total / num_examples


def hessian_vector_product(apply_fn, params, batch, vector, *, likelihood):
  """Float64 ``H v`` through the dense Hessian."""
  flat_vector, unravel = jax.flatten_util.ravel_pytree(_to64(vector))
  return unravel(hessian(apply_fn, params, batch, likelihood=likelihood) @ flat_vector)
