"""Deep VIB: test error and the variational IB bounds against beta on the bundled digits.

The default run (an MLP encoder with a 32-dimensional Gaussian code on the bundled 8x8 digits,
7 settings x 3 seeds; about two minutes on 2 CPU cores):

  python scripts/vib.py --config=configs/vib.py --workdir=/tmp/vib

A smoke run (seconds): --config=configs/vib.py:smoke. A rerun in the same workdir resumes at the
first (setting, seed) point it has not written. On several processes add the shared flags
(--coordinator_address, --num_processes, --process_id): every process computes the same sweep and
process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The vib config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.seeds = (0, 1, 2)          # initialisation, batch order and code noise
  # Alemi et al.'s 784-1024-1024-2K encoder, reduced for 8x8 digits.
  config.hidden_sizes = (256, 256)
  config.code_size = 32             # K
  config.scale_bias = -5.0          # scale = softplus(raw - 5), as in Alemi et al.
  # beta weighs the per-example KL against the mean cross-entropy (nats); 0 keeps the noise with
  # no penalty; the deterministic network (same encoder, no noise) is always run too.
  config.betas = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
  config.num_epochs = 150
  config.batch_size = 100
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-3)
  config.test_samples = 12          # codes averaged at test time (Alemi et al.)
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.seeds = (0,)
    config.hidden_sizes = (32,)
    config.code_size = 4
    config.betas = (1e-3, 1.0)
    config.num_epochs = 2
    config.test_samples = 3
  elif arg not in (None, ""):
    raise ValueError(f"configs/vib.py: unknown config argument {arg!r}; use none or 'smoke'.")
  return config
