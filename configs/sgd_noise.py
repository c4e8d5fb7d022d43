"""The noise of SGD over training: gradient-covariance and Hessian spectra of a digits MLP.

The default run (an MLP with 100 hidden units on the bundled 8x8 digits, 3 seeds vmapped; about a
minute on 2 CPU cores):

  python scripts/sgd_noise.py --config=configs/sgd_noise.py --workdir=/tmp/sgd_noise

A smoke run (seconds): --config=configs/sgd_noise.py:smoke. SGD (``learning_rate``,
``batch_size``, ``num_steps``, sampling epochs without replacement) runs as one compiled program
for all seeds; at ``num_checkpoints + 1`` evenly spaced points (the first the initialisation) the
gradient covariance ``D`` and the Hessian of the training loss are measured: ``tr D``, their top
``k`` eigenvalues by Lanczos with ``num_iterations`` products, the stable rank, the anisotropy and
the overlap of their top-k subspaces. The share of ``tr D`` in the top k Ritz values is a lower
bound on the share in the top k eigenvalues (Cauchy interlacing), so a 90% share is never
overstated. A rerun in the same workdir measures only missing points.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
  """The sgd_noise config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.num_train = 1400
  config.hidden_sizes = (100,)
  config.seeds = (0, 1, 2)
  config.learning_rate = 0.1
  config.batch_size = 32
  config.num_steps = 4000  # about 90 epochs of 43 steps
  config.num_checkpoints = 8
  config.k = 80  # more than 1% of the 7510 weights, to test the low-rank claim
  config.num_iterations = 160
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.num_train = 200
    config.hidden_sizes = (16,)
    config.seeds = (0, 1)
    config.num_steps = 60
    config.num_checkpoints = 2
    config.k = 4
    config.num_iterations = 12
  elif arg not in (None, ""):
    raise ValueError(f"configs/sgd_noise.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
