"""Information bottleneck curves of discrete joints (and a Gaussian one), with their bounds.

The default run (the binary symmetric pair, a random 8 x 3 joint and k-means-quantised digits
against their labels, plus the analytic Gaussian curve; about 3 minutes on 2 CPU cores):

  python scripts/ib_curve.py --config=configs/ib_curve.py --workdir=/tmp/ib_curve

A smoke run (seconds): --config=configs/ib_curve.py:smoke. For each joint, Blahut-Arimoto IB
curves (`infojax.activations.ib_curve`, float64) over ``num_betas`` log-spaced ``beta`` in
``[beta_min, beta_max]`` for each ``|T|`` in ``clusters[joint]``, from ``restarts`` random encoders
(vmapped) and by deterministic annealing, once with the deterministic IB, and
``threshold_rounds`` refinements of where ``I(X;T)`` leaves 0 (``threshold_joints``); updates stop
at ``tol`` or after ``num_steps``. A rerun in the same workdir resumes per joint (joints whose
records are all written are kept). On several processes add the shared flags
(--coordinator_address, --num_processes, --process_id): every process computes everything and
process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
  """The ib_curve config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.joints = ("symmetric", "random", "digits", "gaussian")
  config.seed = 0
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.symmetric_error = 0.1         # Y = X xor Bern(e)
  config.random_shape = (8, 3)         # |X|, |Y| of the Dirichlet joint
  config.random_concentration = 1.0
  config.digits_cells = 128            # k-means cells of the 64 pixels (|X| of the digits joint)
  config.kmeans_inits = 4
  config.gaussian_dims = (4, 3)        # d_x, d_y of the Gaussian joint (analytic curve)
  config.clusters = ml_collections.ConfigDict(
      {"symmetric": (2, 3), "random": (2, 3, 8), "digits": (2, 4, 10)})
  config.beta_min = 0.5
  config.beta_max = 200.0
  config.num_betas = 40
  config.restarts = 4                  # random encoders per beta (vmapped and annealed)
  config.tol = 1e-10                   # stop when no q(t|x) moves by more than this
  config.num_steps = 3000              # the most updates per restart (max_iter)
  config.anneal_noise = 1e-2           # weight of a random encoder in each annealing warm start
  config.deterministic = True          # one deterministic-IB curve per joint (largest |T|)
  config.threshold_rounds = 2          # re-gridding rounds of the departure bracket, for
  config.threshold_joints = ("symmetric", "random")     # these joints,
  config.threshold_num_steps = 20_000  # with at most this many updates (slow near the onset)
  config.departure_tol = 1e-6          # I(X;T) above this (nats) counts as departed from 0
  # Joints compiled at XLA optimisation level 0 (faster compiles, slower runs: the small ones).
  config.fast_compile_joints = ("symmetric", "random")
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.joints = ("symmetric", "gaussian")
    config.clusters = ml_collections.ConfigDict({"symmetric": (2,), "random": (2,),
                                                 "digits": (2,)})
    config.beta_max = 50.0
    config.num_betas = 12
    config.restarts = 2
    config.tol = 1e-8
    config.num_steps = 2000
    config.threshold_rounds = 1
    config.threshold_num_steps = 2000
    config.deterministic = False       # (the deterministic IB is compiled in the default run)
    config.fast_compile_joints = ("symmetric",)
  elif arg not in (None, ""):
    raise ValueError(f"configs/ib_curve.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
