"""Per-example gradients and their norms, and the ``vmap`` strategy of the engine.

The ``vmap`` strategy works for any ``apply_fn``: for each example it linearises the model once
(``jax.vjp``) and pulls the K output-space columns back to the weights, in chunks of examples so
that at most ``chunk_size * K`` per-example gradients exist at once. The ``factored`` strategy
(``infojax.fisher.factored``) gives the same numbers for models made of flax ``Dense``/``Conv``
layers without forming per-example gradients of the whole model.
"""

import jax
import jax.numpy as jnp

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding
from infojax.fisher import columns as columns_lib
from infojax.fisher import discovery
from infojax.fisher import factored

# Default bound on the number of per-example gradient entries alive at once in the vmap strategy
# (2**27 float32 values = 512 MiB).
_VMAP_BUDGET = 2 ** 27


def _example_pullback(apply_fn, params, example_input):
  """``(outputs_n, pullback)`` for one example, evaluated as a batch of one."""
  return jax.vjp(lambda p: apply_fn(p, jax.tree.map(lambda x: x[None], example_input))[0], params)


def _column_gradients(apply_fn, params, column_fn, example):
  """``J_n^T u_nk`` for the K columns of one example: leaves of shape (K, *leaf)."""
  example_input, example_target, example_key = example
  outputs, pullback = _example_pullback(apply_fn, params, example_input)
  columns = column_fn(jax.lax.stop_gradient(outputs), example_target, example_key)
  return jax.vmap(lambda column: pullback(column)[0])(columns)


