"""Test error against the number of parameters and against the information in the weights.

The default run (one-hidden-layer MLPs of widths 2 to 1024 on the bundled 8x8 digits with 20% of
the training labels corrupted, 3 seeds; 93 s on 2 CPU cores):

  python scripts/bias_variance.py --config=configs/bias_variance.py --workdir=/tmp/bias_variance

A smoke run (seconds): --config=configs/bias_variance.py:smoke. A rerun in the same workdir resumes
(completed (seed, width) units are kept; an interrupted unit continues from its last checkpoint).
For each seed in ``seeds`` (its own training subset, corrupted labels, initialisations and
batches) every width is trained by Adam for ``num_epochs`` epochs from its own initialisation
``w0``; the information in its weights is the closed form from the exact true-Fisher diagonal at
``beta = fisher_beta`` (summed loss), with the prior ``N(w0, prior_variance I)`` and with the value
of a log-uniform grid of ``prior_variance_grid_size`` values in ``[prior_variance_grid_min,
prior_variance_grid_max]`` that minimises the Laplace code length, charged ``log
prior_variance_grid_size`` nats (a union bound over the grid).

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
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
  config.seeds = (0, 1, 2)  # each its own subset, label noise, initialisations and batches
  config.widths = (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
  config.num_epochs = 100
  config.batch_size = 128
  config.checkpoint_every = 10  # epochs between a unit's checkpoints (and at its last epoch)
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-3)
  config.fisher_beta = 1.0
  config.prior_variance = 0.01
  # The code-length-optimal prior variance: K log-uniform values, the choice costs log K nats.
  config.prior_variance_grid_min = 1e-5
  config.prior_variance_grid_max = 10.0
  config.prior_variance_grid_size = 100
  config.fisher_chunk_size = config_dict.placeholder(int)
  config.tensorboard = False  # also mirror metrics.jsonl as TensorBoard scalars (tensorboardX)

  if arg == "smoke":
    config.num_train = 300
    config.widths = (2, 16, 128)
    config.num_epochs = 5
    config.seeds = (0,)
    config.checkpoint_every = 1
  elif arg not in (None, ""):
    raise ValueError(f"configs/bias_variance.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
