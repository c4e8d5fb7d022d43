"""The scaling sweep (issue 5): Fisher diagonals and training steps against the device count.

One child process per device count d (``python -m infojax.bench.scaling --child REQUEST``). On
CPU the parent gives each child d virtual devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=d``, set before the child imports JAX); on a GPU
or TPU the children see the real devices and use the first d of them. In each child, for each
reference workload (`infojax.bench.workloads`: the same weights and global batch for every d, from
a fixed seed):

* a one-axis ``"data"`` mesh over the first d devices (`infojax.parallel.data_mesh`); the global
  batch is sharded over it (`infojax.parallel.shard_batch`), the parameters replicated
  (`infojax.parallel.replicate`);
* three jitted programs, timed as in the Fisher benchmark (`infojax.bench.measure.time_entries`:
  compile, one warm-up call, then the median of interleaved repetitions): the empirical and the
  true Fisher diagonals (`infojax.fisher.diagonal`, ``method="auto"``) and one training step
  (plain SGD on the mean cross-entropy, `infojax.train.make_train_step`);
* the same programs unsharded, on the first device alone, in the same process: the relative error
  ``||x_d - x_1|| / ||x_1||`` of the diagonals, and of the step's parameter update
  ``theta' - theta``, against them.

The parent (`run`) collects the rows, adds the speed-up against the d = 1 child, and `write` makes
the markdown table and its JSON copy.
"""

import dataclasses
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np
import optax

from infojax import fisher
from infojax import likelihoods
from infojax import parallel
from infojax import train
from infojax.bench import measure
from infojax.bench import workloads as workloads_lib

QUANTITIES = ("empirical", "true", "train_step")
CPU_DEVICE_COUNTS = (1, 2, 4, 8)
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
_CHILD_FLAG = "--child"


@dataclasses.dataclass
class Config:
  """What to sweep. See ``scripts/bench_scaling.py --help`` for each field.

  ``devices=None`` means `default_device_counts` of the parent's backend.
  """
  devices: Optional[Tuple[int, ...]] = None
  workloads: Tuple[str, ...] = ("mlp", "cnn")
  workloads_json: str = ""
  repetitions: int = 10
  time_budget_s: float = 5.0
  batch_scale: float = 1.0
  learning_rate: float = 0.1
  seed: int = 0
  child_timeout_s: float = 1800.0


@dataclasses.dataclass
class Result:
  """The rows of every child, the workload descriptions and what the report says about the run."""
  rows: List[Dict[str, Any]]
  workloads: Dict[str, str]
  backend: str
  devices: str
  device_counts: Tuple[int, ...]
  notes: List[str]


class Program(NamedTuple):
  """One timed quantity: ``fn(replicated, batch)``, its host arguments, and ``value(output)``.

  ``value`` maps the output to a flat float64 vector, the thing compared against one device.
  """
  fn: Callable
  replicated: Any
  batch: Any
  value: Callable[[Any], np.ndarray]


def default_device_counts(backend: str, device_count: int) -> Tuple[int, ...]:
  """``(1, 2, 4, 8)`` virtual devices on CPU; the powers of two up to ``device_count`` elsewhere."""
  if backend == "cpu":
    return CPU_DEVICE_COUNTS
  return tuple(2 ** i for i in range(int(math.log2(max(1, device_count))) + 1))


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
  """``||a - b|| / ||b||`` of two flat vectors."""
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _fisher_diagonal(apply_fn, likelihood, kind, params, batch):
  return fisher.diagonal(apply_fn, params, batch, likelihood=likelihood, kind=kind)


def programs(workload, *, learning_rate: float, seed: int) -> Dict[str, Program]:
  """The jitted programs of `QUANTITIES` for a built workload, with host arguments.

  Fisher diagonals: ``fn(params, (inputs (B, ...), targets (B,)))`` -> a pytree like ``params``.
  Training step: ``fn(state, {"image": inputs, "label": targets})`` -> ``(state', metrics)``, plain
  SGD with ``learning_rate`` on the mean cross-entropy; its value is the update ``theta' - theta``.
  """
  likelihood = likelihoods.categorical()
  batch = (workload.inputs, workload.targets)
  result = {}
  for kind in ("empirical", "true"):
    fn = jax.jit(functools.partial(_fisher_diagonal, workload.apply_fn, likelihood, kind))
    result[kind] = Program(fn, workload.params, batch, measure.flat64)
  optimizer = optax.sgd(learning_rate)
  step = jax.jit(train.make_train_step(train.classification(workload.apply_fn), optimizer))
  state = train.init_state(workload.params, optimizer, key=jax.random.key(seed))
  start = measure.flat64(workload.params)
  result["train_step"] = Program(step, state, {"image": batch[0], "label": batch[1]},
                                 lambda output: measure.flat64(output[0].params) - start)
  return result


