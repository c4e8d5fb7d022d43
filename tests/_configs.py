"""The experiment configs (``configs/<name>.py``) as tests load them, and the outputs tests read."""

import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_module(name: str):
  """The module ``configs/<name>.py`` (its ``get_config`` and docstring)."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(name: str, arg=None):
  """``configs/<name>.py``'s ``get_config(arg)``."""
  return config_module(name).get_config(arg)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_records(workdir) -> list:
  """The records of ``workdir/metrics.jsonl``, read line by line."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def assert_png(path) -> None:
  """Asserts that ``path`` is a PNG file."""
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE, path
