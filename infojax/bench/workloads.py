"""Benchmark workloads: the reference MLP and CNN of ``shared/bench/workloads.json``, the lecture's
All-CNN and ResNet-18 at CIFAR size, and a sweep over batch size and number of classes.

A workload is a JSON-serialisable spec (a dict) plus what `build` makes of it: a flax model, float32
parameters from ``jax.random.key(seed)``, and a batch ``x ~ N(0, 1)`` with uniform labels, as the
shared workload file prescribes. Building is deterministic, so a fresh process (the memory probe)
rebuilds exactly the same weights and data from the spec.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Sequence, Tuple

import jax
import numpy as np

from infojax import models

# A copy of shared/bench/workloads.json, used when that file is absent (e.g. on a GPU machine).
REFERENCE_WORKLOADS = {
    "mlp": {"kind": "mlp", "sizes": [784, 512, 512, 10], "activation": "relu", "batch": 256},
    "cnn": {"kind": "cnn", "input_hw": 32, "in_channels": 3, "channels": [32, 64, 64],
            "strides": [1, 2, 2], "kernel": 3, "padding": 1, "activation": "relu",
            "head": "global_average_pool + dense(10)", "batch": 64},
}

# Workload groups selectable with --workloads, beyond the reference "mlp" and "cnn".
GROUPS = ("mlp", "cnn", "sweep", "allcnn", "resnet18", "resnet18_gn")
DEFAULT_GROUPS = ("mlp", "cnn", "sweep", "allcnn", "resnet18")
# (batch, classes) of the sweep, around the reference mlp (256, 10) and cnn (64, 10). Their cost on
# 2 CPU cores bounds them: the exact true Fisher costs C activation backward passes per example.
SWEEP_MLP = ((64, 10), (1024, 10), (64, 100), (256, 100))
SWEEP_CNN = ((16, 100),)
CIFAR_BATCH = 8


@dataclasses.dataclass
class Workload:
  """A built workload: ``apply_fn(params, inputs) -> logits`` and the batch, in float32."""
  spec: Dict[str, Any]
  apply_fn: Callable
  params: Any
  inputs: np.ndarray
  targets: np.ndarray
  model: Any

  @property
  def name(self) -> str:
    return self.spec["name"]

  @property
  def num_classes(self) -> int:
    return self.spec["num_classes"]

  @property
  def batch_size(self) -> int:
    return self.spec["batch"]

  @property
  def num_params(self) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(self.params))

  @property
  def description(self) -> str:
    return describe(self.spec) + f", {self.num_params:,} parameters"


def load_reference_workloads(path: str) -> Tuple[Dict[str, dict], str]:
  """The "mlp" and "cnn" specs from ``path`` if it exists, else the embedded copy.

  Returns:
    ``(specs, source)`` where ``source`` says which file (or the embedded copy) was used.
  """
  if path and os.path.exists(path):
    with open(path) as f:
      loaded = json.load(f)
    specs = dict(REFERENCE_WORKLOADS)
    specs.update(loaded["workloads"])
    specs = {name: dict(spec, num_classes=spec.get("num_classes", loaded.get("num_classes", 10)))
             for name, spec in specs.items()}
    return specs, os.path.abspath(path)
  return ({name: dict(spec, num_classes=10) for name, spec in REFERENCE_WORKLOADS.items()},
          "embedded copy of shared/bench/workloads.json")


def _scaled(batch: int, batch_scale: float) -> int:
  return max(1, int(round(batch * batch_scale)))


def plan(groups: Sequence[str], reference: Dict[str, dict], *, batch_scale: float = 1.0,
         cifar_batch: int = CIFAR_BATCH) -> List[dict]:
  """The workload specs of the selected groups, batch sizes multiplied by ``batch_scale``.

  Each spec gains ``name``, ``batch``, ``num_classes`` and ``role``: ``"reference"`` (the shared
  workloads: every method, every peer), ``"sweep"`` (the reference models at other batch sizes and
  class counts) or ``"model"`` (All-CNN, ResNet-18); the last two run the engine's default method.
  """
  specs = []
  for group in groups:
    if group not in GROUPS:
      raise ValueError(f"unknown workload group {group!r}; expected some of {GROUPS}.")
    if group in ("mlp", "cnn"):
      spec = reference[group]
      specs.append(dict(spec, name=group, role="reference",
                        batch=_scaled(spec["batch"], batch_scale)))
    elif group == "sweep":
      mlp, cnn = reference["mlp"], reference["cnn"]
      for batch, classes in SWEEP_MLP:
        sizes = list(mlp["sizes"][:-1]) + [classes]
        specs.append(dict(mlp, sizes=sizes, num_classes=classes, role="sweep",
                          name=f"mlp_b{batch}_c{classes}", batch=_scaled(batch, batch_scale)))
      for batch, classes in SWEEP_CNN:
        specs.append(dict(cnn, num_classes=classes, role="sweep", name=f"cnn_b{batch}_c{classes}",
                          batch=_scaled(batch, batch_scale)))
    elif group == "allcnn":
      specs.append({"kind": "allcnn", "name": "allcnn", "role": "model", "num_classes": 10,
                    "batch": _scaled(cifar_batch, batch_scale)})
    else:
      norm = "group" if group == "resnet18_gn" else "none"
      specs.append({"kind": "resnet18", "norm": norm, "name": group, "role": "model",
                    "num_classes": 10, "batch": _scaled(cifar_batch, batch_scale)})
  return specs


def describe(spec: dict) -> str:
  """One line saying what the workload is."""
  kind, classes, batch = spec["kind"], spec["num_classes"], spec["batch"]
  if kind == "mlp":
    sizes = list(spec["sizes"][:-1]) + [classes]
    return f"MLP {'-'.join(map(str, sizes))} ({spec.get('activation', 'relu')}), batch {batch}"
  if kind == "cnn":
    hw = spec["input_hw"]
    return (f"{spec['kernel']}x{spec['kernel']} convs {spec['channels']} strides {spec['strides']} "
            f"padding {spec['padding']} on {hw}x{hw}x{spec['in_channels']}, global average pool, "
            f"dense {classes}, batch {batch}")
  if kind == "allcnn":
    return f"All-CNN-C (96/192 filters, no BatchNorm) on 32x32x3, {classes} classes, batch {batch}"
  if kind == "resnet18":
    return (f"CIFAR ResNet-18 (norm={spec['norm']!r}) on 32x32x3, {classes} classes, "
            f"batch {batch}")
  raise ValueError(f"unknown workload kind {kind!r}")


def _model_and_input_shape(spec: dict):
  kind, classes = spec["kind"], spec["num_classes"]
  if kind == "mlp":
    sizes = spec["sizes"]
    model = models.MLP(tuple(sizes[1:-1]), classes, activation=spec.get("activation", "relu"))
    return model, (sizes[0],)
  if kind == "cnn":
    if spec.get("activation", "relu") != "relu":
      raise ValueError(f"the cnn workload uses relu; got activation {spec['activation']!r}.")
    model = models.ConvNet(channels=tuple(spec["channels"]), strides=tuple(spec["strides"]),
                           num_classes=classes, kernel_size=spec["kernel"],
                           padding=spec["padding"])
    return model, (spec["input_hw"], spec["input_hw"], spec["in_channels"])
  if kind == "allcnn":
    return models.AllCNN(classes), (32, 32, 3)
  if kind == "resnet18":
    return models.ResNet18(classes, norm=spec["norm"]), (32, 32, 3)
  raise ValueError(f"unknown workload kind {kind!r}")


def build(spec: dict, *, seed: int = 0) -> Workload:
  """Builds the model, its float32 parameters and the batch of ``spec`` (deterministic in seed)."""
  model, input_shape = _model_and_input_shape(spec)
  apply_fn, params = models.init(model, jax.random.key(seed), (1,) + input_shape)
  rng = np.random.default_rng(seed)
  inputs = rng.standard_normal((spec["batch"],) + input_shape).astype(np.float32)
  targets = rng.integers(0, spec["num_classes"], size=spec["batch"]).astype(np.int32)
  return Workload(dict(spec), apply_fn, params, inputs, targets, model)
