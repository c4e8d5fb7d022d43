"""Information in the weights during training: Fisher traces and accuracy per epoch.

  python scripts/info_plot.py --config=configs/info_plot.py --workdir=/tmp/info_plot

See configs/info_plot.py for the options and the GPU (CIFAR-10) command.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import info_plot

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = info_plot.run(config, workdir)
  if summary:
    print(config_lib.summary_line("info_plot", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
