"""PyTorch peers of the Fisher benchmark: torch autograd, torch.func, BackPACK, Opacus, NNGeometry.

Each peer runs on a torch twin of the flax model with the same weights and data: a flax ``Dense``
kernel ``(in, out)`` becomes a torch ``Linear`` weight ``(out, in)``, a ``Conv`` kernel ``HWIO``
becomes ``OIHW``, inputs ``NHWC`` become ``NCHW`` (the benchmark CNN ends in global average pooling,
so no flatten order is involved). Results go back to the flax layout, in float64, before they are
compared with the float64 reference.

Scaling conventions, each checked by the error column against the float64 reference. All peers see
the MEAN cross-entropy over the N examples, as the JAX rows do:

* BackPACK's first-order extensions act on the per-example terms ``loss_n / N`` of the mean loss:
  ``SumGradSquared`` returns ``sum_n (g_n / N)**2``, the empirical diagonal divided by N (so it is
  multiplied by N here), and ``BatchGrad`` returns ``g_n / N`` (multiplied by N).
* BackPACK's ``DiagGGNExact``/``DiagGGNMC`` return the curvature of the mean loss: already the
  mean-normalised Fisher (softmax cross-entropy: GGN = Fisher).
* Opacus' ``GradSampleModule(loss_reduction="mean")`` rescales its hooks by N, so ``grad_sample`` is
  the per-example gradient ``g_n`` itself.
* NNGeometry's ``FIM(..., variant="classif_logits")`` with ``PMatDiag`` averages over the loader's
  examples: the exact (true) Fisher diagonal, mean-normalised.
* torch.func rows are written here from ``vmap(grad)`` and need no rescaling; the Monte-Carlo row
  uses the labels that infojax samples from the same key, so its error is measured exactly.
"""

import os
import warnings
from typing import Callable, List, Optional, Tuple

import jax
import numpy as np

from infojax.bench import measure

TORCH_PEERS = ("torch", "torchfunc", "backpack", "opacus", "nngeometry")


def unavailable_reason() -> Optional[str]:
  """None if torch imports, else why the torch rows are skipped."""
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    return f"torch is not installed ({error}); pip install torch==2.13.0"
  return None


def _import(module: str) -> Tuple[object, Optional[str]]:
  try:
    return __import__(module), None
  except ImportError as error:
    return None, f"{module} is not installed ({error})"


class TorchTwin:
  """The torch copy of an "mlp" or "cnn" workload, with the map back to flax parameter paths.

  Attributes:
    model: a ``torch.nn.Sequential``.
    layers: ``[(torch_module_name, flax_layer_name)]`` for every parameterised layer, in order.
  """

  def __init__(self, workload, device: str):
    import torch  # pylint: disable=g-import-not-at-top
    spec, params = workload.spec, jax.tree.map(np.asarray, workload.params)
    modules, self.layers = [], []
    if spec["kind"] == "cnn":
      for index, stride in enumerate(spec["strides"]):
        flax_name = f"Conv_{index}"
        kernel = params[flax_name]["kernel"]
        conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0], stride=stride,
                               padding=spec["padding"])
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        conv.bias.data = torch.from_numpy(params[flax_name]["bias"].copy())
        self.layers.append((str(len(modules)), flax_name))
        modules += [conv, torch.nn.ReLU()]
      modules += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()]
      num_dense = 1
    elif spec["kind"] == "mlp":
      if spec.get("activation", "relu") != "relu":
        raise ValueError("the torch twin supports relu MLPs only.")
      modules.append(torch.nn.Flatten())
      num_dense = len(spec["sizes"]) - 1
    else:
      raise ValueError(f"no torch twin for workload kind {spec['kind']!r}.")
    for index in range(num_dense):
      flax_name = f"Dense_{index}"
      kernel = params[flax_name]["kernel"]
      linear = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
      linear.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
      linear.bias.data = torch.from_numpy(params[flax_name]["bias"].copy())
      self.layers.append((str(len(modules)), flax_name))
      modules.append(linear)
      if index < num_dense - 1:
        modules.append(torch.nn.ReLU())
    self.model = torch.nn.Sequential(*modules).to(device)
    self.template = params

  def parameters(self) -> list:
    """Weights and biases in the order of `layers` (weight, then bias, per layer)."""
    modules = dict(self.model.named_children())
    return [p for name, _ in self.layers for p in (modules[name].weight, modules[name].bias)]

  def to_flax(self, values) -> dict:
    """torch-layout arrays in the order of `parameters` -> a float64 pytree like the flax params."""
    values = [np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float64)
              for v in values]
    out = {}
    for (_, flax_name), weight, bias in zip(self.layers, values[0::2], values[1::2]):
      kernel = weight.transpose(2, 3, 1, 0) if weight.ndim == 4 else weight.T
      out[flax_name] = {"kernel": kernel, "bias": bias}
    return out


