"""Float64 brute-force references for every quantity of the engine.

Explicit Python loops over examples (and, for ``kind="true"``, over the output-Fisher columns), one
``jax.grad``/``jax.vjp`` at a time, in float64, with dense matrices where a product is asked for.
Slow by design: they are the ground truth that tests, and users checking their own models, compare
against. Labels for ``kind="mc"`` are drawn exactly as the engine draws them
(``columns.sample_targets`` on the model as given), then everything is recomputed in float64.

The ``kind="true"`` columns are built from the definition
``F = E_{y ~ p(y|x)} grad log p(y|x) grad log p(y|x)^T`` (one gradient per prediction and label
value, weighted by the square root of its probability, with the probabilities written out by hand),
not from ``Likelihood.fisher_factor``, the square-root factor that the engine uses: a mistake in the
factor cannot hide in both.

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


def _softmax_probability(logits, label):
  """``p(label) = exp(z_label) / sum_c exp(z_c)`` for one vector of logits, written out."""
  shifted = logits - jax.lax.stop_gradient(jnp.max(logits))   # the same p, without overflow
  return jnp.exp(shifted[label]) / jnp.sum(jnp.exp(shifted))


@jax.jit
def _categorical_true_column(outputs, prediction, label):
  """``sqrt(p_e(c)) grad_z (-log p_e(c))`` for prediction ``e`` (a flat index over the leading
  axes of ``outputs``) and class ``c``: the nll of that prediction alone, with label ``c``."""
  def prediction_logits(z):
    return z.reshape(-1, z.shape[-1])[prediction]

  def nll(z):
    return -jnp.log(_softmax_probability(prediction_logits(z), label))

  probability = _softmax_probability(prediction_logits(outputs), label)
  return jnp.sqrt(probability) * jax.grad(nll)(outputs)


@jax.jit
def _bernoulli_true_column(outputs, element, value):
  """``sqrt(p(y)) grad_z (-log p(y | z_j))`` for element ``j`` (a flat index) and ``y = value``,
  with ``p(1 | z) = 1 / (1 + exp(-z))`` and ``p(0 | z) = 1 / (1 + exp(z))``."""
  sign = 1.0 - 2.0 * value    # -log p(y | z) = log(1 + exp(sign z))

  def nll(z):
    return jnp.log1p(jnp.exp(sign * z.reshape(-1)[element]))

  probability = 1.0 / (1.0 + jnp.exp(sign * outputs.reshape(-1)[element]))
  return jnp.sqrt(probability) * jax.grad(nll)(outputs)


_TRUE_FISHER_LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


def _check_true_fisher_likelihood(likelihood):
  if likelihood.name not in _TRUE_FISHER_LIKELIHOODS:
    raise ValueError(
        f'reference: kind="true" is defined here for the likelihoods {_TRUE_FISHER_LIKELIHOODS} '
        f"(dispatching on Likelihood.name); got a likelihood named {likelihood.name!r}.")
  if likelihood.name == "gaussian" and likelihood.scale is None:
    raise ValueError("reference: a gaussian likelihood needs its scale (Likelihood.scale); "
                     "build it with infojax.likelihoods.gaussian(scale).")


def _true_columns(likelihood, outputs):
  """Output-space columns ``u_k`` of one example with ``sum_k u_k u_k^T = F_z``, from the
  definition ``F_z = E_{y ~ p(y|z)} grad_z nll(z, y) grad_z nll(z, y)^T``.

  The predictions of one example (the positions of a sequence of logits ``(T, C)``, the elements
  of Bernoulli or Gaussian outputs) are independent given ``z``, and each score
  ``grad_z nll_e(z, y_e)`` has zero mean under ``p(y_e|z)``; so the cross terms of the expectation
  vanish and ``F_z = sum_e sum_y p_e(y) grad_z nll_e(z, y) grad_z nll_e(z, y)^T``: one column
  ``sqrt(p_e(y)) grad_z nll_e(z, y)`` per prediction ``e`` and label value ``y``. For the
  Gaussian ``N(z, s^2)`` the closed form ``F_z = I / s^2`` gives the columns ``e_j / s``.

  Args:
    likelihood: a likelihood named ``"categorical"``, ``"bernoulli"`` or ``"gaussian"``.
    outputs: the float64 outputs ``z`` of one example (no example axis).

  Returns:
    A list of arrays shaped like ``outputs``.
  """
  _check_true_fisher_likelihood(likelihood)
  if likelihood.name == "categorical":
    num_classes = outputs.shape[-1]
    return [_categorical_true_column(outputs, prediction, label)
            for prediction in range(outputs.size // num_classes)
            for label in range(num_classes)]
  if likelihood.name == "bernoulli":
    return [_bernoulli_true_column(outputs, element, value)
            for element in range(outputs.size) for value in (0, 1)]
  basis = np.eye(outputs.size, dtype=np.float64) / likelihood.scale
  return [jnp.asarray(row.reshape(outputs.shape), outputs.dtype) for row in basis]


def _columns(apply_fn, params, batch, likelihood, kind, key, mc_samples):
  """Yields ``(x_n, list of output-space columns)`` per example, in float64."""
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples)
  if kind == "true":
    _check_true_fisher_likelihood(likelihood)
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
      cols = _true_columns(likelihood, z_n)
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


def per_example_jacobians(apply_fn, params, inputs, *, wrt="params"):
  """Float64 per-example Jacobians by explicit loops over examples and output entries.

  One ``jax.vjp`` per output entry of each example (evaluated as a batch of one), with the basis
  cotangent of that entry: row m of ``J_n`` is ``J_n^T e_m``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs (N, *output_shape)``.
    params: the parameter pytree.
    inputs: a pytree of arrays with a leading example axis N.
    wrt: ``"params"`` or ``"inputs"`` (example n's outputs in example n's own inputs).

  Returns:
    As ``infojax.fisher.per_example_jacobians``, in float64: leaves
    ``(N, *output_shape, *leaf.shape)`` (params) or ``(N, *output_shape, *leaf.shape[1:])``
    (inputs).
  """
  _require_x64()
  if wrt not in ("params", "inputs"):
    raise ValueError(f'wrt must be "params" or "inputs"; got {wrt!r}.')
  params64, inputs64 = _to64(params), _to64(inputs)
  num_examples = np.shape(jax.tree.leaves(inputs64)[0])[0]
  if wrt == "params":
    pullback = jax.jit(lambda p, x, u: jax.vjp(lambda q: apply_fn(q, x)[0], p)[1](u)[0])
  else:
    pullback = jax.jit(lambda p, x, u: jax.tree.map(
        lambda g: g[0], jax.vjp(lambda y: apply_fn(p, y)[0], x)[1](u)[0]))
  outputs = jax.eval_shape(apply_fn, params64, _example(inputs64, 0))
  output_shape = tuple(outputs.shape[1:])
  num_outputs = int(np.prod(output_shape, dtype=np.int64))
  jacobians = []
  for n in range(num_examples):
    x_n = _example(inputs64, n)
    rows = []
    for m in range(num_outputs):
      basis = np.zeros(num_outputs, dtype=outputs.dtype)
      basis[m] = 1.0
      rows.append(pullback(params64, x_n, jnp.asarray(basis.reshape(output_shape))))
    jacobians.append(jax.tree.map(
        lambda *r: jnp.stack(r).reshape(output_shape + r[0].shape), *rows))
  return jax.tree.map(lambda *j: jnp.stack(j), *jacobians)


def gradient_covariance(apply_fn, params, batch, *, likelihood):
  """The dense gradient covariance ``D`` (P x P, float64) from explicit per-example gradients.

  ``D = (1/N) sum_n (g_n - g_bar)(g_n - g_bar)^T`` with ``g_n = grad nll(x_n, y_n)`` (one
  ``jax.grad`` per example) over the flattened parameters; equal to ``(1/N) sum_n g_n g_n^T -
  g_bar g_bar^T`` (Chaudhari & Soatto 2018). Small models only.
  """
  _require_x64()
  inputs, targets, num_examples, _ = _checks.check_call(apply_fn, params, batch, likelihood)
  inputs64, targets64 = _to64(inputs), _to64(targets)
  flat, unravel = jax.flatten_util.ravel_pytree(_to64(params))
  grad_fn = jax.jit(jax.grad(
      lambda f, x, y: jnp.sum(likelihood.nll(apply_fn(unravel(f), x), y))))
  grads = [np.asarray(grad_fn(flat, _example(inputs64, n), _example(targets64, n)))
           for n in range(num_examples)]
  mean = sum(grads) / num_examples
  centred = [g - mean for g in grads]
  return jnp.asarray(sum(np.outer(c, c) for c in centred) / num_examples)
