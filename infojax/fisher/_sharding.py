"""Explicit-sharding helpers (``jax.make_mesh`` defaults to explicit axis types in jax 0.10)."""

import jax


def _example_axis_sharded(x) -> bool:
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  return bool(spec) and any(axis is not None for axis in spec)


def explicitly_sharded(tree) -> bool:
  """Whether any array of ``tree`` carries an explicit sharding of one of its axes."""
  return any(_example_axis_sharded(x) for x in jax.tree.leaves(tree))


def replicated(tree):
  """``tree`` with explicitly sharded arrays resharded to replicated (``P()``) on their mesh."""

  def replicate(x):
    if not _example_axis_sharded(x):
      return x
    sharding = jax.typeof(x).sharding
    return jax.sharding.reshard(x, sharding.update(spec=jax.sharding.PartitionSpec()))

  return jax.tree.map(replicate, tree)
