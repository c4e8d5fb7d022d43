"""Information in the weights, effective information of the activations, and invariance.

The default run (a small CNN on 16x16 sprites, 3 seeds; a few minutes on 2 CPU cores):

  python scripts/effective_information.py --config=configs/effective_information.py \
      --workdir=/tmp/effective_information

A smoke run (seconds): --config=configs/effective_information.py:smoke. A rerun in the same
workdir resumes at the first (seed, beta) point it has not written. On several processes add the
shared flags (--coordinator_address, --num_processes, --process_id): every process computes the
same sweep and process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections

from infojax import config as config_lib


def get_config(arg=None):
  """The effective_information config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  # Sprites (shape is the task; scale, orientation and position are nuisances), rendered small.
  config.image_size = 16
  config.scale_stride = 2          # 3 of the 6 scales
  config.orientation_stride = 10   # 4 of the 40 orientations
  config.position_stride = 4       # 8 x 8 positions: 2304 sprites in all
  config.num_test = 504
  config.num_probe = 32            # test images for the Fishers and I(z; x); the others decode n
  config.data_seed = 0
  config.seeds = (0, 1, 2)         # model initialisation, training order and weight noise
  # The CNN and its training (w*).
  config.channels = (8, 16)
  config.strides = (2, 2)
  config.num_epochs = 80
  config.batch_size = 64
  config.optimizer = config_lib.optimizer_config(name="adam", lr=1e-2)
  # The information Lagrangian E_Q L_D + beta KL(Q || N(w0, prior_variance I)), beta for the
  # summed loss (nats), fitted from N(w*, init_variance) by minibatch Adam.
  config.betas = (0.001, 0.03, 1.0, 30.0)
  config.prior_variance = 0.1
  config.init_variance = 1e-4
  config.fit_steps = 1500
  config.fit_batch_size = 128
  config.fit_lr = 3e-2
  # Measurements.
  config.activation_noise = 1e-2   # isotropic activation noise variance (corrected form, samples)
  config.num_samples = 16          # weight draws per probe image, for the I(z; x) decoders
  config.decoder_draws = 4         # weight draws per other test image, for the I(z; n) decoders
  config.decoder_l2 = 1e-2
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.image_size = 8
    config.position_stride = 8
    config.num_test = 96
    config.num_probe = 12
    config.seeds = (0,)
    config.channels = (2, 4)
    config.num_epochs = 1
    config.betas = (0.01, 0.3, 10.0)
    config.fit_steps = 20
    config.fit_batch_size = 32
    config.num_samples = 8
    config.decoder_draws = 2
  elif arg not in (None, ""):
    raise ValueError(f"configs/effective_information.py: unknown config argument {arg!r}; use "
                     "none or 'smoke'.")
  return config
