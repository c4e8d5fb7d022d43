"""The Fisher benchmark of issue 3: infojax against a plain gradient and against its peers.

For each workload (`infojax.bench.workloads`) and quantity (``G`` = a plain batch gradient, the
empirical / true / Monte-Carlo Fisher diagonals, the empirical trace, per-example gradient norms) it
measures, in one process: the median time after compilation and warm-up (interleaved
repetitions), the compile time, memory (`infojax.bench.measure`: per-call peak for every row,
fresh-process peak for the rows of the targets, XLA's plan), the ratio to the gradient of the same
framework measured in the same run, and the relative error against a float64 reference
(`infojax.bench.jax_rows`).

Peers run in the same process where installed, on the same weights and data: torch autograd,
torch.func, BackPACK, Opacus, NNGeometry (`infojax.bench.torch_peers`), kfac-jax
(`infojax.bench.kfac_peers`) and a plain ``jax.vmap(jax.grad)``. A peer that is not installed is
skipped with a line saying why.

Only the engine, the models and the likelihoods are imported: the benchmark runs where
tensorflow-datasets and ml-collections are absent.
"""

import dataclasses
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import jax

from infojax.bench import jax_rows
from infojax.bench import kfac_peers
from infojax.bench import measure
from infojax.bench import memory_probe
from infojax.bench import report
from infojax.bench import torch_peers
from infojax.bench import workloads as workloads_lib

PEERS = ("jax",) + torch_peers.TORCH_PEERS + ("kfac",)


def _process_memory_rows(method: str):
  """The rows of the memory target, probed in fresh processes (reference workloads only)."""
  return {("G", "jax_grad"), ("empirical", "jax_vmap_grad")} | {
      (quantity, f"infojax_{method}") for quantity in report.MEMORY_TARGET_QUANTITIES}


@dataclasses.dataclass
class Config:
  """What to run. See ``scripts/bench_fisher.py --help`` for the meaning of each field."""
  workloads: Tuple[str, ...] = workloads_lib.DEFAULT_GROUPS
  workloads_json: str = ""
  peers: Tuple[str, ...] = PEERS
  repetitions: int = 10
  time_budget_s: float = 3.0
  batch_scale: float = 1.0
  cifar_batch: int = workloads_lib.CIFAR_BATCH
  reference: bool = True
  process_memory: bool = True
  brute_force_limit: int = 4096    # most examples x classes for the brute-force reference loops
  seed: int = 0


@dataclasses.dataclass
class Result:
  rows: List[report.Row]
  workloads: Dict[str, str]
  notes: List[str]
  memory_method: Optional[str]


def _entries(workload, config: Config, *, key, method: str, log) -> List[measure.Entry]:
  """Compiles the JAX rows and sets up the peers of one workload."""
  reference_role = workload.spec["role"] == "reference"
  methods = (method, "vmap") if reference_role and method != "vmap" else (method,)
  functions = jax_rows.functions(workload, methods=methods, key=key,
                                 plain_vmap=reference_role and "jax" in config.peers)
  args = jax_rows.arguments(workload)
  entries = []
  for (quantity, implementation), fn in functions.items():
    probe = None
    if (config.process_memory and reference_role
        and (quantity, implementation) in _process_memory_rows(method)):
      probe = {"spec": workload.spec, "quantity": quantity, "implementation": implementation,
               "method": method, "seed": config.seed}
    entries.append(measure.jax_entry(quantity, implementation, fn, args, memory_probe=probe))
    log(f"    compiled {quantity:<9} {implementation:<28} {entries[-1].compile_s:6.2f} s")
  if not reference_role:
    return entries
  torch_selected = [p for p in config.peers if p in torch_peers.TORCH_PEERS]
  if torch_selected:
    why = torch_peers.unavailable_reason()
    if why:
      log(f"  torch peers skipped: {why}")
    else:
      labels = jax_rows.mc_labels(workload, key=key)
      entries += torch_peers.entries(workload, peers=torch_selected, mc_labels=labels, log=log)
  if "kfac" in config.peers:
    why = kfac_peers.unavailable_reason()
    if why:
      log(f"  kfac-jax skipped: {why}")
    else:
      entries += kfac_peers.entries(workload, key=key)
  return entries


