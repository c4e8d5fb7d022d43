"""Fisher and information against the SGD batch size: the zigzag toy, then an MLP on digits.

  python scripts/fisher_vs_batch.py --config=configs/fisher_vs_batch.py \
      --workdir=/tmp/fisher_vs_batch

See configs/fisher_vs_batch.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import fisher_vs_batch

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = fisher_vs_batch.run(config, workdir)
  if summary:
    print(config_lib.summary_line("fisher_vs_batch", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
