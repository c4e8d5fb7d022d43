"""Benchmark of the curvature engine's primitives: time and memory against a gradient, and accuracy.

Two parts, in one process:

* Timings (`run_workload`), on the reference ``mlp`` and ``cnn`` workloads
  (`infojax.bench.workloads`), with the machinery of the Fisher benchmark
  (`infojax.bench.measure`): every row a ``jax.jit`` compiled ahead of time, one warm-up call, then
  interleaved timed rounds; the median, its ratio to ``jax.grad`` of the mean loss measured in the
  same run, the per-call peak memory and its ratio to the gradient's, and XLA's planned
  temporaries + outputs. Rows (`QUANTITIES`): the gradient in a ``lax.scan`` over chunks (the
  cost of an XLA loop on the backend), the true Fisher-vector product (whole batch, chunked,
  ``method="vmap"``), the Hessian-vector product, the gradient covariance (diagonal, trace,
  product), the Hessian diagonal (Hutchinson; exact where P products are affordable), per-example
  Jacobians (where the ``N x C x P`` result is affordable), VJPs and JVPs, the K-FAC factors of the
  true Fisher, the top eigenvalues of the true Fisher (Lanczos) and its spectral density (SLQ). A
  row that is too costly on a workload is listed as skipped, with the reason.
* Accuracy (`accuracy`), on a small float64 MLP: the top eigenvalues of the true Fisher by
  ``ij.fisher.eigenvalues`` against ``numpy.linalg.eigh`` of the dense
  ``ij.fisher.reference.matrix``, and every other primitive against its brute-force reference in
  ``ij.fisher.reference``.

`write` puts the markdown section between `report.PRIMITIVES_BEGIN` and `report.PRIMITIVES_END` in
``RESULTS.md`` (replacing an earlier one, else appending; ``scripts/bench_fisher.py`` keeps it when
it rewrites the file) and the same content as JSON in ``PRIMITIVES.json``.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

import infojax as ij
from infojax.bench import jax_rows
from infojax.bench import measure
from infojax.bench import report
from infojax.bench import workloads as workloads_lib

WORKLOADS = ("mlp", "cnn")
# A G_scan row slower than this many gradients gets a note: the backend's loops are slow.
_LOOP_PENALTY = 2.0
QUANTITIES = ("G", "G_scan", "fvp_true", "fvp_true_chunked", "fvp_true_vmap", "hvp",
              "covariance_diagonal", "covariance_trace", "covariance_product",
              "hessian_diagonal_hutchinson", "hessian_diagonal_exact", "per_example_jacobians",
              "per_example_vjp", "per_example_jvp", "kfac_factors_true", "eigenvalues",
              "spectral_density")


@dataclasses.dataclass
class Config:
  """What to run. See ``scripts/bench_primitives.py --help`` for the meaning of each field."""
  workloads: Tuple[str, ...] = WORKLOADS
  workloads_json: str = ""
  repetitions: int = 10
  time_budget_s: float = 3.0
  hutchinson_probes: int = 10
  top_k: int = 5
  lanczos_iterations: int = 20
  slq_probes: int = 3
  slq_iterations: int = 10
  fvp_chunks: int = 4                    # the chunked FVP row uses chunk_size = ceil(N / this)
  exact_hessian_limit: int = 4096        # most parameters (Hessian-vector products) for "exact"
  jacobian_limit: int = 2 ** 26          # most N x C x P entries for per_example_jacobians
  accuracy: bool = True
  accuracy_sizes: Tuple[int, ...] = (20, 16, 3)
  accuracy_batch: int = 64
  seed: int = 0


@dataclasses.dataclass
class Row:
  """One row of the timing table (times in ms, memory in MiB); ``median_ms`` None if skipped."""
  workload: str
  quantity: str
  call: str
  median_ms: Optional[float] = None
  calls: int = 0
  ratio: Optional[float] = None            # median / median of G
  compile_s: Optional[float] = None
  run_peak_mb: Optional[float] = None
  run_peak_ratio: Optional[float] = None   # per-call peak / G's
  xla_memory_mb: Optional[float] = None
  xla_ratio: Optional[float] = None        # XLA plan / G's
  note: str = ""


@dataclasses.dataclass
class AccuracyRow:
  """One row of the accuracy table: ``rel_err = ||engine - reference|| / ||reference||``."""
  quantity: str
  call: str
  reference: str
  rel_err: float
  note: str = ""
  values: Optional[List[float]] = None     # eigenvalue rows: the engine's values
  reference_values: Optional[List[float]] = None


@dataclasses.dataclass
class Result:
  rows: List[Row]
  accuracy: List[AccuracyRow]
  workloads: Dict[str, str]
  accuracy_model: str
  notes: List[str]
  memory_method: Optional[str]
  config: Config


@dataclasses.dataclass
class _Spec:
  """A row to build: a jitted ``fn`` and its arguments, or the reason it is skipped."""
  quantity: str
  call: str
  fn: Optional[Callable] = None
  args: tuple = ()
  skip: str = ""


def _random_like(tree, key):
  """A standard normal pytree with the structure, shapes and dtypes of ``tree``."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                            for k, x in zip(keys, leaves)])


