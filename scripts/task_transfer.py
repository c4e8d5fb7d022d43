"""Fine-tuning cost between tasks against the Task2Vec and the information distances.

  python scripts/task_transfer.py --config=configs/task_transfer.py \
      --workdir=/tmp/task_transfer

See configs/task_transfer.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import task_transfer

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = task_transfer.run(config, workdir)
  if summary:
    print(config_lib.summary_line("task_transfer", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
