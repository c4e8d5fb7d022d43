"""beta-VAE and capacity annealing on procedural sprites: disentanglement and the order of entry.

  python scripts/beta_vae.py --config=configs/beta_vae.py --workdir=/tmp/beta_vae

See configs/beta_vae.py for the options.
"""

from absl import app

from infojax import config as config_lib
from infojax.experiments import beta_vae

_FLAGS = config_lib.define_flags()


def main(argv):
  config, workdir = _FLAGS.read(argv)
  summary = beta_vae.run(config, workdir)
  if summary:
    print(config_lib.summary_line("beta_vae", summary, workdir), flush=True)


if __name__ == "__main__":
  app.run(main)
