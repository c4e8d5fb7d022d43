"""The JAX rows of the Fisher benchmark and their float64 references.

Rows: ``G`` (``jax.grad`` of the mean loss: the unit of every time ratio), and for each engine
method the empirical, true and Monte-Carlo (one sample) Fisher diagonals, the empirical trace and
the per-example gradient norms (``infojax_<method>``). Optionally the plain JAX peer: the empirical
diagonal from ``jax.vmap(jax.grad(...))`` over the whole batch, unchunked (``jax_vmap_grad``).

References, in float64 (each row says which it used):

* ``"brute_force"``: ``infojax.fisher.reference``, explicit Python loops over the examples and the
  output-Fisher columns, one ``jax.vjp`` at a time; the per-example norms from its per-example
  gradients, 32 examples at a time. Independent of the engine's strategies; used on the reference
  workloads.
* ``"engine_vmap_float64"`` / ``"engine_factored_float64"``: the engine itself in float64. On the
  large models (policy ``"engine_vmap"``): the vmap strategy for the quantities with one column per
  example and the default strategy for the true Fisher (the vmap one costs C per-example backward
  passes). On the sweep (policy ``"engine_default"``): the default strategy throughout, as cheap as
  the rows themselves. These measure the float32 rounding of the rows; the brute-force comparison on
  the reference workloads (and the engine's tests) covers the strategies themselves.
* ``G``: ``jax.grad`` in float64. Monte-Carlo rows use the labels that ``kind="mc"`` draws from the
  same key, so their reference is exact too.
"""

from typing import Callable, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import infojax as ij

QUANTITIES = ("G", "empirical", "true", "mc", "trace", "norms")
_NORMS_CHUNK = 32


def default_method(workload) -> str:
  """The strategy ``method="auto"`` takes for ``workload``: "factored" or "vmap"."""
  layer_plan = ij.fisher.plan(workload.apply_fn, workload.params, jnp.asarray(workload.inputs[:1]))
  return "factored" if layer_plan.reason is None else "vmap"


def arguments(workload) -> tuple:
  """``(params, inputs, targets)`` as device arrays: the arguments of every JAX row."""
  return (workload.params, jnp.asarray(workload.inputs), jnp.asarray(workload.targets))


def mean_loss_fn(workload) -> Callable:
  likelihood = ij.likelihoods.categorical()
  return lambda params, inputs, targets: jnp.mean(
      likelihood.nll(workload.apply_fn(params, inputs), targets))


def functions(workload, *, methods: Sequence[str], key, plain_vmap: bool
              ) -> Dict[Tuple[str, str], Callable]:
  """``{(quantity, implementation): jitted fn(params, inputs, targets)}``."""
  apply_fn, likelihood = workload.apply_fn, ij.likelihoods.categorical()
  fns = {("G", "jax_grad"): jax.jit(jax.grad(mean_loss_fn(workload)))}
  for method in methods:
    name = f"infojax_{method}"
    for kind in ("empirical", "true", "mc"):
      fns[(kind, name)] = jax.jit(
          lambda p, x, y, kind=kind, method=method: ij.fisher.diagonal(
              apply_fn, p, (x, y), likelihood=likelihood, kind=kind, key=key, method=method))
    fns[("trace", name)] = jax.jit(lambda p, x, y, method=method: ij.fisher.trace(
        apply_fn, p, (x, y), likelihood=likelihood, method=method))
    fns[("norms", name)] = jax.jit(lambda p, x, y, method=method: ij.fisher.per_example_grad_norms(
        apply_fn, p, (x, y), likelihood=likelihood, method=method))
  if plain_vmap:
    def example_loss(p, x, y):
      return likelihood.nll(apply_fn(p, x[None]), y[None])[0]

    def vmap_grad_empirical(p, x, y):
      grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(p, x, y)
      return jax.tree.map(lambda g: jnp.mean(g * g, axis=0), grads)

    fns[("empirical", "jax_vmap_grad")] = jax.jit(vmap_grad_empirical)
  return fns


def mc_labels(workload, *, key) -> np.ndarray:
  """The ``(N,)`` labels that ``kind="mc"`` with one sample draws from ``key``."""
  sampled = ij.fisher.sample_targets(workload.apply_fn, workload.params,
                                     jnp.asarray(workload.inputs),
                                     likelihood=ij.likelihoods.categorical(), key=key)
  return np.asarray(sampled[:, 0])


