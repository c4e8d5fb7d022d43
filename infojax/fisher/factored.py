"""The factored strategy: per-layer sums of squares without per-example gradients of the
whole model.

For a layer whose per-example weight gradient is an outer product (a flax ``Dense`` on a flat input,
``grad_W nll_n = a_n g_n^T`` with the layer input ``a_n`` and the gradient ``g_n`` of the loss in
the layer's output), the sum over examples of squared gradients is one matrix product,

    sum_n (a_n g_n^T)**2 = (A o A)^T (G o G),

so the empirical Fisher diagonal costs a forward pass, the backward pass through the activations (no
weight gradients) and one extra product per layer (Goodfellow 2015, "Efficient per-example gradient
computations"; Dangel, Kunstner & Hennig 2020, "BackPACK", ICLR). The exact ("true") Fisher sums
over the C output-Fisher columns before the product, ``(A o A)^T sum_c (G_c o G_c)``, so only the C
activation backward passes remain and they run as one batched product.

Layers whose per-example gradient is a sum of outer products (``Conv``, or ``Dense`` applied to
inputs with extra axes) get their per-example weight gradients formed chunk by chunk (never the
whole N x P tensor at once), squared and summed; normalisation layers use ``sum g o x_hat``. The
per-layer algebra lives in `dense`, `conv` and `norms`; which leaves may use it is decided from
the traced program by `discovery.plan`. A zero "tap" added to each planned layer's output gives
the output gradients.

Every function here returns ``{leaf index: value}`` for the leaves the plan marks "factored"; the
dispatcher (`per_example`) computes the others on the exact per-example path.

Assumption (as for any per-example quantity): ``apply_fn`` treats examples independently, i.e. row n
of every layer's input and output belongs to example n (checked eagerly by `_checks.check_model`).
"""

from typing import Optional

import jax
import jax.numpy as jnp

from infojax.fisher import _chunks
from infojax.fisher import _sharding
from infojax.fisher import conv
from infojax.fisher import dense
from infojax.fisher import discovery
from infojax.fisher import norms


def linearize(apply_fn, params, inputs, layers):
  """Forward pass with taps; returns outputs, layer inputs and the pull-back to layer outputs."""
  num_examples = _chunks.leading_size(inputs)
  taps = [jnp.zeros((num_examples,) + layer.output_shape[1:], layer.output_dtype)
          for layer in layers]

  def forward(taps):
    return discovery.run_tapped(apply_fn, params, inputs, layers, taps)

  outputs, pullback, layer_inputs = jax.vjp(forward, taps, has_aux=True)
  return outputs, layer_inputs, lambda cotangent: pullback(cotangent)[0]


def _column_gradients(layer, layer_input, output_gradients):
  """Per-example, per-column (kernel, bias) gradients of one layer's planned leaves.

  Args:
    layer: the layer.
    layer_input: (n, *input) inputs of the layer.
    output_gradients: (n, K, *output) gradients in the layer's output, K columns per example.

  Returns:
    ``(kernel, bias)`` of shapes ``(n, K, *kernel_shape)`` and ``(n, K, *bias_shape)``, None for
    a leaf that is absent or not planned here.
  """
  kernel = None
  if layer.kernel_index is not None:
    if layer.kind == "norm":
      kernel = norms.scale_gradients(layer, layer_input, output_gradients)
    elif layer.kind == "dense":
      kernel = dense.kernel_gradients(layer_input, output_gradients)
    else:
      kernel = conv.kernel_gradients(layer, layer_input, output_gradients)
  bias = None
  if layer.bias_index is not None:
    bias = jnp.sum(output_gradients, axis=tuple(range(2, output_gradients.ndim - 1)))
  return kernel, bias


def _sum_squares(layer, layer_input, output_gradients):
  """sum_n sum_k of squared per-example gradients; ``output_gradients`` is (n, K, ...)."""
  if dense.is_flat(layer):
    return dense.flat_sum_squares(layer, layer_input, output_gradients)
  return jax.tree.map(lambda x: jnp.sum(x * x, axis=(0, 1)),
                      _column_gradients(layer, layer_input, output_gradients))


def _sq_norms(layer, layer_input, output_gradients):
  """Per-example sum_k of squared gradient norms, per leaf: shapes (n,), (n,) or None."""
  if dense.is_flat(layer):
    return dense.flat_sq_norms(layer, layer_input, output_gradients)
  return jax.tree.map(lambda x: jnp.sum(x * x, axis=tuple(range(1, x.ndim))),
                      _column_gradients(layer, layer_input, output_gradients))


def _by_leaf(layers, per_layer) -> dict:
  """``{leaf index: value}`` from per-layer ``(kernel, bias)`` results."""
  placed = {}
  for layer, (kernel, bias) in zip(layers, per_layer):
    if layer.kernel_index is not None:
      placed[layer.kernel_index] = kernel
    if layer.bias_index is not None:
      placed[layer.bias_index] = bias
  return placed


