"""Fisher and information against the SGD batch size: the zigzag toy of "Where is the information
in a deep network?" (Fig. 3; science.md §2.10, §15 B.16), then an MLP on digits (Fig. 4).

The default run (about 2-4 minutes on 2 CPU cores: the toy's 300 datasets x 12 runs x 20k steps
for each of 4 batch sizes and 2 Langevin temperatures, then 4 batch sizes x 3 learning rates x 4
seeds of a small MLP on the bundled 8x8 digits, trained for equal epochs and for equal steps):

  python scripts/fisher_vs_batch.py --config=configs/fisher_vs_batch.py \
      --workdir=/tmp/fisher_vs_batch

A smoke run (seconds): --config=configs/fisher_vs_batch.py:smoke. A rerun in the same workdir
resumes: the toy batch sizes and temperatures and the digits (protocol, batch size, learning rate)
points already in metrics.jsonl are not recomputed. ``num_steps`` is the toy's SGD steps,
``num_epochs`` the digits training epochs. On several processes add the shared flags
(--coordinator_address, --num_processes, --process_id): every process computes the same and
process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict


def get_config(arg=None):
  """The fisher_vs_batch config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.parts = ("toy", "digits")
  config.seed = 0
  config.num_steps = 20000  # toy SGD steps
  config.num_epochs = 50    # digits training epochs

  # The Figure 3 toy as rebuilt in science.md §2.10 [3P-annot].
  config.toy = ml_collections.ConfigDict()
  config.toy.num_pieces = 10       # linear pieces of the zigzag on each side of 0
  config.toy.growth = 1.4          # width ratio of neighbouring pieces (slopes 93 -> 4.5)
  config.toy.half_width = 1.5      # the zigzag spans [-1.5, 1.5], mirrored outside
  config.toy.num_points = 100      # N points x ~ N(mu, 1) per dataset
  config.toy.mu_range = 0.8        # mu ~ U[-0.8, 0.8] (the rebuild's choice; the paper: 1)
  config.toy.init_range = 0.5      # theta0 ~ U[-0.5, 0.5]
  config.toy.num_datasets = 300
  config.toy.num_runs = 12         # SGD runs per dataset
  config.toy.learning_rate = 1e-4  # just stable in the steepest piece (2 eta s^2 = 1.73)
  config.toy.batch_sizes = (1, 4, 16, 100)   # 100 = N: full-batch gradient descent
  # Minibatches of B < N drawn i.i.d. every step (the rebuild draws minibatch noise afresh each
  # step); "shuffle" also works but draws a permutation of N every N // B steps for each of the
  # 3600 paths, which is slow for B near N.
  config.toy.sampling = "replacement"
  config.toy.temperatures = (0.01, 0.16)     # full-batch isotropic Langevin controls
  config.toy.num_mu_bins = 6       # mu bins pooling the piece probabilities of I(theta; D)
  config.toy.grid_points = 8001    # grid of the KL integrals over [-1.55, 1.55]

  # Digits: the Fisher trace after training against batch size and learning rate.
  config.digits = ml_collections.ConfigDict()
  config.digits.dataset = "digits"
  config.digits.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the default
  config.digits.normalize = True
  config.digits.num_train = config_dict.placeholder(int)  # None: the whole training split
  config.digits.hidden_sizes = (64,)
  config.digits.batch_sizes = (8, 32, 128, 512)
  config.digits.learning_rates = (0.0125, 0.05, 0.2)  # x4 steps, like B: equal eta/B diagonals
  config.digits.seeds = (0, 1, 2, 3)  # initialisation and minibatch order
  config.digits.protocols = ("epochs", "steps")  # equal epochs (Fig. 4) / equal steps at every B
  config.digits.fixed_steps = 2000    # the steps of protocol "steps"
  config.digits.num_probe = config_dict.placeholder(int)  # Fisher examples; None: all train
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.num_steps = 1000
    config.num_epochs = 2
    config.toy.num_datasets = 12
    config.toy.num_runs = 4
    config.toy.batch_sizes = (1, 100)
    config.toy.temperatures = (0.04,)
    config.toy.num_mu_bins = 2
    config.toy.grid_points = 2001
    config.digits.num_train = 256
    config.digits.hidden_sizes = (16,)
    config.digits.batch_sizes = (32, 128)
    config.digits.learning_rates = (0.05, 0.2)
    config.digits.seeds = (0, 1)
    config.digits.fixed_steps = 16   # = the epochs protocol's steps at B = 32: one program less
    config.digits.num_probe = 64
  elif arg not in (None, ""):
    raise ValueError(f"configs/fisher_vs_batch.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
