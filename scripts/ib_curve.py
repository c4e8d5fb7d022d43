"""Information bottleneck curves of discrete joints (and a Gaussian one).

  python scripts/ib_curve.py --config=configs/ib_curve.py --workdir=/tmp/ib_curve

See configs/ib_curve.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import ib_curve

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = ib_curve.run(config, workdir)
  if summary:
    print(config_lib.summary_line("ib_curve", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
