"""orbax checkpoints of a `TrainState` (or any pytree of arrays), one per saved epoch or step, in
``workdir/checkpoints/<epoch>``.

orbax writes each checkpoint to a temporary directory and renames it when complete, so a run killed
while saving leaves the previous checkpoints intact and the partial one is ignored. All processes
call `save` and `restore` (they are collective in multi-host runs). In a multi-process run, a
process-local array (one every process holds whole: a computation each process carries out on its
own devices) is saved as a global array replicated over all devices, and restored back to this
process's first device.
"""

import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from infojax import parallel
from infojax.train.state import TrainState

CHECKPOINT_DIR = "checkpoints"


def _storable(state):
  """Replaces every typed PRNG key by its raw uint32 data (orbax stores plain arrays)."""
  if isinstance(state, TrainState) and not parallel.is_prng_key(state.key):
    raise TypeError("checkpoint: state.key must be a typed PRNG key from jax.random.key(seed).")
  return jax.tree.map(lambda x: jax.random.key_data(x) if parallel.is_prng_key(x) else x, state)


def _process_local(x) -> bool:
  """Whether a leaf is this process's own value in a multi-process run (orbax saves global arrays
  only)."""
  return jax.process_count() > 1 and not (isinstance(x, jax.Array) and not x.is_fully_addressable)


def _replicated_sharding():
  """Replication over every device of every process (built once per save or restore)."""
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("all",))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def _global(tree):
  """Process-local leaves as global arrays replicated over every device (identity on 1 process)."""
  if jax.process_count() == 1:
    return tree
  replicated = _replicated_sharding()

  def convert(x):
    if not _process_local(x):
      return x
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, replicated, lambda index: value[index])

  return jax.tree.map(convert, tree)


def _abstract(tree):
  replicated = _replicated_sharding() if jax.process_count() > 1 else None

  def abstract(x):
    sharding = replicated if _process_local(x) else getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

  return jax.tree.map(abstract, tree)


class Checkpointer:
  """Saves and restores `TrainState`s, or any pytrees of arrays, indexed by epoch in one directory.

  The "epoch" is any non-negative integer step (a sweep's point index, a fit's epoch). Typed PRNG
  keys anywhere in the tree are stored as their raw data and come back typed, with the key
  implementation of the template given to `restore`.

  Use as a context manager, or call `close` when done.

  Args:
    directory: where the epoch subdirectories live (created if missing).
    max_to_keep: how many of the latest checkpoints to keep (older ones are deleted); ``None``
      keeps all.
  """

  def __init__(self, directory: str, *, max_to_keep: Optional[int] = 2):
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"Checkpointer: max_to_keep must be None or >= 1; got {max_to_keep}.")
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False))

  def latest_epoch(self) -> Optional[int]:
    """The epoch of the newest complete checkpoint, or ``None`` if there is none."""
    return self._manager.latest_step()

  def epochs(self) -> list:
    """The epochs of all complete checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, epoch: int, state) -> None:
    """Writes ``state`` as the checkpoint of ``epoch`` and waits until it is complete on disk."""
    self._manager.save(int(epoch), args=ocp.args.StandardSave(_global(_storable(state))),
                       force=True)
    self._manager.wait_until_finished()

  def restore(self, epoch: int, like):
    """Reads the checkpoint of ``epoch``.

    Args:
      epoch: a saved epoch (see `epochs`).
      like: a state with the structure, shapes, dtypes and shardings to restore into (e.g. the
        freshly initialised state); its values are not used.

    Returns:
      The saved state, with the pytree structure of ``like`` and typed PRNG keys of the same
      implementations as ``like``'s.
    """
    if epoch not in self.epochs():
      raise ValueError(
          f"Checkpointer.restore: no checkpoint for epoch {epoch} in {self.directory}; "
          f"saved epochs are {self.epochs()}.")
    target = _storable(like)
    restored = self._manager.restore(int(epoch), args=ocp.args.StandardRestore(_abstract(target)))
    restored = jax.tree.unflatten(jax.tree.structure(target), jax.tree.leaves(restored))
    restored = jax.tree.map(lambda template, x: x.addressable_data(0) if _process_local(template)
                            else x, target, restored)
    return jax.tree.map(
        lambda template, x: (jax.random.wrap_key_data(x, impl=jax.random.key_impl(template))
                             if parallel.is_prng_key(template) else x), like, restored)

  def close(self) -> None:
    self._manager.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()
