"""The noise of SGD over training: gradient-covariance and Hessian spectra.

  python scripts/sgd_noise.py --config=configs/sgd_noise.py \
      --workdir=/tmp/sgd_noise

See configs/sgd_noise.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import sgd_noise

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = sgd_noise.run(config, workdir)
  if summary:
    print(config_lib.summary_line("sgd_noise", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
