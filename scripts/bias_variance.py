"""Test error against the number of parameters and against the information in the weights.

  python scripts/bias_variance.py --config=configs/bias_variance.py --workdir=/tmp/bias_variance

See configs/bias_variance.py for the options. A rerun in the same workdir resumes.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import bias_variance

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = bias_variance.run(config, workdir)
  if summary:
    print(config_lib.summary_line("bias_variance", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
