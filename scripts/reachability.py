"""The double well's transition probabilities and first-passage times against D.

  python scripts/reachability.py --config=configs/reachability.py --workdir=/tmp/reachability

See configs/reachability.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import reachability

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = reachability.run(config, workdir)
  if summary:
    print(config_lib.summary_line("reachability", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
