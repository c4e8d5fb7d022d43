"""From one laptop to a TPU pod: process initialisation, the data mesh and global batches.

JAX is the distributed engine: ``jax.distributed`` connects the processes, a one-axis device mesh
(``"data"``) spans every device of every process, and each process's local batch becomes one global
array sharded over that axis (``jax.make_array_from_process_local_data``). Parameters are
replicated. Everything downstream (training steps, the Fisher engine) runs under ``jit`` on the
global arrays and gives the numbers of one device holding the whole batch, up to float rounding.

The same command runs on every host. Multi-process runs are recognised from

* TPU pods and SLURM jobs (``jax.distributed.initialize()``'s cluster auto-detection), or
* ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``INFOJAX_NUM_PROCESSES`` and
  ``INFOJAX_PROCESS_ID``, all three or none, or the same values passed as arguments.
"""

import os
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from infojax.fisher import _sharding

DATA_AXIS = "data"

_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
_ENV_NUM_PROCESSES = "INFOJAX_NUM_PROCESSES"
_ENV_PROCESS_ID = "INFOJAX_PROCESS_ID"


class ProcessInfo(NamedTuple):
  """Where this process stands: its index, the number of processes and the devices."""
  process_index: int
  process_count: int
  local_device_count: int
  device_count: int
  platform: str

  def __str__(self):
    return (f"process {self.process_index} of {self.process_count}, {self.local_device_count} "
            f"local of {self.device_count} {self.platform} devices")


def _process_info() -> ProcessInfo:
  return ProcessInfo(jax.process_index(), jax.process_count(), jax.local_device_count(),
                     jax.device_count(), jax.default_backend())


def _cluster_detected() -> bool:
  """A multi-host TPU pod or a multi-task SLURM job, as ``jax.distributed`` would detect it."""
  tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  if "," in tpu_hosts or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return True
  return int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in os.environ


def _explicit_settings(coordinator_address, num_processes, process_id):
  values = {
      "coordinator_address": coordinator_address or os.environ.get(_ENV_COORDINATOR) or None,
      "num_processes": (num_processes if num_processes is not None
                        else os.environ.get(_ENV_NUM_PROCESSES) or None),
      "process_id": process_id if process_id is not None else os.environ.get(_ENV_PROCESS_ID),
  }
  if values["process_id"] == "":
    values["process_id"] = None
  given = {k for k, v in values.items() if v is not None}
  if not given:
    return None
  if len(given) != 3:
    missing = sorted(set(values) - given)
    raise ValueError(
        f"maybe_initialize: a multi-process run needs the coordinator address, the number of "
        f"processes and this process's id together ({_ENV_COORDINATOR}, {_ENV_NUM_PROCESSES}, "
        f"{_ENV_PROCESS_ID} or the matching arguments); missing {missing}.")
  try:
    num = int(values["num_processes"])
    index = int(values["process_id"])
  except ValueError as error:
    raise ValueError(f"maybe_initialize: the number of processes and the process id must be "
                     f"integers; got {values['num_processes']!r} and {values['process_id']!r}."
                     ) from error
  if num < 1 or not 0 <= index < num:
    raise ValueError(f"maybe_initialize: need num_processes >= 1 and 0 <= process_id < "
                     f"num_processes; got num_processes={num}, process_id={index}.")
  if ":" not in str(values["coordinator_address"]):
    raise ValueError("maybe_initialize: the coordinator address must be host:port; got "
                     f"{values['coordinator_address']!r}.")
  return str(values["coordinator_address"]), num, index


def maybe_initialize(*, coordinator_address: Optional[str] = None,
                     num_processes: Optional[int] = None,
                     process_id: Optional[int] = None) -> ProcessInfo:
  """Connects the processes of a multi-host run; does nothing on a single host.

  Call it first in every script, before anything touches a device.

  Args:
    coordinator_address: ``host:port`` of process 0 (else ``$JAX_COORDINATOR_ADDRESS``).
    num_processes: the number of processes (else ``$INFOJAX_NUM_PROCESSES``).
    process_id: this process's index (else ``$INFOJAX_PROCESS_ID``).

  Returns:
    The process index and count and the local and global device counts.

  Raises:
    ValueError: for partial or inconsistent settings (e.g. an address without a process id).
  """
  settings = _explicit_settings(coordinator_address, num_processes, process_id)
  if jax.distributed.is_initialized():
    return _process_info()
  if settings is not None:
    address, num, index = settings
    if num > 1:
      # Collectives between CPU processes (laptops, tests) go through gloo; this only concerns
      # the CPU backend and leaves GPU and TPU collectives alone.
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
      jax.distributed.initialize(coordinator_address=address, num_processes=num, process_id=index)
  elif _cluster_detected():
    jax.distributed.initialize()
  return _process_info()


