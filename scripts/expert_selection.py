"""Expert selection by the asymmetric Task2Vec distance.

  python scripts/expert_selection.py --config=configs/expert_selection.py \
      --workdir=/tmp/expert_selection

See configs/expert_selection.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import expert_selection

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = expert_selection.run(config, workdir)
  if summary:
    print(config_lib.summary_line("expert_selection", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
