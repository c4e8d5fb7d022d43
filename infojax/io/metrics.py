"""Metrics as JSON lines, one record per epoch, written by process 0 only.

Each record is a flat JSON object with an integer ``"epoch"``; floats are written with ``repr``
precision, so reading them back gives the exact values that were logged. A resumed run first drops
the records beyond the restored epoch (`truncate_metrics`), so the log has no gaps or duplicates.
"""

import json
import math
import numbers
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np

# The process that writes files (process 0); one definition, in `infojax.parallel`.
from infojax.parallel import is_main_process as is_primary_process  # noqa: F401


def to_json_value(value: Any):
  """A JSON-serialisable copy of ``value``: arrays and numpy/jax scalars become numbers or lists.

  Raises:
    TypeError: for values that are neither numbers, strings, booleans, ``None``, arrays nor
      mappings/sequences of them.
  """
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    return np.asarray(value).tolist()
  if isinstance(value, numbers.Integral):
    return int(value)
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, Mapping):
    return {str(k): to_json_value(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json_value(v) for v in value]
  raise TypeError(
      f"metrics: cannot write a value of type {type(value).__name__} as JSON: {value!r}.")


def _parse_lines(lines):
  """Parses complete JSON lines; a torn last line (a run killed while writing) is dropped."""
  records = []
  for number, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if number == len(lines) - 1:
        break
      raise
  return records


def read_metrics(path: str) -> list:
  """The records of a metrics file (``[]`` if it does not exist), in order."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return _parse_lines(f.read().split("\n"))


def truncate_metrics(path: str, *, max_epoch: Optional[int]) -> list:
  """Keeps the records with ``epoch <= max_epoch`` (none if ``max_epoch`` is None); process 0 only.

  The file is rewritten atomically (write to a temporary file, then rename).

  Returns:
    The kept records (``[]`` on processes other than 0).
  """
  if not is_primary_process():
    return []
  kept = [r for r in read_metrics(path) if max_epoch is not None and r["epoch"] <= max_epoch]
  if not os.path.exists(path):
    return kept
  temporary = path + ".tmp"
  with open(temporary, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in kept)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
  return kept


class MetricsWriter:
  """Appends records to a JSON-lines file, one line each, flushed at once; process 0 only.

  On other processes `write` does nothing (every process may call it with the same records).

  Args:
    path: the ``.jsonl`` file (its directory must exist); appended to if it exists.
    tensorboard_dir: also mirror every record into TensorBoard event files there
      (`infojax.io.tensorboard.EventWriter`; needs the optional tensorboardX); ``None``: off.
    tensorboard_purge_step: see `infojax.io.tensorboard.EventWriter` (a resumed run's first
      epoch).
  """

  def __init__(self, path: str, *, tensorboard_dir: Optional[str] = None,
               tensorboard_purge_step: Optional[int] = None):
    self.path = path
    self._events = None
    if tensorboard_dir is not None:
      from infojax.io import tensorboard  # pylint: disable=import-outside-toplevel
      self._events = tensorboard.EventWriter(tensorboard_dir, purge_step=tensorboard_purge_step)
    self._file = open(path, "a") if is_primary_process() else None

  def write(self, record: Mapping[str, Any]) -> None:
    """Writes one record (a flat mapping with an integer ``"epoch"``)."""
    if "epoch" not in record:
      raise ValueError(
          f"MetricsWriter.write: record needs an 'epoch' field; got keys {list(record)}.")
    if self._file is None:
      return
    values = to_json_value(dict(record))
    self._file.write(json.dumps(values) + "\n")
    self._file.flush()
    if self._events is not None:
      self._events.write(values)
      self._events.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._events is not None:
      self._events.close()
      self._events = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def format_record(record: Mapping[str, Any], *, keys=None) -> str:
  """A one-line human summary, ``key=value`` with 4 significant digits for floats."""
  def fmt(value):
    if isinstance(value, float) and math.isfinite(value):
      return f"{value:.4g}"
    return str(value)
  keys = list(record) if keys is None else [k for k in keys if k in record]
  return " ".join(f"{k}={fmt(to_json_value(record[k]))}" for k in keys)
