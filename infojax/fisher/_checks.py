"""Argument validation shared by the curvature engine (clear errors, never a silent NaN)."""

import jax
import jax.numpy as jnp
import numpy as np

from infojax import likelihoods as likelihoods_lib
from infojax._validation import is_concrete
from infojax.fisher import _sharding
from infojax.fisher import discovery

KINDS = ("empirical", "true", "mc")
METHODS = ("auto", "vmap", "factored")


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


def unpack_batch(batch, *, needs_targets: bool = True):
  """Returns ``(inputs, targets, num_examples)`` after checking the batch's structure.

  ``targets`` may be None when ``needs_targets`` is False (the true and Monte-Carlo Fisher do not
  read the data labels).
  """
  if not isinstance(batch, (tuple, list)) or len(batch) != 2:
    raise TypeError("batch must be a tuple (inputs, targets) whose leaves have a leading example "
                    f"axis N; got {type(batch).__name__}.")
  inputs, targets = batch
  if targets is None and needs_targets:
    raise ValueError("batch: targets are None, but this quantity uses the data labels (the "
                     'empirical Fisher, per-example gradients, the Hessian). Only kind="true" and '
                     'kind="mc" work without targets.')
  if not jax.tree.leaves(inputs):
    raise ValueError("batch: inputs have no array leaves.")
  sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves((inputs, targets))}
  if None in sizes:
    raise ValueError("batch: inputs and targets need a leading example axis N; got a scalar leaf.")
  if len(sizes) != 1:
    raise ValueError(
        "batch: every leaf of inputs and targets must have the same leading (example) axis N; got "
        f"sizes {sorted(sizes)}.")
  (num_examples,) = sizes
  if num_examples < 1:
    raise ValueError("batch: needs at least one example; got N = 0.")
  return inputs, targets, num_examples


def check_inputs(inputs) -> int:
  """Checks that ``inputs`` is a pytree with a common leading axis N and finite values (when
  concrete); returns N."""
  leaves = jax.tree_util.tree_leaves_with_path(inputs)
  if not leaves:
    raise ValueError("inputs: the pytree has no array leaves.")
  sizes = {np.shape(x)[0] if np.ndim(x) else None for _, x in leaves}
  if None in sizes or len(sizes) != 1:
    raise ValueError("inputs: every leaf needs the same leading example axis N; got leading sizes "
                     f"{[np.shape(x)[:1] for _, x in leaves]}.")
  if sizes == {0}:
    raise ValueError("inputs: needs at least one example; got N = 0.")
  for path, leaf in leaves:
    if isinstance(leaf, jax.core.Tracer):
      continue
    values = np.asarray(leaf)
    if jnp.issubdtype(values.dtype, jnp.inexact) and not np.all(np.isfinite(values)):
      raise ValueError(f"inputs: leaf {_leaf_name(path)} contains non-finite values (NaN or inf).")
  return sizes.pop()


def check_outputs(outputs, num_examples):
  if not hasattr(outputs, "shape") or not outputs.shape or outputs.shape[0] != num_examples:
    raise ValueError(
        "apply_fn(params, inputs) must return one array of outputs with the leading example axis "
        f"N = {num_examples}; got {outputs}.")


