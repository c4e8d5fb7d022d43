"""A small 1-d convolutional network for MNIST-1D (Greydanus & Kobak 2020)."""

from typing import Sequence

import flax.linen as nn
import jax

from infojax.models import _checks


class CNN1D(nn.Module):
  """1-d convolutions (stride 2, 'SAME' padding, ReLU), flatten, ``Dense(num_classes)``.

  The convolutional baseline of MNIST-1D (Greydanus & Kobak 2020, "Scaling down deep learning with
  MNIST-1D"): three strided convolutions and a linear read-out of the flattened feature map, which
  keeps the position information the task needs. For length-40 signals the map is 20, 10, then 5
  positions long (``ceil(L / stride)`` per convolution); ``Dense_0`` is sized at initialisation, so
  later inputs must have the same length.

  Inputs are ``(N, L)`` (one channel, as MNIST-1D is usually stored) or ``(N, L, C)``.

  Parameters (flax names): ``Conv_0`` ... ``Conv_{K-1}`` (``kernel (kernel_size, in, out)``,
  ``bias``), ``Dense_0`` (``kernel (positions * channels[-1], num_classes)``, ``bias``).

  Attributes:
    num_classes: the number of logits.
    channels: output channels of each convolution.
    kernel_size: the width of every convolution kernel.
    stride: the stride of every convolution.
  """
  num_classes: int
  channels: Sequence[int] = (32, 32, 32)
  kernel_size: int = 5
  stride: int = 2

  def __post_init__(self):
    _checks.positive_int("CNN1D", "num_classes", self.num_classes)
    _checks.positive_ints("CNN1D", "channels", self.channels)
    _checks.positive_int("CNN1D", "kernel_size", self.kernel_size)
    _checks.positive_int("CNN1D", "stride", self.stride)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of a batch of 1-d signals.

    Args:
      inputs: ``(N, L)`` or ``(N, L, C)``, with the ``L`` and ``C`` of initialisation.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _checks.input_rank("CNN1D", inputs, (2, 3), "(N, L) or (N, L, C)")
    x = inputs[..., None] if inputs.ndim == 2 else inputs
    _checks.input_features(self, "Conv_0", x.shape[-1], "CNN1D", "channels", inputs.shape)
    for features in self.channels:
      x = nn.relu(nn.Conv(features, (self.kernel_size,), strides=self.stride, padding="SAME")(x))
    x = x.reshape(x.shape[0], -1)
    _checks.input_features(self, "Dense_0", x.shape[-1], "CNN1D",
                           "flattened features (the length L differs)", inputs.shape)
    return nn.Dense(self.num_classes)(x)
