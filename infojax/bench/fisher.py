"""The Fisher benchmark: time, compile time, memory and exactness of every quantity, with peers.

For each workload (a model, a batch, a number of classes) and quantity (a plain batch gradient ``G``,
the empirical / true / Monte-Carlo Fisher diagonals, the trace, per-example gradient norms), this
measures in one process:

* the median wall time of interleaved repetitions after a warm-up (``jax.block_until_ready``);
* the compile time (lowering and XLA compilation);
* the memory XLA plans for the compiled program (temporaries plus outputs,
  ``compiled.memory_analysis()``), and its ratio to that of ``G``;
* the ratio of the median time to that of ``G`` measured in the same process and run;
* the relative error ``||a - b|| / ||b||`` against the float64 brute-force reference
  (``infojax.fisher.reference``: explicit loops over examples and output columns).

Peers (torch autograd, ``torch.func``, BackPACK) run in the same process when installed, on the same
weights and data (flax layouts converted), each with its ratio to its own framework's gradient.

Only ``infojax.fisher``, ``infojax.models`` and ``infojax.likelihoods`` are imported here, so the
benchmark runs where tensorflow-datasets and ml-collections are absent (a GPU machine).
"""

import dataclasses
import datetime
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import infojax as ij

# The reference workloads (shared/bench/workloads.json); embedded so the script runs anywhere.
DEFAULT_WORKLOADS = {
    "mlp": {"kind": "mlp", "sizes": [784, 512, 512, 10], "activation": "relu", "batch": 256},
    "cnn": {"kind": "cnn", "input_hw": 32, "in_channels": 3, "channels": [32, 64, 64],
            "strides": [1, 2, 2], "kernel": 3, "padding": 1, "batch": 64},
}

# Targets of issue 3: ratio to a plain JAX gradient on the same batch.
TARGETS = {
    ("mlp", "empirical"): 1.05, ("cnn", "empirical"): 1.25,
    ("mlp", "true"): 3.0, ("cnn", "true"): 7.0,
    ("mlp", "mc"): 1.1, ("cnn", "mc"): 1.4,
}


@dataclasses.dataclass
class Workload:
  name: str
  apply_fn: Callable
  params: object
  inputs: np.ndarray
  targets: np.ndarray
  num_classes: int
  model: object
  description: str


@dataclasses.dataclass
class Row:
  workload: str
  quantity: str
  implementation: str
  median_ms: float
  compile_s: Optional[float] = None
  memory_mb: Optional[float] = None
  ratio: Optional[float] = None
  memory_ratio: Optional[float] = None
  rel_err: Optional[float] = None
  note: str = ""


def make_workload(name: str, spec: dict, *, batch_scale: float = 1.0, num_classes: int = 10,
                  seed: int = 0) -> Workload:
  """Builds a workload: model, float32 parameters and a batch x ~ N(0, 1), uniform labels."""
  batch = max(1, int(round(spec["batch"] * batch_scale)))
  kind = spec["kind"]
  if kind == "mlp":
    sizes = spec["sizes"]
    model = ij.models.MLP(tuple(sizes[1:-1]), num_classes, activation=spec.get("activation", "relu"))
    input_shape = (sizes[0],)
    description = f"MLP {'-'.join(map(str, sizes[:-1]))}-{num_classes}, batch {batch}"
  elif kind == "cnn":
    model = ij.models.ConvNet(channels=tuple(spec["channels"]), strides=tuple(spec["strides"]),
                              num_classes=num_classes, kernel_size=spec["kernel"],
                              padding=spec["padding"])
    input_shape = (spec["input_hw"], spec["input_hw"], spec["in_channels"])
    description = (f"3x3 convs {spec['channels']} strides {spec['strides']} on "
                   f"{spec['input_hw']}x{spec['input_hw']}x{spec['in_channels']}, GAP, dense "
                   f"{num_classes}, batch {batch}")
  elif kind == "allcnn":
    model = ij.models.AllCNN(num_classes)
    input_shape = (32, 32, 3)
    description = f"All-CNN-C (96/192) on 32x32x3, batch {batch}"
  elif kind == "resnet18":
    model = ij.models.ResNet18(num_classes, norm=spec.get("norm", "group"))
    input_shape = (32, 32, 3)
    description = f"CIFAR ResNet-18 ({spec.get('norm', 'group')} norm) on 32x32x3, batch {batch}"
  else:
    raise ValueError(f"unknown workload kind {kind!r}")
  keys = jax.random.split(jax.random.key(seed), 3)
  apply_fn, params = ij.models.init(model, keys[0], (1,) + input_shape)
  rng = np.random.default_rng(seed)
  inputs = rng.standard_normal((batch,) + input_shape).astype(np.float32)
  targets = rng.integers(0, num_classes, size=batch).astype(np.int32)
  return Workload(name, apply_fn, params, inputs, targets, num_classes, model, description)


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def relative_error(actual, expected) -> float:
  a, b = _flat(actual), _flat(expected)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def jax_quantities(workload: Workload, *, methods: Sequence[str], key) -> Dict[tuple, Callable]:
  """``{(quantity, implementation): jitted fn(params, inputs, targets)}`` for the JAX rows."""
  apply_fn, lik = workload.apply_fn, ij.likelihoods.categorical()

  def mean_loss(p, x, y):
    return jnp.mean(lik.nll(apply_fn(p, x), y))

  fns = {("G", "jax_grad"): jax.jit(jax.grad(mean_loss))}
  for method in methods:
    name = f"infojax_{method}"
    for kind in ("empirical", "true", "mc"):
      fns[(kind, name)] = jax.jit(
          lambda p, x, y, kind=kind, method=method: ij.fisher.diagonal(
              apply_fn, p, (x, y), likelihood=lik, kind=kind, key=key, method=method))
    fns[("trace", name)] = jax.jit(lambda p, x, y, method=method: ij.fisher.trace(
        apply_fn, p, (x, y), likelihood=lik, method=method))
    fns[("norms", name)] = jax.jit(lambda p, x, y, method=method: ij.fisher.per_example_grad_norms(
        apply_fn, p, (x, y), likelihood=lik, method=method))
  return fns


