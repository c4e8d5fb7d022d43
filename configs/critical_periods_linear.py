"""Critical periods in a two-pathway deep linear network (Kleinman, Achille & Soatto 2024).

The default run (depths 1-4, 18 deficit onsets and a run without deficit, 4 seeds; about a
minute on 2 CPU cores):

  python scripts/critical_periods_linear.py --config=configs/critical_periods_linear.py \
    --workdir=/tmp/cpl

A smoke run (seconds): --config=configs/critical_periods_linear.py:smoke. Rerun the same command
to resume. Several processes work with the shared flags: every process computes, process 0 writes.
Two pathways of ``depth`` weight matrices (hidden width ``hidden_dim``) read the one-hot items of
Saxe's 8-item hierarchy and add their outputs; full-batch gradient descent on the summed squared
error with step ``learning_rate`` for ``num_steps`` steps. Pathway b is gated (no gradient, output
kept) for ``deficit_length`` steps from each onset of ``deficit_onsets``. Both pathways start
aligned and balanced with the per-mode strengths ``init_scale (1 + init_noise xi)`` (shared, as in
the authors' code; the seed draws ``xi`` and the rotations). A deficit's effect is "permanent" when
the final imbalance exceeds that of the run without deficit by more than ``threshold``. The
paper's config multipath-depth4-analytical.yaml: depth 4, width 100, dt 0.01, T 1000, deficit
length 150 at 0, 400, 750 (the mode strengths do not depend on the width for this init).

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections


def get_config(arg=None):
  """The critical_periods_linear config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.depths = (1, 2, 3, 4)
  config.hidden_dim = 32
  config.learning_rate = 0.01
  config.num_steps = 1000
  config.record_every = 10
  config.deficit_length = 150
  config.deficit_onsets = tuple(range(0, 851, 50))
  config.num_seeds = 4
  config.init_scale = 0.01
  config.init_noise = 0.1
  config.threshold = 0.05
  config.seed = 0
  config.float64 = True
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.depths = (1, 2)
    config.hidden_dim = 8
    config.learning_rate = 0.02  # the same time horizon t = learning_rate * steps = 10
    config.num_steps = 500
    config.deficit_length = 75
    config.deficit_onsets = (0, 200, 375)
    config.num_seeds = 2
  elif arg not in (None, ""):
    raise ValueError(f"configs/critical_periods_linear.py: unknown config argument {arg!r}; use "
                     "none or 'smoke'.")
  return config
