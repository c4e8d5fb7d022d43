"""Configs and flags shared by the experiments and their scripts.

An experiment is configured by ``configs/<name>.py``, a Python file with ``get_config(arg=None)``
returning an ``ml_collections.ConfigDict`` (``arg="smoke"`` shrinks it to seconds). A script parses
``--config=configs/<name>.py[:arg]`` with overrides such as ``--config.optimizer.lr=0.1`` (unknown
keys and wrong types are errors) and ``--workdir``, then calls
``infojax.experiments.<name>.run(config, workdir)``.
"""

import json
import os
import sys
from typing import Any, Mapping, NamedTuple, Optional, Sequence

import ml_collections
from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from infojax import parallel
from infojax.io import metrics as metrics_lib
from infojax.train import optim

CONFIG_FILE = "config.json"
# Fields that change what a run writes alongside, not what it computes: a run may be resumed with
# them changed (e.g. TensorBoard turned on for a run already under way).
OUTPUT_ONLY_FIELDS = ("tensorboard",)


def optimizer_config(**overrides) -> ml_collections.ConfigDict:
  """An optimiser config with every field `infojax.train.make_optimizer` reads, then ``overrides``.

  Defaults: plain SGD (``momentum=0``), ``lr=0.1``, constant schedule, no weight decay. Unknown
  override names are errors.
  """
  config = ml_collections.ConfigDict({"name": "sgd", "lr": 0.1, **optim.DEFAULTS})
  unknown = set(overrides) - set(config)
  if unknown:
    raise ValueError(
        f"optimizer_config: unknown fields {sorted(unknown)}; known: {sorted(config)}.")
  config.update(overrides)
  return config


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON-compatible values (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def _differences(saved: Any, current: Any, prefix: str = "") -> list:
  if isinstance(saved, dict) and isinstance(current, dict):
    names = sorted(set(saved) | set(current))
    return [d for n in names
            for d in _differences(saved.get(n), current.get(n), f"{prefix}{n}.")]
  return [] if saved == current else [f"{prefix[:-1]}: {saved!r} -> {current!r}"]


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Creates ``workdir`` and saves the config there as ``config.json`` (process 0).

  A workdir that already holds a run (its ``config.json``) must have been made by the same config,
  so that a restarted run resumes the same experiment; only the top-level `OUTPUT_ONLY_FIELDS`
  (``tensorboard``) may differ.

  Returns:
    The absolute workdir path.

  Raises:
    ValueError: if ``workdir`` holds a run with a different config (the message lists the changed
      fields).
  """
  if not workdir:
    raise ValueError("prepare_workdir: workdir must be a non-empty path.")
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG_FILE)
  current = config_to_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = _differences({k: v for k, v in saved.items() if k not in OUTPUT_ONLY_FIELDS},
                           {k: v for k, v in current.items() if k not in OUTPUT_ONLY_FIELDS})
    if changed:
      raise ValueError(
          f"{workdir} holds a run with a different config ({'; '.join(changed)}); use a fresh "
          "--workdir, or delete this one to start over.")
  elif metrics_lib.is_primary_process():
    temporary = path + ".tmp"
    with open(temporary, "w") as f:
      json.dump(current, f, indent=2, sort_keys=True)
    os.replace(temporary, path)
  return workdir


class ScriptFlags(NamedTuple):
  """The flags of an experiment script, from `define_flags`."""
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  flag_values: flags.FlagValues

  def read(self, argv: Sequence[str], *, initialize: bool = True):
    """The parsed ``(config, workdir)``, inside ``main(argv)`` of ``absl.app.run``.

    Rejects extra positional arguments, turns absl logging down to warnings unless ``--verbosity``
    was given (``absl.app`` raises it to INFO, and orbax logs every save at INFO), then (with
    ``initialize``) connects the processes of a multi-process run with
    `infojax.parallel.maybe_initialize` (from ``--coordinator_address``, ``--num_processes`` and
    ``--process_id``, or the environment) and logs this process's index and devices on stderr.
    """
    if len(argv) > 1:
      raise app.UsageError(f"unexpected positional arguments: {list(argv[1:])}")
    if "verbosity" in self.flag_values and not self.flag_values["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    if initialize:
      values = self.flag_values
      info = parallel.maybe_initialize(coordinator_address=values["coordinator_address"].value,
                                       num_processes=values["num_processes"].value,
                                       process_id=values["process_id"].value)
      print(f"infojax: {info}", file=sys.stderr, flush=True)
    return self.config.value, self.workdir.value


def define_flags(flag_values: flags.FlagValues = flags.FLAGS, *,
                 argv: Optional[Sequence[str]] = None) -> ScriptFlags:
  """Defines ``--config`` (an ml_collections config file, locked) and ``--workdir``, both required,
  and the multi-process flags ``--coordinator_address``, ``--num_processes``, ``--process_id``.

  Args:
    flag_values: where to define them (tests pass a fresh ``flags.FlagValues()``).
    argv: the command line the ``--config.*`` override flags are read from; ``None``: ``sys.argv``.

  Returns:
    A `ScriptFlags`; call its ``read(argv)`` in ``main``.
  """
  config_holder = config_flags.DEFINE_config_file(
      "config", None,
      "Experiment config file, e.g. configs/info_plot.py or configs/info_plot.py:smoke.",
      flag_values=flag_values, lock_config=True, sys_argv=None if argv is None else list(argv))
  workdir_holder = flags.DEFINE_string(
      "workdir", None,
      "Directory for config.json, metrics.jsonl, checkpoints and plots; rerun with the same one "
      "to resume.", flag_values=flag_values)
  flags.DEFINE_string(
      "coordinator_address", None,
      "Multi-process runs: host:port of process 0 (else $JAX_COORDINATOR_ADDRESS; TPU pods and "
      "SLURM jobs are detected without it).", flag_values=flag_values)
  flags.DEFINE_integer("num_processes", None,
                       "Multi-process runs: the number of processes (else $INFOJAX_NUM_PROCESSES).",
                       flag_values=flag_values)
  flags.DEFINE_integer("process_id", None,
                       "Multi-process runs: this process's index (else $INFOJAX_PROCESS_ID).",
                       flag_values=flag_values)
  flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)
  return ScriptFlags(config=config_holder, workdir=workdir_holder, flag_values=flag_values)


def summary_line(name: str, summary: Mapping[str, Any], workdir: Optional[str] = None) -> str:
  """The one-line summary a script prints at the end of a run."""
  line = f"{name}: {metrics_lib.format_record(summary)}"
  return line if workdir is None else f"{line} (outputs in {workdir})"