def run_workload(spec: dict, config: Config, *, log: Callable[[str], None]
                 ) -> Tuple[List[report.Row], str, Optional[str]]:
  """Measures every row of one workload; returns the rows, its description, the memory method."""
  start = time.perf_counter()
  workload = workloads_lib.build(spec, seed=config.seed)
  log(f"{workload.name}: {workload.description}")
  key = jax.random.key(config.seed)
  method = jax_rows.default_method(workload)
  entries = _entries(workload, config, key=key, method=method, log=log)
  measurements = measure.time_entries(entries, repetitions=config.repetitions,
                                      time_budget_s=config.time_budget_s, log=log)
  memory_method = measure.run_peak_memory(entries, measurements)
  references = {}
  if config.reference:
    reference_start = time.perf_counter()
    policy = {"reference": "brute_force", "sweep": "engine_default"}.get(spec["role"],
                                                                         "engine_vmap")
    if policy == "brute_force" and spec["batch"] * spec["num_classes"] > config.brute_force_limit:
      policy = "engine_vmap"    # the Python loops would take minutes (large --batch_scale)
    references = jax_rows.float64_references(
        workload, sorted({e.quantity for e in entries}), key=key, policy=policy, method=method)
    log(f"  float64 references: {time.perf_counter() - reference_start:.1f} s")
  process_peaks = {}
  probe_start = time.perf_counter()
  for entry in entries:
    if entry.memory_probe is not None:
      process_peaks[id(entry)] = memory_probe.process_peak_mb(entry.memory_probe)
  if process_peaks:
    log(f"  {len(process_peaks)} fresh-process memory probes: "
        f"{time.perf_counter() - probe_start:.1f} s")
  gradients = {e.framework: (m, process_peaks.get(id(e)))
               for e, m in zip(entries, measurements) if e.quantity == "G"}
  rows = []
  for entry, measurement in zip(entries, measurements):
    gradient, gradient_process_peak = gradients.get(entry.framework, (None, None))
    rel_err, source = None, ""
    if entry.comparable and entry.quantity in references:
      expected, source = references[entry.quantity]
      rel_err = measure.relative_error(entry.to_reference_layout(measurement.value), expected)
    process_peak = process_peaks.get(id(entry))
    row = report.Row(
        workload=workload.name, quantity=entry.quantity, implementation=entry.implementation,
        framework=entry.framework, median_ms=measurement.median_ms,
        calls=len(measurement.times_s),
        ratio=gradient and measurement.median_ms / gradient.median_ms,
        compile_s=entry.compile_s, xla_memory_mb=entry.xla_memory_mb,
        run_peak_mb=measurement.run_peak_mb,
        run_peak_ratio=_ratio(measurement.run_peak_mb, gradient and gradient.run_peak_mb),
        process_peak_mb=process_peak,
        process_peak_ratio=_ratio(process_peak, gradient_process_peak),
        rel_err=rel_err, reference=source,
        default_method=entry.implementation == f"infojax_{method}", note=entry.note)
    rows.append(row)
    log("  " + report.format_row(row))
  log(f"  ({time.perf_counter() - start:.0f} s)")
  return rows, workload.description, memory_method


def _ratio(value, unit) -> Optional[float]:
  if value is None or not unit:
    return None
  return value / unit


def run(config: Config, *, log: Callable[[str], None] = lambda message: None) -> Result:
  """Runs the benchmark described by ``config``; returns the rows and what the report needs."""
  reference, source = workloads_lib.load_reference_workloads(config.workloads_json)
  specs = workloads_lib.plan(config.workloads, reference, batch_scale=config.batch_scale,
                             cifar_batch=config.cifar_batch)
  notes = [f"Reference workloads read from {source}."]
  unknown = sorted(set(config.peers) - set(PEERS))
  if unknown:
    raise ValueError(f"unknown peers {unknown}; expected some of {PEERS}.")
  log(f"jax {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
  if "kfac" in config.peers and kfac_peers.unavailable_reason() is None:
    patch = kfac_peers.patch_kfac()
    if patch:
      notes.append(patch + ".")
      log(patch)
  measure.set_steady_allocator()
  rows, described, memory_method = measure.run_workloads(specs, run_workload, config, log=log)
  return Result(rows, described, notes, memory_method)


def write(result: Result, path: str, *, command: str, extra_notes: Sequence[str] = ()) -> None:
  """Writes ``RESULTS.md`` and ``RESULTS.json`` for ``result``."""
  report.write_results(path, result.rows, command=command, machine=measure.machine_description(),
                       versions=measure.library_versions(), workloads=result.workloads,
                       notes=list(result.notes) + list(extra_notes),
                       memory_method=result.memory_method)
