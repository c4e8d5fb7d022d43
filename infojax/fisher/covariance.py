"""The covariance of the per-example gradients: the diffusion matrix of SGD.

``D = (1/N) sum_n g_n g_n^T - g_bar g_bar^T`` with ``g_n = grad_w nll(x_n, y_n)`` and ``g_bar``
their mean, the gradient of the mean loss. A minibatch of b examples drawn with replacement has
gradient covariance ``D / b``; SGD then behaves like the diffusion
``dw = -grad f dt + sqrt(2 beta^{-1} D) dW`` with temperature ``beta^{-1} = lr / (2 b)``, whose
steady state is not ``exp(-beta f)`` unless ``D`` is isotropic (Chaudhari & Soatto 2018,
"Stochastic gradient descent performs variational inference, converges to limit cycles for deep
networks", ICLR; science.md §12).

``D`` is the empirical Fisher minus a rank-one term, so every output composes the engine's exact
empirical-Fisher primitives (``diagonal``, ``trace``, ``vector_product`` with
``kind="empirical"``) with one gradient of the mean loss.
"""

import jax
import jax.numpy as jnp

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import products
from infojax.fisher.diagonal import diagonal as fisher_diagonal
from infojax.fisher.diagonal import trace as fisher_trace

OUTPUTS = ("diagonal", "trace", "product")


def _check_v(output, params, v) -> None:
  if output != "product":
    if v is not None:
      raise ValueError(f'v is used only with output="product"; got output={output!r} and a v.')
    return
  if v is None:
    raise ValueError('output="product" computes D v and needs v=, a pytree like params.')
  if jax.tree.structure(v) != jax.tree.structure(params):
    raise ValueError(f"v must have the pytree structure of params; got {jax.tree.structure(v)} "
                     f"for params {jax.tree.structure(params)}.")
  for p, x in zip(jax.tree.leaves(params), jax.tree.leaves(v)):
    if jnp.shape(p) != jnp.shape(x):
      raise ValueError(f"v leaves must have the shapes of params; got {jnp.shape(x)} where params "
                       f"has {jnp.shape(p)}.")


def _mean_gradient(apply_fn, params, inputs, targets, likelihood, num_examples, *,
                   chunk_size=None):
  """``g_bar = (1/N) sum_n grad nll(x_n, y_n)``, summed over chunks of ``chunk_size`` examples."""
  def chunk_gradient(chunk):
    chunk_inputs, chunk_targets = chunk
    return jax.grad(
        lambda p: jnp.sum(likelihood.nll(apply_fn(p, chunk_inputs), chunk_targets)))(params)

  total = _chunks.chunked_sum(chunk_gradient, (inputs, targets), chunk_size)
  return jax.tree.map(lambda g: g / num_examples, total)


def gradient_covariance(apply_fn, params, batch, *, likelihood, output="diagonal", v=None,
                        method="auto", chunk_size=None):
  """The covariance ``D`` of the per-example gradients of the nll (the SGD noise covariance).

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` with a leading example axis N; must treat
      examples independently.
    params: the parameter pytree (floating leaves).
    batch: ``(inputs, targets)`` with a leading example axis N.
    likelihood: an ``infojax.likelihoods.Likelihood``.
    output: ``"diagonal"`` (``diag D``, a pytree like ``params``), ``"trace"`` (``tr D``, a
      scalar) or ``"product"`` (``D v``, a pytree like ``params``; needs ``v``).
    v: a pytree like ``params`` for ``output="product"``; must be None otherwise.
    method, chunk_size: passed to the empirical-Fisher primitive (``"auto"``, ``"vmap"`` or
      ``"factored"``; examples per chunk) as in ``infojax.fisher.diagonal``; ``chunk_size`` also
      chunks the gradient of the mean loss.

  Returns:
    ``diag D`` or ``D v`` as a pytree with the structure and dtypes of ``params``, or ``tr D`` as a
    scalar. ``D`` is positive semi-definite, but its diagonal is a difference of two sums, so
    entries whose variance is tiny next to ``g_bar**2`` can come out slightly negative, by about
    the rounding of ``E[g**2]``.

  Cost: the empirical-Fisher primitive (about one gradient per example, or less with the factored
  strategy) plus one gradient of the mean loss over the batch. Memory: that of the primitive.
  """
  if output not in OUTPUTS:
    raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}.")
  _check_v(output, params, v)
  if output == "product":
    return gradient_covariance_product_fn(apply_fn, params, batch, likelihood=likelihood,
                                          method=method, chunk_size=chunk_size)(v)
  # The second-moment call validates the whole call (and, eagerly, the model's independence).
  options = dict(likelihood=likelihood, kind="empirical", method=method, chunk_size=chunk_size)
  if output == "diagonal":
    second_moment = fisher_diagonal(apply_fn, params, batch, **options)
  else:
    second_moment = fisher_trace(apply_fn, params, batch, **options)
  mean = _batch_mean_gradient(apply_fn, params, batch, likelihood, chunk_size)
  if output == "diagonal":
    return jax.tree.map(lambda s, g, p: (s - g * g).astype(p.dtype), second_moment, mean, params)
  return second_moment - sum(jnp.sum(g * g) for g in jax.tree.leaves(mean))


def _batch_mean_gradient(apply_fn, params, batch, likelihood, chunk_size):
  inputs, targets, num_examples = _checks.unpack_batch(batch)
  return _mean_gradient(apply_fn, params, inputs, targets, likelihood, num_examples,
                        chunk_size=chunk_size)


def gradient_covariance_product_fn(apply_fn, params, batch, *, likelihood, method="auto",
                                   chunk_size=None):
  """``v -> D v``, with the mean gradient ``g_bar`` computed once, for iterative solvers.

  ``D v = F_emp v - g_bar (g_bar . v)``: each product is one empirical Fisher-vector product
  (`infojax.fisher.vector_product`); ``g_bar`` (one gradient of the mean loss) is computed when
  this is called, not per product, so Lanczos on ``D`` (`infojax.fisher.eigenvalues`) pays it
  once. Arguments as in `gradient_covariance`.
  """
  _checks.check_call(apply_fn, params, batch, likelihood, method=method, chunk_size=chunk_size)
  mean = _batch_mean_gradient(apply_fn, params, batch, likelihood, chunk_size)
  options = dict(likelihood=likelihood, kind="empirical", method=method, chunk_size=chunk_size)

  def product(v):
    _check_v("product", params, v)
    second_moment = products.vector_product(apply_fn, params, batch, v, **options)
    projection = sum(jnp.sum(g * x) for g, x in zip(jax.tree.leaves(mean), jax.tree.leaves(v)))
    return jax.tree.map(lambda s, g, p: (s - g * projection).astype(p.dtype), second_moment,
                        mean, params)

  return product
