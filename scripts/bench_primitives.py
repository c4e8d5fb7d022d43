"""Benchmark of the curvature primitives -> a section of benchmarks/RESULTS.md + PRIMITIVES.json.

  python scripts/bench_primitives.py                  # mlp and cnn, then the accuracy table
  python scripts/bench_primitives.py --quick          # fewer repetitions, shorter budgets
  python scripts/bench_primitives.py --workloads=mlp --no_accuracy

Times the engine's primitives (Fisher- and Hessian-vector products, gradient covariance, Hessian
diagonal, per-example Jacobians / VJPs / JVPs, K-FAC factors, Lanczos eigenvalues, spectral
density) against jax.grad in the same run, and checks their accuracy on a small float64 MLP
(`infojax.bench.primitives`). The section sits between `<!-- primitives:begin -->` and
`<!-- primitives:end -->` in the markdown file; the rest of the file is kept.
"""

import argparse
import os
import shlex
import sys
import time

from infojax.bench import cli
from infojax.bench import primitives

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workloads", type=cli.csv, default=primitives.WORKLOADS,
                      help=f"comma-separated among {','.join(primitives.WORKLOADS)}")
  parser.add_argument("--workloads_json",
                      default=os.path.join(_REPO, "..", "shared", "bench", "workloads.json"),
                      help="the reference workloads (an embedded copy if the file is absent)")
  parser.add_argument("--quick", action="store_true",
                      help="5 repetitions, 1.5 s budget per row")
  parser.add_argument("--repetitions", type=int, default=None, help="timed rounds (default 10)")
  parser.add_argument("--time_budget_s", type=float, default=None,
                      help="a row stops being timed once its calls took this long (default 3)")
  parser.add_argument("--hutchinson_probes", type=int, default=10)
  parser.add_argument("--top_k", type=int, default=5, help="eigenvalues of the Lanczos rows")
  parser.add_argument("--lanczos_iterations", type=int, default=20)
  parser.add_argument("--slq_probes", type=int, default=3)
  parser.add_argument("--slq_iterations", type=int, default=10)
  parser.add_argument("--no_accuracy", action="store_true", help="skip the small-model table")
  parser.add_argument("--accuracy_sizes", type=cli.ints, default=(20, 16, 3),
                      help="layer sizes of the small float64 MLP")
  parser.add_argument("--accuracy_batch", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(_REPO, "benchmarks", "RESULTS.md"),
                      help="markdown file holding the section (kept otherwise)")
  parser.add_argument("--json", default=None,
                      help="JSON copy (default PRIMITIVES.json beside --out)")
  return parser.parse_args(argv)


def config_from_args(args) -> primitives.Config:
  return primitives.Config(
      workloads=args.workloads, workloads_json=args.workloads_json,
      repetitions=args.repetitions or (5 if args.quick else 10),
      time_budget_s=args.time_budget_s or (1.5 if args.quick else 3.0),
      hutchinson_probes=args.hutchinson_probes, top_k=args.top_k,
      lanczos_iterations=args.lanczos_iterations, slq_probes=args.slq_probes,
      slq_iterations=args.slq_iterations, accuracy=not args.no_accuracy,
      accuracy_sizes=args.accuracy_sizes, accuracy_batch=args.accuracy_batch, seed=args.seed)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse(argv)
  start = time.time()
  result = primitives.run(config_from_args(args), log=lambda message: print(message, flush=True))
  command = " ".join(["python scripts/bench_primitives.py"] + [shlex.quote(a) for a in argv])
  primitives.write(result, args.out, json_path=args.json, command=command,
                   extra_notes=[f"Total benchmark time {time.time() - start:.0f} s."])
  print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  main()
