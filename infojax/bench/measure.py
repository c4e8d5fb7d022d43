"""Timing and memory measurement shared by the JAX rows and the peers.

Every row of the benchmark is an `Entry`: a zero-argument callable that computes one quantity once
and waits for it (``jax.block_until_ready``, or ``torch.cuda.synchronize`` on a GPU), plus how to
bring its value to the layout of the float64 reference. `time_entries` warms every entry up, then
times interleaved rounds (each round calls every entry once, in order), so slow drifts of the
machine hit all rows alike; an entry whose warm-up alone exceeds its time budget is timed once.

Memory, two measured figures:

* `run_peak_mb` (in process, every row): the resident-set high-water mark during one call after
  warm-up minus the resident set just before it, the largest over three calls. On Linux with glibc,
  large allocations are forced onto ``mmap`` while measuring (``mallopt(M_MMAP_THRESHOLD, 64 KiB)``
  and ``malloc_trim``), so the buffers a call allocates are faulted in afresh and counted; the
  high-water mark is reset through ``/proc/self/clear_refs``. This is the transient memory of one
  call: temporaries and outputs, not the parameters and data, which are resident before. On a GPU,
  torch rows use ``torch.cuda.max_memory_allocated``; JAX rows have no resettable peak there, and
  XLA's planned figure (`xla_memory_mb`) stands in.
* the fresh-process peak (`infojax.bench.memory_probe`): the increase of the peak memory of a new
  process over its import baseline, compilation included, as in the issue's target table.

Plus, for JAX rows, `xla_memory_mb`: the temporaries and outputs that XLA plans for the compiled
program (``compiled.memory_analysis()``), a figure computed, not measured.
"""

import ctypes
import dataclasses
import datetime
import importlib.metadata
import os
import platform
import statistics
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import numpy as np

_M_MMAP_THRESHOLD = -3           # glibc mallopt parameter
_MEASURING_MMAP_THRESHOLD = 64 * 1024
_STEADY_MMAP_THRESHOLD = 32 * 1024 * 1024   # the ceiling glibc's dynamic threshold reaches


@dataclasses.dataclass
class Entry:
  """One row to measure: ``call()`` computes the quantity once, synchronised, and returns it."""
  quantity: str                  # "G", "empirical", "true", "mc", "trace", "norms"
  implementation: str            # e.g. "infojax_factored", "backpack_sumgradsquared"
  framework: str                 # "jax" or "torch": whose gradient the time ratio uses
  call: Callable[[], Any]
  to_reference_layout: Callable[[Any], Any] = lambda value: value
  compile_s: Optional[float] = None
  xla_memory_mb: Optional[float] = None
  comparable: bool = True        # False where no reference exists (peers' own Monte-Carlo labels)
  note: str = ""
  memory_probe: Optional[dict] = None   # how `infojax.bench.memory_probe` rebuilds this row


@dataclasses.dataclass
class Measurement:
  """What `time_entries` and `run_peak_memory` record for an entry."""
  times_s: List[float]
  value: Any
  run_peak_mb: Optional[float] = None

  @property
  def median_ms(self) -> float:
    return 1e3 * statistics.median(self.times_s)


def jax_entry(quantity: str, implementation: str, fn, args: tuple, **kwargs) -> Entry:
  """Compiles the jitted ``fn`` on ``args`` (timing the compilation) and wraps it as an `Entry`."""
  start = time.perf_counter()
  compiled = fn.lower(*args).compile()
  compile_s = time.perf_counter() - start
  xla_memory_mb = None
  analysis = compiled.memory_analysis()
  if analysis is not None:
    xla_memory_mb = (analysis.temp_size_in_bytes + analysis.output_size_in_bytes) / 2 ** 20
  return Entry(quantity, implementation, "jax", lambda: jax.block_until_ready(compiled(*args)),
               compile_s=compile_s, xla_memory_mb=xla_memory_mb, **kwargs)


def time_entries(entries: List[Entry], *, repetitions: int, time_budget_s: float,
                 log: Callable[[str], None] = lambda message: None) -> List[Measurement]:
  """Warm-up, then ``repetitions`` interleaved rounds; an entry stops once it has used its budget.

  Every entry gets at least one timed call after its warm-up, except one whose warm-up alone took
  longer than ``time_budget_s``: that single call is its time (said in the entry's note).
  """
  measurements = []
  for entry in entries:
    start = time.perf_counter()
    value = entry.call()
    warm_up = time.perf_counter() - start
    measurements.append(Measurement([], value))
    if warm_up > time_budget_s:
      measurements[-1].times_s.append(warm_up)
      entry.note = "; ".join(filter(None, [entry.note, "timed once (its warm-up call)"]))
    log(f"    warm-up {entry.quantity:<9} {entry.implementation:<28} {1e3 * warm_up:9.1f} ms")
  for _ in range(repetitions):
    for entry, measurement in zip(entries, measurements):
      if measurement.times_s and sum(measurement.times_s) > time_budget_s:
        continue
      start = time.perf_counter()
      entry.call()
      measurement.times_s.append(time.perf_counter() - start)
  return measurements


def _libc():
  try:
    return ctypes.CDLL("libc.so.6")
  except OSError:
    return None


