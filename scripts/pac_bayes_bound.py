"""Non-vacuous PAC-Bayes bounds on binary digits (Dziugaite & Roy 2017; Perez-Ortiz et al. 2021's
f_quad and f_lambda; priors at the initialisation and data-dependent), vacuous on random labels,
over seeds. A rerun in the same workdir resumes.

  python scripts/pac_bayes_bound.py --config=configs/pac_bayes_bound.py \
      --workdir=/tmp/pac_bayes_bound

See configs/pac_bayes_bound.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import pac_bayes_bound

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = pac_bayes_bound.run(config, workdir)
  if summary:
    print(config_lib.summary_line("pac_bayes_bound", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