def data_mesh(devices: Optional[Sequence] = None, *, axis_name: str = DATA_AXIS,
              axis_type: str = "auto") -> jax.sharding.Mesh:
  """A one-axis mesh over every device of every process (data parallelism).

  Args:
    devices: the devices (default: all, ``jax.devices()``).
    axis_name: the mesh axis the example axis is sharded over.
    axis_type: ``"auto"`` (XLA propagates shardings; contractions over the example axis just work)
      or ``"explicit"`` (shardings are part of the types; the engine handles both).
  """
  types = {"auto": jax.sharding.AxisType.Auto, "explicit": jax.sharding.AxisType.Explicit}
  if axis_type not in types:
    raise ValueError(f'axis_type must be "auto" or "explicit"; got {axis_type!r}.')
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), (axis_name,), axis_types=(types[axis_type],),
                       devices=devices)


def check_global_batch_size(global_batch_size: int, mesh: Optional[jax.sharding.Mesh] = None,
                            *, axis_name: str = DATA_AXIS) -> None:
  """Raises a clear error unless the global batch splits evenly over the data axis."""
  mesh = data_mesh() if mesh is None else mesh
  shards = mesh.shape[axis_name]
  if global_batch_size < 1 or global_batch_size % shards:
    raise ValueError(
        f"the global batch size ({global_batch_size}) must be a positive multiple of the number of "
        f"devices on the '{axis_name}' axis ({shards}); with {jax.process_count()} process(es), "
        f"each process's local batch must be a multiple of {shards // jax.process_count()}.")


def batch_sharding(mesh: Optional[jax.sharding.Mesh] = None, *,
                   axis_name: str = DATA_AXIS) -> jax.sharding.NamedSharding:
  """Shards the leading (example) axis over ``axis_name``."""
  mesh = data_mesh() if mesh is None else mesh
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis_name))


def replicated_sharding(mesh: Optional[jax.sharding.Mesh] = None) -> jax.sharding.NamedSharding:
  mesh = data_mesh() if mesh is None else mesh
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def shard_batch(local_batch, mesh: Optional[jax.sharding.Mesh] = None, *, batch_axis: int = 0,
                axis_name: str = DATA_AXIS):
  """Turns each process's local batch into global arrays sharded over the data axis.

  Args:
    local_batch: a pytree of arrays with an example axis ``batch_axis``, this process's share
      (processes hold equal shares; process p's examples come p-th in the global batch).
    mesh: the device mesh (default: ``data_mesh()`` over all devices).
    batch_axis: the example axis (1 for stacked epoch batches ``(steps, batch, ...)``).
    axis_name: the mesh axis to shard the example axis over.

  Returns:
    The same pytree of global ``jax.Array``s, example axis ``local_size * process_count``.
  """
  mesh = data_mesh() if mesh is None else mesh
  shapes = [np.shape(x) for x in jax.tree.leaves(local_batch)]
  sizes = {shape[batch_axis] if len(shape) > batch_axis else None for shape in shapes}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f"shard_batch: every leaf needs the same example axis {batch_axis}; got "
                     f"shapes {shapes}.")
  (local_size,) = sizes
  check_global_batch_size(local_size * jax.process_count(), mesh, axis_name=axis_name)
  spec = jax.sharding.PartitionSpec(*([None] * batch_axis), axis_name)
  sharding = jax.sharding.NamedSharding(mesh, spec)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def _process_allgather(x) -> np.ndarray:
  """``(process_count, *x.shape)``: every process's ``x``, bit for bit (float64 included, which
  jax would otherwise round to float32 without x64)."""
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  x = np.asarray(x)
  raw = multihost_utils.process_allgather(np.ascontiguousarray(x.reshape(-1)).view(np.uint8))
  return np.asarray(raw).view(x.dtype).reshape((-1,) + x.shape)


def process_sum(tree):
  """Sums host arrays over the processes, exactly; every process gets the totals.

  E.g. the moments of a split read per process, for statistics of the whole split.
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return jax.tree.map(lambda x: _process_allgather(x).sum(axis=0), tree)


def process_concatenate(tree):
  """Concatenates each process's host arrays along axis 0, in process order, on every process.

  Leaves must have the same shape on every process.
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return jax.tree.map(lambda x: np.concatenate(list(_process_allgather(x)), axis=0), tree)


