"""Deep VIB: test error and the variational IB bounds against beta on the bundled digits.

  python scripts/vib.py --config=configs/vib.py --workdir=/tmp/vib

See configs/vib.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import vib

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = vib.run(config, workdir)
  if summary:
    print(config_lib.summary_line("vib", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
