"""Datasets through TFDS random-access data sources: one code path for every dataset.

Every dataset, real (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn_cropped``, ...)
or offline (``digits``, ``mnist1d``, ``sprites``: `infojax.data.builders`), is a TFDS builder
prepared in array_record format under a data directory and read with ``tfds.data_source``; each
JAX process reads its own slice (``tfds.split_for_jax_process``); `batches` shuffles and batches
arrays with a seeded numpy sampler.

TensorFlow is never needed: TFDS's array_record writer and reader and its numpy (de)serialisation
work without it, so ``download_and_prepare(file_format="array_record")`` builds the offline
datasets locally. Real datasets are never downloaded unless ``download=True``; prepare them once,
on a machine with internet access, with
``tfds build mnist --data_dir=DIR --file_format=array_record``.

``tensorflow_datasets`` is imported on first use, so ``import infojax.data`` works without it.
"""

import contextlib
import fcntl
import os
from typing import Any, Mapping, NamedTuple, Optional, Union

import jax
import numpy as np

# Built locally (no network) into the data directory on first use.
OFFLINE_DATASETS = ("digits", "mnist1d", "sprites")

PathLike = Union[str, os.PathLike]


class DatasetSpec(NamedTuple):
  """What a model and an experiment need to know about a classification dataset.

  Attributes:
    name: the TFDS name, e.g. ``"cifar10"`` or ``"sprites/small"``.
    num_classes: the number of classes of ``label``.
    input_shape: the shape of one ``image`` (e.g. ``(32, 32, 3)``; ``(40, 1)`` for mnist1d).
    num_examples: split name -> number of examples in the whole split (all processes); empty
      when the dataset is not prepared in the data directory yet.
  """
  name: str
  num_classes: int
  input_shape: tuple[Optional[int], ...]
  num_examples: Mapping[str, int]


def default_data_dir() -> str:
  """The TFDS data directory: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"),
                                                         "tensorflow_datasets")


def _tfds():
  """Imports tensorflow_datasets and registers the offline builders."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  # Imported for its side effect: it registers the offline TFDS builders.
  import infojax.data.builders  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  return tfds


def _base_name(name: str) -> str:
  return name.split("/")[0].split(":")[0]


