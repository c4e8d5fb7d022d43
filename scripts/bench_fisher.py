"""The Fisher benchmark: infojax against a plain gradient and against peers, written to RESULTS.md.

  python scripts/bench_fisher.py                      # full run, about 10 minutes on 2 CPU cores
  python scripts/bench_fisher.py --quick              # the two reference workloads, fewer repetitions
  python scripts/bench_fisher.py --batch_scale=8 --out=benchmarks/RESULTS_gpu.md   # on a GPU

Peers (torch autograd, torch.func, BackPACK) run when installed; see benchmarks/README.md.
"""

import argparse
import json
import os
import sys
import time

# torch's OpenMP threads otherwise spin between its calls and slow the interleaved JAX repetitions.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax  # noqa: E402

from infojax.bench import fisher as bench  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workloads", default="mlp,cnn,sweep,allcnn,resnet18",
                      help="comma-separated: mlp, cnn (shared/bench/workloads.json), sweep (mlp "
                      "at other batch sizes and class counts), allcnn, resnet18")
  parser.add_argument("--workloads_json",
                      default=os.path.join(_HERE, "..", "..", "shared", "bench", "workloads.json"),
                      help="the reference workloads (embedded copies are used if absent)")
  parser.add_argument("--repetitions", type=int, default=15)
  parser.add_argument("--quick", action="store_true", help="mlp and cnn only, 5 repetitions")
  parser.add_argument("--batch_scale", type=float, default=1.0,
                      help="multiply every batch size (e.g. 8 to fill a GPU)")
  parser.add_argument("--no_peers", action="store_true", help="JAX rows only")
  parser.add_argument("--no_reference", action="store_true", help="skip the float64 reference")
  parser.add_argument("--out", default=os.path.join(_HERE, "..", "benchmarks", "RESULTS.md"))
  return parser.parse_args(argv)


def main(argv=None):
  args = _parse(argv)
  log = lambda message: print(message, flush=True)
  specs = dict(bench.DEFAULT_WORKLOADS)
  if os.path.exists(args.workloads_json):
    with open(args.workloads_json) as f:
      specs.update(json.load(f)["workloads"])
  names = ["mlp", "cnn"] if args.quick else args.workloads.split(",")
  repetitions = 5 if args.quick else args.repetitions
  plan = []
  for name in names:
    if name in ("mlp", "cnn"):
      plan.append((name, specs[name], 10, ("auto", "vmap"), True))
    elif name == "sweep":
      for batch in (64, 1024):
        plan.append((f"mlp_b{batch}", dict(specs["mlp"], batch=batch), 10, ("auto",), False))
      plan.append(("mlp_c100", specs["mlp"], 100, ("auto",), False))
      plan.append(("cnn_c100", specs["cnn"], 100, ("auto",), False))
    elif name == "allcnn":
      plan.append(("allcnn", {"kind": "allcnn", "batch": 16}, 10, ("auto",), False))
    elif name == "resnet18":
      plan.append(("resnet18_gn", {"kind": "resnet18", "norm": "group", "batch": 16}, 10,
                   ("auto",), False))
    else:
      raise SystemExit(f"unknown workload {name!r}")
  log(f"jax {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
  rows, workloads, start = [], {}, time.time()
  for name, spec, classes, methods, peers in plan:
    workload = bench.make_workload(name, spec, batch_scale=args.batch_scale, num_classes=classes)
    workloads[name] = workload
    log(f"{name}: {workload.description}")
    rows += bench.run_workload(workload, methods=methods, repetitions=repetitions,
                               peers=peers and not args.no_peers,
                               with_reference=not args.no_reference, log=log)
  command = "python scripts/bench_fisher.py " + " ".join(sys.argv[1:] if argv is None else argv)
  notes = [f"Total benchmark time {time.time() - start:.0f} s."]
  bench.write_results(rows, args.out, command=command.strip(), workloads=workloads, notes=notes)
  log(f"wrote {args.out}")


if __name__ == "__main__":
  main()
