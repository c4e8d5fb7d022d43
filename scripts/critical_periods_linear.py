"""Critical periods in a two-pathway deep linear network (Kleinman, Achille & Soatto 2024).

  python scripts/critical_periods_linear.py --config=configs/critical_periods_linear.py \
    --workdir=/tmp/cpl

See configs/critical_periods_linear.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import critical_periods_linear

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = critical_periods_linear.run(config, workdir)
  if summary:
    print(config_lib.summary_line("critical_periods_linear", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
