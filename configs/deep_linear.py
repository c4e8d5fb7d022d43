"""Mode strengths of shallow and deep linear networks against time (Saxe et al. 2014).

The default run (science.md §10.3's task, depths 1, 2 and 3, aligned and 4 random inits; about
ten seconds on 2 CPU cores):

  python scripts/deep_linear.py --config=configs/deep_linear.py --workdir=/tmp/deep_linear

A smoke run (seconds): --config=configs/deep_linear.py:smoke. Rerun the same command to resume.
Whitened inputs (n1 = input_dim), an input-output correlation with singular values
``singular_values`` (n3 = output_dim), hidden layers of width ``hidden_dim``; full-batch gradient
descent with ``learning_rate`` for ``num_steps`` steps (t/tau = learning_rate x steps), recorded
every ``record_every`` steps, from the aligned balanced init at ``u0`` and from
``num_random_inits`` random inits (entries N(0, u0^(2/D) / hidden_dim); 0: none), in float64
unless ``float64`` is False. The depth-3 theory integrates tau du/dt = 3 u^(4/3) (s - u) with
``ode_substeps`` Runge-Kutta steps per recorded interval.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections


def get_config(arg=None):
  """The deep_linear config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.singular_values = (3.0, 2.0, 1.0, 0.5, 0.0, 0.0)
  config.input_dim = 8
  config.hidden_dim = 8
  config.output_dim = 6
  config.u0 = 1e-3
  config.learning_rate = 1e-3
  config.num_steps = 40000  # t/tau up to 40: depth 3 learns s = 0.5 at t/tau ~ 18
  config.record_every = 100
  config.depths = (1, 2, 3)
  config.num_random_inits = 4
  config.seed = 0  # the task's singular vectors and the random inits
  config.float64 = True
  config.ode_substeps = 100
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.learning_rate = 4e-3
    config.num_steps = 5000  # t/tau up to 20
    config.record_every = 50
    config.num_random_inits = 2
  elif arg not in (None, ""):
    raise ValueError(f"configs/deep_linear.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