def check_independent(apply_fn, params, inputs) -> None:
  """Raises ``ValueError`` if ``apply_fn`` mixes examples; a no-op on traced arguments.

  Per-example gradients, and every Fisher quantity built from them, exist only when row n of the
  outputs depends on example n alone. The check evaluates the last ``m = N // 2`` examples on
  their own and compares them with the same rows of the full batch, to ``sqrt(eps)`` of the
  outputs' scale. That detects batch statistics (``h - h.mean(0)``, BatchNorm in training mode),
  attention or mixing over the batch axis, a dropout mask drawn for the whole batch, and outputs
  that depend on an example's position. It costs 1.5 forward passes, eagerly; under ``jit`` or
  ``vmap`` (traced arguments) nothing can be evaluated and nothing is checked: call `check_model`
  once on concrete arguments first.
  """
  num_examples = jax.tree.leaves(inputs)[0].shape[0]
  if num_examples < 2 or not is_concrete((params, inputs)):
    return
  outputs = apply_fn(params, inputs)
  if not is_concrete(outputs):          # closed-over constants inside an enclosing jit
    return
  size = num_examples // 2
  tail = jax.tree.map(lambda x: _sharding.host_take(x, slice(np.shape(x)[0] - size, None)),
                      inputs)
  alone = np.asarray(apply_fn(params, tail), np.float64)
  together = np.asarray(outputs, np.float64)[num_examples - size:]
  if alone.shape != together.shape:
    raise ValueError(
        "apply_fn does not treat examples independently: outputs for the last "
        f"{size} examples alone have shape {alone.shape}, but the same rows of the full batch "
        f"{together.shape}.")
  scale = max(float(np.max(np.abs(together), initial=0.0)), 1.0)
  tolerance = float(np.sqrt(np.finfo(outputs.dtype).eps)) * scale
  difference = float(np.max(np.abs(alone - together), initial=0.0))
  if not difference <= tolerance:
    raise ValueError(
        "apply_fn does not treat examples independently: the outputs of the last "
        f"{size} of {num_examples} examples evaluated alone differ from the same rows of the full "
        f"batch by up to {difference:.3g} (tolerance {tolerance:.3g}). Per-example gradients and "
        "Fisher quantities need outputs whose row n depends on example n alone: no batch "
        "statistics (BatchNorm in training mode: use use_running_average=True; h - h.mean(0)), no "
        "attention or mixing over the batch axis, no dropout mask drawn for the whole batch.")


def check_model(apply_fn, params, inputs):
  """Checks a model for the curvature engine once, on concrete arguments, before jitting.

  Validates ``params`` (floating, finite) and ``inputs`` (any pytree with a leading example axis
  N, finite), checks that ``apply_fn`` returns outputs with the leading axis N and that it treats
  examples independently (see `check_independent`: what cannot be seen under ``jit``), and
  returns `infojax.fisher.plan` of the model, which says which leaves take the factored path.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs``.
    params: the parameter pytree.
    inputs: inputs with a leading example axis N (N >= 2 for the independence check).

  Returns:
    The `infojax.fisher.discovery.Plan` of the model.

  Raises:
    ValueError: for arguments that are traced (call it outside ``jit``), bad shapes, non-finite
      values, or a model whose outputs mix examples.
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable as apply_fn(params, inputs); got {apply_fn!r}.")
  check_params(params)
  num_examples = check_inputs(inputs)
  if not is_concrete((params, inputs)):
    raise ValueError("check_model evaluates the model: call it on concrete arrays, outside jit "
                     "and vmap.")
  check_outputs(jax.eval_shape(apply_fn, params, inputs), num_examples)
  check_independent(apply_fn, params, inputs)
  return discovery.plan(apply_fn, params, inputs)


def check_call(apply_fn, params, batch, likelihood, *, kind="empirical", key=None, mc_samples=1,
               method="auto", chunk_size=None, needs_targets=None, per_example=True):
  """Validates a call of the engine; returns ``(inputs, targets, N, outputs_shape_dtype)``.

  ``needs_targets`` defaults to ``kind == "empirical"``. It also checks that the inputs are finite
  (eagerly) and, for quantities built from per-example gradients (``per_example``; not the
  Hessian of the batch loss, defined for any model), that ``apply_fn`` treats examples
  independently (`check_independent`).
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable as apply_fn(params, inputs); got {apply_fn!r}.")
  check_likelihood(likelihood)
  check_kind(kind, key=key, mc_samples=mc_samples)
  check_method(method)
  check_chunk_size(chunk_size)
  check_params(params)
  if needs_targets is None:
    needs_targets = kind == "empirical"
  inputs, targets, num_examples = unpack_batch(batch, needs_targets=needs_targets)
  check_inputs(inputs)
  outputs = jax.eval_shape(apply_fn, params, inputs)
  check_outputs(outputs, num_examples)
  if targets is not None:
    likelihood.validate_targets(tuple(outputs.shape), targets)
  if per_example:
    check_independent(apply_fn, params, inputs)
  return inputs, targets, num_examples, outputs