def _auto_chunk(params, num_examples: int, num_columns: int, chunk_size):
  """Examples per chunk for the vmap strategy.

  Bounded by a memory budget and, on several devices, by ``ceil(N / device_count)``: a single
  ``vmap`` of per-example convolution gradients over a batch sharded along the example axis is
  mis-partitioned by XLA (jax 0.10; the kernel gradient becomes a ``feature_group_count = N``
  convolution and comes back wrong under ``Auto`` axes), while a scan over chunks is exact.
  """
  if chunk_size is not None:
    return chunk_size
  num_params = sum(x.size for x in jax.tree.leaves(params))
  chunk = max(1, _VMAP_BUDGET // max(1, num_params * num_columns))
  if jax.device_count() > 1:
    chunk = min(chunk, max(1, -(-num_examples // jax.device_count())))
  return chunk


def _num_columns(column_fn, params, apply_fn, inputs, targets, keys):
  first = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                       (inputs, targets, keys))
  outputs = jax.eval_shape(lambda p, x: apply_fn(p, jax.tree.map(lambda a: a[None], x))[0],
                           params, first[0])
  shape = jax.eval_shape(column_fn, outputs, first[1], first[2]).shape
  return shape[0]


def vmap_sum_of_squares(apply_fn, params, inputs, targets, keys, column_fn, *, chunk_size=None):
  """``sum_n sum_k (J_n^T u_nk)**2`` per parameter with per-example ``vjp``s."""
  num_columns = _num_columns(column_fn, params, apply_fn, inputs, targets, keys)

  def fn(chunk):
    gradients = jax.vmap(lambda e: _column_gradients(apply_fn, params, column_fn, e))(chunk)
    return jax.tree.map(lambda g: jnp.sum(g * g, axis=(0, 1)), gradients)

  chunk = _auto_chunk(params, _chunks.leading_size(inputs), num_columns, chunk_size)
  return _chunks.chunked_sum(fn, _sharding.replicated((inputs, targets, keys)), chunk)


def vmap_example_sq_norms(apply_fn, params, inputs, targets, keys, column_fn, *, chunk_size=None):
  """``sum_k ||J_n^T u_nk||^2`` per example and leaf, with per-example ``vjp``s."""
  num_columns = _num_columns(column_fn, params, apply_fn, inputs, targets, keys)

  def one(example):
    # The barrier keeps XLA from fusing the reduction into the per-example convolution gradients,
    # a fusion that costs ~1e-4 relative accuracy in float32 on CPU (measured on the cnn workload).
    gradients = jax.lax.optimization_barrier(
        _column_gradients(apply_fn, params, column_fn, example))
    return jax.tree.map(lambda g: jnp.sum(g * g), gradients)

  chunk = _auto_chunk(params, _chunks.leading_size(inputs), num_columns, chunk_size)
  return _chunks.chunked_map(jax.vmap(one), _sharding.replicated((inputs, targets, keys)), chunk)


def vmap_example_gradients(apply_fn, params, inputs, targets, column_fn, *, chunk_size=None):
  """Per-example gradients for a one-column ``column_fn``: leaves with a leading N."""

  def one(example):
    example_input, example_target = example
    gradients = _column_gradients(apply_fn, params, column_fn,
                                  (example_input, example_target, None))
    return jax.tree.map(lambda g: g[0], gradients)

  chunk = _auto_chunk(params, _chunks.leading_size(inputs), 1, chunk_size)
  return _chunks.chunked_map(jax.vmap(one), _sharding.replicated((inputs, targets)), chunk)


def resolve_plan(method: str, apply_fn, params, inputs) -> discovery.Plan:
  """The plan of a validated ``method``: which leaves take which strategy.

  ``"vmap"`` sends every leaf to the per-example path; ``"auto"`` takes the factored path for the
  leaves `discovery.plan` accepts and the per-example path for the others; ``"factored"`` raises
  unless every leaf is accepted.
  """
  if method == "vmap":
    paths = [jax.tree_util.keystr(p) or "<root>"
             for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    return discovery.Plan((), tuple(discovery.LeafPlan(path, "vmap", 'method="vmap"')
                                    for path in paths))
  layer_plan = discovery.plan(apply_fn, params, inputs)
  if method == "factored" and layer_plan.reason is not None:
    raise ValueError(
        'method="factored" needs every parameter leaf used only as the weight of one recognised '
        "flax layer call (Dense, Conv, LayerNorm, GroupNorm, RMSNorm); "
        f"{layer_plan.reason}. Use method=\"auto\" (those leaves then take the exact per-example "
        'path) or method="vmap". ij.fisher.plan(apply_fn, params, inputs) shows the plan.')
  return layer_plan


def _combine(layer_plan, apply_fn, params, factored_fn, vmap_fn, zeros_fn):
  """Assembles a per-leaf quantity from the strategies of ``layer_plan``.

  ``factored_fn(layers) -> {leaf index: value}``; ``vmap_fn(sub_apply_fn, sub_leaves) -> list``
  for the model as a function of the per-example leaves alone (the others held fixed);
  ``zeros_fn(leaf)`` for leaves the program never reads.
  """
  leaves, treedef = jax.tree.flatten(params)
  results = dict(factored_fn(layer_plan.layers)) if layer_plan.layers else {}
  vmap_indices = layer_plan.indices("vmap")
  if vmap_indices:
    def sub_apply_fn(sub_leaves, inputs):
      full = list(leaves)
      for i, leaf in zip(vmap_indices, sub_leaves):
        full[i] = leaf
      return apply_fn(jax.tree.unflatten(treedef, full), inputs)

    values = vmap_fn(sub_apply_fn, [leaves[i] for i in vmap_indices])
    results.update(zip(vmap_indices, values))
  for i in layer_plan.indices("unused"):
    results[i] = zeros_fn(leaves[i])
  return jax.tree.unflatten(treedef, [results[i] for i in range(len(leaves))])


def sum_of_squares(apply_fn, params, inputs, targets, keys, column_fn, *, method, chunk_size):
  """``sum_n sum_k (J_n^T u_nk)**2`` per parameter, each leaf by its planned strategy."""
  return _combine(
      resolve_plan(method, apply_fn, params, inputs), apply_fn, params,
      lambda layers: factored.sum_of_squares(apply_fn, params, inputs, targets, keys, column_fn,
                                             layers=layers, chunk_size=chunk_size),
      lambda fn, sub: vmap_sum_of_squares(fn, sub, inputs, targets, keys, column_fn,
                                          chunk_size=chunk_size),
      jnp.zeros_like)


def example_sq_norms(apply_fn, params, inputs, targets, keys, column_fn, *, method, chunk_size):
  """The per-example, per-leaf ``sum_k ||J_n^T u_nk||^2``, each leaf by its planned strategy."""
  num_examples = _chunks.leading_size(inputs)
  return _combine(
      resolve_plan(method, apply_fn, params, inputs), apply_fn, params,
      lambda layers: factored.example_sq_norms(apply_fn, params, inputs, targets, keys,
                                               column_fn, layers=layers, chunk_size=chunk_size),
      lambda fn, sub: vmap_example_sq_norms(fn, sub, inputs, targets, keys, column_fn,
                                            chunk_size=chunk_size),
      lambda leaf: jnp.zeros((num_examples,), leaf.dtype))


def per_example_grads(apply_fn, params, batch, *, likelihood, method="auto", chunk_size=None):
  """Gradients of each example's negative log-likelihood in the weights.

  ``g_n = grad_w nll(apply_fn(w, x_n), y_n)`` (the loss of one example, not divided by N).

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs``; must treat examples independently.
    params: the parameter pytree (floating leaves).
    batch: ``(inputs, targets)`` with a leading example axis N.
    likelihood: an ``infojax.likelihoods.Likelihood``.
    method: ``"auto"``, ``"vmap"`` or ``"factored"`` (see ``infojax.fisher.diagonal``).
    chunk_size: examples per chunk (bounds the memory of intermediate results).

  Returns:
    A pytree with the structure of ``params`` whose leaves have a leading axis N.

  Cost: one forward and backward pass per example (vmap), or one batched forward and activation
  backward pass plus one outer product per layer (factored). Memory: N x P for the result.
  """
  inputs, targets, _, _ = _checks.check_call(apply_fn, params, batch, likelihood, method=method,
                                             chunk_size=chunk_size)
  column_fn = columns_lib.make_column_fn(likelihood, "empirical")
  num_examples = _chunks.leading_size(inputs)
  return _combine(
      resolve_plan(method, apply_fn, params, inputs), apply_fn, params,
      lambda layers: factored.example_gradients(apply_fn, params, inputs, targets, column_fn,
                                                layers=layers, chunk_size=chunk_size),
      lambda fn, sub: vmap_example_gradients(fn, sub, inputs, targets, column_fn,
                                             chunk_size=chunk_size),
      lambda leaf: jnp.zeros((num_examples,) + leaf.shape, leaf.dtype))


def per_example_grad_norms(apply_fn, params, batch, *, likelihood, method="auto", chunk_size=None,
                           per_leaf=False):
  """L2 norms of the per-example gradients, without materialising them where the layer allows.

  For a flat dense layer ``||a_n g_n^T||^2 = ||a_n||^2 ||g_n||^2``, so the factored strategy needs
  no per-example gradient at all there (Goodfellow 2015, "Efficient per-example gradient
  computations").

  Args:
    apply_fn, params, batch, likelihood, method, chunk_size: as in ``per_example_grads``.
    per_leaf: if True, return the norm of each leaf's block instead of the total.

  Returns:
    An array (N,) of norms, or with ``per_leaf=True`` a pytree like ``params`` of (N,) arrays.
  """
  inputs, targets, _, _ = _checks.check_call(apply_fn, params, batch, likelihood, method=method,
                                             chunk_size=chunk_size)
  column_fn = columns_lib.make_column_fn(likelihood, "empirical")
  squares = example_sq_norms(apply_fn, params, inputs, targets, None, column_fn, method=method,
                             chunk_size=chunk_size)
  if per_leaf:
    return jax.tree.map(jnp.sqrt, squares)
  return jnp.sqrt(sum(jax.tree.leaves(squares)))
