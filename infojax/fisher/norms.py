"""Per-example scale and bias gradients of flax normalisation layers, for the factored strategy.

For a ``LayerNorm``, ``GroupNorm`` or ``RMSNorm`` whose statistics stay within one example (checked
by `infojax.fisher.discovery`), ``y = x_hat o scale + bias`` with the normalised input ``x_hat``,
so the per-example scale gradient is ``sum_positions g o x_hat`` and the bias gradient
``sum_positions g``. ``x_hat`` is the layer re-applied with unit scale and zero bias.
"""

import jax.numpy as jnp


def normalised(layer, layer_input):
  """The norm layer's output with unit scale and zero bias: ``d output / d scale``."""
  unit = {}
  if layer.kernel_shape is not None:
    unit["scale"] = jnp.ones(layer.kernel_shape, layer.output_dtype)
  if layer.bias_shape is not None:
    unit["bias"] = jnp.zeros(layer.bias_shape, layer.output_dtype)
  return layer.module.apply({"params": unit}, layer_input)


def scale_gradients(layer, layer_input, output_gradients):
  """Per-example, per-column scale gradients ``(n, K, features)`` from gradients ``(n, K, ...)``."""
  middle = tuple(range(2, output_gradients.ndim - 1))
  x_hat = normalised(layer, layer_input).astype(output_gradients.dtype)
  return jnp.sum(output_gradients * x_hat[:, None], axis=middle)
