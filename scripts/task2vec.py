"""Task2Vec on a suite of small tasks: exact Fisher against the official estimator, two probes.

  python scripts/task2vec.py --config=configs/task2vec.py \
      --workdir=/tmp/task2vec

See configs/task2vec.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import task2vec

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = task2vec.run(config, workdir)
  if summary:
    print(config_lib.summary_line("task2vec", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
