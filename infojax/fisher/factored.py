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
whole N x P tensor at once), squared and summed.

Layers are found by intercepting flax ``nn.Dense``, ``nn.Conv`` and normalisation calls while
``apply_fn`` runs (``flax.linen.intercept_methods``); a zero "tap" added to each layer's output
gives the output gradients. A layer's kernel is matched to a leaf of ``params`` by identity, so any
pytree layout works. Normalisation layers (flax ``LayerNorm``, ``GroupNorm``, ``RMSNorm``) whose
statistics stay within an example are recognised too: their per-example scale gradient is
``sum_positions g o x_hat`` with the normalised input ``x_hat`` (the layer re-applied with unit
scale and zero bias) and their bias gradient ``sum_positions g``.

The strategy applies only when every parameter leaf belongs to exactly one recognised layer call;
otherwise ``method="auto"`` uses the exact ``vmap`` strategy (never an approximation).

Assumption (as for any per-example quantity): ``apply_fn`` treats examples independently, i.e. row n
of every layer's input and output belongs to example n (no batch statistics).
"""

import itertools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from infojax.fisher import _chunks
from infojax.fisher import _sharding


class LayerSpec(NamedTuple):
  """A recognised layer call (static information gathered while tracing)."""
  kind: str                    # "dense", "conv" or "norm"
  module: Any                  # an unbound clone of the flax module, to re-apply it
  kernel_index: Optional[int]  # index of the kernel (norm: scale) in jax.tree.leaves(params)
  bias_index: Optional[int]    # index of the bias, or None
  kernel_shape: Optional[tuple]
  bias_shape: Optional[tuple]
  input_shape: tuple           # with the leading example axis
  output_shape: tuple
  output_dtype: Any


class Plan(NamedTuple):
  """The result of inspecting ``apply_fn``: the layers, or why the factored strategy cannot
  apply."""
  layers: tuple
  reason: Optional[str]        # None when every parameter leaf is covered


_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _recognised(module) -> Optional[str]:
  """``"dense"``, ``"conv"`` or ``"norm"`` for a layer the strategy understands, else None."""
  if type(module) is nn.Dense:
    custom = module.dot_general is not None or module.dot_general_cls is not None
    return None if custom else "dense"
  if type(module) is nn.Conv:
    custom = module.conv_general_dilated is not None or module.conv_general_dilated_cls is not None
    return None if custom else "conv"
  if type(module) in _NORMS and module.axis_name is None:
    return "norm"
  return None


def _norm_is_per_example(module, ndim: int) -> bool:
  """A norm layer whose statistics stay within each example and whose features are the last axis."""
  def canonical(axes, default):
    axes = default if axes is None else axes
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return {a % ndim for a in axes}

  reduction = canonical(module.reduction_axes, tuple(range(1, ndim)))
  features = canonical(getattr(module, "feature_axes", -1), -1)
  return 0 not in reduction and features == {ndim - 1}


def _run_tapped(apply_fn, params, inputs, taps, on_layer=None):
  """Runs ``apply_fn`` adding ``taps[i]`` to the output of the i-th recognised layer call.

  Returns ``(outputs, layer_inputs)``. ``on_layer(module, kind, layer_input, layer_output)`` is
  called for every recognised call (used when planning).
  """
  layer_inputs = []
  busy = [False]

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if busy[0] or context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    kind = _recognised(module)
    if kind is None:
      return next_fun(*args, **kwargs)
    busy[0] = True
    try:
      output = next_fun(*args, **kwargs)
      if on_layer is not None:
        on_layer(module, kind, args[0], output)
    finally:
      busy[0] = False
    index = len(layer_inputs)
    layer_inputs.append(args[0])
    if taps is not None:
      output = output + taps[index]
    return output

  with nn.intercept_methods(interceptor):
    outputs = apply_fn(params, inputs)
  return outputs, layer_inputs


def plan(apply_fn, params, inputs) -> Plan:
  """Finds the recognised layers of ``apply_fn`` and checks that they cover every parameter.

  Costs one abstract evaluation (no FLOPs). Safe to call under ``jit``.
  """
  layers = []
  problems = []

  def traced(params, inputs):
    leaves = jax.tree.leaves(params)
    index_of = {id(leaf): i for i, leaf in enumerate(leaves)}
    num_examples = jax.tree.leaves(inputs)[0].shape[0]

    def on_layer(module, kind, layer_input, layer_output):
      name = f"{kind} layer {'/'.join(module.path)}"
      variables = module.variables.get("params", {})
      weight = variables.get("scale" if kind == "norm" else "kernel")
      bias = variables.get("bias")
      weight_index = None if weight is None else index_of.get(id(weight))
      bias_index = None if bias is None else index_of.get(id(bias))
      if (weight is not None and weight_index is None) or (bias is not None and bias_index is None):
        problems.append(f"the parameters of {name} are not leaves of params as passed "
                        "(transformed inside apply_fn?)")
        return
      if (np.ndim(layer_input) < 2 or layer_input.shape[0] != num_examples
          or layer_output.shape[0] != num_examples):
        problems.append(f"{name} does not keep the example axis first")
        return
      if kind == "norm" and not _norm_is_per_example(module, np.ndim(layer_input)):
        problems.append(f"{name} normalises across examples or over non-trailing features")
        return
      layers.append(LayerSpec(
          kind=kind, module=module.clone(parent=None), kernel_index=weight_index,
          bias_index=bias_index, kernel_shape=None if weight is None else tuple(weight.shape),
          bias_shape=None if bias is None else tuple(bias.shape),
          input_shape=tuple(layer_input.shape), output_shape=tuple(layer_output.shape),
          output_dtype=layer_output.dtype))

    outputs, _ = _run_tapped(apply_fn, params, inputs, None, on_layer)
    return outputs

  jax.eval_shape(traced, params, inputs)
  num_leaves = len(jax.tree.leaves(params))
  owners = [0] * num_leaves
  for layer in layers:
    for index in (layer.kernel_index, layer.bias_index):
      if index is not None:
        owners[index] += 1
  if not problems:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    shared = [paths[i] for i, n in enumerate(owners) if n > 1]
    missing = [paths[i] for i, n in enumerate(owners) if n == 0]
    if shared:
      problems.append(f"parameters used by more than one layer call: {shared}")
    if missing:
      problems.append(f"parameters outside flax Dense/Conv layers: {missing}")
  return Plan(tuple(layers), "; ".join(problems) if problems else None)


def _linearize(apply_fn, params, inputs, layers):
  """Forward pass with taps; returns outputs, layer inputs and the pull-back to layer outputs."""
  num_examples = jax.tree.leaves(inputs)[0].shape[0]
  taps = [jnp.zeros((num_examples,) + layer.output_shape[1:], layer.output_dtype)
          for layer in layers]

  def forward(taps):
    return _run_tapped(apply_fn, params, inputs, taps)

  outputs, pullback, layer_inputs = jax.vjp(forward, taps, has_aux=True)
  return outputs, layer_inputs, lambda cotangent: pullback(cotangent)[0]


def _conv_kernel_gradient(layer: LayerSpec, layer_input, output_gradient):
  """Per-example kernel gradient of a conv layer for one example (no batch axis)."""
  zeros = {"kernel": jnp.zeros(layer.kernel_shape, output_gradient.dtype)}
  if layer.bias_shape is not None:
    zeros["bias"] = jnp.zeros(layer.bias_shape, output_gradient.dtype)

  def conv(kernel):
    return layer.module.apply({"params": {**zeros, "kernel": kernel}}, layer_input[None])

  _, pullback = jax.vjp(conv, zeros["kernel"])
  return pullback(output_gradient[None])[0]


def _is_flat_dense(layer: LayerSpec) -> bool:
  return layer.kind == "dense" and len(layer.input_shape) == 2


def _conv_padding(layer: LayerSpec):
  """The layer's padding as ``lax`` takes it, or None for paddings done outside the convolution."""
  padding = layer.module.padding
  if isinstance(padding, str):
    return padding.upper() if padding.upper() in ("SAME", "VALID") else None
  spatial = len(layer.kernel_shape) - 2
  if isinstance(padding, int):
    return [(padding, padding)] * spatial
  pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
  return pairs if len(pairs) == spatial else None


