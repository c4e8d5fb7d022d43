"""Information Dropout on cluttered digits against binary dropout and no dropout.

The default run (the bundled 8x8 digits on a 14x14 canvas with clutter; a small CNN at three
widths; information dropout at 3 betas, binary dropout and no dropout; 2 seeds: 30 trainings,
about 6 minutes on 2 CPU cores):

  python scripts/information_dropout.py --config=configs/information_dropout.py \
      --workdir=/tmp/information_dropout

A smoke run (seconds): --config=configs/information_dropout.py:smoke. A rerun in the same workdir
resumes at the first (method, width, beta, seed) point it has not written. On several processes
add the shared flags (--coordinator_address, --num_processes, --process_id): every process
computes the same sweep and process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The information_dropout config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  # Cluttered digits (like Cluttered MNIST: a digit at a random place, fragments of other digits).
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.canvas_size = 14           # the digit's box covers a third of the canvas
  config.num_fragments = 4
  config.fragment_size = 2          # 1/16 of a digit (Cluttered MNIST: 8x8 of 28x28, 1/12)
  config.data_seed = 0
  config.seeds = (0, 1)             # initialisation, batch order and noise
  # The CNN: (conv, pool) per entry of base_channels, conv1x1, mean, dense; widths scaled like the
  # official "filter_percentage".
  config.base_channels = (8, 16)
  config.filter_percentages = (0.25, 0.5, 1.0)
  config.alpha_max = 0.7            # the official CIFAR-10 value (Cluttered MNIST: 1.0)
  config.dropout_rate = 0.5         # binary dropout: the official keep probability 0.5
  # beta weighs the per-example KL (summed over units) against the mean cross-entropy (nats).
  config.betas = (1e-5, 1e-4, 1e-3)  # 1e-2 drives every alpha to alpha_max: chance accuracy
  config.num_epochs = 30
  config.batch_size = 64
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-2)
  # Heat maps: the first test images, for the widest network at these betas and the first seed.
  config.num_heatmaps = 6
  config.heatmap_betas = (1e-4, 1e-3)
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.canvas_size = 12
    config.num_fragments = 2
    config.seeds = (0,)
    config.base_channels = (4,)     # one block
    config.filter_percentages = (1.0,)
    config.betas = (1e-2,)
    config.num_epochs = 2
    config.batch_size = 256
    config.num_heatmaps = 2
    config.heatmap_betas = (1e-2,)
  elif arg not in (None, ""):
    raise ValueError(f"configs/information_dropout.py: unknown config argument {arg!r}; use "
                     "none or 'smoke'.")
  return config