# With convolutions, pull back at least this many (example, column) rows at a time.
_CONV_ROWS = 64


def column_block(layers, inputs, num_columns: int, chunk_size: Optional[int]) -> Optional[int]:
  """How many output-space columns to pull back together (``None``: all of them).

  Batching a convolution's pull-back over columns (`jax.vmap`) merges the column axis into the
  example axis, columns major. On a batch sharded over several devices XLA then all-gathers every
  example's output gradients on every device (the true Fisher of a small CNN ran 2.6x slower on 8
  devices than on one), and explicit sharding cannot express the reshape at all. So the columns go
  one at a time when the inputs are explicitly sharded, or when the model has convolutions and
  more than one device exists (the batch may be sharded: under `jit` with automatic axes this is
  not visible when tracing).

  Otherwise ``chunk_size`` if given. By default dense-only models batch all columns (2.5x faster
  than one at a time for the MLP of the benchmark on 2 CPU cores), and models with convolutions
  batch about ``_CONV_ROWS`` rows, in equal blocks: one column at a time from 64 examples on (as
  fast, and the memory of one column: the CNN's true Fisher at 1.4x a gradient's instead of 3.6x),
  more for small batches (All-CNN at batch 8: all 10 columns together is 2x faster than one at a
  time).
  """
  convolutional = any(layer.kind == "conv" for layer in layers)
  if _sharding.explicitly_sharded(inputs) or (convolutional and jax.device_count() > 1):
    return 1
  if chunk_size is not None:
    return chunk_size
  if convolutional:
    wanted = -(-_CONV_ROWS // max(_chunks.leading_size(inputs), 1))
    blocks = -(-num_columns // wanted)
    return -(-num_columns // blocks)
  return None


def _column_statistic(statistic, apply_fn, params, layers, column_fn, column_chunk):
  """Builds ``fn(chunk of (inputs, targets, keys)) -> per-layer statistic summed over columns``.

  Columns stay example-major, ``(n, K, ...)``, so that a block of k columns runs its backward
  passes as one product over n * k rows (`column_block` chooses k).
  """

  def fn(chunk):
    inputs, targets, keys = chunk
    outputs, layer_inputs, pullback = linearize(apply_fn, params, inputs, layers)
    outputs = jax.lax.stop_gradient(outputs)
    columns = jax.vmap(column_fn)(outputs, targets, keys)       # (n, K, *out)

    def per_block(block):                                       # block: (k, n, *out)
      if block.shape[0] == 1:
        gradients = [g[:, None] for g in pullback(block[0])]
      else:
        gradients = jax.vmap(pullback, in_axes=1, out_axes=1)(jnp.moveaxis(block, 0, 1))
      return [statistic(layer, a, g) for layer, a, g in zip(layers, layer_inputs, gradients)]

    block = column_block(layers, inputs, columns.shape[1], column_chunk)
    return _chunks.chunked_sum(per_block, jnp.moveaxis(columns, 1, 0), block)

  return fn


def sum_of_squares(apply_fn, params, inputs, targets, keys, column_fn, *, layers, chunk_size=None):
  """``sum_n sum_k (J_n^T u_nk)**2`` for the planned leaves, by the factored identities."""
  fn = _column_statistic(_sum_squares, apply_fn, params, layers, column_fn, chunk_size)
  return _by_leaf(layers, _chunks.chunked_sum(fn, (inputs, targets, keys), chunk_size))


def example_sq_norms(apply_fn, params, inputs, targets, keys, column_fn, *, layers,
                     chunk_size=None):
  """``sum_k ||J_n^T u_nk||^2`` per example for the planned leaves: values of shape (N,)."""
  fn = _column_statistic(_sq_norms, apply_fn, params, layers, column_fn, chunk_size)
  return _by_leaf(layers, _chunks.chunked_map(fn, (inputs, targets, keys), chunk_size))


def example_gradients(apply_fn, params, inputs, targets, column_fn, *, layers, chunk_size=None):
  """Per-example gradients ``J_n^T u_n`` (one column per example) of the planned leaves."""

  def fn(chunk):
    inputs, targets = chunk
    outputs, layer_inputs, pullback = linearize(apply_fn, params, inputs, layers)
    columns = jax.vmap(lambda z, y: column_fn(z, y, None)[0])(
        jax.lax.stop_gradient(outputs), targets)
    gradients = pullback(columns)
    return [jax.tree.map(lambda x: x[:, 0], _column_gradients(layer, a, g[:, None]))
            for layer, a, g in zip(layers, layer_inputs, gradients)]

  return _by_leaf(layers, _chunks.chunked_map(fn, (inputs, targets), chunk_size))
