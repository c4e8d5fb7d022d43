"""Validation helpers shared across the library."""

import jax


def is_concrete(tree) -> bool:
  """True when no leaf of ``tree`` is a tracer, so that its values can be inspected on the host."""
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))