def with_sharding_of(x, reference):
  """``x`` resharded like ``reference`` when ``reference`` carries an explicit sharding.

  Under jax's explicit axis types (``jax.make_mesh``'s default in jax 0.10) an array's sharding is
  part of its type, and some operations (``jax.image.resize``, random draws) return replicated
  results from sharded inputs; branches of ``lax.cond`` must then be resharded to agree. Without
  an explicit sharding (no mesh, or an Auto mesh) ``x`` is returned as it is.
  """
  sharding = _sharding.explicit_sharding(reference)
  return x if sharding is None else jax.sharding.reshard(x, sharding)


def is_prng_key(x) -> bool:
  """Whether ``x`` is a typed PRNG key array (``jax.random.key``), which is placed by its data."""
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place(tree, sharding_of: Callable):
  """Global arrays from host values that every process holds in full.

  ``sharding_of(shape)`` gives each leaf's sharding; every process transfers only the pieces its
  own devices hold. Typed PRNG keys are placed through their raw data.
  """

  def place(x):
    if is_prng_key(x):
      return jax.random.wrap_key_data(place(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x  # already a global array: leave its placement alone
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding_of(host.shape),
                                        lambda index: host[index])

  return jax.tree.map(place, tree)


def replicate(tree, mesh: Optional[jax.sharding.Mesh] = None):
  """Places a pytree (e.g. parameters or a train state) on every device of the mesh.

  Every process must pass the same values (e.g. parameters initialised from the same seed).
  """
  sharding = replicated_sharding(mesh)
  return _place(tree, lambda shape: sharding)


def to_mesh(tree, mesh: Optional[jax.sharding.Mesh] = None):
  """Replicates every leaf not yet laid out over ``mesh``; leaves already on it keep their layout.

  What `infojax.train.fit` does to its state, so parameters sharded by `shard_params` stay sharded.
  """
  mesh = data_mesh() if mesh is None else mesh

  def on_mesh(x):
    sharding = getattr(x, "sharding", None)
    return isinstance(sharding, jax.sharding.NamedSharding) and sharding.mesh == mesh

  return jax.tree.map(lambda x: x if on_mesh(x) else replicate(x, mesh), tree)


def put_sharded(tree, mesh: Optional[jax.sharding.Mesh] = None, *, batch_axis: int = 0,
                axis_name: str = DATA_AXIS):
  """Global arrays with axis ``batch_axis`` sharded over the data axis, from full host arrays.

  Unlike `shard_batch`, where each process contributes its own share, every process passes the same
  full arrays here and transfers only the rows its devices hold. In-memory experiments use it so
  that their batches, and hence their results, do not depend on the number of processes or
  devices (stacked epoch batches ``(steps, batch, ...)`` use ``batch_axis=1``).

  Raises:
    ValueError: if a leaf lacks ``batch_axis`` or its size there does not split over the devices.
  """
  mesh = data_mesh() if mesh is None else mesh
  shards = mesh.shape[axis_name]
  spec = jax.sharding.PartitionSpec(*([None] * batch_axis), axis_name)
  sharding = jax.sharding.NamedSharding(mesh, spec)

  def sharding_of(shape):
    if len(shape) <= batch_axis or shape[batch_axis] % shards:
      raise ValueError(
          f"put_sharded: axis {batch_axis} of every array must be a multiple of the {shards} "
          f"devices on the '{axis_name}' axis; got an array of shape {shape}.")
    return sharding

  return _place(tree, sharding_of)


def shard_params(tree, mesh: Optional[jax.sharding.Mesh] = None, *, min_size: int = 2**18,
                 axis_name: str = DATA_AXIS):
  """Shards the large leaves of a parameter pytree over the data axis; replicates the others.

  For parameter pytrees too large to replicate on every device (the ZeRO-3 / FSDP layout): each
  leaf with at least ``min_size`` elements is split along its largest axis that the device count
  divides; XLA gathers the pieces where a computation needs them. Training steps and every Fisher
  quantity give the numbers of replicated parameters (tested on 8 virtual devices).

  Args:
    tree: parameters (or any pytree of arrays), the same values on every process.
    mesh: the device mesh (default: `data_mesh`).
    min_size: leaves with fewer elements are replicated.
    axis_name: the mesh axis to shard over.
  """
  mesh = data_mesh() if mesh is None else mesh
  shards = mesh.shape[axis_name]

  def sharding_of(shape):
    axes = [a for a in np.argsort(shape)[::-1] if shape[a] % shards == 0]
    if int(np.prod(shape)) < min_size or not axes or shards == 1:
      return replicated_sharding(mesh)
    spec = [None] * len(shape)
    spec[int(axes[0])] = axis_name
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(*spec))

  return _place(tree, sharding_of)


def is_main_process() -> bool:
  """Process 0 writes metrics, plots and summaries."""
  return jax.process_index() == 0
