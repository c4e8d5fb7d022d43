"""Per-example kernel gradients of flax ``Conv`` layers, for the factored strategy.

A plain convolution (any strides, kernel dilation and explicit or ``SAME``/``VALID`` padding, one
batch axis, no feature groups) has the per-example kernel gradient ``sum_p patch_np (x) g_np``
over output positions p: the input patches times the output gradients, one batched product. Other
convolutions (feature groups, input dilation, masks, circular padding) pull the output gradient
back through the layer itself, one example at a time.
"""

import itertools

import jax
import jax.numpy as jnp

from infojax.fisher import _chunks


def _padding(layer):
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


def has_patches(layer, layer_input) -> bool:
  """Whether the conv layer is a plain (strided, dilated, padded) convolution of one batch axis."""
  module = layer.module
  spatial = len(layer.kernel_shape) - 2
  return (layer_input.ndim == spatial + 2
          and module.feature_group_count == 1 and module.mask is None
          and all(d == 1 for d in _as_tuple(module.input_dilation, spatial))
          and _padding(layer) is not None)


def patches(layer, layer_input):
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
  padding = _padding(layer)
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
  stacked = jnp.stack(slices, axis=-2)                       # (n, *out, prod(kernel), Cin)
  return stacked.reshape(stacked.shape[:1 + spatial] + (-1,))


def _patch_gradients(layer, layer_input, output_gradients):
  """Per-example, per-column kernel gradients of a plain conv: patches^T G, one product per example.

  ``grad_W nll_nk = sum_p patch_np (x) g_nkp``: the input patches (n, P, prod(kernel)*Cin) times the
  output gradients (n, K, P, Cout), batched over examples with the K columns side by side.
  """
  example_patches = patches(layer, layer_input.astype(output_gradients.dtype))
  n, k = output_gradients.shape[:2]
  example_patches = example_patches.reshape(n, -1, example_patches.shape[-1])
  gradients = output_gradients.reshape(n, k, -1, output_gradients.shape[-1])
  kernel = jnp.einsum("npf,nkpo->nkfo", example_patches, gradients)
  return kernel.reshape((n, k) + layer.kernel_shape)


def _example_kernel_gradient(layer, layer_input, output_gradient):
  """The kernel gradient of one example (no batch axis), pulled back through the layer."""
  zeros = {"kernel": jnp.zeros(layer.kernel_shape, output_gradient.dtype)}
  if layer.bias_shape is not None:
    zeros["bias"] = jnp.zeros(layer.bias_shape, output_gradient.dtype)

  def conv(kernel):
    return layer.module.apply({"params": {**zeros, "kernel": kernel}}, layer_input[None])

  _, pullback = jax.vjp(conv, zeros["kernel"])
  return pullback(output_gradient[None])[0]


def kernel_gradients(layer, layer_input, output_gradients):
  """Per-example, per-column kernel gradients, ``(n, K, *kernel_shape)``.

  Args:
    layer: a conv ``LayerSpec``.
    layer_input: (n, *input) inputs of the layer.
    output_gradients: (n, K, *output) gradients in the layer's output.
  """
  if has_patches(layer, layer_input):
    return _patch_gradients(layer, layer_input, output_gradients)
  # A scan over one chunk per device rather than one vmap over a possibly sharded example axis
  # (see per_example._auto_chunk: XLA mis-partitions the batched kernel gradient).
  per_example = jax.vmap(
      lambda a, g: jax.vmap(lambda h: _example_kernel_gradient(layer, a, h))(g))
  chunk = -(-layer_input.shape[0] // jax.device_count())
  return _chunks.chunked_map(lambda xs: per_example(*xs), (layer_input, output_gradients), chunk)
