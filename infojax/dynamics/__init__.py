"""Learning dynamics: scanned SGD and Langevin paths, SGD noise, deep linear networks, the
reachability of learning tasks and the deficits of critical learning periods (science.md §1, §2.7,
§2.10, §7, §10, §12)."""

from infojax.dynamics import deep_linear
from infojax.dynamics import deficits
from infojax.dynamics import loops
from infojax.dynamics import reachability
from infojax.dynamics import sgd_noise
from infojax.dynamics.loops import Path
from infojax.dynamics.loops import euler_maruyama
from infojax.dynamics.loops import langevin_path
from infojax.dynamics.loops import minibatch_indices
from infojax.dynamics.loops import per_example_nll
from infojax.dynamics.loops import sgd_optimizer
from infojax.dynamics.loops import sgd_path
