"""Benchmark of the scanned SGD paths -> a section of benchmarks/RESULTS.md.

  python scripts/bench_dynamics.py                    # mlp and cnn, 500 steps, 5 rounds
  python scripts/bench_dynamics.py --workloads=mlp --num_steps=200 --repetitions=3

Times `infojax.dynamics.sgd_path` (one lax.scan) against a per-step jitted Python loop, the flax
TrainState idiom and 16 vmapped seeds, with a plain jitted gradient as the unit
(`infojax.bench.dynamics`). The section sits between `<!-- dynamics:begin -->` and
`<!-- dynamics:end -->` in the markdown file; the rest of the file is kept.
"""

import argparse
import os
import shlex
import sys

from infojax.bench import cli
from infojax.bench import dynamics

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  defaults = dynamics.Config()
  parser.add_argument("--workloads", type=cli.csv, default=defaults.workloads,
                      help=f"comma-separated among {','.join(dynamics.WORKLOADS)}")
  parser.add_argument("--num_steps", type=int, default=defaults.num_steps)
  parser.add_argument("--batch_size", type=int, default=defaults.batch_size)
  parser.add_argument("--num_seeds", type=int, default=defaults.num_seeds)
  parser.add_argument("--repetitions", type=int, default=defaults.repetitions)
  parser.add_argument("--time_budget_s", type=float, default=defaults.time_budget_s)
  parser.add_argument("--seed", type=int, default=defaults.seed)
  parser.add_argument("--out", default=os.path.join(_REPO, "benchmarks", "RESULTS.md"),
                      help="markdown file holding the section (kept otherwise)")
  return parser.parse_args(argv)


def main(argv):
  args = parse(argv)
  config = dynamics.Config(workloads=args.workloads, num_steps=args.num_steps,
                           batch_size=args.batch_size, num_seeds=args.num_seeds,
                           repetitions=args.repetitions, time_budget_s=args.time_budget_s,
                           seed=args.seed)
  rows = dynamics.run(config, log=lambda message: print(message, flush=True))
  command = "python scripts/bench_dynamics.py" + "".join(" " + shlex.quote(a) for a in argv)
  dynamics.write(rows, config, args.out, command=command)
  print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
