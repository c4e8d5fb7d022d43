"""The double well's transition probabilities and first-passage times against the temperature D.

The default run (float64 Fokker-Planck solves on a 501-point grid, exact quadratures and
Euler-Maruyama paths; about a minute on 2 CPU cores):

  python scripts/reachability.py --config=configs/reachability.py --workdir=/tmp/reachability

A smoke run (seconds): --config=configs/reachability.py:smoke. A rerun in the same workdir
resumes: the points already in metrics.jsonl are not recomputed. What is measured (Achille, Mbeng
& Soatto, "Dynamics and reachability of learning tasks", arXiv 1810.02440; science.md §2.7, §7,
§15 A.14, A.15), on ``dw = -U'(w) dt + sqrt(2 D) dW``:

1. ``transition``: on ``U = (w^2 - 1)^2 - tilt w``, the forward ``p_t(target | start)`` and
   backward ``p_t(start | target)`` transition densities and window probabilities
   (``|w - end| <= radius``) for each ``D`` in ``diffusions`` at ``num_times`` log-spaced times
   (plus A.14's 0.5, 5, 50, 500), their ratio against ``exp(-Delta U / D)``, the static factor
   and the two dynamic (reachability) factors; Euler-Maruyama estimates of the forward window
   probability at ``em_times`` (``em_paths`` paths, step ``em_step``) for ``D = em_diffusion``.
2. ``passage``: the mean first-passage time from ``start`` to ``target`` for ``1/D`` in
   ``passage_inverse_diffusions``: exact (1-D quadrature), the grid chain, the Kramers/Langer
   formula and, for ``D`` in ``em_passage_diffusions``, Euler-Maruyama passage times
   (``em_passage_paths`` paths, step ``em_passage_step``, horizon ``em_passage_horizon`` exact
   mean times).
3. ``barrier``: the fixed-barrier family of A.15 (barrier 1, ``Delta U`` in ``delta_us``): exact
   ``ln tau`` against ``1/D`` in ``barrier_inverse_diffusions``, against the paper's Eq 16
   (``ln tau = Delta U / D + const``) and Kramers' law (``ln tau = barrier / D + const``).
4. ``gibbs``: two equal-loss wells of curvatures 100 and 1 (science.md §2.7): the Gibbs share of
   the sharp well and the ratio of exact escape times at each temperature in ``temperatures``,
   against the Laplace prediction 0.1 / 1.1.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
import numpy as np


def get_config(arg=None):
  """The reachability config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # The A.14 double well and its end points; the grid must contain them as grid points.
  config.tilt = 0.25
  config.start = -1.03
  config.target = 0.97
  config.radius = 0.1
  config.grid_lower = -2.5
  config.grid_upper = 2.5
  config.grid_points = 501          # spacing 0.01
  # 1. Transition probabilities.
  config.diffusions = (0.15, 0.25, 0.4)
  config.num_times = 25
  config.time_min = 0.1
  config.time_max = 1000.0
  config.em_diffusion = 0.25
  config.em_times = (0.5, 5.0, 50.0)
  config.em_paths = 4000
  config.em_step = 0.005
  # 2. Mean first-passage times.
  config.passage_inverse_diffusions = tuple(float(x) for x in np.linspace(2.0, 12.0, 11))
  config.reflecting = -3.0
  config.em_passage_diffusions = (0.5, 1.0 / 3.0, 0.25)
  config.em_passage_paths = 2000
  config.em_passage_step = 0.01
  config.em_passage_horizon = 12.0   # in exact mean passage times
  config.quadrature_points = 4001
  # 3. The fixed-barrier family (A.15).
  config.barrier = 1.0
  config.delta_us = (0.4, 0.0, -0.5, -1.0, -1.5)
  config.barrier_inverse_diffusions = tuple(float(x) for x in np.linspace(2.0, 20.0, 10))
  config.slope_inverse_diffusions = (10.0, 20.0)   # the range of 1/D of the fitted slope
  # 4. Equal-loss wells (§2.7).
  config.curvatures = (100.0, 1.0)
  config.minima = (-1.25, 1.25)
  config.temperatures = (0.05, 0.1, 0.2, 0.3, 0.5)
  config.gibbs_grid_points = 3601
  # The number of Euler-Maruyama steps of the longest path (a size for tests/test_configs.py).
  config.num_steps = int(round(max(config.em_times) / config.em_step))
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.grid_lower = -2.53        # spacing 0.05 with start and target on the grid
    config.grid_upper = 2.47
    config.grid_points = 101
    config.diffusions = (0.25, 0.4)
    config.num_times = 6
    config.time_max = 100.0
    config.em_times = (0.5, 2.0)
    config.em_paths = 200
    config.em_step = 0.01
    config.passage_inverse_diffusions = (2.0, 3.0, 4.0)
    config.em_passage_diffusions = (0.5,)
    config.em_passage_paths = 100
    config.em_passage_step = 0.02
    config.em_passage_horizon = 8.0
    config.quadrature_points = 1001
    config.delta_us = (0.4, -1.5)
    config.barrier_inverse_diffusions = (4.0, 10.0, 20.0)
    config.temperatures = (0.1, 0.2, 0.3)
    config.gibbs_grid_points = 1801
    config.num_steps = int(round(max(config.em_times) / config.em_step))
  elif arg not in (None, ""):
    raise ValueError(f"configs/reachability.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
