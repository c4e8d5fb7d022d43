"""Argument validation shared by the curvature engine (clear errors, never a silent NaN)."""

import jax
import jax.numpy as jnp
import numpy as np

from infojax import likelihoods as likelihoods_lib

KINDS = ("empirical", "true", "mc")
METHODS = ("auto", "vmap", "factored")


def is_concrete(tree) -> bool:
  """True when no leaf of ``tree`` is a tracer (so values can be inspected)."""
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def check_kind(kind: str, *, key=None, mc_samples: int = 1) -> None:
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
  if (isinstance(mc_samples, bool) or not isinstance(mc_samples, (int, np.integer))
      or mc_samples < 1):
    raise ValueError(f"mc_samples must be a positive integer; got {mc_samples!r}.")
  if kind == "mc" and key is None:
    raise ValueError('kind="mc" samples labels from the model and needs a PRNG key: pass key=.')


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}.")


def check_chunk_size(chunk_size) -> None:
  if chunk_size is None:
    return
  if (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer))
      or chunk_size < 1):
    raise ValueError(f"chunk_size must be None or a positive integer; got {chunk_size!r}.")


def _leaf_name(path) -> str:
  return jax.tree_util.keystr(path) or "<root>"


def check_params(params) -> None:
  leaves = jax.tree_util.tree_leaves_with_path(params)
  if not leaves:
    raise ValueError("params: the parameter pytree has no leaves.")
  for path, leaf in leaves:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"params: every leaf must be a floating-point array; leaf {_leaf_name(path)} has "
          f"dtype {dtype}.")
  if is_concrete(params):
    for path, leaf in leaves:
      # Host numpy, not jnp: under an enclosing jit, jnp on a closed-over constant is a tracer.
      if not np.all(np.isfinite(np.asarray(leaf))):
        raise ValueError(
            f"params: leaf {_leaf_name(path)} contains non-finite values (NaN or inf).")


def check_likelihood(likelihood) -> None:
  if not isinstance(likelihood, likelihoods_lib.Likelihood):
    raise TypeError(
        "likelihood must be an infojax.likelihoods.Likelihood, e.g. "
        f"ij.likelihoods.categorical(); got {type(likelihood).__name__}.")


def unpack_batch(batch):
  """Returns ``(inputs, targets, num_examples)`` after checking the batch's structure."""
  if not isinstance(batch, (tuple, list)) or len(batch) != 2:
    raise TypeError("batch must be a tuple (inputs, targets) whose leaves have a leading example "
                    f"axis N; got {type(batch).__name__}.")
  inputs, targets = batch
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves((inputs, targets))}
  if None in sizes:
    raise ValueError("batch: inputs and targets need a leading example axis N; got a scalar leaf.")
  if len(sizes) != 1:
    raise ValueError(
        "batch: inputs and targets must have the same leading (example) axis N; got sizes "
        f"{sorted(sizes)}.")
  (num_examples,) = sizes
  if num_examples < 1:
    raise ValueError("batch: needs at least one example; got N = 0.")
  return inputs, targets, num_examples


def check_call(apply_fn, params, batch, likelihood, *, kind="empirical", key=None, mc_samples=1,
               method="auto", chunk_size=None):
  """Validates a call of the engine; returns ``(inputs, targets, N, outputs_shape_dtype)``."""
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable as apply_fn(params, inputs); got {apply_fn!r}.")
  check_likelihood(likelihood)
  check_kind(kind, key=key, mc_samples=mc_samples)
  check_method(method)
  check_chunk_size(chunk_size)
  check_params(params)
  inputs, targets, num_examples = unpack_batch(batch)
  outputs = jax.eval_shape(apply_fn, params, inputs)
  if not hasattr(outputs, "shape") or not outputs.shape or outputs.shape[0] != num_examples:
    raise ValueError(
        "apply_fn(params, inputs) must return one array of outputs with the leading example axis "
        f"N = {num_examples}; got {outputs}.")
  likelihood.validate_targets(tuple(outputs.shape), targets)
  return inputs, targets, num_examples, outputs
