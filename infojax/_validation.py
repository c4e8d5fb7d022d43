"""Validation helpers shared across the library."""

import jax
import numpy as np


def host_value(x):
  """``x`` as a NumPy array when its value is known (not traced), else ``None``.

  Checks run on the host copy: inside a trace even operations on constants return tracers.
  """
  return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def is_concrete(tree) -> bool:
  """True when no leaf of ``tree`` is a tracer, so that its values can be inspected on the host."""
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))
