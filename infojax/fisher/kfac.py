"""Kronecker factors of the Fisher of Dense and Conv layers (the K-FAC approximation).

K-FAC (Martens & Grosse 2015, "Optimizing neural networks with Kronecker-factored approximate
curvature", ICML) approximates the Fisher block of a dense layer, over its kernel flattened
row-major (input index major) with the bias as one extra input row, by a Kronecker product

    F_layer ~ A (x) G,   A = (1/N) sum_n a_n a_n^T,   G = (1/N) sum_n sum_k g_nk g_nk^T,

with the layer input ``a_n`` (a 1 appended when the layer has a bias) and the gradients ``g_nk``
of the output-space columns of the chosen kind (one for ``"empirical"``, C for ``"true"``, as in
`infojax.fisher.diagonal`) in the layer's output. Convolutions and dense layers on inputs with
extra axes follow KFC (Grosse & Martens 2016, "A Kronecker-factored approximate Fisher matrix for
convolution layers", ICML): ``a`` runs over the input patches of every output position t,
``A = (1/N) sum_n sum_t a_nt a_nt^T`` and ``G = (1/N) sum_n (1/T) sum_t sum_k g_ntk g_ntk^T``.

This IS an approximation: it is exact for one example of a flat dense layer (``sum_k (a a^T) (x)
(g_k g_k^T) = (a a^T) (x) sum_k g_k g_k^T``) and otherwise assumes the independence of inputs and
output gradients (and, for convolutions, spatial homogeneity). The exact diagonal is
`infojax.fisher.diagonal`; nothing else in the library substitutes these factors for it.
"""

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding
from infojax.fisher import columns as columns_lib
from infojax.fisher import conv
from infojax.fisher import discovery
from infojax.fisher import factored


@functools.partial(jax.tree_util.register_dataclass, data_fields=["a", "g"],
                   meta_fields=["kernel_path", "bias_path"])
@dataclasses.dataclass(frozen=True)
class KroneckerFactors:
  """The K-FAC factors of one layer (a pytree of ``a`` and ``g``; the paths are static)."""
  a: jax.Array                 # (F, F): F = inputs (or patch size) + 1 with a bias
  g: jax.Array                 # (O, O): O = output features
  kernel_path: str             # the leaf of params the factors describe
  bias_path: Optional[str]     # the bias leaf (the last row and column of ``a``), or None


def _layers(layer_plan):
  """The dense and conv layers whose weights take the factored path; raises for the others."""
  layers = []
  for entry in layer_plan.leaves:
    if entry.strategy == "vmap" and ("dense layer" in entry.detail or "conv layer" in entry.detail):
      raise ValueError(f"kfac_factors: leaf {entry.path} is not used by its layer alone "
                       f"({entry.detail}); Kronecker factors of the layer would not describe it.")
  for layer in layer_plan.layers:
    if layer.kind == "norm":
      continue
    if layer.kind == "conv" and not conv.has_patches(
        layer, jax.ShapeDtypeStruct(layer.input_shape, layer.output_dtype)):
      raise ValueError(f"kfac_factors: {layer.name} is not a plain convolution (feature groups, "
                       "input dilation, a mask or circular padding); no KFC factors for it.")
    layers.append(layer)
  return tuple(layers)


def _activations(layer, layer_input):
  """Rows ``a_nt`` of the A factor: ``(n, T, F)``, a 1 appended for a bias."""
  if layer.kind == "conv":
    rows = conv.patches(layer, layer_input)
  else:
    rows = layer_input
  rows = rows.reshape(rows.shape[0], -1, rows.shape[-1])
  if layer.bias_shape is not None:
    rows = jnp.concatenate([rows, jnp.ones_like(rows[..., :1])], axis=-1)
  return rows


def kfac_factors(apply_fn, params, batch, *, likelihood, kind="true", mc_samples=1, key=None,
                 chunk_size=None):
  """The K-FAC Kronecker factors ``(A, G)`` of every Dense and Conv layer of ``apply_fn``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` made of flax layers (normalisation layers
      are skipped; parameters outside Dense/Conv layers are not described).
    params: the parameter pytree.
    batch: ``(inputs, targets)`` with a leading example axis N (targets may be None unless
      ``kind="empirical"``).
    likelihood: an ``infojax.likelihoods.Likelihood``.
    kind: ``"true"``, ``"empirical"`` or ``"mc"``, the columns of ``G`` (see the module doc).
    mc_samples, key: for ``kind="mc"``.
    chunk_size: examples per chunk (bounds the memory of the K column pull-backs).

  Returns:
    ``{layer path: KroneckerFactors}``, e.g. ``{"Dense_0": KroneckerFactors(a, g, ...)}``.

  Raises:
    ValueError: if a Dense/Conv weight is also used outside its layer, or a convolution is not a
      plain one.

  Cost: one forward pass, K backward passes through the activations (one batched product), and
  per layer two products of sizes ``(N T, F)`` and ``(N T, O)``. Memory: ``F^2 + O^2`` per layer
  and the activations times K for one chunk.
  """
  inputs, targets, num_examples, _ = _checks.check_call(
      apply_fn, params, batch, likelihood, kind=kind, key=key, mc_samples=mc_samples,
      method="factored", chunk_size=chunk_size)
  keys = columns_lib.example_keys(key, num_examples) if kind == "mc" else None
  column_fn = columns_lib.make_column_fn(likelihood, kind, mc_samples)
  layer_plan = discovery.plan(apply_fn, params, inputs)
  layers = _layers(layer_plan)
  if not layers:
    raise ValueError("kfac_factors: apply_fn has no flax Dense or Conv layer to factor.")

  def fn(chunk):
    chunk_inputs, chunk_targets, chunk_keys = chunk
    outputs, layer_inputs, pullback = factored.linearize(apply_fn, params, chunk_inputs, layers)
    columns = jax.vmap(column_fn)(jax.lax.stop_gradient(outputs), chunk_targets, chunk_keys)
    gradients = jax.vmap(pullback, in_axes=1, out_axes=1)(columns)     # per layer (n, K, ...)
    sums = []
    for layer, a, g in zip(layers, layer_inputs, gradients):
      rows = _activations(layer, a.astype(g.dtype))
      positions = rows.shape[1]
      g = g.reshape(-1, g.shape[-1])
      rows = rows.reshape(-1, rows.shape[-1])
      sums.append((rows.T @ rows, (g.T @ g) / positions))
    return sums

  # The factors contract the example axis; on an explicitly sharded batch each device takes the
  # whole (replicated) batch, as the per-example strategy does. Under Auto axes XLA chooses.
  data = _sharding.replicated((inputs, targets, keys))
  totals = _chunks.chunked_sum(fn, data, chunk_size)
  paths = [entry.path for entry in layer_plan.leaves]
  result = {}
  for layer, (a, g) in zip(layers, totals):
    result[layer.name.split(" layer ", 1)[1]] = KroneckerFactors(
        a=a / num_examples, g=g / num_examples, kernel_path=paths[layer.kernel_index],
        bias_path=None if layer.bias_index is None else paths[layer.bias_index])
  return result
