"""The structure function S(t) of a task for real and random labels, with the Kolmogorov knee.

The default run (an MLP on the bundled 8x8 digits and on mnist1d; a few minutes on 2 CPU cores):

  python scripts/structure_function.py --config=configs/structure_function.py \
      --workdir=/tmp/structure_function

A smoke run (seconds): --config=configs/structure_function.py:smoke. A rerun in the same workdir
starts over. For each dataset and for real and uniformly random labels, the information Lagrangian
``E_Q L_D + beta KL(Q || P)`` (``beta`` for the summed loss, nats) is minimised over a diagonal
Gaussian ``Q`` for ``num_betas`` log-spaced ``beta`` from ``beta_max`` down to ``beta_min``,
``num_steps`` full-batch steps each, warm-started from ``Q = P = N(w0, prior_variance I)``.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The structure_function config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.datasets = ("digits", "mnist1d")
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.normalize = True
  config.num_train = 1400  # a seeded subset of each training split (digits has 1437)
  config.seed = 0
  config.hidden_sizes = (100,)
  config.prior_variance = 0.01  # lambda^2 of P = N(w0, lambda^2 I), w0 the initialisation
  config.beta_max = 10.0
  config.beta_min = 1e-3
  config.num_betas = 13
  config.num_steps = 300  # full-batch steps per beta
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-2)
  config.eval_samples = 32  # weight draws for the reported E_Q L_D
  config.knee_tolerance = 1.0  # nats of code length (see infojax.weights.kolmogorov_knee)

  if arg == "smoke":
    config.datasets = ("mnist1d",)
    config.num_train = 200
    config.hidden_sizes = (32,)
    config.beta_max = 1.0
    config.beta_min = 0.01
    config.num_betas = 3
    config.num_steps = 40
    config.eval_samples = 4
  elif arg not in (None, ""):
    raise ValueError(f"configs/structure_function.py: unknown config argument {arg!r}; use none "
                     "or 'smoke'.")
  return config
