"""PyTorch peers for the Fisher benchmark: torch autograd, torch.func and BackPACK.

The same weights and data as the JAX side: flax ``Dense`` kernels ``(in, out)`` become torch
``Linear`` weights ``(out, in)``, ``Conv`` kernels ``HWIO`` become ``OIHW``, inputs ``NHWC`` become
``NCHW``. Results are converted back to the flax layout before they are compared with the float64
reference.

Scaling conventions (checked against the reference by the benchmark's error column): on a loss that
is the MEAN over N examples, BackPACK's per-example quantities are those of ``loss_n / N``, so
``SumGradSquared`` returns ``sum_n (g_n / N)^2``, the empirical diagonal divided by N, and
``BatchGrad`` returns ``g_n / N``; ``DiagGGNExact`` and ``DiagGGNMC`` return the curvature of the mean
loss, which is already the mean-normalised Fisher.
"""

import os
from typing import Callable, Dict, Tuple

import jax
import numpy as np


def available() -> Tuple[bool, str]:
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False, "torch is not installed (pip install torch==2.13.0)"
  return True, ""


def _torch_model(workload):
  """The torch twin of an MLP or ConvNet workload and the flax path of each torch parameter."""
  import torch  # pylint: disable=g-import-not-at-top
  params = jax.tree.map(np.asarray, workload.params)
  layers, mapping = [], []
  if "Conv_0" in params:
    index = 0
    while f"Conv_{index}" in params:
      conv = workload.model
      kernel = params[f"Conv_{index}"]["kernel"]
      layer = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0],
                              stride=conv.strides[index], padding=conv.padding)
      layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
      layer.bias.data = torch.from_numpy(params[f"Conv_{index}"]["bias"].copy())
      mapping += [(layer.weight, (f"Conv_{index}", "kernel"), (2, 3, 1, 0)),
                  (layer.bias, (f"Conv_{index}", "bias"), None)]
      layers += [layer, torch.nn.ReLU()]
      index += 1
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
  index = 0
  while f"Dense_{index}" in params:
    kernel = params[f"Dense_{index}"]["kernel"]
    layer = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
    layer.bias.data = torch.from_numpy(params[f"Dense_{index}"]["bias"].copy())
    mapping += [(layer.weight, (f"Dense_{index}", "kernel"), (1, 0)),
                (layer.bias, (f"Dense_{index}", "bias"), None)]
    layers.append(layer)
    if f"Dense_{index + 1}" in params:
      layers.append(torch.nn.ReLU())
    index += 1
  return torch.nn.Sequential(*layers), mapping


def _to_flax(mapping, values, template):
  """torch-layout arrays (in the order of ``mapping``) -> a pytree like the flax params."""
  out = {layer: dict(leaves) for layer, leaves in template.items()}
  for (_, (layer, leaf), order), value in zip(mapping, values):
    value = np.asarray(value, np.float64)
    out[layer][leaf] = value.transpose(order) if order is not None else value
  return out


def quantities(workload) -> Tuple[Dict[tuple, Callable], Dict[str, Callable]]:
  """Zero-argument callables per ``(quantity, implementation)`` and converters to flax layout."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  model, mapping = _torch_model(workload)
  inputs = np.asarray(workload.inputs)
  if inputs.ndim == 4:
    inputs = inputs.transpose(0, 3, 1, 2)
  x = torch.from_numpy(np.ascontiguousarray(inputs))
  y = torch.from_numpy(np.asarray(workload.targets).astype(np.int64))
  n = x.shape[0]
  loss_fn = torch.nn.CrossEntropyLoss()
  parameters = [p for p, _, _ in mapping]
  template = workload.params
  fns, converters = {}, {}

  def gradient():
    model.zero_grad()
    loss_fn(model(x), y).backward()
    return [p.grad.detach().numpy().copy() for p in parameters]

  fns[("G", "torch_grad")] = gradient
  converters["torch_grad"] = lambda values: _to_flax(mapping, values, template)

  from torch import func as torch_func  # pylint: disable=g-import-not-at-top
  names = [name for name, _ in model.named_parameters()]
  by_name = dict(model.named_parameters())

  def example_loss(weights, xi, yi):
    logits = torch_func.functional_call(model, weights, (xi[None],))
    return loss_fn(logits, yi[None])

  per_example = torch_func.vmap(torch_func.grad(example_loss), in_dims=(None, 0, 0))

  def vmap_empirical():
    weights = {k: v.detach() for k, v in by_name.items()}
    grads = per_example(weights, x, y)
    return [(grads[name] ** 2).mean(0).numpy() for name in names]

  order = [names.index(next(k for k, v in by_name.items() if v is p)) for p in parameters]
  fns[("empirical", "torch_func_vmap")] = vmap_empirical
  converters["torch_func_vmap"] = lambda values: _to_flax(mapping, [values[i] for i in order],
                                                          template)

  try:
    import backpack  # pylint: disable=g-import-not-at-top
    from backpack import extensions  # pylint: disable=g-import-not-at-top
  except ImportError:
    return fns, converters
  # A separate copy: BackPACK's hooks break torch.func transforms of the extended module.
  extended_model, extended_mapping = _torch_model(workload)
  extended_model = backpack.extend(extended_model)
  extended_parameters = [p for p, _, _ in extended_mapping]
  extended_loss = backpack.extend(torch.nn.CrossEntropyLoss())

  def backpack_quantity(extension, attribute, scale):
    def fn():
      extended_model.zero_grad()
      with backpack.backpack(extension):
        extended_loss(extended_model(x), y).backward()
      return [getattr(p, attribute).detach().numpy() * scale for p in extended_parameters]
    return fn

  fns[("empirical", "backpack_sumgradsquared")] = backpack_quantity(
      extensions.SumGradSquared(), "sum_grad_squared", n)
  fns[("true", "backpack_diagggn_exact")] = backpack_quantity(
      extensions.DiagGGNExact(), "diag_ggn_exact", 1.0)
  fns[("mc", "backpack_diagggn_mc")] = backpack_quantity(
      extensions.DiagGGNMC(mc_samples=1), "diag_ggn_mc", 1.0)

  def batch_grad_norms():
    extended_model.zero_grad()
    with backpack.backpack(extensions.BatchGrad()):
      extended_loss(extended_model(x), y).backward()
    squares = sum(((p.grad_batch.reshape(n, -1) * n) ** 2).sum(1) for p in extended_parameters)
    return squares.sqrt().detach().numpy()

  fns[("norms", "backpack_batchgrad")] = batch_grad_norms
  for name in ("backpack_sumgradsquared", "backpack_diagggn_exact", "backpack_diagggn_mc"):
    converters[name] = lambda values: _to_flax(mapping, values, template)
  converters["backpack_batchgrad"] = lambda values: values
  return fns, converters

