"""The structure function S(t) of a task for real and random labels.

  python scripts/structure_function.py --config=configs/structure_function.py \
      --workdir=/tmp/structure_function

See configs/structure_function.py for the options. Prints the seeds' means of the headline
numbers; summary.txt and metrics.jsonl in the workdir hold their intervals and everything else.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import structure_function

_FLAGS = config_lib.define_flags()
_HEADLINE = ("_num_train", "_code_knee_information", "_code_knee_code_length",
             "_hull_knee_beta", "_hull_knee_information", "_hull_knee_code_length",
             "_hull_slope_left", "_hull_slope_right", "fits_at_cap", "worst_relative_change")


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = structure_function.run(config, workdir)
  if summary:
    headline = {k: v for k, v in summary.items() if k.endswith(_HEADLINE)}
    print(config_lib.summary_line("structure_function", headline, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
