"""Test error against the number of parameters and against the information in the weights.

The default run (one-hidden-layer MLPs of widths 2 to 1024 on the bundled 8x8 digits with 20% of
the training labels corrupted; a few minutes on 2 CPU cores):

  python scripts/bias_variance.py --config=configs/bias_variance.py --workdir=/tmp/bias_variance

A smoke run (seconds): --config=configs/bias_variance.py:smoke. A rerun in the same workdir starts
over. Every width is trained by Adam for ``num_epochs`` epochs from its own initialisation ``w0``;
the information in its weights is the closed form from the exact true-Fisher diagonal at
``beta = fisher_beta`` (summed loss), with the prior ``N(w0, prior_variance I)`` and with the
``prior_variance_grid`` value that minimises the Laplace code length.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The bias_variance config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.normalize = True
  config.num_train = config_dict.placeholder(int)  # a seeded training subset; None: all
  config.label_noise = 0.2  # fraction of training labels replaced by uniformly random ones
  config.seed = 0
  config.widths = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
  config.num_epochs = 100
  config.batch_size = 128
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-3)
  config.fisher_beta = 1.0
  config.prior_variance = 0.01
  config.prior_variance_grid = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
  config.fisher_chunk_size = config_dict.placeholder(int)

  if arg == "smoke":
    config.num_train = 300
    config.widths = (2, 16, 128)
    config.num_epochs = 5
  elif arg not in (None, ""):
    raise ValueError(f"configs/bias_variance.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
