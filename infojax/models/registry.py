"""Models by name, and pure ``apply_fn(params, inputs) -> logits`` functions for them."""

import dataclasses
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models.allcnn import AllCNN
from infojax.models.cnn1d import CNN1D
from infojax.models.convnet import ConvNet
from infojax.models.deepsets import DeepSets
from infojax.models.gconv import P4Conv
from infojax.models.lenet import LeNet5
from infojax.models.mlp import MLP
from infojax.models.resnet import ResNet18

MODELS = {
    "mlp": MLP,
    "lenet": LeNet5,
    "lenet5": LeNet5,
    "allcnn": AllCNN,
    "resnet18": ResNet18,
    "cnn1d": CNN1D,
    "convnet": ConvNet,
    "p4conv": P4Conv,
    "deepsets": DeepSets,
}


def get_model(name: str, *, num_classes: int, **kwargs) -> nn.Module:
  """Builds the model registered as ``name``.

  Args:
    name: one of `MODELS`: "mlp" (`MLP`, needs ``hidden_sizes``), "lenet" or "lenet5" (`LeNet5`),
      "allcnn" (`AllCNN`), "resnet18" (`ResNet18`), "cnn1d" (`CNN1D`), "convnet" (`ConvNet`),
      "p4conv" (`P4Conv`, rotation invariant, on ``(N, H, W, C)`` images), "deepsets"
      (`DeepSets`, permutation invariant, on ``(N, M, d)`` sets).
    num_classes: the number of logits.
    **kwargs: the model's other attributes (e.g. ``width_multiplier=0.5``, ``norm="none"``).

  Returns:
    An unbound flax module.

  Raises:
    ValueError: unknown ``name``, or an invalid attribute value.
    TypeError: an attribute the model does not have, or a missing one.
  """
  if name not in MODELS:
    raise ValueError(f"get_model: unknown model {name!r}; known models: {sorted(MODELS)}.")
  model_class = MODELS[name]
  fields = [field.name for field in dataclasses.fields(model_class)
            if field.name not in ("parent", "name")]
  unknown = sorted(set(kwargs) - set(fields))
  if unknown:
    raise TypeError(f"get_model: model {name!r} ({model_class.__name__}) has no attributes "
                    f"{unknown}; its attributes are {fields}.")
  try:
    return model_class(num_classes=num_classes, **kwargs)
  except TypeError as error:
    raise TypeError(f"get_model: model {name!r} ({model_class.__name__}, attributes {fields}): "
                    f"{error}") from error


def make_apply_fn(model: nn.Module, model_state: Optional[Mapping[str, Any]] = None) -> Callable:
  """A pure ``apply_fn(params, inputs) -> logits`` for ``model`` in eval mode.

  Args:
    model: an unbound flax module (e.g. from `get_model`).
    model_state: the non-trainable collections, e.g. ``{"batch_stats": ...}`` for BatchNorm models
      (the running statistics are closed over and not updated); ``None`` for models without any.

  Returns:
    ``apply_fn(params, inputs)`` = ``model.apply({"params": params, **model_state}, inputs)``.
  """
  model_state = dict(model_state or {})
  if "params" in model_state:
    raise ValueError("make_apply_fn: model_state holds the non-trainable collections only; "
                     "pass the parameters to apply_fn instead of a 'params' entry.")

  def apply_fn(params, inputs):
    return model.apply({"params": params, **model_state}, inputs)

  return apply_fn


def init(model: nn.Module, key: jax.Array, input_shape: Sequence[int], *,
         dtype=jnp.float32) -> Tuple[Callable, Any]:
  """Initialises ``model`` and returns a pure apply function with its parameters.

  Non-trainable collections (BatchNorm ``batch_stats``) are closed over at their initial values
  (mean 0, variance 1) in eval mode; for a trained BatchNorm model use `make_apply_fn` with the
  trained statistics, or ``model.apply(..., train=True, mutable=["batch_stats"])`` for training.

  Args:
    model: an unbound flax module (e.g. from `get_model`).
    key: a PRNG key (``jax.random.key(seed)``).
    input_shape: the shape of a batch of inputs, leading example axis included, e.g.
      ``(1, 28, 28, 1)``; later inputs may have any number of examples.
    dtype: the dtype of the example inputs used to trace the model.

  Returns:
    ``(apply_fn, params)``: ``apply_fn(params, inputs) -> logits (N, num_classes)`` is pure and
    jit-able; ``params`` is the ``"params"`` collection.
  """
  shape = tuple(input_shape)
  if not shape or any(isinstance(size, bool) or not isinstance(size, int) or size < 1
                      for size in shape):
    raise ValueError(f"init: input_shape must be a non-empty sequence of positive ints (leading "
                     f"example axis included, e.g. (1, 28, 28, 1)); got {input_shape!r}.")
  variables = jax.jit(model.init)(key, jnp.zeros(shape, dtype))
  params = variables["params"]
  model_state = {name: value for name, value in variables.items() if name != "params"}
  return make_apply_fn(model, model_state), params
