"""Critical learning periods: deficit-removal and sensitivity sweeps with per-layer Fisher traces.

  python scripts/critical_periods.py --config=configs/critical_periods.py \
      --workdir=/tmp/critical_periods

See configs/critical_periods.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import critical_periods

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = critical_periods.run(config, workdir)
  if summary:
    print(config_lib.summary_line("critical_periods", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
