"""Per-example statistics of flax ``Dense`` layers, for the factored strategy.

On a flat input the per-example kernel gradient is an outer product, ``a_n g_n^T`` with the layer
input ``a_n`` and the gradient ``g_n`` in the layer's output, so the sum of squares over examples
and columns is one matrix product and the squared norm a product of norms, without any
per-example gradient (Goodfellow 2015, "Efficient per-example gradient computations"; Dangel,
Kunstner & Hennig 2020, "BackPACK", ICLR):

    sum_n sum_k (a_n g_nk^T)**2 = (A o A)^T sum_k (G_k o G_k),
    ||a_n g_nk^T||^2 = ||a_n||^2 ||g_nk||^2.

On inputs with extra axes (a sequence) the per-example gradient is a sum of outer products over
positions and is formed explicitly, one batched product.
"""

import jax.numpy as jnp


def is_flat(layer) -> bool:
  """A dense layer on ``(N, features)`` inputs."""
  return layer.kind == "dense" and len(layer.input_shape) == 2


def kernel_gradients(layer_input, output_gradients):
  """Per-example, per-column kernel gradients ``(n, K, in, out)``, summed over extra axes."""
  return jnp.einsum("n...i,nk...o->nkio", layer_input, output_gradients)


def flat_sum_squares(layer, layer_input, output_gradients):
  """``(kernel, bias)`` sums over n and k of squared gradients for a flat layer."""
  squared = jnp.sum(output_gradients * output_gradients, axis=1)
  kernel = None
  if layer.kernel_index is not None:
    kernel = (layer_input * layer_input).T @ squared
  bias = jnp.sum(squared, axis=0) if layer.bias_index is not None else None
  return kernel, bias


def flat_sq_norms(layer, layer_input, output_gradients):
  """``(kernel, bias)`` per-example sums over k of squared gradient norms, shapes (n,)."""
  gradient_sq = jnp.sum(output_gradients * output_gradients, axis=(1, 2))
  kernel = None
  if layer.kernel_index is not None:
    kernel = jnp.sum(layer_input * layer_input, axis=1) * gradient_sq
  return kernel, (gradient_sq if layer.bias_index is not None else None)
