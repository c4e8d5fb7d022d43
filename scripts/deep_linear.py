"""Mode strengths of shallow and deep linear networks against time (Saxe et al. 2014).

  python scripts/deep_linear.py --config=configs/deep_linear.py --workdir=/tmp/deep_linear

See configs/deep_linear.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import deep_linear

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = deep_linear.run(config, workdir)
  if summary:
    print(config_lib.summary_line("deep_linear", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
