"""Benchmark of the Blahut-Arimoto IB curve -> a section of benchmarks/RESULTS.md.

  python scripts/bench_bottleneck.py                  # 64 betas, 256 x 10 joint, 200 updates
  python scripts/bench_bottleneck.py --num_iterations=50 --repetitions=1

Times `infojax.activations.ib_curve` (vmapped over the betas, and annealed) against a Python loop
of jitted update steps and a numpy float64 loop of the same updates, with one jitted vmapped update
as the unit (`infojax.bench.bottleneck`). The section sits between `<!-- bottleneck:begin -->` and
`<!-- bottleneck:end -->` in the markdown file; the rest of the file is kept.
"""

import argparse
import os
import shlex
import sys

from infojax.bench import bottleneck
from infojax.bench import cli

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  defaults = bottleneck.Config()
  parser.add_argument("--rows", type=cli.csv, default=defaults.rows,
                      help=f"comma-separated among {','.join(bottleneck.ROWS)}")
  for field in ("num_x", "num_y", "num_clusters", "num_betas", "num_iterations", "repetitions",
                "seed"):
    parser.add_argument(f"--{field}", type=int, default=getattr(defaults, field))
  for field in ("beta_min", "beta_max", "time_budget_s"):
    parser.add_argument(f"--{field}", type=float, default=getattr(defaults, field))
  parser.add_argument("--out", default=os.path.join(_REPO, "benchmarks", "RESULTS.md"),
                      help="markdown file holding the section (kept otherwise)")
  return parser.parse_args(argv)


def main(argv):
  args = parse(argv)
  config = bottleneck.Config(**{k: v for k, v in vars(args).items() if k != "out"})
  rows = bottleneck.run(config, log=lambda message: print(message, flush=True))
  command = "python scripts/bench_bottleneck.py" + "".join(" " + shlex.quote(a) for a in argv)
  bottleneck.write(rows, config, args.out, command=command)
  print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
