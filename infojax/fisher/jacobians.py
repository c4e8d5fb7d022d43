"""Per-example Jacobians of a model's outputs, and matrix-free per-example products with them.

For a model ``z_n = f(w, x_n)`` that treats its examples independently, ``J_n = dz_n / dw`` (or
``dz_n / dx_n``) is the Jacobian of example n's outputs. The Fisher of the weights is built from
the ``J_n`` (``F = (1/N) sum_n J_n^T M_n J_n``; Martens 2020, "New insights and perspectives on
the natural gradient method", JMLR 21(146)) and the input Jacobians ``dz_n / dx_n`` from the
effective information of the activations (science.md §2, "Where is the information", Def 3.1).

Each example is evaluated as a batch of one (``jax.tree.map(lambda x: x[None], example)``), so any
``apply_fn(params, inputs)`` that maps a batch to a batch works, and the examples are mapped with
``vmap`` in chunks of ``chunk_size`` examples to bound memory.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding

WRT = ("params", "inputs")

# Default bound on the number of Jacobian entries alive at once (2**27 float32 values = 512 MiB).
_JACOBIAN_BUDGET = 2 ** 27


def _check_wrt(wrt) -> None:
  if wrt not in WRT:
    raise ValueError(f"wrt must be one of {WRT}; got {wrt!r}.")


def _check_floating(inputs) -> None:
  for path, leaf in jax.tree_util.tree_leaves_with_path(inputs):
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          'inputs: with wrt="inputs" every leaf must be a floating-point array; leaf '
          f"{jax.tree_util.keystr(path) or '<root>'} has dtype {dtype}. Close over "
          "non-differentiable inputs inside apply_fn instead.")


def _check_call(apply_fn, params, inputs, *, wrt="params", chunk_size=None):
  """Validates a call; returns ``(N, per-example output shape)``."""
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable as apply_fn(params, inputs); got {apply_fn!r}.")
  _check_wrt(wrt)
  _checks.check_chunk_size(chunk_size)
  _checks.check_params(params)
  num_examples = _checks.check_inputs(inputs)
  if wrt == "inputs":
    _check_floating(inputs)
  outputs = jax.eval_shape(apply_fn, params, inputs)
  _checks.check_outputs(outputs, num_examples)
  _checks.check_independent(apply_fn, params, inputs)
  return num_examples, tuple(outputs.shape[1:])


def _one_example_fn(apply_fn, params, example_input, wrt):
  """``(f, primal)``: example n's outputs as a function of its weights or of its own inputs."""
  def batch_of_one(x):
    return jax.tree.map(lambda a: a[None], x)

  if wrt == "params":
    return (lambda p: apply_fn(p, batch_of_one(example_input))[0]), params
  return (lambda x: apply_fn(params, batch_of_one(x))[0]), example_input


def _size(tree, *, drop_leading=False) -> int:
  return sum(math.prod(np.shape(x)[1:] if drop_leading else np.shape(x))
             for x in jax.tree.leaves(tree))


