"""infojax: information in deep neural networks, in JAX.

Subpackages are imported on first use (``import infojax as ij; ij.fisher``), so that the curvature
engine imports without the data and configuration stacks (tensorflow-datasets, ml-collections).
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "activations",
    "bench",
    "config",
    "data",
    "dynamics",
    "experiments",
    "fisher",
    "info",
    "io",
    "likelihoods",
    "models",
    "parallel",
    "tasks",
    "train",
    "weights",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
