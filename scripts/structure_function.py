"""The structure function S(t) of a task for real and random labels.

  python scripts/structure_function.py --config=configs/structure_function.py \
      --workdir=/tmp/structure_function

See configs/structure_function.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import structure_function

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = structure_function.run(config, workdir)
  if summary:
    print(config_lib.summary_line("structure_function", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