def _as_tuple(value, spatial):
  if value is None:
    return (1,) * spatial
  return (value,) * spatial if isinstance(value, int) else tuple(value)


def _has_patches(layer: LayerSpec, layer_input) -> bool:
  """Whether the conv layer is a plain (strided, dilated, padded) convolution of one batch axis."""
  module = layer.module
  spatial = len(layer.kernel_shape) - 2
  return (layer.kind == "conv" and layer_input.ndim == spatial + 2
          and module.feature_group_count == 1 and module.mask is None
          and all(d == 1 for d in _as_tuple(module.input_dilation, spatial))
          and _conv_padding(layer) is not None)


def _patches(layer: LayerSpec, layer_input):
  """Input patches of a plain conv by strided slicing: (n, *out_spatial, prod(kernel) * Cin).

  The feature order (kernel offsets, then input channels) matches the flax kernel layout
  ``(*kernel_spatial, Cin, Cout)`` flattened. Slicing only moves memory, unlike a convolution with a
  one-hot kernel (``lax.conv_general_dilated_patches``), which costs as much as a real convolution.
  """
  module = layer.module
  spatial = len(layer.kernel_shape) - 2
  window = layer.kernel_shape[:spatial]
  strides = _as_tuple(module.strides, spatial)
  dilation = _as_tuple(module.kernel_dilation, spatial)
  dilated = tuple((k - 1) * d + 1 for k, d in zip(window, dilation))
  in_spatial = layer_input.shape[1:1 + spatial]
  padding = _conv_padding(layer)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(in_spatial, dilated, strides, padding)
  padded = jnp.pad(layer_input, [(0, 0)] + [tuple(p) for p in padding] + [(0, 0)])
  out_spatial = tuple((padded.shape[1 + i] - dilated[i]) // strides[i] + 1 for i in range(spatial))
  slices = []
  for offset in itertools.product(*(range(k) for k in window)):
    begin = (0,) + tuple(o * d for o, d in zip(offset, dilation)) + (0,)
    limit = ((layer_input.shape[0],)
             + tuple(b + (m - 1) * s + 1 for b, m, s in zip(begin[1:], out_spatial, strides))
             + (layer_input.shape[-1],))
    slices.append(jax.lax.slice(padded, begin, limit, (1,) + strides + (1,)))
  patches = jnp.stack(slices, axis=-2)                       # (n, *out, prod(kernel), Cin)
  return patches.reshape(patches.shape[:1 + spatial] + (-1,))


def _conv_patch_gradients(layer: LayerSpec, layer_input, output_gradients):
  """Per-example, per-column kernel gradients of a plain conv: patches^T G, one product per example.

  ``grad_W nll_nk = sum_p patch_np (x) g_nkp``: the input patches (n, P, prod(kernel)*Cin) times the
  output gradients (n, K, P, Cout), batched over examples with the K columns side by side.
  """
  patches = _patches(layer, layer_input.astype(output_gradients.dtype))
  n, k = output_gradients.shape[:2]
  patches = patches.reshape(n, -1, patches.shape[-1])
  gradients = output_gradients.reshape(n, k, -1, output_gradients.shape[-1])
  kernel = jnp.einsum("npf,nkpo->nkfo", patches, gradients)
  return kernel.reshape((n, k) + layer.kernel_shape)


def _example_column_gradients(layer: LayerSpec, layer_input, output_gradients):
  """Per-example, per-column (kernel, bias) gradients of one layer.

  Args:
    layer: the layer.
    layer_input: (n, *input) inputs of the layer.
    output_gradients: (n, K, *output) gradients in the layer's output, K columns per example.

  Returns:
    ``(kernel, bias)`` of shapes ``(n, K, *kernel_shape)`` and ``(n, K, *bias_shape)`` (or None).
  """
  middle = tuple(range(2, output_gradients.ndim - 1))
  if layer.kind == "norm":
    kernel = None
    if layer.kernel_index is not None:
      normalised = _normalised(layer, layer_input).astype(output_gradients.dtype)
      kernel = jnp.sum(output_gradients * normalised[:, None], axis=middle)
  elif layer.kind == "dense":
    kernel = jnp.einsum("n...i,nk...o->nkio", layer_input, output_gradients)
  elif _has_patches(layer, layer_input):
    kernel = _conv_patch_gradients(layer, layer_input, output_gradients)
  else:
    # A scan over chunks rather than one vmap over a possibly sharded example axis (see
    # per_example._auto_chunk: XLA mis-partitions the batched kernel gradient).
    per_example = jax.vmap(lambda a, g: jax.vmap(lambda h: _conv_kernel_gradient(layer, a, h))(g))
    chunk = -(-layer_input.shape[0] // jax.device_count())
    kernel = _chunks.chunked_map(lambda xs: per_example(*xs), (layer_input, output_gradients),
                                 chunk)
  bias = None
  if layer.bias_index is not None:
    bias = jnp.sum(output_gradients, axis=middle)
  return kernel, bias


def _normalised(layer: LayerSpec, layer_input):
  """The norm layer's output with unit scale and zero bias: ``d output / d scale``."""
  unit = {}
  if layer.kernel_shape is not None:
    unit["scale"] = jnp.ones(layer.kernel_shape, layer.output_dtype)
  if layer.bias_shape is not None:
    unit["bias"] = jnp.zeros(layer.bias_shape, layer.output_dtype)
  return layer.module.apply({"params": unit}, layer_input)


def _example_gradients(layer: LayerSpec, layer_input, output_gradient):
  """Per-example (kernel, bias) gradients for one column: shapes (n, *kernel), (n, *bias)."""
  return jax.tree.map(lambda x: x[:, 0],
                      _example_column_gradients(layer, layer_input, output_gradient[:, None]))


def _sum_squares(layer: LayerSpec, layer_input, output_gradients):
  """sum_n sum_k of squared per-example gradients; ``output_gradients`` is (n, K, ...)."""
  if _is_flat_dense(layer):
    squared = jnp.sum(output_gradients * output_gradients, axis=1)
    kernel = (layer_input * layer_input).T @ squared
    bias = jnp.sum(squared, axis=0) if layer.bias_index is not None else None
    return kernel, bias
  return jax.tree.map(lambda x: jnp.sum(x * x, axis=(0, 1)),
                      _example_column_gradients(layer, layer_input, output_gradients))


def _sq_norms(layer: LayerSpec, layer_input, output_gradients):
  """Per-example sum_k of squared gradient norms, per leaf: shapes (n,), (n,) or None."""
  if _is_flat_dense(layer):
    gradient_sq = jnp.sum(output_gradients * output_gradients, axis=(1, 2))
    kernel = jnp.sum(layer_input * layer_input, axis=1) * gradient_sq
    return kernel, (gradient_sq if layer.bias_index is not None else None)
  return jax.tree.map(lambda x: jnp.sum(x * x, axis=tuple(range(1, x.ndim))),
                      _example_column_gradients(layer, layer_input, output_gradients))


def _scatter(params, layers, per_layer):
  """Places per-layer (kernel, bias) results at their leaves of ``params``."""
  leaves, treedef = jax.tree.flatten(params)
  placed = [None] * len(leaves)
  for layer, (kernel, bias) in zip(layers, per_layer):
    if layer.kernel_index is not None:
      placed[layer.kernel_index] = kernel
    if layer.bias_index is not None:
      placed[layer.bias_index] = bias
  return jax.tree.unflatten(treedef, placed)


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
    outputs, layer_inputs, pullback = _linearize(apply_fn, params, inputs, layers)
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
  """``sum_n sum_k (J_n^T u_nk)**2`` per parameter, by the factored identities."""
  fn = _column_statistic(_sum_squares, apply_fn, params, layers, column_fn, chunk_size)
  return _scatter(params, layers, _chunks.chunked_sum(fn, (inputs, targets, keys), chunk_size))


def example_sq_norms(apply_fn, params, inputs, targets, keys, column_fn, *, layers,
                     chunk_size=None):
  """``sum_k ||J_n^T u_nk||^2`` per example and per parameter leaf: leaves of shape (N,)."""
  fn = _column_statistic(_sq_norms, apply_fn, params, layers, column_fn, chunk_size)
  return _scatter(params, layers, _chunks.chunked_map(fn, (inputs, targets, keys), chunk_size))


def example_gradients(apply_fn, params, inputs, targets, column_fn, *, layers, chunk_size=None):
  """Per-example gradients ``J_n^T u_n`` (one column per example), leaves with a leading N."""

  def fn(chunk):
    inputs, targets = chunk
    outputs, layer_inputs, pullback = _linearize(apply_fn, params, inputs, layers)
    columns = jax.vmap(lambda z, y: column_fn(z, y, None)[0])(
        jax.lax.stop_gradient(outputs), targets)
    gradients = pullback(columns)
    return [_example_gradients(layer, a, g)
            for layer, a, g in zip(layers, layer_inputs, gradients)]

  return _scatter(params, layers, _chunks.chunked_map(fn, (inputs, targets), chunk_size))