def entries(workload, *, peers, mc_labels, log: Callable[[str], None]) -> List[measure.Entry]:
  """The torch rows for ``workload`` (an "mlp" or "cnn" workload), for the selected ``peers``.

  Args:
    workload: an `infojax.bench.workloads.Workload`.
    peers: names among `TORCH_PEERS`.
    mc_labels: ``(N,)`` labels that infojax's ``kind="mc"`` draws, for the torch.func MC row.
    log: prints why a peer is skipped.
  """
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  # BackPACK's and Opacus' hooks fire with inputs that need no gradient; torch warns every call.
  warnings.filterwarnings("ignore", message="Full backward hook is firing")
  use_cuda = jax.default_backend() == "gpu" and torch.cuda.is_available()
  device = "cuda" if use_cuda else "cpu"
  synchronize = torch.cuda.synchronize if use_cuda else (lambda: None)
  inputs = np.asarray(workload.inputs)
  if inputs.ndim == 4:
    inputs = inputs.transpose(0, 3, 1, 2)
  x = torch.from_numpy(np.ascontiguousarray(inputs)).to(device)
  y = torch.from_numpy(np.asarray(workload.targets).astype(np.int64)).to(device)
  n, num_classes = x.shape[0], workload.num_classes
  loss_fn = torch.nn.CrossEntropyLoss()
  rows = []

  def add(quantity, implementation, fn, to_reference_layout, **kwargs):
    def call():
      value = fn()
      synchronize()
      return value
    rows.append(measure.Entry(quantity, implementation, "torch", call, to_reference_layout,
                              **kwargs))

  def new_twin():
    return TorchTwin(workload, device)

  if "torch" in peers:
    twin = new_twin()

    def gradient():
      twin.model.zero_grad()
      loss_fn(twin.model(x), y).backward()
      return [p.grad.clone() for p in twin.parameters()]

    add("G", "torch_grad", gradient, twin.to_flax)

  if "torchfunc" in peers:
    labels = torch.from_numpy(np.asarray(mc_labels).astype(np.int64)).to(device)
    _torch_func_entries(new_twin(), x, y, labels, num_classes, add)

  if "backpack" in peers:
    backpack, why = _import("backpack")
    if backpack is None:
      log(f"  BackPACK skipped: {why}; pip install --no-deps backpack-for-pytorch unfoldNd einops")
    else:
      _backpack_entries(new_twin(), x, y, n, add)

  if "opacus" in peers:
    opacus, why = _import("opacus")
    if opacus is None:
      log(f"  Opacus skipped: {why}; pip install opacus (after torch)")
    else:
      _opacus_entries(new_twin(), x, y, loss_fn, add)

  if "nngeometry" in peers:
    nngeometry, why = _import("nngeometry")
    if nngeometry is None:
      log(f"  NNGeometry skipped: {why}; pip install --no-deps nngeometry")
    else:
      _nngeometry_entries(new_twin(), x, y, device, add)
  return rows


