"""beta-VAE and capacity annealing on procedural sprites: disentanglement and the order of entry.

The default run (an MLP VAE on all 23,040 sprites of a 24x24 sub-grid, beta in {1, 4} and one
capacity-annealed run, 2 seeds each; about 6 minutes on 2 CPU cores):

  python scripts/beta_vae.py --config=configs/beta_vae.py --workdir=/tmp/beta_vae

A smoke run (seconds): --config=configs/beta_vae.py:smoke. A rerun in the same workdir resumes:
the (objective, seed) runs already in metrics.jsonl are kept, the others are recomputed. On
several processes add the shared flags (--coordinator_address, --num_processes, --process_id):
every process computes the same runs and process 0 writes.

Scaled down from the papers: 24x24 images instead of 64x64 (so the same beta is a 7x larger
normalised beta K/N), an MLP of widths (128, 64) instead of Burgess et al.'s convolutions (which
cost 50x more per step here), 10,000 steps instead of 100,000+; the capacity schedule keeps the
paper's C: 0 -> 25 nats but over 8,000 steps instead of 100,000 iterations, with gamma = 100
instead of 1000 (Burgess et al. 2018). With Adam, the sign-flipping gradient of gamma |KL - C|
inflates the second-moment estimate of the encoder's gradients, so the reconstruction term moves
the encoder about 1/gamma as fast: with 10x fewer steps, gamma = 1000 left every dimension at the
same KL (no order of entry at all in a trial run); gamma = 100 still holds the KL at C (mean
|KL - C| of 0.4 nats in the default run).

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections

from infojax import config as config_lib


def get_config(arg=None):
  """The beta_vae config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  # Sprites: 3 shapes x 3 scales x 10 orientations x 16 x 16 positions = 23,040 images.
  config.image_size = 24
  config.scale_stride = 2
  config.orientation_stride = 4
  config.position_stride = 2
  config.num_eval_images = 2048     # fixed images for the per-chunk measurements
  config.data_seed = 0
  config.seeds = (0, 1)
  # The VAE (MLP encoder, mirrored decoder, Bernoulli decoder) and its training.
  config.latent_dim = 10
  config.hidden_sizes = (128, 64)
  config.num_steps = 10_000
  config.log_every = 250
  config.batch_size = 64
  config.optimizer = config_lib.optimizer_config(name="adam", lr=5e-4)
  # Objectives: beta-VAE for each beta; capacity annealing gamma |KL - C|, C: 0 -> max_capacity
  # over the first capacity_fraction of the steps.
  config.betas = (1.0, 4.0)
  config.capacity_gamma = 100.0
  config.max_capacity = 25.0
  config.capacity_fraction = 0.8
  # A dimension is active (and has entered the code) when its batch-mean KL exceeds this (nats).
  config.active_threshold = 0.5
  # Disentanglement scores (infojax.activations.disentanglement) on sampled codes.
  config.metric_num_train = 1000
  config.metric_num_eval = 500
  config.metric_batch_size = 64
  config.metric_num_variance = 10_000
  config.num_codes = 10_000          # sampled codes for the MIG; DCI uses a part of them
  config.dci_num_train = 2000
  config.dci_num_test = 1000
  config.dci_estimator = "random_forest"
  config.dci_num_trees = 50
  config.encode_block_size = 4096   # codes per compiled encoder call
  # Traversals from one sprite (sub-grid indices: a heart, the largest scale, orientation 0,
  # centred), in prior standard deviations.
  config.traversal_factors = (2, 2, 0, 8, 8)
  config.traversal_offsets = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    # 3 shapes x 2 scales x 2 orientations x 4 x 4 positions = 192 images of 8x8.
    config.image_size = 8
    config.scale_stride = 3
    config.orientation_stride = 20
    config.position_stride = 8
    config.num_eval_images = 64
    config.seeds = (0,)
    config.latent_dim = 3
    config.hidden_sizes = (16,)
    config.num_steps = 40
    config.log_every = 10
    config.batch_size = 16
    config.optimizer.lr = 1e-2
    config.max_capacity = 3.0
    config.metric_num_train = 20
    config.metric_num_eval = 10
    config.metric_batch_size = 4
    config.metric_num_variance = 64
    config.num_codes = 200
    config.dci_num_train = 100
    config.dci_num_test = 50
    config.dci_num_trees = 5
    config.encode_block_size = 256
    config.traversal_factors = (2, 1, 0, 1, 1)
    config.traversal_offsets = (-2.0, 0.0, 2.0)
  elif arg not in (None, ""):
    raise ValueError(f"configs/beta_vae.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
