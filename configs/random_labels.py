"""Information in the weights against label noise; the phase transition on random labels.

The default run (an MLP on the bundled 8x8 digits; a few minutes on 2 CPU cores):

  python scripts/random_labels.py --config=configs/random_labels.py --workdir=/tmp/random_labels

A smoke run (seconds): --config=configs/random_labels.py:smoke. A rerun in the same workdir starts
over. For each fraction of corrupted training labels: SGD to zero training error (Adam, as in Zhang
et al. 2017's fully connected runs), the closed-form information of that solution from the exact
true Fisher, and a sweep of the information Lagrangian ``E_Q L_D + beta KL(Q || P)`` (``beta`` for
the summed loss, nats) from ``beta_max`` down to ``beta_min``, warm-started from ``Q = P``.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The random_labels config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.normalize = True
  config.num_train = config_dict.placeholder(int)  # a seeded training subset; None: all
  config.seed = 0
  config.hidden_sizes = (512,)
  config.fractions = (0.0, 0.25, 0.5, 0.75, 1.0)
  # SGD to zero training error.
  config.num_epochs = 150
  config.batch_size = 128
  config.optimizer = config_lib.optimizer_config(name="adam", lr=3e-3)
  # Information in the weights: prior N(w0, prior_variance I) at the initialisation.
  config.prior_variance = 0.01
  config.fisher_beta = 1.0  # beta (summed loss) of the closed form at the SGD solution
  config.fisher_chunk_size = config_dict.placeholder(int)
  config.sweep = ml_collections.ConfigDict()
  config.sweep.beta_max = 10.0
  config.sweep.beta_min = 1e-3
  config.sweep.num_betas = 13  # log-spaced: 10, 4.64, 2.15, 1, ..., 1e-3
  config.sweep.report_betas = (1.0, 0.1, 0.01)  # grid points shown against the fraction
  config.sweep.num_steps = 300  # full-batch steps per beta
  config.sweep.optimizer = config_lib.optimizer_config(name="adam", lr=1e-2)
  config.sweep.eval_samples = 32

  if arg == "smoke":
    config.num_train = 200
    config.hidden_sizes = (64,)
    config.fractions = (0.0, 1.0)
    config.num_epochs = 3
    config.sweep.beta_max = 1.0
    config.sweep.beta_min = 0.01
    config.sweep.num_betas = 3
    config.sweep.report_betas = (1.0, 0.1)
    config.sweep.num_steps = 40
    config.sweep.eval_samples = 4
  elif arg not in (None, ""):
    raise ValueError(f"configs/random_labels.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