class enable_x64:  # pylint: disable=invalid-name
  """Context manager turning on float64 for the references, restoring the setting afterwards."""

  def __enter__(self):
    self.previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)

  def __exit__(self, *exc):
    jax.config.update("jax_enable_x64", self.previous)


def _to64(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)


def _total(tree) -> np.float64:
  return np.float64(sum(np.sum(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)))


def _brute_force_norms(workload, likelihood) -> np.ndarray:
  norms = []
  for start in range(0, workload.batch_size, _NORMS_CHUNK):
    batch = (workload.inputs[start:start + _NORMS_CHUNK],
             workload.targets[start:start + _NORMS_CHUNK])
    norms.append(np.asarray(ij.fisher.reference.per_example_grad_norms(
        workload.apply_fn, workload.params, batch, likelihood=likelihood)))
  return np.concatenate(norms)


REFERENCE_POLICIES = ("brute_force", "engine_vmap", "engine_default")


def float64_references(workload, quantities: Sequence[str], *, key, policy: str,
                       method: str) -> Dict[str, Tuple[object, str]]:
  """``{quantity: (float64 value, source)}`` for the requested quantities (see the module doc).

  Args:
    workload: an `infojax.bench.workloads.Workload`.
    quantities: names among `QUANTITIES`.
    key: the key of the ``kind="mc"`` rows.
    policy: ``"brute_force"`` (``infojax.fisher.reference``), ``"engine_vmap"`` (the engine in
      float64, vmap strategy, except ``method`` for the true Fisher) or ``"engine_default"`` (the
      engine in float64 with ``method`` throughout).
    method: the engine's default strategy for this workload ("factored" or "vmap").
  """
  if policy not in REFERENCE_POLICIES:
    raise ValueError(f"policy must be one of {REFERENCE_POLICIES}; got {policy!r}.")
  likelihood = ij.likelihoods.categorical()
  labels = {"empirical": workload.targets, "true": workload.targets,
            # One sampled label per example: the empirical diagonal at the labels kind="mc" draws
            # (drawn in float32, as the rows draw them).
            "mc": mc_labels(workload, key=key)}
  sources, values = {}, {}
  with enable_x64():
    params64, inputs64 = _to64(workload.params), jnp.asarray(workload.inputs, jnp.float64)
    targets = jnp.asarray(workload.targets)
    if "G" in quantities:
      values["G"] = jax.jit(jax.grad(mean_loss_fn(workload)))(params64, inputs64, targets)
      sources["G"] = "float64 jax.grad"
    for kind in ("empirical", "true", "mc"):
      if kind not in quantities and not (kind == "empirical" and "trace" in quantities):
        continue
      if policy == "brute_force":
        values[kind] = ij.fisher.reference.diagonal(
            workload.apply_fn, workload.params, (workload.inputs, workload.targets),
            likelihood=likelihood, kind=kind, key=key)
        sources[kind] = policy
      else:
        strategy = method if policy == "engine_default" or kind == "true" else "vmap"
        values[kind] = jax.jit(lambda p, x, y, kind=kind, strategy=strategy: ij.fisher.diagonal(
            workload.apply_fn, p, (x, y), likelihood=likelihood,
            kind="true" if kind == "true" else "empirical", method=strategy))(
                params64, inputs64, jnp.asarray(labels[kind]))
        sources[kind] = f"engine_{strategy}_float64"
    if "trace" in quantities:
      values["trace"] = _total(values["empirical"])
      sources["trace"] = sources["empirical"] + " (sum of the empirical diagonal)"
    if "norms" in quantities:
      if policy == "brute_force":
        values["norms"] = _brute_force_norms(workload, likelihood)
        sources["norms"] = policy
      else:
        strategy = method if policy == "engine_default" else "vmap"
        values["norms"] = jax.jit(lambda p, x, y: ij.fisher.per_example_grad_norms(
            workload.apply_fn, p, (x, y), likelihood=likelihood, method=strategy))(
                params64, inputs64, targets)
        sources["norms"] = f"engine_{strategy}_float64"
    values = jax.tree.map(lambda v: np.asarray(v, np.float64), values)
  return {q: (values[q], sources[q]) for q in quantities if q in values}
