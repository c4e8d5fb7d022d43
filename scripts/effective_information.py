"""Information in the weights, effective information of the activations, and invariance.

  python scripts/effective_information.py --config=configs/effective_information.py \
      --workdir=/tmp/effective_information

See configs/effective_information.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import effective_information

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = effective_information.run(config, workdir)
  if summary:
    print(config_lib.summary_line("effective_information", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
