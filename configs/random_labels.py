"""Information in the weights against label noise; the phase transition on random labels.

The default run (an MLP on the bundled 8x8 digits, 3 seeds x 5 fractions; about 6 minutes on 2 CPU
cores):

  python scripts/random_labels.py --config=configs/random_labels.py --workdir=/tmp/random_labels

A smoke run (seconds): --config=configs/random_labels.py:smoke. For each seed and each fraction of
corrupted training labels (a unit): SGD to zero training error (Adam, as in Zhang et al. 2017's
fully connected runs), the closed-form information of that solution from the exact true Fisher, and
a sweep of the information Lagrangian ``E_Q L_D + beta KL(Q || P)`` (``beta`` for the summed loss,
nats) from ``beta_max`` down to ``beta_min``, warm-started from ``Q = P``, each ``beta`` fitted
until the relative change of the objective's mean over ``check_every`` steps is at most
``tolerance`` (``num_steps`` steps at most). A rerun in the same workdir resumes: completed units
are read back from ``metrics.jsonl`` and the interrupted one continues from its newest checkpoint
(SGD epoch or swept ``beta``), with the records of an uninterrupted run.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
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
  config.num_train = config_dict.placeholder(int)  # a fixed (seed 0) training subset; None: all
  # Each seed: its own initialisation w0, label corruption, SGD batch order and sweep keys.
  config.seeds = (0, 1, 2)
  config.hidden_sizes = (256,)
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
  config.sweep.num_steps = 1600  # the most full-batch steps per beta
  config.sweep.check_every = 200  # steps per chunk of the convergence criterion
  # Stop once the chunk-mean objective changes by at most this (relative) between two chunks; the
  # one-draw-per-step estimate of the objective is noisy at about this level in 200-step means.
  config.sweep.tolerance = 1e-2
  config.sweep.optimizer = config_lib.optimizer_config(name="adam", lr=1e-2)
  config.sweep.eval_samples = 32
  # Also mirror the records as TensorBoard scalars in WORKDIR/tensorboard (pip install
  # "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.num_train = 200
    config.seeds = (0, 1)
    config.hidden_sizes = (64,)
    config.fractions = (0.0, 1.0)
    config.num_epochs = 3
    config.sweep.beta_max = 1.0
    config.sweep.beta_min = 0.01
    config.sweep.num_betas = 3
    config.sweep.report_betas = (1.0, 0.1)
    config.sweep.num_steps = 40
    config.sweep.check_every = 10
    config.sweep.tolerance = 1e-2
    config.sweep.eval_samples = 4
  elif arg not in (None, ""):
    raise ValueError(f"configs/random_labels.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
