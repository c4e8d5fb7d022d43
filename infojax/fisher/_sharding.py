"""Explicit-sharding helpers (``jax.make_mesh`` defaults to explicit axis types in jax 0.10)."""

import jax
import numpy as np


def explicit_sharding(x):
  """``x``'s sharding when it explicitly shards one of its axes (part of its type); else None."""
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  return sharding if spec and any(axis is not None for axis in spec) else None


def _example_axis_sharded(x) -> bool:
  return explicit_sharding(x) is not None


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


def host_take(x, index):
  """``x[index]`` along the example axis; a batch held by this process is gathered on the host.

  Slicing or gathering a batch sharded over an Explicit mesh needs an output sharding (and a
  class's examples are not a whole number of shards), so a fully addressable array is copied to the
  host first; a global array spread over processes is indexed where it lives.
  """
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return x[index]
  return np.asarray(x)[index]
