"""Fisher information diagonals and traces, exact, with two interchangeable strategies.

The Fisher of a model p_w(y|x) on examples x_1..x_N (Amari 1998; Martens 2020, JMLR 21(146)):

* ``"empirical"``: ``(1/N) sum_n grad nll(x_n, y_n)**2`` with the data labels;
* ``"true"``: ``(1/N) sum_n E_{y ~ p_w(y|x_n)} grad nll(x_n, y)**2``, computed exactly as
  ``(1/N) sum_n sum_k (J_n^T s_nk)**2`` with the columns ``s_nk`` of the square-root factor of the
  output Fisher (C backward passes' worth of work for C classes, never a sum over sampled labels);
* ``"mc"``: the same expectation estimated with ``mc_samples`` labels per example drawn with
  ``key``.

This is the Fisher of Achille, Rovere & Soatto (2019), "Critical learning periods in deep networks"
and of Task2Vec (Achille et al. 2019) when ``kind="true"``; see science.md §0.3 and §13.1.
"""

import jax
import jax.numpy as jnp

from infojax.fisher import _checks
from infojax.fisher import columns as columns_lib
from infojax.fisher import per_example


def _prepare(apply_fn, params, batch, likelihood, kind, key, mc_samples, method, chunk_size):
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples,
      method=method, chunk_size=chunk_size)
  keys = columns_lib.example_keys(key, num_examples) if kind == "mc" else None
  column_fn = columns_lib.make_column_fn(likelihood, kind, mc_samples)
  return inputs, targets, keys, column_fn, num_examples


def diagonal(apply_fn, params, batch, *, likelihood, kind="empirical", mc_samples=1, key=None,
             method="auto", chunk_size=None):
  """The diagonal of the Fisher information matrix, averaged over the examples of ``batch``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` (logits for ``categorical``), leading axis N;
      must treat examples independently (no batch statistics; checked in eager calls, see
      `infojax.fisher.check_model`).
    params: the parameter pytree (floating leaves, finite).
    batch: ``(inputs, targets)``, each a pytree with a leading example axis N; targets may be
      None for ``kind="true"`` and ``"mc"``.
    likelihood: an ``infojax.likelihoods.Likelihood``, e.g. ``ij.likelihoods.categorical()``.
    kind: ``"empirical"`` (data labels), ``"true"`` (exact expectation over the model's labels) or
      ``"mc"`` (``mc_samples`` sampled labels per example, needs ``key``).
    mc_samples: labels sampled per example for ``kind="mc"``.
    key: a PRNG key for ``kind="mc"``; example n uses ``jax.random.split(key, N)[n]``.
    method: ``"vmap"`` (per-example ``vjp``, any model), ``"factored"`` (per-layer sums of squares
      for flax ``Dense``/``Conv``/norm layers, no per-example gradients of flat dense layers;
      raises if a leaf is used outside its layer) or ``"auto"`` (leaf by leaf: ``factored`` for
      the leaves whose only use in the traced program is the weight of one recognised layer call,
      ``vmap`` for the others; `infojax.fisher.plan` shows which). All are exact and agree to
      floating-point rounding.
    chunk_size: examples (and output columns) processed per chunk; bounds memory. ``None``: the
      whole batch for ``factored``; for ``vmap``, chunks of at most 2**27 per-example gradient
      entries (512 MiB in float32).

  Returns:
    A pytree with the structure and dtypes of ``params``.

  Cost: ``empirical`` about one gradient (factored: forward + activation backward + one product per
  layer); ``true``: K activation backward passes run as one batched product, K = C for C classes;
  ``mc``: ``mc_samples`` of them. Memory (factored): the activations times K (chunk to bound it).
  """
  inputs, targets, keys, column_fn, num_examples = _prepare(
      apply_fn, params, batch, likelihood, kind, key, mc_samples, method, chunk_size)
  total = per_example.sum_of_squares(apply_fn, params, inputs, targets, keys, column_fn,
                                     method=method, chunk_size=chunk_size)
  return jax.tree.map(lambda s, p: (s / num_examples).astype(p.dtype), total, params)


def trace(apply_fn, params, batch, *, likelihood, kind="empirical", mc_samples=1, key=None,
          method="auto", chunk_size=None, per_leaf=False):
  """The trace of the Fisher, ``(1/N) sum_n sum_k ||J_n^T u_nk||^2``, without building the
  diagonal.

  For a flat dense layer the per-example squared norm factorises, ``||a_n||^2 ||g_n||^2``, so the
  trace costs less than the diagonal there.

  Args:
    apply_fn, params, batch, likelihood, kind, mc_samples, key, method, chunk_size: as in
      ``diagonal``.
    per_leaf: if True, return the trace of each parameter leaf's block (per-layer traces, as plotted
      in "Critical learning periods") as a pytree of scalars.

  Returns:
    A scalar, or a pytree of scalars like ``params``.
  """
  inputs, targets, keys, column_fn, num_examples = _prepare(
      apply_fn, params, batch, likelihood, kind, key, mc_samples, method, chunk_size)
  squares = per_example.example_sq_norms(apply_fn, params, inputs, targets, keys, column_fn,
                                         method=method, chunk_size=chunk_size)
  per_leaf_trace = jax.tree.map(lambda s: jnp.sum(s) / num_examples, squares)
  if per_leaf:
    return per_leaf_trace
  return sum(jax.tree.leaves(per_leaf_trace))


def per_layer(tree, *, reduce="sum"):
  """Aggregates a pytree of per-parameter values (a diagonal, per-leaf traces) by layer.

  A layer is the path of a leaf without its last key (``{"Dense_0": {"kernel", "bias"}}`` gives the
  layer ``"Dense_0"``).

  Args:
    tree: a pytree like ``params``.
    reduce: ``"sum"`` (e.g. the per-layer trace from a diagonal) or ``"mean"`` (mean over the
      layer's entries).

  Returns:
    A dict ``{layer_name: scalar}`` in the order of the leaves.
  """
  if reduce not in ("sum", "mean"):
    raise ValueError(f'reduce must be "sum" or "mean"; got {reduce!r}.')
  totals, counts = {}, {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    name = "/".join(_key_name(k) for k in path[:-1]) or _key_name(path[-1]) if path else "<root>"
    totals[name] = totals.get(name, 0.0) + jnp.sum(leaf)
    counts[name] = counts.get(name, 0) + jnp.size(leaf)
  if reduce == "mean":
    return {name: totals[name] / counts[name] for name in totals}
  return totals


def per_filter(tree):
  """Mean of each kernel leaf over all axes but the last (output units / filters), as in Task2Vec.

  Leaves of rank 0 or 1 (biases, scales) are returned unchanged.

  Returns:
    A pytree like ``tree`` whose leaves have shape ``(leaf.shape[-1],)`` (or are unchanged).
  """
  return jax.tree.map(
      lambda x: jnp.mean(x, axis=tuple(range(x.ndim - 1))) if x.ndim > 1 else x, tree)


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)