def measure_devices(specs: Sequence[dict], *, num_devices: int, repetitions: int,
                    time_budget_s: float, learning_rate: float = 0.1, seed: int = 0,
                    log: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
  """Times every quantity of every workload on a mesh over the first ``num_devices`` devices.

  Args:
    specs: workload specs (`infojax.bench.workloads.plan`); each batch must split over the devices.
    num_devices: d, the size of the ``"data"`` mesh axis (at most ``jax.device_count()``).
    repetitions, time_budget_s: timed rounds and per-row budget (`measure.time_entries`).
    learning_rate: of the SGD training step.
    seed: weights, data and the training state's key.
    log: progress messages.

  Returns:
    ``{"rows": [...], "workloads": {name: description}, "backend", "devices"}``; a row has
    ``workload, quantity, devices, batch, median_ms, calls, compile_s, throughput`` (examples per
    second) and ``rel_err`` (against the unsharded program on the first device).
  """
  devices = jax.devices()
  if not 1 <= num_devices <= len(devices):
    raise ValueError(f"num_devices must be between 1 and the {len(devices)} devices here; got "
                     f"{num_devices}.")
  mesh = parallel.data_mesh(devices[:num_devices])
  rows, described = [], {}
  for spec in specs:
    workload = workloads_lib.build(spec, seed=seed)
    parallel.check_global_batch_size(workload.batch_size, mesh)
    described[workload.name] = workload.description
    entries, expected, values = [], {}, {}
    for quantity, program in programs(workload, learning_rate=learning_rate, seed=seed).items():
      single = jax.device_put((program.replicated, program.batch), devices[0])
      expected[quantity] = program.value(jax.block_until_ready(program.fn(*single)))
      args = (parallel.replicate(program.replicated, mesh),
              parallel.shard_batch(program.batch, mesh))
      entries.append(measure.jax_entry(quantity, "infojax", program.fn, args))
      values[quantity] = program.value
    measurements = measure.time_entries(entries, repetitions=repetitions,
                                        time_budget_s=time_budget_s)
    for entry, measurement in zip(entries, measurements):
      quantity = entry.quantity
      row = {
          "workload": workload.name, "quantity": quantity, "devices": num_devices,
          "batch": workload.batch_size, "median_ms": measurement.median_ms,
          "calls": len(measurement.times_s), "compile_s": entry.compile_s,
          "throughput": 1e3 * workload.batch_size / measurement.median_ms,
          "rel_err": relative_error(values[quantity](measurement.value), expected[quantity]),
      }
      rows.append(row)
      log(f"  d={num_devices} {workload.name:<4} {quantity:<10} {row['median_ms']:9.2f} ms "
          f"{row['throughput']:10.0f} ex/s  rel err {row['rel_err']:.1e}")
  return {"rows": rows, "workloads": described, "backend": jax.default_backend(),
          "devices": f"{len(devices)} x {devices[0].device_kind}"}


def _child_env(num_devices: int, backend: str) -> Dict[str, str]:
  """The parent's environment, with d virtual devices on CPU and infojax on the path."""
  import infojax  # pylint: disable=g-import-not-at-top
  env = dict(os.environ)
  root = os.path.dirname(os.path.dirname(os.path.abspath(infojax.__file__)))
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
  if backend == "cpu":
    flags = re.sub(re.escape(_DEVICE_COUNT_FLAG) + r"=\S*", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} {_DEVICE_COUNT_FLAG}={num_devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
  return env


def run_child(num_devices: int, specs: Sequence[dict], config: Config, *, backend: str,
              log: Callable[[str], None] = lambda message: None) -> Dict[str, Any]:
  """`measure_devices` in a fresh process with ``num_devices`` devices; returns what it returned."""
  request = {"specs": list(specs), "num_devices": num_devices, "repetitions": config.repetitions,
             "time_budget_s": config.time_budget_s, "learning_rate": config.learning_rate,
             "seed": config.seed}
  with tempfile.TemporaryDirectory(prefix="infojax_scaling_") as folder:
    request["result_path"] = os.path.join(folder, "result.json")
    request_path = os.path.join(folder, "request.json")
    with open(request_path, "w") as f:
      json.dump(request, f)
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "infojax.bench.scaling", _CHILD_FLAG, request_path],
        capture_output=True, text=True, timeout=config.child_timeout_s,
        env=_child_env(num_devices, backend), check=False)
    if completed.returncode != 0 or not os.path.exists(request["result_path"]):
      raise RuntimeError(f"the scaling child with {num_devices} device(s) failed (exit "
                         f"{completed.returncode}):\n{completed.stdout[-3000:]}\n"
                         f"{completed.stderr[-3000:]}")
    with open(request["result_path"]) as f:
      result = json.load(f)
  for line in completed.stdout.splitlines():
    log(line)
  log(f"  ({num_devices} device(s): {time.perf_counter() - start:.0f} s in a fresh process)")
  return result


