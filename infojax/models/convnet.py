"""The benchmark CNN: a few 3x3 convolutions, global average pooling, a dense read-out."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models import _checks


class ConvNet(nn.Module):
  """Convolutions with symmetric padding and ReLU, global average pooling, ``Dense(num_classes)``.

  The defaults are the "cnn" workload of ``shared/bench/workloads.json`` (32x32x3 inputs; three 3x3
  convolutions with 32/64/64 channels, strides 1/2/2, padding 1; global average pool + dense(10)).
  Any ``H, W`` works.

  Parameters (flax names): ``Conv_0`` ... ``Conv_{K-1}`` (``kernel (k, k, in, out)``, ``bias``),
  ``Dense_0``.

  Attributes:
    channels: output channels of each convolution.
    strides: the stride of each convolution (same length as ``channels``).
    num_classes: the number of logits.
    kernel_size: the side of every square kernel.
    padding: pixels of zero padding on each side of each spatial axis.
  """
  channels: Sequence[int] = (32, 64, 64)
  strides: Sequence[int] = (1, 2, 2)
  num_classes: int = 10
  kernel_size: int = 3
  padding: int = 1

  def __post_init__(self):
    channels = _checks.positive_ints("ConvNet", "channels", self.channels)
    strides = _checks.positive_ints("ConvNet", "strides", self.strides)
    if len(strides) != len(channels):
      raise ValueError(f"ConvNet: strides {self.strides!r} must have one entry per convolution, "
                       f"as channels {self.channels!r}.")
    _checks.positive_int("ConvNet", "num_classes", self.num_classes)
    _checks.positive_int("ConvNet", "kernel_size", self.kernel_size)
    if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
      raise ValueError(f"ConvNet: padding must be an int >= 0; got {self.padding!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of a batch of images.

    Args:
      inputs: ``(N, H, W, C)``, with the ``C`` of initialisation; each convolution must leave at
        least one pixel: ``H + 2 * padding >= kernel_size`` (and likewise later).

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _checks.input_rank("ConvNet", inputs, (4,), "(N, H, W, C)")
    _checks.input_features(self, "Conv_0", inputs.shape[-1], "ConvNet", "channels", inputs.shape)
    x = inputs
    kernel = (self.kernel_size, self.kernel_size)
    for features, stride in zip(self.channels, self.strides):
      if min(x.shape[1:3]) + 2 * self.padding < self.kernel_size:
        raise ValueError(
            f"ConvNet expects inputs of shape (N, H, W, C) large enough for its convolutions; got "
            f"{tuple(inputs.shape)}, whose feature map shrinks to {x.shape[1:3]} before a "
            f"{self.kernel_size}x{self.kernel_size} kernel with padding {self.padding}.")
      x = nn.relu(nn.Conv(features, kernel, strides=stride, padding=self.padding)(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)