def references(workload: Workload, *, key, quantities: Sequence[str]) -> dict:
  """Float64 brute-force values (requires x64), keyed by quantity."""
  lik = ij.likelihoods.categorical()
  batch = (workload.inputs, workload.targets)
  out = {}
  for kind in ("empirical", "true", "mc"):
    if kind in quantities:
      out[kind] = ij.fisher.reference.diagonal(workload.apply_fn, workload.params, batch,
                                               likelihood=lik, kind=kind, key=key)
  if "trace" in quantities:
    out["trace"] = (np.float64(sum(np.sum(np.asarray(x)) for x in jax.tree.leaves(out["empirical"])))
                    if "empirical" in out else
                    ij.fisher.reference.trace(workload.apply_fn, workload.params, batch,
                                              likelihood=lik))
  if "norms" in quantities:
    out["norms"] = ij.fisher.reference.per_example_grad_norms(workload.apply_fn, workload.params,
                                                              batch, likelihood=lik)
  if "G" in quantities:
    flat, unravel = jax.flatten_util.ravel_pytree(
        jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), workload.params))
    inputs64 = jnp.asarray(workload.inputs, jnp.float64)
    grad = jax.jit(jax.grad(lambda f: jnp.mean(lik.nll(workload.apply_fn(unravel(f), inputs64),
                                                       workload.targets))))(flat)
    out["G"] = unravel(grad)
  return out


def _time(fn, args, reps_done: List[float]):
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  reps_done.append(time.perf_counter() - start)


def measure(fns: Dict[tuple, Callable], args: tuple, *, repetitions: int,
            extra: Optional[Dict[tuple, Callable]] = None,
            time_budget_s: float = 10.0) -> Dict[tuple, dict]:
  """Compiles, warms up, then times interleaved repetitions; returns stats per entry.

  ``extra`` are zero-argument callables (peers) timed in the same interleaved rounds.
  """
  stats = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - start
    memory = None
    analysis = compiled.memory_analysis()
    if analysis is not None:
      memory = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes) / 2 ** 20
    stats[name] = {"compile_s": compile_s, "memory_mb": memory, "fn": compiled, "times": []}
    stats[name]["value"] = jax.block_until_ready(compiled(*args))       # warm-up
  for name, fn in (extra or {}).items():
    stats[name] = {"compile_s": None, "memory_mb": None, "fn": fn, "times": []}
    stats[name]["value"] = fn()                                           # warm-up
  for round_index in range(repetitions):
    for name, entry in stats.items():
      # Slow entries stop after 3 rounds once they have used their time budget.
      if round_index >= 3 and sum(entry["times"]) > time_budget_s:
        continue
      if name in fns:
        _time(entry["fn"], args, entry["times"])
      else:
        start = time.perf_counter()
        entry["fn"]()
        entry["times"].append(time.perf_counter() - start)
  for entry in stats.values():
    entry["median_ms"] = 1e3 * statistics.median(entry["times"])
  return stats


def machine_description() -> dict:
  cpu = platform.processor() or "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  devices = jax.devices()
  return {
      "cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
      "devices": f"{len(devices)} x {devices[0].device_kind}",
      "python": platform.python_version(),
  }


def library_versions() -> dict:
  import importlib.metadata as metadata
  versions = {}
  for package in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "backpack-for-pytorch",
                  "nngeometry", "opacus", "kfac-jax"):
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      pass
  return versions