def _sized(specs: List[dict], multiple: int) -> Tuple[List[dict], List[str]]:
  """Rounds each batch up to a multiple of ``multiple``: every device count gets the same data."""
  sized, notes = [], []
  for spec in specs:
    batch = -(-spec["batch"] // multiple) * multiple
    if batch != spec["batch"]:
      notes.append(f"`{spec['name']}`: batch {spec['batch']} rounded up to {batch}, a multiple of "
                   f"every device count.")
    sized.append(dict(spec, batch=batch))
  return sized, notes


def _with_speed_up(rows: List[dict]) -> List[dict]:
  """Adds ``speed_up``: the d = 1 median over this row's median (None without a d = 1 row)."""
  single = {(r["workload"], r["quantity"]): r["median_ms"] for r in rows if r["devices"] == 1}
  return [dict(r, speed_up=(single[(r["workload"], r["quantity"])] / r["median_ms"]
                            if (r["workload"], r["quantity"]) in single else None))
          for r in rows]


def run(config: Config, *, log: Callable[[str], None] = lambda message: None) -> Result:
  """Runs one child per device count; returns every row with its speed-up against d = 1.

  On CPU each child gets d virtual devices. On a GPU or TPU the device counts must not exceed
  ``jax.device_count()``; set ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (as the script does) so that
  this process leaves the device memory to its children.
  """
  backend, available = jax.default_backend(), jax.device_count()
  counts = tuple(config.devices or default_device_counts(backend, available))
  if any(d < 1 for d in counts) or (backend != "cpu" and max(counts) > available):
    raise ValueError(f"device counts must be positive (and at most the {available} {backend} "
                     f"devices off CPU); got {counts}.")
  reference, source = workloads_lib.load_reference_workloads(config.workloads_json)
  specs = workloads_lib.plan(config.workloads, reference, batch_scale=config.batch_scale)
  specs, notes = _sized(specs, math.lcm(*counts))
  notes[:0] = [f"Reference workloads read from {source}.",
               f"Training step: plain SGD, learning rate {config.learning_rate:g}. Timing: up to "
               f"{config.repetitions} timed calls per row, {config.time_budget_s:g} s budget."]
  log(f"jax {jax.__version__} on {backend}; device counts {counts}")
  rows, described, devices = [], {}, ""
  for num_devices in counts:
    child = run_child(num_devices, specs, config, backend=backend, log=log)
    rows += child["rows"]
    described.update(child["workloads"])
    devices = child["devices"]
  order = {name: i for i, name in enumerate(described)}
  rows.sort(key=lambda r: (order[r["workload"]], QUANTITIES.index(r["quantity"]), r["devices"]))
  return Result(_with_speed_up(rows), described, backend, devices, counts, notes)


def _fmt(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def _scaling_note(result: Result, cores: Optional[int]) -> str:
  if result.backend != "cpu":
    return (f"Measured on {result.devices} {result.backend} devices: each device count uses the "
            "first d devices.")
  return (f"On this machine the {max(result.device_counts)} virtual CPU devices share its {cores} "
          "cores (XLA_FLAGS=--xla_force_host_platform_device_count=d), so throughput does not "
          "scale with the device count, and is not expected to: the sweep shows the overhead of "
          "the sharded path (partitioned programs, collectives between virtual devices) and that "
          "it computes the numbers of one device. A speed-up above 1, even above the number of "
          "cores, can still appear where one device runs a program inefficiently, e.g. "
          "convolutions that XLA:CPU runs on fewer threads than there are cores, or faster per "
          "example on the smaller per-device batches. Real scaling needs real devices (a GPU or "
          "TPU run of the same script).")


def markdown(result: Result, *, command: str, machine: Dict[str, Any],
             versions: Dict[str, str], extra_notes: Sequence[str] = ()) -> str:
  """The report: machine, method, workloads, one table row per (workload, quantity, devices)."""
  names = ", ".join(f"{k} {v}" for k, v in versions.items())
  lines = [
      "# Scaling sweep: Fisher diagonals and training steps against the device count", "",
      "Written by `scripts/bench_scaling.py` (do not edit by hand).", "",
      f"> **Note.** {_scaling_note(result, machine.get('cores'))}", "",
      f"- Date: {machine['date']}",
      f"- Command: `{command}`",
      f"- Machine: {machine['cpu']}, {machine['cores']} cores; JAX backend {result.backend} "
      f"({result.devices} in the largest child); Python {machine['python']}",
      f"- Versions: {names}", "",
      "## Method", "",
      "One fresh process per device count d; in it, a one-axis `data` mesh over the first d "
      "devices, the global batch (the same data for every d, fixed seed) sharded over it, the "
      "parameters replicated. `median ms`: median wall time of the jitted program over the timed "
      "calls after compilation and one warm-up call (interleaved rounds; a row stops once its "
      "calls took its time budget). `throughput`: global batch / median time. `speed-up`: the "
      "d = 1 median over this median. `rel. error`: `||x_d - x_1|| / ||x_1||` against the same "
      "program unsharded on one device in the same process, for the Fisher diagonals (empirical, "
      "and true: exact expectation over the model's labels, `method=\"auto\"`) and for the "
      "parameter update `theta' - theta` of the training step (plain SGD on the mean "
      "cross-entropy).", "",
      "## Workloads", "",
  ]
  lines += [f"- `{name}`: {description}" for name, description in result.workloads.items()]
  lines += ["", "## Results", "",
            "| workload | quantity | devices | median ms | throughput ex/s | speed-up vs 1 device "
            "| rel. error vs 1 device |",
            "|---|---|---|---|---|---|---|"]
  for r in result.rows:
    lines.append(f"| {r['workload']} | {r['quantity']} | {r['devices']} | "
                 f"{r['median_ms']:.2f} | {r['throughput']:,.0f} | {_fmt(r['speed_up'], '.2f')} | "
                 f"{r['rel_err']:.1e} |")
  notes = list(result.notes) + list(extra_notes)
  if notes:
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
  return "\n".join(lines) + "\n"


def write(result: Result, path: str, *, command: str, extra_notes: Sequence[str] = ()) -> None:
  """Writes the markdown report at ``path`` and a JSON copy beside it (same name, ``.json``)."""
  machine = measure.machine_description()
  machine["devices"] = result.devices
  versions = {k: v for k, v in measure.library_versions().items()
              if k in ("jax", "jaxlib", "flax", "optax", "numpy")}
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  with open(path, "w") as f:
    f.write(markdown(result, command=command, machine=machine, versions=versions,
                     extra_notes=extra_notes))
  record = {"command": command, "machine": machine, "versions": versions,
            "backend": result.backend, "device_counts": list(result.device_counts),
            "workloads": result.workloads, "rows": result.rows,
            "notes": list(result.notes) + list(extra_notes)}
  with open(os.path.splitext(path)[0] + ".json", "w") as f:
    json.dump(record, f, indent=1)


def _child_main(request_path: str) -> None:
  with open(request_path) as f:
    request = json.load(f)
  measure.set_steady_allocator()
  result = measure_devices(request["specs"], num_devices=request["num_devices"],
                           repetitions=request["repetitions"],
                           time_budget_s=request["time_budget_s"],
                           learning_rate=request["learning_rate"], seed=request["seed"],
                           log=lambda message: print(message, flush=True))
  with open(request["result_path"], "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] != _CHILD_FLAG:
    sys.exit(f"usage: python -m infojax.bench.scaling {_CHILD_FLAG} REQUEST_JSON "
             "(run by infojax.bench.scaling.run; see scripts/bench_scaling.py)")
  _child_main(sys.argv[2])
