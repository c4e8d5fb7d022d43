"""Which parameters the factored strategy may handle, found from the traced program.

The factored strategy (``infojax.fisher.factored``) computes a layer's per-example weight
statistics from the layer's input and the gradient in its output. That is exact for a parameter
leaf only when the leaf's *only* use in the whole program is as the weight (or bias, or norm
scale) of one recognised layer call: a kernel also read elsewhere (a tied decoder ``h @
kernel.T``, ``params["Dense_0"]["kernel"]`` used directly, a scale applied outside its norm)
has gradient contributions the layer formula misses.

`plan` therefore traces ``apply_fn`` once (``jax.make_jaxpr``, no FLOPs) with every recognised
flax layer call (``Dense``, ``Conv``, ``LayerNorm``, ``GroupNorm``, ``RMSNorm``) re-expressed as a
named sub-program whose weights are explicit arguments, and counts, in the jaxpr, every use of every
parameter leaf. A leaf takes the factored path only if its single use is a weight slot of one valid
layer call; any other leaf takes the exact per-example (``vmap``) path, and the plan says why.
Leaves that the program never reads have a zero gradient.

flax is imported here only, and only when a plan is made: plain-JAX users do not need it.
"""

import itertools
from typing import Any, NamedTuple, Optional

import jax
import jax.extend.core as jax_core
import numpy as np

_LAYER_PREFIX = "infojax_layer_"
_CALL_PRIMITIVES = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint",
                    "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")


class LayerSpec(NamedTuple):
  """A recognised layer call whose statistics the factored strategy computes."""
  kind: str                    # "dense", "conv" or "norm"
  name: str                    # e.g. "dense layer Dense_0"
  call_index: int              # position among the recognised calls of one run of apply_fn
  module: Any                  # an unbound clone of the flax module, to re-apply it
  kernel_index: Optional[int]  # leaf index of the kernel (norm: scale), None if not factored
  bias_index: Optional[int]    # leaf index of the bias, None if absent or not factored
  kernel_shape: Optional[tuple]
  bias_shape: Optional[tuple]
  input_shape: tuple           # with the leading example axis
  output_shape: tuple
  output_dtype: Any


class LeafPlan(NamedTuple):
  """How one parameter leaf is handled."""
  path: str                    # jax.tree_util.keystr of the leaf
  strategy: str                # "factored", "vmap" or "unused" (the program never reads it)
  detail: str                  # the layer (factored) or the reason (vmap)


class Plan(NamedTuple):
  """The result of `plan`: the layers of the factored path and the path of every leaf."""
  layers: tuple                # LayerSpec, for the layers with at least one factored leaf
  leaves: tuple                # LeafPlan, in the order of jax.tree.leaves(params)

  @property
  def reason(self) -> Optional[str]:
    """None when every leaf takes the factored path (or is unused), else why not."""
    reasons = [f"{leaf.path}: {leaf.detail}" for leaf in self.leaves if leaf.strategy == "vmap"]
    return "; ".join(reasons) if reasons else None

  def indices(self, strategy: str) -> tuple:
    return tuple(i for i, leaf in enumerate(self.leaves) if leaf.strategy == strategy)

  def __str__(self):
    width = max([len(leaf.path) for leaf in self.leaves] + [4])
    lines = [f"{'leaf':<{width}}  {'strategy':<8}  detail"]
    lines += [f"{leaf.path:<{width}}  {leaf.strategy:<8}  {leaf.detail}" for leaf in self.leaves]
    return "\n".join(lines)


def _flax():
  try:
    import flax.linen as nn
  except ImportError:      # plain-JAX users: no layer can be intercepted, everything is vmap.
    return None
  return nn


def _layer_kind(nn, module, args, kwargs) -> Optional[str]:
  """``"dense"``, ``"conv"`` or ``"norm"`` for a call the strategy understands, else None.

  Only exact flax types with their default products, called as ``layer(x)``.
  """
  if len(args) != 1 or kwargs:
    return None
  if type(module) is nn.Dense:
    custom = module.dot_general is not None or module.dot_general_cls is not None
    return None if custom else "dense"
  if type(module) is nn.Conv:
    custom = module.conv_general_dilated is not None or module.conv_general_dilated_cls is not None
    return None if custom else "conv"
  if type(module) in (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm) and module.axis_name is None:
    return "norm"
  return None


def _weight_name(kind: str) -> str:
  return "scale" if kind == "norm" else "kernel"


