"""Sums and maps over a leading axis in chunks, so that memory stays bounded."""

import jax
import jax.numpy as jnp


def leading_size(tree) -> int:
  return jax.tree.leaves(tree)[0].shape[0]


def _split(tree, chunk_size):
  size = leading_size(tree)
  full = size // chunk_size
  head = jax.tree.map(
      lambda x: x[:full * chunk_size].reshape((full, chunk_size) + x.shape[1:]), tree)
  tail = jax.tree.map(lambda x: x[full * chunk_size:], tree)
  return head, tail, size - full * chunk_size


def chunked_sum(fn, xs, chunk_size=None):
  """``fn(xs)`` for a ``fn`` that sums over the leading axis of ``xs``, in chunks.

  Args:
    fn: maps a pytree of arrays with a leading axis (a chunk) to a pytree, summed over that chunk.
    xs: a pytree of arrays sharing the leading axis.
    chunk_size: rows per chunk; ``None`` processes everything at once. Full chunks run in a
      ``lax.scan`` (one compiled body) and the remainder in one more call, without padding.

  Returns:
    The sum over all rows, with the structure of ``fn``'s output.
  """
  size = leading_size(xs)
  if chunk_size is None or chunk_size >= size:
    return fn(xs)
  head, tail, remainder = _split(xs, chunk_size)
  first = jax.tree.map(lambda x: x[0], head)
  init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, first))

  def body(total, chunk):
    return jax.tree.map(jnp.add, total, fn(chunk)), None

  total, _ = jax.lax.scan(body, init, head)
  if remainder:
    total = jax.tree.map(jnp.add, total, fn(tail))
  return total


def chunked_map(fn, xs, chunk_size=None):
  """``fn(xs)`` for a ``fn`` that maps rows to rows (leading axis kept), in chunks."""
  size = leading_size(xs)
  if chunk_size is None or chunk_size >= size:
    return fn(xs)
  head, tail, remainder = _split(xs, chunk_size)
  mapped = jax.lax.map(fn, head)
  mapped = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), mapped)
  if remainder:
    mapped = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), mapped, fn(tail))
  return mapped
