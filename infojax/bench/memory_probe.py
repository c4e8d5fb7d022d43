"""Peak memory of one benchmark row in a fresh process, above that process's import baseline.

The parent (`process_peak_mb`) starts ``python -m infojax.bench.memory_probe REQUEST``; the child
imports JAX and infojax, initialises the backend, records the baseline, then builds the workload
from its spec (deterministic: same weights and data), compiles the row's function and calls it once.
It prints the peak above the baseline: on CPU the resident-set high-water mark (``VmHWM``, reset
through ``/proc/self/clear_refs`` at the baseline), on a GPU the device allocator's
``peak_bytes_in_use``. Parameters, data, compilation and the call's temporaries and outputs are all
included: the figure of the issue's memory target ("peak memory above the import baseline").
"""

import json
import os
import subprocess
import sys
from typing import Optional

_MARK = "memory_probe_result="


def process_peak_mb(request: dict, *, timeout_s: float = 300.0) -> Optional[float]:
  """Runs the probe for ``request`` (spec, quantity, implementation, seed) in a new process.

  Returns:
    The peak increase in MiB, or None if the probe failed or the platform has no such figure.
  """
  import infojax  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(infojax.__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
  try:
    result = subprocess.run([sys.executable, "-m", "infojax.bench.memory_probe",
                             json.dumps(request)], capture_output=True, text=True,
                            timeout=timeout_s, env=env, check=False)
  except subprocess.TimeoutExpired:
    return None
  for line in result.stdout.splitlines():
    if line.startswith(_MARK):
      return json.loads(line[len(_MARK):])
  return None


def _device_bytes(field: str) -> Optional[int]:
  import jax  # pylint: disable=g-import-not-at-top
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get(field)


def main(argv) -> None:
  request = json.loads(argv[1])
  import jax  # pylint: disable=g-import-not-at-top
  from infojax.bench import jax_rows  # pylint: disable=g-import-not-at-top
  from infojax.bench import measure  # pylint: disable=g-import-not-at-top
  from infojax.bench import workloads  # pylint: disable=g-import-not-at-top
  jax.devices()   # initialise the backend before the baseline
  on_cpu = jax.default_backend() == "cpu"
  if on_cpu:
    if not measure.reset_rss_peak():
      print(_MARK + "null")
      return
    baseline = measure.rss_mb()
  else:
    baseline = (_device_bytes("bytes_in_use") or 0) / 2 ** 20
  workload = workloads.build(request["spec"], seed=request["seed"])
  key = jax.random.key(request["seed"])
  functions = jax_rows.functions(workload, methods=(request["method"],), key=key,
                                 plain_vmap=True)
  fn = functions[(request["quantity"], request["implementation"])]
  jax.block_until_ready(fn(*jax_rows.arguments(workload)))
  if on_cpu:
    peak = measure.rss_peak_mb() - baseline
  else:
    peak_bytes = _device_bytes("peak_bytes_in_use")
    peak = None if peak_bytes is None else peak_bytes / 2 ** 20 - baseline
  print(_MARK + json.dumps(peak))


if __name__ == "__main__":
  main(sys.argv)