def _default_chunk(num_examples: int, values_per_example: int, chunk_size):
  """Examples per chunk: a memory budget and, on several devices, ``ceil(N / device_count)``
  (see ``per_example``: one ``vmap`` of per-example convolution gradients over a sharded example
  axis is mis-partitioned by XLA in jax 0.10, a scan over chunks is exact)."""
  if chunk_size is not None:
    return chunk_size
  chunk = max(1, _JACOBIAN_BUDGET // max(1, values_per_example))
  if jax.device_count() > 1:
    chunk = min(chunk, max(1, -(-num_examples // jax.device_count())))
  return chunk


def per_example_jacobians(apply_fn, params, inputs, *, wrt="params", chunk_size=None):
  """The Jacobian of each example's outputs, in the weights or in that example's own inputs.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs``, outputs an array ``(N, *output_shape)``;
      must treat examples independently (no batch statistics).
    params: the parameter pytree (floating leaves).
    inputs: any pytree of arrays sharing a leading example axis N (e.g. a dict of image and mask).
    wrt: ``"params"`` (``dz_n / dw``) or ``"inputs"`` (``dz_n / dx_n``; every input leaf must then
      be floating point).
    chunk_size: examples per chunk (a ``lax.map`` over chunks, each chunk a ``vmap``). ``None``:
      chunks of at most 2**27 Jacobian entries (512 MiB in float32), and on several devices at
      most ``ceil(N / device_count)`` examples.

  Returns:
    With ``wrt="params"``, a pytree like ``params`` whose leaves have shape
    ``(N, *output_shape, *leaf.shape)``; with ``wrt="inputs"``, a pytree like ``inputs`` whose
    leaves have shape ``(N, *output_shape, *leaf.shape[1:])``.

  Cost: per example, ``min(M, D)`` passes through the model, with M the number of outputs per
  example and D the number of differentiated entries (P weights, or the entries of one example's
  inputs): reverse mode (``jacrev``, M VJPs) when ``M <= D``, forward mode (``jacfwd``, D JVPs)
  otherwise. Memory: ``N M D`` for the result, plus the residuals of one chunk.
  """
  num_examples, output_shape = _check_call(apply_fn, params, inputs, wrt=wrt,
                                           chunk_size=chunk_size)
  num_outputs = math.prod(output_shape)
  num_entries = _size(params) if wrt == "params" else _size(inputs, drop_leading=True)
  jacobian = jax.jacfwd if num_entries < num_outputs else jax.jacrev

  def one(example_input):
    fn, primal = _one_example_fn(apply_fn, params, example_input, wrt)
    return jacobian(fn)(primal)

  chunk = _default_chunk(num_examples, num_outputs * num_entries, chunk_size)
  return _chunks.chunked_map(jax.vmap(one), _sharding.replicated(inputs), chunk)


def _check_like(name, reference, tree, *, reference_name, leading=None):
  """Checks that ``tree`` has the structure of ``reference`` and its leaf shapes (after an
  optional leading axis)."""
  if jax.tree.structure(tree) != jax.tree.structure(reference):
    raise ValueError(f"{name} must have the pytree structure of {reference_name}; got "
                     f"{jax.tree.structure(tree)} for {jax.tree.structure(reference)}.")
  for r, t in zip(jax.tree.leaves(reference), jax.tree.leaves(tree)):
    expected = tuple(np.shape(r)) if leading is None else (leading,) + tuple(np.shape(r))
    if tuple(np.shape(t)) != expected:
      raise ValueError(f"{name} leaves must have shape {expected} (like {reference_name}); got "
                       f"{tuple(np.shape(t))}.")


def _like_dtypes(tree, reference):
  return jax.tree.map(lambda t, r: jnp.asarray(t, jnp.result_type(r)), tree, reference)


def per_example_jvp(apply_fn, params, inputs, tangent, *, wrt="params"):
  """``J_n v`` for every example: the outputs' directional derivative, without any Jacobian.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs (N, *output_shape)``; must treat examples
      independently.
    params: the parameter pytree (floating leaves).
    inputs: a pytree of arrays sharing a leading example axis N.
    tangent: with ``wrt="params"``, a pytree like ``params`` (one direction, shared by all
      examples); with ``wrt="inputs"``, a pytree like ``inputs`` with the leading axis N (one
      direction ``t_n`` per example). Cast to the dtypes of what it perturbs.
    wrt: ``"params"`` or ``"inputs"``.

  Returns:
    An array ``(N, *output_shape)``: ``J_n v`` (or ``(dz_n / dx_n) t_n``) for each example.

  Cost: one ``jax.jvp`` over the whole batch, about one forward pass and a half.
  Memory: that of a forward pass (no Jacobian is formed).
  """
  _check_call(apply_fn, params, inputs, wrt=wrt)
  if wrt == "params":
    _check_like("tangent", params, tangent, reference_name="params")
    tangent = _like_dtypes(tangent, params)
    return jax.jvp(lambda p: apply_fn(p, inputs), (params,), (tangent,))[1]
  _check_like("tangent", inputs, tangent, reference_name="inputs")
  tangent = _like_dtypes(tangent, inputs)
  return jax.jvp(lambda x: apply_fn(params, x), (inputs,), (tangent,))[1]


def per_example_vjp(apply_fn, params, inputs, cotangents, *, chunk_size=None):
  """``J_n^T u_n`` for every example: one cotangent per example pulled back to the weights.

  With ``u_n = grad_z nll(z_n, y_n)`` this is the per-example gradient; with the columns of an
  output Fisher factor it gives the terms of a Fisher.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs (N, *output_shape)``; must treat examples
      independently.
    params: the parameter pytree (floating leaves).
    inputs: a pytree of arrays sharing a leading example axis N.
    cotangents: an array ``(N, *output_shape)``, ``u_n`` for each example (cast to the outputs'
      dtype).
    chunk_size: examples per chunk (as in ``per_example_jacobians``); ``None``: at most 2**27
      per-example gradient entries at once.

  Returns:
    A pytree like ``params`` whose leaves have shape ``(N, *leaf.shape)``.

  Cost: one VJP (a backward pass of a batch of one) per example, vmapped. Memory: ``N P`` for
  the result plus the residuals of one chunk.
  """
  num_examples, output_shape = _check_call(apply_fn, params, inputs, chunk_size=chunk_size)
  expected = (num_examples,) + output_shape
  if not hasattr(cotangents, "shape") or tuple(cotangents.shape) != expected:
    raise ValueError(f"cotangents must be an array of shape (N, *output_shape) = {expected}; got "
                     f"{getattr(cotangents, 'shape', type(cotangents).__name__)}.")
  outputs_dtype = jax.eval_shape(apply_fn, params, inputs).dtype
  cotangents = jnp.asarray(cotangents, outputs_dtype)

  def one(example):
    example_input, cotangent = example
    fn, primal = _one_example_fn(apply_fn, params, example_input, "params")
    return jax.vjp(fn, primal)[1](cotangent)[0]

  chunk = _default_chunk(num_examples, _size(params), chunk_size)
  return _chunks.chunked_map(jax.vmap(one), _sharding.replicated((inputs, cotangents)), chunk)
