"""Information in the weights against label noise; the phase transition on random labels.

  python scripts/random_labels.py --config=configs/random_labels.py --workdir=/tmp/random_labels

See configs/random_labels.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import random_labels

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = random_labels.run(config, workdir)
  if summary:
    print(config_lib.summary_line("random_labels", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
