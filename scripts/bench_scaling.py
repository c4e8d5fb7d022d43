"""The scaling sweep (issue 5): Fisher diagonals and training steps against the device count.

  python scripts/bench_scaling.py                      # CPU: 1, 2, 4, 8 virtual devices
  python scripts/bench_scaling.py --batch_scale=16 --out=benchmarks/SCALING_gpu.md   # on GPUs
  python scripts/bench_scaling.py --devices=1,2 --workloads=mlp --repetitions=3

One fresh process per device count (`infojax.bench.scaling`). On CPU each gets d virtual devices;
on a GPU or TPU the default device counts are the powers of two up to the number of devices.
Writes the markdown table and a JSON copy (same name, .json).
"""

import argparse
import os
import shlex
import sys
import time

# On a GPU this process would otherwise reserve most of the memory its children need.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from infojax.bench import cli  # noqa: E402  pylint: disable=g-import-not-at-top
from infojax.bench import scaling  # noqa: E402  pylint: disable=g-import-not-at-top

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--devices", type=cli.ints, default=None,
                      help="comma-separated device counts (default 1,2,4,8 on CPU; the powers of "
                      "two up to the device count on a GPU or TPU)")
  parser.add_argument("--workloads", type=cli.csv, default=("mlp", "cnn"),
                      help="comma-separated among mlp,cnn (default both)")
  parser.add_argument("--workloads_json",
                      default=os.path.join(_REPO, "..", "shared", "bench", "workloads.json"),
                      help="the reference workloads (an embedded copy if the file is absent)")
  parser.add_argument("--repetitions", type=int, default=10, help="timed rounds (default 10)")
  parser.add_argument("--time_budget_s", type=float, default=5.0,
                      help="a row stops being timed once its calls took this long (default 5)")
  parser.add_argument("--batch_scale", type=float, default=1.0,
                      help="multiply the batch sizes (rounded up to a multiple of every device "
                      "count)")
  parser.add_argument("--learning_rate", type=float, default=0.1, help="of the SGD training step")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=os.path.join(_REPO, "benchmarks", "SCALING.md"),
                      help="markdown results (a .json copy is written beside it)")
  return parser.parse_args(argv)


def config_from_args(args) -> scaling.Config:
  unknown = sorted(set(args.workloads) - {"mlp", "cnn"})
  if unknown:
    raise SystemExit(f"--workloads: unknown {unknown}; expected some of mlp,cnn.")
  return scaling.Config(devices=args.devices, workloads=args.workloads,
                        workloads_json=args.workloads_json, repetitions=args.repetitions,
                        time_budget_s=args.time_budget_s, batch_scale=args.batch_scale,
                        learning_rate=args.learning_rate, seed=args.seed)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse(argv)
  config = config_from_args(args)
  start = time.time()
  result = scaling.run(config, log=lambda message: print(message, flush=True))
  command = " ".join(["python scripts/bench_scaling.py"] + [shlex.quote(a) for a in argv])
  scaling.write(result, args.out, command=command,
                extra_notes=[f"Total sweep time {time.time() - start:.0f} s."])
  print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  main()
