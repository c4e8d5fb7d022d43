"""Static checks shared by the models: field values, input shapes, widths and activations.

All checks run in Python on static shapes, so they cost nothing under ``jit``.
"""

import math
from typing import Callable, Sequence, Union

import flax.linen as nn
import jax

ACTIVATIONS = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "softplus": nn.softplus,
    "swish": nn.swish,
    "identity": lambda x: x,
}


def positive_int(model_name: str, field: str, value) -> int:
  """Returns ``value`` if it is a positive int (not a bool), else raises ValueError."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{model_name}: {field} must be a positive int; got {value!r}.")
  return value


def positive_ints(model_name: str, field: str, values) -> tuple:
  """Returns ``values`` as a non-empty tuple of positive ints, else raises ValueError."""
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
    raise ValueError(f"{model_name}: {field} must be a non-empty sequence of positive ints; "
                     f"got {values!r}.")
  for value in values:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{model_name}: {field} must be a non-empty sequence of positive ints; "
                       f"got {values!r}.")
  return tuple(values)


def width_multiplier(model_name: str, value) -> float:
  """Returns ``value`` if it is a finite positive number, else raises ValueError."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      math.isfinite(value) and value > 0):
    raise ValueError(f"{model_name}: width_multiplier must be a finite number > 0; got {value!r}.")
  return float(value)


def scaled_width(channels: int, multiplier: float) -> int:
  """``round(channels * multiplier)``, at least 1: the channel count of a widened/narrowed layer."""
  return max(1, int(round(channels * multiplier)))


def activation_function(model_name: str, activation: Union[str, Callable]) -> Callable:
  """The elementwise function named by ``activation`` (a key of `ACTIVATIONS`) or ``activation``."""
  if callable(activation):
    return activation
  if activation not in ACTIVATIONS:
    raise ValueError(f"{model_name}: unknown activation {activation!r}; use a callable or one of "
                     f"{sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[activation]


def input_rank(model_name: str, inputs: jax.Array, ranks: Sequence[int], expected: str) -> None:
  """Raises ValueError unless ``inputs.ndim`` is in ``ranks`` and no non-example axis is empty."""
  shape = tuple(inputs.shape)
  if inputs.ndim not in ranks or 0 in shape[1:]:
    raise ValueError(f"{model_name} expects inputs of shape {expected}; got {shape}.")


def input_features(module: nn.Module, layer_name: str, features: int, model_name: str,
                   expected: str, shape) -> None:
  """Raises ValueError if ``features`` differs from the input size of the initialised first layer.

  ``layer_name`` is the flax name of the first ``Dense``/``Conv`` (e.g. ``"Dense_0"``); its kernel
  has the input features on axis -2. Nothing is checked while the module is being initialised.

  Args:
    module: the bound module, called from inside its compact method.
    layer_name: the flax name of the layer that consumes ``features``.
    features: the number of input features the call is about to feed it.
    model_name: for the message.
    expected: what the features are (e.g. "channels"), for the message.
    shape: the shape of the model's inputs, for the message.
  """
  kernel = module.variables.get("params", {}).get(layer_name, {}).get("kernel")
  if kernel is not None and kernel.shape[-2] != features:
    raise ValueError(
        f"{model_name} was initialised for inputs with {kernel.shape[-2]} {expected}, but inputs "
        f"of shape {tuple(shape)} give {features}; use inputs shaped like those at "
        "initialisation.")