def intercepted(apply_fn, params, inputs, on_call):
  """Runs ``apply_fn`` calling ``on_call(index, kind, module, next_fun, x)`` for each recognised
  layer call instead of the call itself (``index`` counts the recognised calls in order).

  Calls made while a recognised call runs (its own sub-modules) are not intercepted.
  """
  nn = _flax()
  if nn is None:
    return apply_fn(params, inputs)
  counter = itertools.count()
  busy = [False]

  def interceptor(next_fun, args, kwargs, context):
    if busy[0] or context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    kind = _layer_kind(nn, context.module, args, kwargs)
    if kind is None:
      return next_fun(*args, **kwargs)
    busy[0] = True
    try:
      return on_call(next(counter), kind, context.module, next_fun, args[0])
    finally:
      busy[0] = False

  with nn.intercept_methods(interceptor):
    return apply_fn(params, inputs)


def _norm_is_per_example(module, ndim: int) -> bool:
  """A norm layer whose statistics stay within each example and whose features are the last axis."""
  def canonical(axes, default):
    axes = default if axes is None else axes
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return {a % ndim for a in axes}

  reduction = canonical(module.reduction_axes, tuple(range(1, ndim)))
  features = canonical(getattr(module, "feature_axes", -1), -1)
  return 0 not in reduction and features == {ndim - 1}


class _Call(NamedTuple):
  kind: str
  name: str
  module: Any
  roles: tuple                 # the weight slots passed to the named sub-program, in order
  shapes: dict                 # role -> shape
  input_shape: tuple
  output_shape: tuple
  output_dtype: Any
  problem: Optional[str]       # why the call cannot be factored, or None


def _record_calls(apply_fn, params, inputs):
  """``(closed_jaxpr, calls)``: the program with each recognised call as a named sub-program."""
  calls = []
  num_examples = jax.tree.leaves(inputs)[0].shape[0]

  def on_call(index, kind, module, next_fun, x):
    del next_fun
    variables = dict(module.variables.get("params", {}))
    roles = tuple(r for r in (_weight_name(kind), "bias") if r in variables)
    name = f"{kind} layer {'/'.join(module.path) or type(module).__name__}"
    clone = module.clone(parent=None)

    def layer(*weights_and_input):
      weights = dict(zip(roles, weights_and_input[:-1]))
      return clone.apply({"params": weights}, weights_and_input[-1])

    layer.__name__ = f"{_LAYER_PREFIX}{index}"
    output = jax.jit(layer)(*[variables[r] for r in roles], x)
    problem = None
    if set(variables) - set(roles):
      problem = f"{name} has parameters the strategy does not know: {sorted(variables)}"
    elif np.ndim(x) < 2 or x.shape[0] != num_examples or output.shape[0] != num_examples:
      problem = f"{name} does not keep the example axis first"
    elif kind == "norm" and not _norm_is_per_example(module, np.ndim(x)):
      problem = f"{name} normalises across examples or over non-trailing features"
    calls.append(_Call(kind, name, clone, roles, {r: tuple(variables[r].shape) for r in roles},
                       tuple(x.shape), tuple(output.shape), output.dtype, problem))
    return output

  closed = jax.make_jaxpr(lambda p, x: intercepted(apply_fn, p, x, on_call))(params, inputs)
  return closed, calls


def _sub_jaxpr(eqn):
  """The sub-program of a call-like equation whose inputs align with the equation's, or None."""
  if eqn.primitive.name not in _CALL_PRIMITIVES:
    return None
  for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
    inner = eqn.params.get(key)
    inner = getattr(inner, "jaxpr", inner)
    if isinstance(inner, jax_core.Jaxpr) and len(inner.invars) == len(eqn.invars):
      return inner
  return None


def _collect_uses(jaxpr, owners, uses, calls, *, top=True):
  """Appends to ``uses[leaf]`` every use of a parameter variable in ``jaxpr`` (recursively).

  ``owners`` maps the variables of ``jaxpr`` that are parameter leaves to their leaf index. A use is
  ``("layer", call_index, role)`` or ``("other", description)``. A sub-program that returns a
  parameter unchanged makes the outer result an alias of that leaf, whose uses are followed; only
  the top-level program's outputs count as "an output of the program". Returns, for a sub-program,
  ``{output position: leaf}`` of the outputs that are parameters passed through.
  """
  owners = dict(owners)
  for eqn in jaxpr.eqns:
    name = eqn.params.get("name", "") if eqn.primitive.name in ("jit", "pjit") else ""
    inner = None if name.startswith(_LAYER_PREFIX) else _sub_jaxpr(eqn)
    inner_owners = {}
    for position, var in enumerate(eqn.invars):
      if not isinstance(var, jax_core.Var) or var not in owners:
        continue
      leaf = owners[var]
      if name.startswith(_LAYER_PREFIX):
        call = int(name[len(_LAYER_PREFIX):])
        roles = calls[call].roles
        if position < len(roles):
          uses[leaf].append(("layer", call, roles[position]))
        else:
          uses[leaf].append(("other", f"the input of {calls[call].name}"))
      elif inner is not None:
        inner_owners[inner.invars[position]] = leaf
      else:
        uses[leaf].append(("other", f"a `{eqn.primitive.name}` outside the recognised layers"))
    if inner_owners:
      passed = _collect_uses(inner, inner_owners, uses, calls, top=False)
      for position, leaf in passed.items():
        if position < len(eqn.outvars):
          owners[eqn.outvars[position]] = leaf
  passed = {}
  for position, var in enumerate(jaxpr.outvars):
    if isinstance(var, jax_core.Var) and var in owners:
      if top:
        uses[owners[var]].append(("other", "an output of the program"))
      else:
        passed[position] = owners[var]
  return passed