def run_workload(workload: Workload, *, methods: Sequence[str], repetitions: int, peers: bool,
                 with_reference: bool, log: Callable[[str], None]) -> List[Row]:
  """All rows of one workload."""
  key = jax.random.key(0)
  fns = jax_quantities(workload, methods=methods, key=key)
  args = (workload.params, jnp.asarray(workload.inputs), jnp.asarray(workload.targets))
  extra, peer_refs = {}, {}
  if peers:
    from infojax.bench import torch_peers   # pylint: disable=g-import-not-at-top
    available, why = torch_peers.available()
    if available:
      extra, peer_refs = torch_peers.quantities(workload)
    else:
      log(f"  peers skipped: {why}")
  stats = measure(fns, args, repetitions=repetitions, extra=extra)
  refs = {}
  if with_reference:
    start = time.perf_counter()
    with _x64():
      refs = references(workload, key=key, quantities=sorted({q for q, _ in stats}))
      refs = jax.tree.map(np.asarray, refs)
    log(f"  float64 reference: {time.perf_counter() - start:.1f} s")
  base = {impl.split("_")[0]: stats[(q, impl)] for q, impl in stats if q == "G"}
  rows = []
  for (quantity, implementation), entry in stats.items():
    framework = "torch" if implementation.startswith(("torch", "backpack", "nngeometry")) else "jax"
    gradient = base.get(framework)
    rel_err = None
    # Peers sample their own Monte-Carlo labels: no exact reference for their "mc" rows.
    if quantity in refs and not (quantity == "mc" and implementation in peer_refs):
      value = entry["value"]
      if implementation in peer_refs:
        value = peer_refs[implementation](value)
      rel_err = relative_error(value, refs[quantity])
    row = Row(workload.name, quantity, implementation, entry["median_ms"], entry["compile_s"],
              entry["memory_mb"],
              ratio=None if gradient is None else entry["median_ms"] / gradient["median_ms"],
              memory_ratio=(None if gradient is None or entry["memory_mb"] is None
                            or not gradient["memory_mb"] else
                            entry["memory_mb"] / gradient["memory_mb"]),
              rel_err=rel_err)
    rows.append(row)
    log("  " + format_row(row))
  return rows


class _x64:
  """Context manager enabling float64 (for jax versions without ``jax.enable_x64``)."""

  def __enter__(self):
    self.previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)

  def __exit__(self, *exc):
    jax.config.update("jax_enable_x64", self.previous)


def _fmt(value, spec):
  return "-" if value is None else format(value, spec)


def format_row(row: Row) -> str:
  return (f"{row.workload:<14} {row.quantity:<9} {row.implementation:<28} "
          f"{row.median_ms:>9.1f} ms  x{_fmt(row.ratio, '.2f'):>6}  "
          f"compile {_fmt(row.compile_s, '.2f')} s  mem {_fmt(row.memory_mb, '.1f')} MB "
          f"(x{_fmt(row.memory_ratio, '.2f')})  err {_fmt(row.rel_err, '.1e')}")


def write_results(rows: List[Row], path: str, *, command: str, workloads: Dict[str, Workload],
                  notes: Sequence[str]) -> None:
  """Writes the markdown table, the machine, versions, the targets, and a JSON copy beside it."""
  machine, versions = machine_description(), library_versions()
  lines = [
      "# Fisher benchmark results",
      "",
      f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Command: "
      f"`{command}`.",
      "",
      f"Machine: {machine['cpu']}, {machine['cores']} cores; JAX backend {machine['backend']} "
      f"({machine['devices']}); Python {machine['python']}.",
      "",
      "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
      "",
      "Median of interleaved repetitions after compilation and warm-up. `x G`: ratio to the plain "
      "batch gradient of the same framework measured in the same process and run (JAX rows: "
      "`jax.grad` of the mean loss; torch rows: torch autograd). `mem`: the memory XLA plans for the "
      "compiled program (temporaries + outputs, from `compiled.memory_analysis()`), and its ratio "
      "to that of `G`. `err`: `||a - b|| / ||b||` against the float64 brute-force reference "
      "(`infojax.fisher.reference`, explicit loops over examples and output columns). Quantities: "
      "G gradient, empirical / true / mc (1 sample) Fisher diagonals, trace (empirical), norms "
      "(per-example gradient norms).",
      "",
      "Workloads:",
  ]
  for workload in workloads.values():
    lines.append(f"- `{workload.name}`: {workload.description}.")
  lines += ["", "| workload | quantity | implementation | median ms | x G | compile s | mem MB | "
            "mem x G | rel err |", "|---|---|---|---|---|---|---|---|---|"]
  for row in rows:
    lines.append(
        f"| {row.workload} | {row.quantity} | {row.implementation} | {row.median_ms:.1f} | "
        f"{_fmt(row.ratio, '.2f')} | {_fmt(row.compile_s, '.2f')} | {_fmt(row.memory_mb, '.1f')} | "
        f"{_fmt(row.memory_ratio, '.2f')} | {_fmt(row.rel_err, '.1e')} |")
  lines += ["", "## Targets (issue 3), ratio to a plain JAX gradient", "",
            "| workload | quantity | target | infojax (auto) | met |", "|---|---|---|---|---|"]
  for (name, quantity), target in TARGETS.items():
    matches = [r for r in rows if r.workload == name and r.quantity == quantity
               and r.implementation == "infojax_auto"]
    if not matches:
      continue
    ratio = matches[0].ratio
    lines.append(f"| {name} | {quantity} | <= {target:g}x | {ratio:.2f}x | "
                 f"{'yes' if ratio <= target else 'no'} |")
  if notes:
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.splitext(path)[0] + ".json", "w") as f:
    json.dump({"machine": machine, "versions": versions, "command": command,
               "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
