"""The structure function S(t) of a task for real and random labels: both knees, over seeds.

The default run (an MLP on the bundled 8x8 digits and on mnist1d, 3 seeds; about 3 minutes on 2
CPU cores):

  python scripts/structure_function.py --config=configs/structure_function.py \
      --workdir=/tmp/structure_function

A smoke run (seconds): --config=configs/structure_function.py:smoke. A rerun in the same workdir
resumes (completed units are kept; the running sweep restarts at the beta after its last
checkpoint). For each dataset, seed and real or uniformly random labels, the information
Lagrangian ``E_Q L_D + beta KL(Q || P)`` (``beta`` for the summed loss, nats) is minimised over a
diagonal Gaussian ``Q`` for ``num_betas`` log-spaced ``beta`` from ``beta_max`` down to
``beta_min``, warm-started from ``Q = P = N(w0, prior_variance I)``: full-batch steps in chunks of
``check_every`` until the relative change of the chunk-mean objective is at most ``tolerance``,
``num_steps`` at most.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
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
  config.seeds = (0, 1, 2)  # each draws the subset, w0, the random labels and the fits' noise
  config.hidden_sizes = (100,)
  config.prior_variance = 0.01  # lambda^2 of P = N(w0, lambda^2 I), w0 the initialisation
  config.beta_max = 10.0
  config.beta_min = 1e-3
  config.num_betas = 13
  config.num_steps = 4000  # the most full-batch steps per beta
  config.check_every = 200  # steps per chunk of the convergence criterion (divides num_steps)
  config.tolerance = 1e-3  # relative change of the chunk-mean objective; None: num_steps each
  # At lr 1e-2 the fits stall higher: on digits (real labels, seed 0) the beta = 1 fit's code
  # length was 1,459-1,653 nats (three criteria) against 1,322 at 3e-3.
  config.optimizer = config_lib.optimizer_config(name="adam", lr=3e-3)
  config.eval_samples = 32  # weight draws for the reported E_Q L_D
  config.knee_tolerance = 1.0  # nats of code length (see infojax.weights.kolmogorov_knee)
  # Also mirror the records as TensorBoard scalars in WORKDIR/tensorboard (tensorboardX).
  config.tensorboard = False

  if arg == "smoke":
    config.datasets = ("mnist1d",)
    config.num_train = 200
    config.hidden_sizes = (32,)
    config.beta_max = 1.0
    config.beta_min = 0.01
    config.num_betas = 3
    config.seeds = (0, 1)
    config.num_steps = 40
    config.check_every = 20
    config.eval_samples = 4
  elif arg not in (None, ""):
    raise ValueError(f"configs/structure_function.py: unknown config argument {arg!r}; use none "
                     "or 'smoke'.")
  return config