def _proc_status_mb(field: str) -> Optional[float]:
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return None


def reset_rss_peak() -> bool:
  """Resets the resident-set high-water mark (Linux ``clear_refs``); False if unsupported."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def rss_mb() -> Optional[float]:
  return _proc_status_mb("VmRSS")


def rss_peak_mb() -> Optional[float]:
  return _proc_status_mb("VmHWM")


def set_steady_allocator() -> None:
  """Fixes glibc's mmap threshold at the value its dynamic rule settles on, for every timed call."""
  libc = _libc()
  if libc is not None:
    libc.mallopt(_M_MMAP_THRESHOLD, _STEADY_MMAP_THRESHOLD)


def run_peak_memory(entries: List[Entry], measurements: List[Measurement], *, probes: int = 3,
                    slow_call_s: float = 0.5, max_call_s: float = 10.0) -> Optional[str]:
  """Fills ``run_peak_mb`` of each measurement; returns what was measured (or None if nothing).

  CPU: the largest, over ``probes`` calls (one call for entries slower than ``slow_call_s``, none
  for entries slower than ``max_call_s``, whose XLA plan stands in), of the resident-set
  high-water mark during the call minus the resident set just before it, with large allocations on
  ``mmap``. A single call can under-count, when a buffer lands in memory that an
  earlier call left mapped; the largest of a few does not (it matches XLA's plan to a few MiB).
  GPU: torch rows use the CUDA caching allocator's peak; JAX rows are left empty.
  """
  on_gpu = jax.default_backend() != "cpu"
  libc = _libc()
  if not on_gpu and (libc is None or not reset_rss_peak()):
    return None
  if not on_gpu:
    libc.mallopt(_M_MMAP_THRESHOLD, _MEASURING_MMAP_THRESHOLD)
  try:
    for entry, measurement in zip(entries, measurements):
      if measurement.median_ms > 1e3 * max_call_s:
        continue
      calls = 1 if measurement.median_ms > 1e3 * slow_call_s else probes
      peaks = []
      for _ in range(calls):
        if on_gpu:
          peaks.append(_torch_cuda_peak_mb(entry) if entry.framework == "torch" else None)
          continue
        libc.malloc_trim(0)
        reset_rss_peak()
        before = rss_mb()
        entry.call()
        peaks.append(max(0.0, rss_peak_mb() - before))
      measurement.run_peak_mb = max(peaks) if None not in peaks else None
  finally:
    if not on_gpu:
      libc.mallopt(_M_MMAP_THRESHOLD, _STEADY_MMAP_THRESHOLD)
  if on_gpu:
    return ("torch rows: CUDA allocator peak above the memory allocated before the call; JAX rows: "
            "none (no resettable device peak), see the XLA column")
  return (f"the largest, over {probes} calls after warm-up (1 for calls over {slow_call_s:g} s, "
          f"none for calls over {max_call_s:g} s), of the resident-set high-water mark during the "
          "call minus the resident set before it "
          "(glibc mmap threshold 64 KiB while measuring)")


def _torch_cuda_peak_mb(entry: Entry) -> float:
  import torch  # pylint: disable=g-import-not-at-top
  torch.cuda.synchronize()
  torch.cuda.reset_peak_memory_stats()
  before = torch.cuda.memory_allocated()
  entry.call()
  return (torch.cuda.max_memory_allocated() - before) / 2 ** 20


def machine_description() -> Dict[str, Any]:
  """CPU model and core count, JAX backend and devices, Python version, date."""
  cpu = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  devices = jax.devices()
  machine = {
      "cpu": cpu, "cores": os.cpu_count(), "backend": jax.default_backend(),
      "devices": f"{len(devices)} x {devices[0].device_kind}",
      "python": platform.python_version(),
      "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
  }
  if jax.default_backend() != "cpu":
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" in stats:
      machine["device_memory_gib"] = round(stats["bytes_limit"] / 2 ** 30, 1)
  return machine


def library_versions() -> Dict[str, str]:
  """Installed versions of JAX, flax, torch and the peers (absent ones omitted)."""
  versions = {}
  for package in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "backpack-for-pytorch",
                  "nngeometry", "opacus", "kfac-jax"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      pass
  return versions


def flat64(tree) -> np.ndarray:
  """All entries of a pytree (or array) as one float64 vector, in leaf order."""
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def relative_error(actual, expected) -> float:
  """``||a - b|| / ||b||`` over all entries of two pytrees (or arrays) of the same layout."""
  a, b = flat64(actual), flat64(expected)
  if a.shape != b.shape:
    raise ValueError(f"shape mismatch against the reference: {a.shape} vs {b.shape}")
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def run_workloads(specs, run_workload, config, *, log):
  """Runs ``run_workload(spec, config, log=log) -> (rows, description, memory method)`` for each
  spec; returns ``(rows, {name: description}, memory method)``."""
  rows, described, memory_method = [], {}, None
  for spec in specs:
    workload_rows, description, method = run_workload(spec, config, log=log)
    rows += workload_rows
    described[spec["name"]] = description
    memory_method = memory_method or method
  return rows, described, memory_method
