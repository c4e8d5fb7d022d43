"""Information Dropout on cluttered digits against binary dropout and no dropout.

  python scripts/information_dropout.py --config=configs/information_dropout.py \
      --workdir=/tmp/information_dropout

See configs/information_dropout.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import information_dropout

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = information_dropout.run(config, workdir)
  if summary:
    print(config_lib.summary_line("information_dropout", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