@contextlib.contextmanager
def _exclusive(data_dir: str, name: str):
  """Holds an exclusive lock on ``data_dir`` for preparing ``name`` (``flock`` on a lock file).

  Processes that share a file system but not a JAX job (two experiments started at once, or a
  parallel test run) would otherwise build the same dataset into the same folder together.
  """
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, f".infojax-prepare-{_base_name(name)}.lock")
  with open(path, "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def _prepare_locked(tfds, name: str, data_dir: str, *, download_config) -> None:
  """Prepares ``name`` unless it is, checking again once the folder's lock is held."""
  if tfds.builder(name, data_dir=data_dir, file_format="array_record").is_prepared():
    return
  with _exclusive(data_dir, name):
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      builder.download_and_prepare(download_config=download_config)


def _prepare(tfds, name: str, data_dir: str, *, download_config) -> None:
  """Prepares ``name`` in array_record format unless it is; process 0 first when multi-process.

  In a multi-process run every process must call this (it holds a barrier): process 0 prepares a
  shared data directory, then any process whose (host-local) directory still lacks the data
  prepares its own copy. Preparing holds a lock on the data directory (`_exclusive`), so
  independent processes on one machine never build the same dataset at once.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    if jax.process_index() == 0:
      _prepare_locked(tfds, name, data_dir, download_config=download_config)
    multihost_utils.sync_global_devices(f"infojax.data: prepare {name} in {data_dir}")
  _prepare_locked(tfds, name, data_dir, download_config=download_config)


def _explain_unreadable(tfds, name: str, data_dir: str, error: Exception) -> None:
  """Raises a clear error if ``name`` is missing from ``data_dir`` or lacks random access."""
  builder = tfds.builder(name, data_dir=data_dir)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"Dataset {name!r} is not prepared in {data_dir} (infojax downloads nothing unless "
        "download=True). Prepare it on a machine with internet access with\n"
        f"  tfds build {name.split(':')[0]} --data_dir={data_dir} --file_format=array_record\n"
        "and copy that directory here, or pass download=True.") from error
  formats = builder.info.available_file_formats()
  if tfds.core.FileFormat.ARRAY_RECORD not in formats:
    raise ValueError(
        f"Dataset {name!r} in {builder.data_dir} is stored as {sorted(f.value for f in formats)}, "
        "without random access. Convert it with\n"
        f"  tfds convert_format --dataset_version_dir={builder.data_dir} "
        "--out_file_format=array_record") from error


def source(name: str, split: str, *, data_dir: Optional[PathLike] = None, download: bool = False,
           process_local: bool = True):
  """The random-access TFDS data source of a split (``tfds.data_source``).

  Offline datasets (`OFFLINE_DATASETS`) are built into ``data_dir`` on first use. Examples are
  dicts of numpy arrays with the dataset's raw feature dtypes (e.g. uint8 images, int64 labels).

  Args:
    name: a TFDS name, optionally with config and version (``"sprites/tiny"``, ``"mnist:3.*.*"``).
    split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:90%]"``.
    data_dir: the TFDS data directory (default: `default_data_dir`).
    download: for real datasets, download and prepare (array_record) if missing; otherwise a
      missing dataset raises.
    process_local: read only this JAX process's slice, ``tfds.split_for_jax_process(split,
      drop_remainder=True)``: equal-sized, disjoint slices (up to process_count - 1 examples of
      the split are dropped; nothing is dropped with one process).

  Returns:
    A sequence (``len``, integer indexing) of example dicts.

  Raises:
    FileNotFoundError: the dataset is not prepared in ``data_dir`` and ``download`` is False; the
      message says how to prepare it.
    ValueError: the dataset is prepared only in a format without random access (e.g. tfrecord);
      the message says how to convert it.
  """
  tfds = _tfds()
  data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
  if _base_name(name) in OFFLINE_DATASETS:
    _prepare(tfds, name, data_dir, download_config=tfds.download.DownloadConfig(
        try_download_gcs=False))
  elif download:
    _prepare(tfds, name, data_dir, download_config=None)
  if process_local:
    split = tfds.split_for_jax_process(split, drop_remainder=True)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except (FileNotFoundError, KeyError, NotImplementedError, ValueError) as error:
    _explain_unreadable(tfds, name, data_dir, error)
    raise


def _as_model_input(key: str, values: np.ndarray) -> np.ndarray:
  if key == "image" and values.dtype == np.uint8:
    return values.astype(np.float32) / np.float32(255.0)
  if np.issubdtype(values.dtype, np.integer):
    return values.astype(np.int32)
  if np.issubdtype(values.dtype, np.floating):
    return values.astype(np.float32)
  return values


def load(name: str, split: str, *, data_dir: Optional[PathLike] = None, download: bool = False,
         process_local: bool = True) -> dict[str, np.ndarray]:
  """The whole (process-local) split as numpy arrays, for datasets that fit in memory.

  Conventions: ``image`` is float32, uint8 images scaled to [0, 1] (mnist1d's float signals are
  kept as they are); ``label`` and every other integer feature are int32; other floating features
  are float32. Only top-level numeric features are kept (text such as cifar10's ``id`` is
  dropped; use `source` for everything). Arrays are in the order of the stored shards (TFDS
  shuffles examples when preparing); `batches` reshuffles every epoch.

  Cost: reads and decodes every example once (about 10k small examples per second and core).

  Args:
    name: a TFDS name, see `source`.
    split: a TFDS split, see `source`.
    data_dir: the TFDS data directory (default: `default_data_dir`).
    download: see `source`.
    process_local: see `source`.

  Returns:
    Feature name -> array with a leading example axis N, e.g. ``{"image": (N, 28, 28, 1)
    float32, "label": (N,) int32}``; sprites add ``factors`` (N, 5) int32 and ``values`` (N, 5)
    float32.

  Raises:
    FileNotFoundError, ValueError: see `source`; also ValueError for an empty split.
  """
  data = source(name, split, data_dir=data_dir, download=download, process_local=process_local)
  examples = [data[index] for index in range(len(data))]
  if not examples:
    raise ValueError(f"load: split {split!r} of {name!r} has no examples"
                     f"{' for this process' if process_local else ''}.")
  keys = [key for key, value in examples[0].items() if np.asarray(value).dtype.kind in "biuf"]
  return {key: _as_model_input(key, np.stack([example[key] for example in examples]))
          for key in keys}


def dataset_info(name: str, *, data_dir: Optional[PathLike] = None) -> DatasetSpec:
  """The number of classes, input shape and split sizes of a dataset with ``image`` and ``label``.

  Reads the builder's metadata only: nothing is built or downloaded (``num_examples`` is empty
  until the dataset is prepared in ``data_dir``).

  Args:
    name: a TFDS name, see `source`.
    data_dir: the TFDS data directory (default: `default_data_dir`).

  Returns:
    A `DatasetSpec`.

  Raises:
    ValueError: the dataset has no ``image`` feature or no class-label ``label`` feature.
  """
  tfds = _tfds()
  data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
  info = tfds.builder(name, data_dir=data_dir).info
  features = info.features
  if ("image" not in features or "label" not in features
      or not isinstance(features["label"], tfds.features.ClassLabel)):
    raise ValueError(f"dataset_info: {name!r} needs an 'image' feature and a ClassLabel 'label' "
                     f"feature; it has {sorted(features.keys())}.")
  return DatasetSpec(
      name=name,
      num_classes=int(features["label"].num_classes),
      input_shape=tuple(features["image"].shape),
      num_examples={split: int(split_info.num_examples)
                    for split, split_info in info.splits.items()})


def _non_negative_int(caller: str, argument: str, value: Any) -> int:
  if isinstance(value, bool) or int(value) != value or value < 0:
    raise ValueError(f"{caller}: {argument} must be a non-negative integer; got {value!r}.")
  return int(value)


def batches(arrays, batch_size: int, *, seed: int, epoch: int, drop_remainder: bool = True):
  """One seeded shuffled epoch of a pytree of arrays, stacked into batches.

  The order is ``np.random.default_rng([seed, epoch]).permutation(N)``: deterministic for
  ``(seed, epoch)``, different across epochs. Every leaf is indexed with the same order, so
  examples stay aligned across keys.

  Cost: one gather of every array (O(N) memory on the host).

  Args:
    arrays: a pytree (e.g. the dict of `load`) of arrays with a common leading axis N.
    batch_size: examples per batch.
    seed: the shuffling seed (non-negative integer).
    epoch: the epoch number (non-negative integer), mixed into the seed.
    drop_remainder: drop the last ``N mod batch_size`` examples of the permutation; if False, fill
      the last batch by continuing the permutation from its start, so that every example is used
      at least once and all batches have ``batch_size`` examples.

  Returns:
    The same pytree with leaves of shape ``(steps, batch_size, ...)``, ``steps = N // batch_size``
    (``ceil(N / batch_size)`` without ``drop_remainder``).

  Raises:
    ValueError: no arrays, leading axes that differ, a batch size that is not a positive integer,
      or one larger than N with ``drop_remainder``.
  """
  leaves = jax.tree.leaves(arrays)
  if not leaves:
    raise ValueError("batches: arrays holds no arrays.")
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
  if len(sizes) != 1 or None in sizes:
    raise ValueError(f"batches: every array needs the same leading (example) axis; got leading "
                     f"sizes {sorted(sizes, key=str)}.")
  num_examples = sizes.pop()
  if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
    raise ValueError(f"batches: batch_size must be a positive integer; got {batch_size!r}.")
  batch_size = int(batch_size)
  if drop_remainder and batch_size > num_examples:
    raise ValueError(f"batches: batch_size {batch_size} exceeds the {num_examples} examples "
                     "(with drop_remainder=True no batch would be left).")
  order = np.random.default_rng(
      [_non_negative_int("batches", "seed", seed),
       _non_negative_int("batches", "epoch", epoch)]).permutation(num_examples)
  steps = num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)
  order = np.resize(order, steps * batch_size)
  return jax.tree.map(
      lambda leaf: np.asarray(leaf)[order].reshape(steps, batch_size, *np.shape(leaf)[1:]), arrays)