def _num_params(tree) -> int:
  return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def _output_gradients(apply_fn, params, inputs, targets, likelihood):
  """``u_n = d nll(z_n, y_n) / d z_n`` (N, C): the cotangents of the per-example gradients."""
  logits = apply_fn(params, inputs)
  return jax.grad(lambda z: jnp.sum(likelihood.nll(z, targets)))(logits)


def _true_fvp(apply_fn, likelihood, params, inputs, targets):
  """``v -> F_true v`` on the batch: the operator of the Lanczos rows."""
  return lambda v: ij.fisher.vector_product(apply_fn, params, (inputs, targets), v,
                                            likelihood=likelihood, kind="true")


def _gib(values: int) -> str:
  return f"{4 * values / 2 ** 30:.1f} GiB in float32"


def row_specs(workload, config: Config) -> List[_Spec]:
  """The rows of one workload (`QUANTITIES`), each jitted, with its arguments or a skip reason."""
  apply_fn, lik = workload.apply_fn, ij.likelihoods.categorical()
  params, inputs, targets = jax_rows.arguments(workload)
  key = jax.random.key(config.seed)
  vector = _random_like(params, jax.random.fold_in(key, 1))
  num_examples, num_classes = workload.batch_size, workload.num_classes
  size = _num_params(params)
  chunk = -(-num_examples // config.fvp_chunks)
  batch_args, vector_args = (params, inputs, targets), (params, inputs, targets, vector)
  scan_chunks = max(d for d in range(1, config.fvp_chunks + 1) if num_examples % d == 0)

  def fvp(method="auto", chunk_size=None):
    return jax.jit(lambda p, x, y, v: ij.fisher.vector_product(
        apply_fn, p, (x, y), v, likelihood=lik, kind="true", method=method,
        chunk_size=chunk_size))

  def covariance(output):
    if output == "product":
      return jax.jit(lambda p, x, y, v: ij.fisher.gradient_covariance(
          apply_fn, p, (x, y), likelihood=lik, output=output, v=v))
    return jax.jit(lambda p, x, y: ij.fisher.gradient_covariance(
        apply_fn, p, (x, y), likelihood=lik, output=output))

  def hessian_diagonal(method):
    return jax.jit(lambda p, x, y: ij.fisher.hessian_diagonal(
        apply_fn, p, (x, y), likelihood=lik, method=method, key=key,
        num_samples=config.hutchinson_probes))

  def eigenvalues(p, x, y):
    return ij.fisher.eigenvalues(_true_fvp(apply_fn, lik, p, x, y), p, k=config.top_k,
                                 num_iterations=config.lanczos_iterations, key=key)

  def spectral_density(p, x, y):
    return ij.fisher.spectral_density(_true_fvp(apply_fn, lik, p, x, y), p,
                                      num_iterations=config.slq_iterations,
                                      num_probes=config.slq_probes, key=key)

  def scan_gradient(p, x, y):
    """The gradient of the mean loss as a sum over chunks in ``lax.scan``: the loop overhead."""
    def chunk_gradient(total, chunk):
      g = jax.grad(lambda q: jnp.sum(lik.nll(apply_fn(q, chunk[0]), chunk[1])))(p)
      return jax.tree.map(jnp.add, total, g), None

    chunks = jax.tree.map(lambda a: a.reshape((scan_chunks, -1) + a.shape[1:]), (x, y))
    total = jax.lax.scan(chunk_gradient, jax.tree.map(jnp.zeros_like, p), chunks)[0]
    return jax.tree.map(lambda g: g / num_examples, total)

  cotangents = jax.jit(functools.partial(_output_gradients, apply_fn, likelihood=lik))(
      params, inputs, targets)
  specs = [
      _Spec("G", "jax.grad(mean nll)", jax.jit(jax.grad(jax_rows.mean_loss_fn(workload))),
            batch_args),
      _Spec("G_scan", f"jax.lax.scan of jax.grad over {scan_chunks} chunks", jax.jit(scan_gradient),
            batch_args),
      _Spec("fvp_true", 'vector_product(kind="true")', fvp(), vector_args),
      _Spec("fvp_true_chunked", f'vector_product(kind="true", chunk_size={chunk})',
            fvp(chunk_size=chunk), vector_args),
      _Spec("fvp_true_vmap", 'vector_product(kind="true", method="vmap")', fvp("vmap"),
            vector_args),
      _Spec("hvp", "hessian_vector_product", jax.jit(
          lambda p, x, y, v: ij.fisher.hessian_vector_product(apply_fn, p, (x, y), v,
                                                              likelihood=lik)), vector_args),
      _Spec("covariance_diagonal", 'gradient_covariance(output="diagonal")',
            covariance("diagonal"), batch_args),
      _Spec("covariance_trace", 'gradient_covariance(output="trace")', covariance("trace"),
            batch_args),
      _Spec("covariance_product", 'gradient_covariance(output="product")',
            covariance("product"), vector_args),
      _Spec("hessian_diagonal_hutchinson",
            f'hessian_diagonal(method="hutchinson", num_samples={config.hutchinson_probes})',
            hessian_diagonal("hutchinson"), batch_args),
  ]
  if size <= config.exact_hessian_limit:
    specs.append(_Spec("hessian_diagonal_exact", 'hessian_diagonal(method="exact")',
                       hessian_diagonal("exact"), batch_args))
  else:
    specs.append(_Spec("hessian_diagonal_exact", 'hessian_diagonal(method="exact")',
                       skip=f"skipped: P = {size:,} Hessian-vector products (limit "
                       f"{config.exact_hessian_limit:,})"))
  entries = num_examples * num_classes * size
  jacobian_call = 'per_example_jacobians(wrt="params")'
  if entries <= config.jacobian_limit:
    specs.append(_Spec("per_example_jacobians", jacobian_call, jax.jit(
        lambda p, x: ij.fisher.per_example_jacobians(apply_fn, p, x)), (params, inputs)))
  else:
    specs.append(_Spec("per_example_jacobians", jacobian_call,
                       skip=f"skipped: N x C x P = {num_examples} x {num_classes} x {size:,} = "
                       f"{entries:.2e} entries ({_gib(entries)}; limit "
                       f"{config.jacobian_limit:.1e})"))
  specs += [
      _Spec("per_example_vjp", "per_example_vjp(cotangents = d nll / d z)", jax.jit(
          lambda p, x, u: ij.fisher.per_example_vjp(apply_fn, p, x, u)),
            (params, inputs, cotangents)),
      _Spec("per_example_jvp", "per_example_jvp(tangent = v)", jax.jit(
          lambda p, x, v: ij.fisher.per_example_jvp(apply_fn, p, x, v)), (params, inputs, vector)),
      _Spec("kfac_factors_true", 'kfac_factors(kind="true")', jax.jit(
          lambda p, x, y: ij.fisher.kfac_factors(apply_fn, p, (x, y), likelihood=lik,
                                                 kind="true")), batch_args),
      _Spec("eigenvalues", f"eigenvalues(true FVP, k={config.top_k}, "
            f"num_iterations={config.lanczos_iterations})", jax.jit(eigenvalues), batch_args),
      _Spec("spectral_density", f"spectral_density(true FVP, num_probes={config.slq_probes}, "
            f"num_iterations={config.slq_iterations})", jax.jit(spectral_density), batch_args),
  ]
  return specs


def _ratio(value, unit) -> Optional[float]:
  if value is None or not unit:
    return None
  return value / unit


def format_row(row: Row) -> str:
  """The console line of a row."""
  fmt = report._fmt  # pylint: disable=protected-access
  if row.median_ms is None:
    return f"{row.workload:<6} {row.quantity:<28} {row.note}"
  return (f"{row.workload:<6} {row.quantity:<28} {row.median_ms:>10.2f} ms "
          f"x{fmt(row.ratio, '.2f'):>8}  compile {fmt(row.compile_s, '.2f'):>5} s  "
          f"run-peak {fmt(row.run_peak_mb, '.1f'):>7} MB"
          f" (x{fmt(row.run_peak_ratio, '.2f')})  XLA {fmt(row.xla_memory_mb, '.1f')} MB"
          + (f"  [{row.note}]" if row.note else ""))


def run_workload(spec: dict, config: Config, *, log: Callable[[str], None]
                 ) -> Tuple[List[Row], str, Optional[str]]:
  """Measures every row of one workload; returns the rows, its description, the memory method."""
  start = time.perf_counter()
  workload = workloads_lib.build(spec, seed=config.seed)
  log(f"{workload.name}: {workload.description}")
  specs = row_specs(workload, config)
  entries = []
  for s in specs:
    if s.skip:
      continue
    entries.append(measure.jax_entry(s.quantity, s.call, s.fn, s.args))
    log(f"    compiled {s.quantity:<28} {entries[-1].compile_s:6.2f} s")
  measurements = measure.time_entries(entries, repetitions=config.repetitions,
                                      time_budget_s=config.time_budget_s, log=log)
  memory_method = measure.run_peak_memory(entries, measurements)
  by_quantity = {e.quantity: (e, m) for e, m in zip(entries, measurements)}
  gradient_entry, gradient = by_quantity["G"]
  rows = []
  for s in specs:
    if s.quantity not in by_quantity:
      rows.append(Row(workload.name, s.quantity, s.call, note=s.skip))
      continue
    entry, m = by_quantity[s.quantity]
    rows.append(Row(
        workload.name, s.quantity, s.call, median_ms=m.median_ms, calls=len(m.times_s),
        ratio=m.median_ms / gradient.median_ms, compile_s=entry.compile_s,
        run_peak_mb=m.run_peak_mb, run_peak_ratio=_ratio(m.run_peak_mb, gradient.run_peak_mb),
        xla_memory_mb=entry.xla_memory_mb,
        xla_ratio=_ratio(entry.xla_memory_mb, gradient_entry.xla_memory_mb), note=entry.note))
  hvp = by_quantity.get("hvp")
  for row in rows:
    if row.quantity == "hessian_diagonal_exact" and row.median_ms is None and hvp is not None:
      size = workload.num_params
      row.note += (f"; about {size * hvp[1].median_ms / 6e4:,.0f} min at the measured HVP time "
                   "(one product per basis vector)")
  scan = by_quantity.get("G_scan")
  if scan is not None and scan[1].median_ms > _LOOP_PENALTY * gradient.median_ms:
    for row in rows:
      if row.quantity == "G_scan":
        row.note = (f"{row.ratio:.1f}x the same work outside a loop: rows that run products "
                    "inside an XLA loop (chunk_size, Lanczos, SLQ, Hutchinson chunks) pay this"
                    + ("; convolutions in a loop body are slow on XLA:CPU, jax-ml/jax#12868"
                       if jax.default_backend() == "cpu" else ""))
  for row in rows:
    log("  " + format_row(row))
  log(f"  ({time.perf_counter() - start:.0f} s)")
  return rows, workload.description, memory_method


# ---------------------------------------------------------------------------------------------
# Accuracy on a small float64 model.


_flat = measure.flat64
_rel_err = measure.relative_error


def accuracy_spec(config: Config) -> dict:
  """The small MLP of the accuracy table (relu, uniform labels, x ~ N(0, 1))."""
  sizes = list(config.accuracy_sizes)
  return {"kind": "mlp", "name": "small_mlp", "sizes": sizes, "activation": "relu",
          "batch": config.accuracy_batch, "num_classes": sizes[-1], "role": "accuracy"}


def _eigen_row(values, reference_values, *, call, note, label="") -> AccuracyRow:
  values, reference_values = np.asarray(values, np.float64), np.asarray(reference_values)
  errors = np.abs(values - reference_values) / np.abs(reference_values)
  return AccuracyRow(f"eigenvalues top {len(values)}{label}", call,
                     "numpy.linalg.eigh(reference.matrix(kind=\"true\"))", float(np.max(errors)),
                     note=f"{note}; max over the top {len(values)} of abs(l - l_ref) / l_ref "
                     f"(per eigenvalue: {', '.join(f'{e:.1e}' for e in errors)})",
                     values=values.tolist(), reference_values=reference_values.tolist())


def accuracy(config: Config, *, log: Callable[[str], None] = lambda message: None
             ) -> Tuple[List[AccuracyRow], str]:
  """The accuracy table on the small float64 MLP of `accuracy_spec`; returns its rows and the
  model's description."""
  start = time.perf_counter()
  workload = workloads_lib.build(accuracy_spec(config), seed=config.seed)
  apply_fn, lik, k = workload.apply_fn, ij.likelihoods.categorical(), config.top_k
  size = workload.num_params
  key = jax.random.key(config.seed)
  log(f"accuracy: {workload.description}, float64")
  rows = []

  def eigenvalues_fn(m):
    return jax.jit(lambda p, x, y: ij.fisher.eigenvalues(
        _true_fvp(apply_fn, lik, p, x, y), p, k=k, num_iterations=m, key=key).eigenvalues)

  # float32 first (the precision of the timed rows), against the float64 reference below.
  params32, inputs32 = workload.params, jnp.asarray(workload.inputs)
  targets = jnp.asarray(workload.targets)
  values32 = eigenvalues_fn(config.lanczos_iterations)(params32, inputs32, targets)
  with jax_rows.enable_x64():
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), workload.params)
    inputs = jnp.asarray(workload.inputs, jnp.float64)
    batch = (inputs, targets)
    reference = ij.fisher.reference
    fisher = np.asarray(reference.matrix(apply_fn, params, batch, likelihood=lik, kind="true"))
    spectrum = np.linalg.eigh(fisher)[0][::-1]
    rank = int(np.sum(spectrum > 1e-12 * spectrum[0]))
    top = spectrum[:k]
    for m in dict.fromkeys((config.lanczos_iterations, size)):
      values = eigenvalues_fn(m)(params, inputs, targets)
      rows.append(_eigen_row(values, top, call=f"eigenvalues(true FVP, num_iterations={m})",
                             note=f"float64, P = {size}, rank {rank}"))
    rows.append(_eigen_row(values32, top, call="eigenvalues(true FVP, num_iterations="
                           f"{config.lanczos_iterations})",
                           note="float32 model and operator", label=" (float32)"))

    vector = _random_like(params, jax.random.fold_in(key, 1))
    flat_vector = _flat(vector)
    covariance = np.asarray(reference.gradient_covariance(apply_fn, params, batch,
                                                          likelihood=lik))
    for method in ("auto", "vmap"):
      def engine_covariance(output, method=method, **kwargs):
        return jax.jit(lambda p, x, y: ij.fisher.gradient_covariance(
            apply_fn, p, (x, y), likelihood=lik, output=output, method=method, **kwargs))(
                params, inputs, targets)
      name = "reference.gradient_covariance"
      rows += [
          AccuracyRow("covariance_diagonal", f'gradient_covariance(output="diagonal", '
                      f'method="{method}")', f"diag({name})",
                      _rel_err(engine_covariance("diagonal"), np.diag(covariance))),
          AccuracyRow("covariance_trace", f'gradient_covariance(output="trace", method="{method}")',
                      f"trace({name})",
                      _rel_err(engine_covariance("trace"), np.trace(covariance))),
          AccuracyRow("covariance_product", f'gradient_covariance(output="product", '
                      f'method="{method}")', f"{name} @ v",
                      _rel_err(engine_covariance("product", v=vector), covariance @ flat_vector)),
      ]

    hessian = np.asarray(reference.hessian(apply_fn, params, batch, likelihood=lik))
    exact = jax.jit(lambda p, x, y: ij.fisher.hessian_diagonal(
        apply_fn, p, (x, y), likelihood=lik, method="exact"))(params, inputs, targets)
    rows.append(AccuracyRow("hessian_diagonal_exact", 'hessian_diagonal(method="exact")',
                            "diag(reference.hessian)", _rel_err(exact, np.diag(hessian))))
    estimate = jax.jit(lambda p, x, y: ij.fisher.hessian_diagonal(
        apply_fn, p, (x, y), likelihood=lik, method="hutchinson", key=key,
        num_samples=config.hutchinson_probes))(params, inputs, targets)
    deviation = np.abs(_flat(estimate.mean) - np.diag(hessian))
    within = float(np.mean(deviation <= 3 * _flat(estimate.standard_error) + 1e-12))
    rows.append(AccuracyRow(
        "hessian_diagonal_hutchinson",
        f'hessian_diagonal(method="hutchinson", num_samples={config.hutchinson_probes})',
        "diag(reference.hessian)", _rel_err(estimate.mean, np.diag(hessian)),
        note=f"an unbiased estimate, not exact; {100 * within:.0f}% of the entries within 3 "
        "standard errors"))

    rows += [
        AccuracyRow("fvp_true", 'vector_product(kind="true")', "reference.matrix @ v", _rel_err(
            jax.jit(lambda p, x, y, v: _true_fvp(apply_fn, lik, p, x, y)(v))(
                params, inputs, targets, vector), fisher @ flat_vector)),
        AccuracyRow("hvp", "hessian_vector_product", "reference.hessian @ v", _rel_err(
            jax.jit(lambda p, x, y, v: ij.fisher.hessian_vector_product(
                apply_fn, p, (x, y), v, likelihood=lik))(params, inputs, targets, vector),
            hessian @ flat_vector)),
    ]
    jacobians = reference.per_example_jacobians(apply_fn, params, inputs)
    dense = np.concatenate([np.asarray(j).reshape(j.shape[:2] + (-1,))
                            for j in jax.tree.leaves(jacobians)], axis=-1)   # (N, C, P)
    cotangents = _output_gradients(apply_fn, params, inputs, targets, lik)
    rows += [
        AccuracyRow("per_example_jacobians", 'per_example_jacobians(wrt="params")',
                    "reference.per_example_jacobians", _rel_err(jax.jit(
                        lambda p, x: ij.fisher.per_example_jacobians(apply_fn, p, x))(
                            params, inputs), jacobians)),
        AccuracyRow("per_example_vjp", "per_example_vjp(cotangents = d nll / d z)",
                    "J_n^T u_n from the reference Jacobians", _rel_err(
                        _per_example_flat(jax.jit(
                            lambda p, x, u: ij.fisher.per_example_vjp(apply_fn, p, x, u))(
                                params, inputs, cotangents)),
                        np.einsum("ncp,nc->np", dense, np.asarray(cotangents)))),
        AccuracyRow("per_example_jvp", "per_example_jvp(tangent = v)",
                    "J_n v from the reference Jacobians", _rel_err(jax.jit(
                        lambda p, x, v: ij.fisher.per_example_jvp(apply_fn, p, x, v))(
                            params, inputs, vector), dense @ flat_vector)),
    ]
    density = jax.jit(lambda p, x, y: ij.fisher.spectral_density(
        _true_fvp(apply_fn, lik, p, x, y), p, num_iterations=config.slq_iterations,
        num_probes=config.slq_probes, key=key))(params, inputs, targets)
    trace_estimate = size * float(np.mean(np.sum(np.asarray(density.nodes)
                                                 * np.asarray(density.weights), axis=1)))
    rows.append(AccuracyRow(
        "spectral_density", f"spectral_density(num_probes={config.slq_probes}, "
        f"num_iterations={config.slq_iterations})", "trace(reference.matrix)",
        _rel_err(trace_estimate, np.trace(fisher)),
        note="the trace P sum_l tau_l theta_l, averaged over the probes: a Hutchinson-type "
        "estimate, not exact"))
  log(f"  ({time.perf_counter() - start:.0f} s)")
  return rows, workload.description + ", float64"