def _torch_func_entries(twin, x, y, mc_labels, num_classes, add):
  """torch.func ``vmap(grad)``: empirical, true (one vmap per class), mc and per-example norms."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import func as torch_func  # pylint: disable=g-import-not-at-top
  names = [name for name, _ in twin.model.named_parameters()]
  order = [f"{module}.{leaf}" for module, _ in twin.layers for leaf in ("weight", "bias")]
  weights = {k: v.detach() for k, v in twin.model.named_parameters()}
  if sorted(names) != sorted(order):
    raise AssertionError(f"torch parameters {names} are not those of the twin's layers {order}")

  def example_loss(w, xi, yi):
    logits = torch_func.functional_call(twin.model, w, (xi[None],))
    return torch.nn.functional.cross_entropy(logits, yi[None])

  per_example = torch_func.vmap(torch_func.grad(example_loss), in_dims=(None, 0, 0))

  def mean_squares(labels):
    grads = per_example(weights, x, labels)
    return [(grads[name] ** 2).mean(0) for name in order]

  def true_diagonal():
    with torch.no_grad():
      probs = torch.softmax(twin.model(x), dim=-1)
    total = None
    for label in range(num_classes):
      grads = per_example(weights, x, torch.full_like(y, label))
      weighted = [torch.einsum("n,n...->...", probs[:, label], grads[name] ** 2)
                  for name in order]
      total = weighted if total is None else [a + b for a, b in zip(total, weighted)]
    return [t / x.shape[0] for t in total]

  def norms():
    grads = per_example(weights, x, y)
    squares = sum((grads[name].reshape(x.shape[0], -1) ** 2).sum(1) for name in order)
    return squares.sqrt()

  add("empirical", "torchfunc_vmap_grad", lambda: mean_squares(y), twin.to_flax)
  add("true", "torchfunc_vmap_classes", true_diagonal, twin.to_flax,
      note="sum_c p_c g_c^2, one vmap(grad) per class")
  add("mc", "torchfunc_vmap_grad", lambda: mean_squares(mc_labels), twin.to_flax,
      note="labels sampled by infojax with the same key")
  add("norms", "torchfunc_vmap_grad", norms, lambda v: v.cpu().numpy().astype(np.float64))


def _backpack_entries(twin, x, y, n, add):
  """BackPACK: SumGradSquared, DiagGGNExact, DiagGGNMC (1 sample), BatchGrad."""
  import backpack  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from backpack import extensions  # pylint: disable=g-import-not-at-top
  model = backpack.extend(twin.model)
  loss_fn = backpack.extend(torch.nn.CrossEntropyLoss())
  parameters = twin.parameters()

  def run(extension, attribute):
    def fn():
      model.zero_grad()
      with backpack.backpack(extension):
        loss_fn(model(x), y).backward()
      return [getattr(p, attribute) for p in parameters]
    return fn

  sum_grad_squared = run(extensions.SumGradSquared(), "sum_grad_squared")
  batch_grad = run(extensions.BatchGrad(), "grad_batch")
  # Mean loss: BackPACK's SumGradSquared is sum_n (g_n / N)^2 = (empirical diagonal) / N.
  add("empirical", "backpack_sumgradsquared", sum_grad_squared,
      lambda values: twin.to_flax([v * n for v in values]), note="x N (mean-loss convention)")
  add("true", "backpack_diagggn_exact", run(extensions.DiagGGNExact(), "diag_ggn_exact"),
      twin.to_flax)
  add("mc", "backpack_diagggn_mc", run(extensions.DiagGGNMC(mc_samples=1), "diag_ggn_mc"),
      twin.to_flax, comparable=False, note="own sampled labels: no exact reference")

  def batch_grad_norms():
    # Mean loss: BatchGrad holds g_n / N.
    values = batch_grad()
    return sum(((v.reshape(n, -1) * n) ** 2).sum(1) for v in values).sqrt()

  add("norms", "backpack_batchgrad", batch_grad_norms,
      lambda v: v.detach().cpu().numpy().astype(np.float64), note="x N (mean-loss convention)")


def _opacus_entries(twin, x, y, loss_fn, add):
  """Opacus ``GradSampleModule``: per-example gradients (hooks), squared and averaged, and norms."""
  from opacus import GradSampleModule  # pylint: disable=g-import-not-at-top
  model = GradSampleModule(twin.model, loss_reduction="mean")
  parameters = twin.parameters()
  n = x.shape[0]

  def per_example_grads():
    model.zero_grad(set_to_none=True)
    for p in parameters:
      p.grad_sample = None
    loss_fn(model(x), y).backward()
    return [p.grad_sample for p in parameters]

  def empirical():
    return [(g ** 2).mean(0) for g in per_example_grads()]

  def norms():
    return sum((g.reshape(n, -1) ** 2).sum(1) for g in per_example_grads()).sqrt()

  add("empirical", "opacus_gradsample", empirical, twin.to_flax)
  add("norms", "opacus_gradsample", norms, lambda v: v.detach().cpu().numpy().astype(np.float64))


def _nngeometry_entries(twin, x, y, device, add):
  """NNGeometry ``FIM`` with ``PMatDiag``: the exact Fisher diagonal (closed-form class sum)."""
  import torch  # pylint: disable=g-import-not-at-top
  from nngeometry.layercollection import LayerCollection  # pylint: disable=g-import-not-at-top
  from nngeometry.metrics import FIM  # pylint: disable=g-import-not-at-top
  from nngeometry.object import PMatDiag  # pylint: disable=g-import-not-at-top
  from nngeometry.object.vector import PVector  # pylint: disable=g-import-not-at-top
  loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=x.shape[0])
  layer_collection = LayerCollection.from_model(twin.model)
  if list(layer_collection.layers) != [name for name, _ in twin.layers]:
    raise AssertionError(f"NNGeometry layer order {list(layer_collection.layers)} differs from "
                         f"{[name for name, _ in twin.layers]}")

  def fisher_diagonal():
    fisher = FIM(model=twin.model, loader=loader, representation=PMatDiag,
                 variant="classif_logits", device=device, layer_collection=layer_collection)
    return fisher.get_diag()

  def to_flax(diagonal):
    by_layer = PVector(layer_collection, vector_repr=diagonal).to_dict()
    return twin.to_flax([t for name, _ in twin.layers for t in by_layer[name]])

  add("true", "nngeometry_pmatdiag", fisher_diagonal, to_flax)
