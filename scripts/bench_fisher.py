"""The Fisher benchmark (issue 3): infojax against a plain gradient and its peers -> RESULTS.md.

  python scripts/bench_fisher.py                  # full run, CPU (about 12 minutes on 2 cores)
  python scripts/bench_fisher.py --quick          # mlp and cnn only, fewer repetitions
  python scripts/bench_fisher.py --scale=gpu --out=benchmarks/RESULTS_gpu.md   # on a GPU
  python scripts/bench_fisher.py --workloads=mlp --peers=jax,backpack,kfac

Peers (torch, torch.func, BackPACK, Opacus, NNGeometry, kfac-jax) run when installed; see
benchmarks/README.md. Writes the markdown table and a JSON copy (same name, .json).
"""

import argparse
import os
import shlex
import sys
import time

# torch's OpenMP threads otherwise spin between its calls and slow the interleaved JAX repetitions.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# On a GPU, JAX would otherwise reserve most of the device memory and starve the torch peers.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

from infojax import parallel  # noqa: E402  pylint: disable=g-import-not-at-top
from infojax.bench import cli  # noqa: E402  pylint: disable=g-import-not-at-top
from infojax.bench import fisher  # noqa: E402  pylint: disable=g-import-not-at-top
from infojax.bench import workloads  # noqa: E402  pylint: disable=g-import-not-at-top

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCALES = {"cpu": 1.0, "gpu": 16.0}


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workloads", type=cli.csv, default=workloads.DEFAULT_GROUPS,
                      help=f"comma-separated among {','.join(workloads.GROUPS)} (default "
                      f"{','.join(workloads.DEFAULT_GROUPS)})")
  parser.add_argument("--workloads_json",
                      default=os.path.join(_REPO, "..", "shared", "bench", "workloads.json"),
                      help="the reference workloads (an embedded copy if the file is absent)")
  parser.add_argument("--peers", default="all",
                      help=f"comma-separated among {','.join(fisher.PEERS)}, or 'all' or 'none'")
  parser.add_argument("--quick", action="store_true",
                      help="mlp and cnn only, 5 repetitions, 1.5 s budget per row")
  parser.add_argument("--repetitions", type=int, default=None, help="timed rounds (default 10)")
  parser.add_argument("--time_budget_s", type=float, default=None,
                      help="a row stops being timed once its calls took this long (default 3)")
  parser.add_argument("--scale", choices=sorted(_SCALES), default=None,
                      help="batch-size multiplier preset: cpu=1, gpu=16 (fills a GPU)")
  parser.add_argument("--batch_scale", type=float, default=None,
                      help="multiply every batch size (overrides --scale)")
  parser.add_argument("--cifar_batch", type=int, default=workloads.CIFAR_BATCH,
                      help="batch of the All-CNN and ResNet-18 workloads before scaling")
  parser.add_argument("--no_reference", action="store_true", help="skip the float64 references")
  parser.add_argument("--no_process_memory", action="store_true",
                      help="skip the fresh-process memory probes")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(_REPO, "benchmarks", "RESULTS.md"),
                      help="markdown results (a .json copy is written beside it)")
  return parser.parse_args(argv)


def config_from_args(args) -> fisher.Config:
  peers = {"all": fisher.PEERS, "none": ()}.get(args.peers, cli.csv(args.peers))
  scale = args.batch_scale or _SCALES[args.scale or ("gpu" if jax.default_backend() == "gpu"
                                                     else "cpu")]
  return fisher.Config(
      workloads=("mlp", "cnn") if args.quick else args.workloads,
      workloads_json=args.workloads_json, peers=tuple(peers),
      repetitions=args.repetitions or (5 if args.quick else 10),
      time_budget_s=args.time_budget_s or (1.5 if args.quick else 3.0),
      batch_scale=scale, cifar_batch=args.cifar_batch, reference=not args.no_reference,
      process_memory=not args.no_process_memory, seed=args.seed)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse(argv)
  # Multi-process runs (TPU pods, SLURM, $JAX_COORDINATOR_ADDRESS...): every process measures its
  # own devices; process 0 writes the results.
  info = parallel.maybe_initialize()
  print(f"infojax: {info}", flush=True)
  config = config_from_args(args)
  start = time.time()
  result = fisher.run(config, log=lambda message: print(message, flush=True))
  if not parallel.is_main_process():
    return
  command = " ".join(["python scripts/bench_fisher.py"] + [shlex.quote(a) for a in argv])
  fisher.write(result, args.out, command=command,
               extra_notes=[f"Total benchmark time {time.time() - start:.0f} s."])
  print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  main()