def _per_example_flat(tree) -> np.ndarray:
  """``(N, P)``: per-example pytree leaves flattened and concatenated in ``ravel_pytree`` order."""
  leaves = jax.tree.leaves(tree)
  return np.concatenate([np.asarray(x, np.float64).reshape(x.shape[0], -1) for x in leaves], 1)


# ---------------------------------------------------------------------------------------------
# Driver and output.


def run(config: Config, *, log: Callable[[str], None] = lambda message: None) -> Result:
  """Runs the benchmark described by ``config``; returns the rows and what the report needs."""
  unknown = sorted(set(config.workloads) - set(WORKLOADS))
  if unknown:
    raise ValueError(f"unknown workloads {unknown}; expected some of {WORKLOADS}.")
  reference, source = workloads_lib.load_reference_workloads(config.workloads_json)
  specs = workloads_lib.plan(config.workloads, reference)
  load_start = _load_average()
  notes = [f"Reference workloads read from {source}."]
  log(f"jax {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
  measure.set_steady_allocator()
  rows, described, memory_method = measure.run_workloads(specs, run_workload, config, log=log)
  accuracy_rows, accuracy_model = [], ""
  if config.accuracy:
    accuracy_rows, accuracy_model = accuracy(config, log=log)
  load_end = _load_average()
  if load_start is not None and load_end is not None:
    notes.append(f"Load average (1 min) {load_start:.2f} at the start and {load_end:.2f} at the "
                 f"end, on {os.cpu_count()} cores: other processes shared the machine, so "
                 "timings are noisy; the interleaved rounds spread the noise over all rows.")
  return Result(rows, accuracy_rows, described, accuracy_model, notes, memory_method, config)


def _load_average() -> Optional[float]:
  try:
    return os.getloadavg()[0]
  except OSError:
    return None


def _cell(text: str) -> str:
  """Text for a markdown table cell (a literal ``|`` would end the cell)."""
  return str(text).replace("|", "\\|")


def _timing_table(rows: Sequence[Row]) -> List[str]:
  fmt = report._fmt  # pylint: disable=protected-access
  lines = ["| workload | quantity | call | median ms | calls | x G | compile s | "
           "per-call peak MB | x G | XLA MB | x G | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if r.median_ms is None:
      lines.append(f"| {r.workload} | {r.quantity} | `{_cell(r.call)}` | - | 0 | - | - | - | - | - "
                   f"| - | {_cell(r.note)} |")
      continue
    lines.append(
        f"| {r.workload} | {r.quantity} | `{_cell(r.call)}` | {r.median_ms:.2f} | {r.calls} | "
        f"{fmt(r.ratio, '.2f')} | {fmt(r.compile_s, '.2f')} | {fmt(r.run_peak_mb, '.1f')} | "
        f"{fmt(r.run_peak_ratio, '.2f')} | {fmt(r.xla_memory_mb, '.1f')} | "
        f"{fmt(r.xla_ratio, '.2f')} | {_cell(r.note)} |")
  return lines


def _accuracy_table(rows: Sequence[AccuracyRow]) -> List[str]:
  lines = ["| quantity | call | reference | rel err | note |",
           "|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r.quantity} | `{_cell(r.call)}` | `{_cell(r.reference)}` | {r.rel_err:.1e} | "
                 f"{_cell(r.note)} |")
  return lines


def section(result: Result, *, command: str, machine: Dict, versions: Dict,
            extra_notes: Sequence[str] = ()) -> str:
  """The markdown section, between `report.PRIMITIVES_BEGIN` and `report.PRIMITIVES_END`."""
  config = result.config
  lines = [
      report.PRIMITIVES_BEGIN,
      "## Curvature primitives",
      "",
      "Written by `scripts/bench_primitives.py` between the `primitives` markers (do not edit by "
      "hand; `scripts/bench_fisher.py` keeps this section when it rewrites the file). JSON copy: "
      "[PRIMITIVES.json](PRIMITIVES.json).",
      "",
      *report.provenance(machine, versions, command),
      "",
      "### Method",
      "",
      "As the Fisher benchmark above: each row is a `jax.jit` compiled ahead of time, called once "
      f"to warm up, then timed in {config.repetitions} interleaved rounds (a row stops after "
      f"{config.time_budget_s:g} s of timed calls; one whose warm-up alone took longer is timed "
      "once). `median ms` over the timed calls; `x G`: ratio to `jax.grad` of the mean loss "
      "measured in the same run, float32. `G_scan`: the same gradient summed over chunks of the "
      "batch in a `lax.scan`, which shows what an XLA loop costs on this backend (the chunked "
      "product, Lanczos, SLQ and chunked Hutchinson run their products in loops). Calls are of "
      "`ij.fisher` unless they name `jax`. `per-call peak`: "
      + (result.memory_method or "not measured on this platform") + "; its `x G` is the ratio "
      "to the gradient's. `XLA MB`: temporaries + outputs that XLA plans for the compiled "
      "program (`memory_analysis()`), with its ratio to the gradient's plan. Inputs of the "
      "products: `v` a fixed standard normal pytree like the parameters; the VJP's cotangents "
      "are `d nll / d z` (so it returns the per-example gradients). The Lanczos rows use "
      "`vector_product(kind=\"true\")` as the operator; a row is skipped where its cost or "
      "result would be prohibitive (see its note).",
      "",
      "### Workloads",
      "",
  ]
  lines += [f"- `{name}`: {description}" for name, description in result.workloads.items()]
  lines += ["", "### Time and memory", ""] + _timing_table(result.rows)
  if result.accuracy:
    lines += ["", "### Accuracy on a small model", "",
              f"{result.accuracy_model} (seed {config.seed}). Every engine call is jitted, in "
              "float64 unless the note says otherwise, and compared with the float64 "
              "brute-force references of `ij.fisher.reference` (explicit loops over examples "
              "and output columns, dense matrices): `rel err` = `||a - b|| / ||b||`, or for the "
              "eigenvalues the largest relative error over the top k (each eigenvalue's error is "
              "in the note)."]
    lines += [""] + _accuracy_table(result.accuracy)
  notes = list(result.notes) + list(extra_notes)
  if notes:
    lines += ["", "### Notes", ""] + [f"- {note}" for note in notes]
  lines.append(report.PRIMITIVES_END)
  return "\n".join(lines)


def write(result: Result, path: str, *, json_path: Optional[str] = None, command: str,
          extra_notes: Sequence[str] = ()) -> None:
  """Writes the section into the markdown at ``path`` (replacing an earlier one, else appending;
  the rest of the file is kept) and the JSON copy at ``json_path`` (default: ``PRIMITIVES.json``
  beside ``path``)."""
  machine, versions = measure.machine_description(), measure.library_versions()
  text = ""
  if os.path.exists(path):
    with open(path) as f:
      text = f.read()
  new = report.replace_section(text, section(result, command=command, machine=machine,
                                             versions=versions, extra_notes=extra_notes))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(new)
  json_path = json_path or os.path.join(os.path.dirname(os.path.abspath(path)), "PRIMITIVES.json")
  with open(json_path, "w") as f:
    json.dump(_jsonable(result, machine=machine, versions=versions, command=command,
                        extra_notes=extra_notes), f, indent=1)


def _jsonable(result: Result, *, machine, versions, command, extra_notes) -> Dict[str, Any]:
  return {"machine": machine, "versions": versions, "command": command,
          "config": dataclasses.asdict(result.config), "workloads": result.workloads,
          "memory_method": result.memory_method, "accuracy_model": result.accuracy_model,
          "notes": list(result.notes) + list(extra_notes),
          "rows": [dataclasses.asdict(r) for r in result.rows],
          "accuracy": [dataclasses.asdict(r) for r in result.accuracy]}
