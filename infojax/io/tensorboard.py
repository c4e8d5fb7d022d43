"""TensorBoard event files of a run's metrics, without TensorFlow (optional: ``tensorboardX``).

Install with ``pip install "infojax[tensorboard]"``; off by default. `EventWriter` writes every
finite numeric field of a metrics record as a scalar summary, tagged ``<kind>/<field>`` when the
record has a ``"kind"`` (``<field>`` otherwise), at the record's ``"epoch"`` (else ``"step"``, else
the number of records written so far). Watch a run live with ``tensorboard --logdir WORKDIR``.
Written by process 0 only.
"""

import math
import numbers
import os
import struct
import time
from typing import Mapping, Optional

from infojax.io.metrics import is_primary_process

TENSORBOARD_DIR = "tensorboard"


def _tensorboardx():
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ImportError(
        "TensorBoard event files need the optional tensorboardX package: "
        'pip install "infojax[tensorboard]" (no TensorFlow needed).') from error
  return tensorboardX


def _summary_writer(logdir: str, purge_step: Optional[int]):
  # A unique, time-ordered file per writer: tensorboardX names files by the second, and a run
  # resumed within the same second would otherwise overwrite the first run's events.
  suffix = f".{time.time_ns():020d}.{os.getpid()}"
  return _tensorboardx().SummaryWriter(logdir=logdir, flush_secs=5, purge_step=purge_step,
                                       filename_suffix=suffix)


def scalars(record: Mapping) -> dict:
  """``{tag: value}`` of a record's finite real fields (booleans and identifying keys excluded)."""
  prefix = f"{record['kind']}/" if isinstance(record.get("kind"), str) else ""
  return {f"{prefix}{name}": float(value) for name, value in record.items()
          if name not in ("epoch", "step", "kind") and isinstance(value, numbers.Real)
          and not isinstance(value, bool) and math.isfinite(float(value))}


class EventWriter:
  """Mirrors metrics records into TensorBoard event files under ``logdir`` (process 0 only).

  Args:
    logdir: the event-file folder, e.g. ``os.path.join(workdir, TENSORBOARD_DIR)``.
    purge_step: a resumed run's first step: TensorBoard then drops the events an interrupted run
      wrote at this step and later, which the resumed run writes again.

  Raises:
    ImportError: on process 0, if tensorboardX is not installed (with the install command).
  """

  def __init__(self, logdir: str, *, purge_step: Optional[int] = None):
    self.logdir = logdir
    self._count = 0
    self._writer = None
    if is_primary_process():
      os.makedirs(logdir, exist_ok=True)
      self._writer = _summary_writer(logdir, purge_step)

  def write(self, record: Mapping, *, step: Optional[int] = None) -> None:
    """Adds the record's scalars at ``step`` (default: its epoch, its step, or a running count)."""
    if step is None:
      step = record.get("epoch", record.get("step", self._count))
    self._count += 1
    if self._writer is None:
      return
    for tag, value in scalars(record).items():
      self._writer.add_scalar(tag, value, global_step=int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def read_scalars(logdir: str) -> list:
  """The scalars of the event files in ``logdir``, as TensorBoard shows them, without TensorFlow.

  Reads the files in name (time) order; a run's purge marker (a ``SessionLog.START`` at step s,
  written by a resumed `EventWriter`) drops the earlier events at step s and later, as
  TensorBoard does.

  Returns:
    ``[(tag, step, value)]`` in the order written.
  """
  _tensorboardx()  # the clear ImportError first
  from tensorboardX.proto import event_pb2  # pylint: disable=import-outside-toplevel
  found = []
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    offset = 0
    while offset < len(data):   # TFRecord framing: length, its CRC, the Event, its CRC
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      if event.HasField("session_log") and event.session_log.status == event.session_log.START:
        found = [entry for entry in found if entry[1] < event.step]
      found += [(value.tag, event.step, value.simple_value) for value in event.summary.value]
  return found