def _describe(use, calls) -> str:
  if use[0] == "layer":
    return f"the {use[2]} of {calls[use[1]].name}"
  return use[1]


def plan(apply_fn, params, inputs) -> Plan:
  """Which parameter leaves take the factored path, which the exact per-example path, and why.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs``.
    params: the parameter pytree.
    inputs: a pytree of inputs with a leading example axis N (shapes and dtypes are enough).

  Returns:
    A `Plan`: ``plan.leaves[i]`` says how leaf i of ``jax.tree.leaves(params)`` is handled
    (``print(plan)`` shows a table), ``plan.reason`` is None when every leaf is factored.

  Cost: one trace of ``apply_fn`` (no FLOPs). Safe under ``jit``.
  """
  leaves = jax.tree.leaves(params)
  paths = [jax.tree_util.keystr(p) or "<root>"
           for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  if _flax() is None:
    return Plan((), tuple(LeafPlan(path, "vmap", "flax is not installed: no layer is intercepted")
                          for path in paths))
  closed, calls = _record_calls(apply_fn, params, inputs)
  jaxpr = closed.jaxpr
  owners = {var: i for i, var in enumerate(jaxpr.invars[:len(leaves)])}
  uses = [[] for _ in leaves]
  _collect_uses(jaxpr, owners, uses, calls)

  leaf_plans, slots = [], {}
  for i, (path, leaf_uses) in enumerate(zip(paths, uses)):
    if not leaf_uses:
      leaf_plans.append(LeafPlan(path, "unused", "apply_fn never reads it: its gradient is 0"))
      continue
    kind, *rest = leaf_uses[0]
    if len(leaf_uses) == 1 and kind == "layer" and calls[rest[0]].problem is None:
      slots[tuple(rest)] = i
      leaf_plans.append(LeafPlan(path, "factored", f"the {rest[1]} of {calls[rest[0]].name}"))
      continue
    if len(leaf_uses) == 1 and kind == "layer":
      detail = calls[rest[0]].problem
    elif len(leaf_uses) == 1:
      detail = f"used as {rest[0]}"
    else:
      detail = "used as " + " and as ".join(_describe(use, calls) for use in leaf_uses)
    leaf_plans.append(LeafPlan(path, "vmap", detail))

  layers = []
  for index, call in enumerate(calls):
    weight = slots.get((index, _weight_name(call.kind)))
    bias = slots.get((index, "bias"))
    if weight is None and bias is None:
      continue
    layers.append(LayerSpec(
        kind=call.kind, name=call.name, call_index=index, module=call.module,
        kernel_index=weight, bias_index=bias,
        kernel_shape=call.shapes.get(_weight_name(call.kind)), bias_shape=call.shapes.get("bias"),
        input_shape=call.input_shape, output_shape=call.output_shape,
        output_dtype=call.output_dtype))
  return Plan(tuple(layers), tuple(leaf_plans))


def run_tapped(apply_fn, params, inputs, layers, taps):
  """Runs ``apply_fn`` adding ``taps[j]`` to the output of ``layers[j]``'s call.

  Returns ``(outputs, layer_inputs)`` with the inputs of the planned layer calls, in plan order.
  """
  position = {layer.call_index: j for j, layer in enumerate(layers)}
  layer_inputs = [None] * len(layers)

  def on_call(index, kind, module, next_fun, x):
    del kind, module
    output = next_fun(x)
    j = position.get(index)
    if j is None:
      return output
    layer_inputs[j] = x
    return output + taps[j]

  outputs = intercepted(apply_fn, params, inputs, on_call)
  return outputs, layer_inputs
