"""Group-equivariant convolutions for the p4 group of 90-degree rotations (Cohen & Welling 2016).

Cohen & Welling (2016), "Group equivariant convolutional networks", ICML. The group p4 is the
translations of the pixel grid together with the rotations by ``r * 90`` degrees, ``r = 0..3``.
A feature map on p4 has one extra axis of length 4, the rotation: ``(N, H, W, 4, C)``.

Conventions. ``R`` is the rotation of ``jnp.rot90`` (one quarter turn of the two spatial axes,
about the image centre); a group element ``(t, r)`` acts on an image by ``(L f)(x) = f(R^-r x)``
shifted by ``t``, and on a p4 feature map by rotating each plane spatially and cyclically shifting
the rotation axis: ``(L_r f)(x, s) = f(R^-r x, s - r)``, which for arrays is
``jnp.roll(jnp.rot90(f, r, axes=(1, 2)), r, axis=3)``. Both layers here are correlations (as flax
``Conv``) with filters transformed by the group, so that

  ``layer(rot90(x, k, axes=(1, 2))) == roll(rot90(layer(x), k, axes=(1, 2)), k, axis=3)``

for every ``k``, exactly (up to float rounding), for square inputs, odd kernels and ``"SAME"`` or
``"VALID"`` padding (both pad or crop symmetrically, so rotations about the image centre commute
with them). Pointwise nonlinearities preserve this; pooling over the rotation axis and over space
makes `P4Conv`'s logits invariant to the four rotations.

Every filter bank is built from one kernel (``jnp.rot90``, ``jnp.roll``, stacked into one ordinary
kernel) and applied with one ``jax.lax.conv_general_dilated``; the cost is that of a flax ``Conv``
with 4 times the output channels (and, for `P4GroupConv`, 4 times the input channels). The Fisher
engine (`infojax.fisher`) does not recognise these layers, so their kernels and biases take its
exact per-example (``vmap``) path; the final ``Dense`` of `P4Conv` is factored.
"""

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models import _checks

NUM_ROTATIONS = 4
PADDINGS = ("SAME", "VALID")
POOLINGS = ("mean", "max")


def _check_layer_fields(layer_name: str, module: nn.Module) -> None:
  """Validates the fields shared by the two p4 layers."""
  _checks.positive_int(layer_name, "features", module.features)
  _checks.positive_int(layer_name, "kernel_size", module.kernel_size)
  if module.kernel_size % 2 != 1:
    raise ValueError(f"{layer_name}: kernel_size must be odd (a kernel with a centre pixel, so "
                     f"that rotations of it are rotations about that centre); got "
                     f"{module.kernel_size!r}.")
  if module.padding not in PADDINGS:
    raise ValueError(f"{layer_name}: padding must be one of {PADDINGS} (symmetric, so that the "
                     f"layer is rotation equivariant); got {module.padding!r}.")
  if not isinstance(module.use_bias, bool):
    raise ValueError(f"{layer_name}: use_bias must be a bool; got {module.use_bias!r}.")


def _check_kernel_channels(module: nn.Module, channels: int, layer_name: str, shape) -> None:
  """Raises ValueError if an initialised kernel was made for another number of input channels."""
  if module.has_variable("params", "kernel"):
    kernel = module.get_variable("params", "kernel")
    if kernel.shape[-2] != channels:
      raise ValueError(f"{layer_name} was initialised for inputs with {kernel.shape[-2]} "
                       f"channels, but inputs of shape {tuple(shape)} have {channels}; use "
                       "inputs shaped like those at initialisation.")


def _correlate(module: nn.Module, inputs: jax.Array, kernel: jax.Array) -> jax.Array:
  """``(N, H, W, C_in) x (k, k, C_in, C_out) -> (N, H', W', C_out)``, stride 1, no bias."""
  return jax.lax.conv_general_dilated(
      inputs, kernel, window_strides=(1, 1), padding=module.padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=module.precision)


def _add_bias(module: nn.Module, outputs: jax.Array, bias: Optional[jax.Array]) -> jax.Array:
  """Adds a bias ``(features,)`` shared by all positions and rotations of ``(N, H, W, 4, F)``."""
  if bias is None:
    return outputs
  return outputs + jnp.reshape(bias, (1,) * (outputs.ndim - 1) + (module.features,))


class _P4Layer(nn.Module):
  """The fields shared by the two p4 layers (documented on each), validated on construction."""
  features: int
  kernel_size: int = 3
  padding: str = "SAME"
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  precision: Any = None

  def __post_init__(self):
    _check_layer_fields(type(self).__name__, self)
    super().__post_init__()


class P4LiftingConv(_P4Layer):
  """Lifting convolution Z2 -> p4: an image correlated with the four rotations of one kernel.

  ``output[n, x, r, f] = sum_{u, c} inputs[n, x + u, c] * rot90(kernel, r)[u, c, f] + bias[f]``:
  rotation ``r`` of the output uses the kernel rotated by ``r`` quarter turns
  (``jnp.rot90(kernel, r, axes=(0, 1))``); the bias is shared by the four rotations. Rotating the
  input image by ``k`` quarter turns rotates the output spatially by ``k`` and shifts its rotation
  axis cyclically by ``k`` (``jnp.roll(..., k, axis=3)``); see the module docstring.

  Cohen & Welling (2016), "Group equivariant convolutional networks", ICML: the first layer of a
  G-CNN, their "Z2-P4" convolution.

  Parameters (flax names): ``kernel (kernel_size, kernel_size, C, features)``, ``bias (features,)``
  (if ``use_bias``): as a flax ``Conv`` with ``features`` outputs, applied 4 times.

  Shapes: inputs ``(N, H, W, C)`` -> outputs ``(N, H', W', 4, features)``; ``H' = H`` for
  ``"SAME"`` padding, ``H - kernel_size + 1`` for ``"VALID"``.

  Attributes:
    features: output channels per rotation.
    kernel_size: the side of the square kernel; must be odd.
    padding: ``"SAME"`` (zeros, the output keeps the input's size) or ``"VALID"`` (no padding).
    use_bias: add a learned bias per output feature.
    kernel_init: initialiser of the kernel (default: LeCun normal, fan-in ``k * k * C``).
    bias_init: initialiser of the bias.
    dtype: the dtype of the computation (default: that of the inputs and parameters, promoted).
    param_dtype: the dtype of the parameters.
    precision: the ``jax.lax.Precision`` of the convolution.
  """

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """The lifted feature map of a batch of images.

    Args:
      inputs: ``(N, H, W, C)``, with the ``C`` of initialisation; square (``H == W``) for exact
        equivariance; ``H, W >= kernel_size`` for ``"VALID"`` padding.

    Returns:
      ``(N, H', W', 4, features)``.
    """
    _checks.input_rank("P4LiftingConv", inputs, (4,), "(N, H, W, C)")
    _check_kernel_channels(self, inputs.shape[-1], "P4LiftingConv", inputs.shape)
    if self.padding == "VALID" and min(inputs.shape[1:3]) < self.kernel_size:
      raise ValueError(f"P4LiftingConv with padding 'VALID' expects H, W >= kernel_size "
                       f"{self.kernel_size}; got inputs of shape {tuple(inputs.shape)}.")
    size, channels = self.kernel_size, inputs.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (size, size, channels, self.features),
                        self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    # (k, k, C, 4, F): the filter of output rotation r is the kernel rotated by r quarter turns.
    bank = jnp.stack([jnp.rot90(kernel, r, axes=(0, 1)) for r in range(NUM_ROTATIONS)], axis=3)
    outputs = _correlate(self, inputs, bank.reshape(size, size, channels, -1))
    outputs = outputs.reshape(outputs.shape[:3] + (NUM_ROTATIONS, self.features))
    return _add_bias(self, outputs, bias)


class P4GroupConv(_P4Layer):
  """Group convolution p4 -> p4: a p4 feature map correlated with the p4 transforms of one kernel.

  ``output[n, x, r, f] = sum_{u, s, c} inputs[n, x + u, s, c] * kernel_r[u, s, c, f] + bias[f]``
  with ``kernel_r = jnp.roll(jnp.rot90(kernel, r, axes=(0, 1)), r, axis=2)``: the filter of output
  rotation ``r`` is the kernel rotated spatially by ``r`` quarter turns and shifted cyclically by
  ``r`` along its input-rotation axis, ``kernel_r[u, s] = kernel[R^-r u, s - r]`` (Cohen & Welling's
  ``[f * psi](g) = sum_h f(h) psi(g^-1 h)`` for ``g = (x, r)``). Then transforming the input by
  ``k`` quarter turns (rotate each plane and roll the rotation axis by ``k``) transforms the output
  the same way.

  Cohen & Welling (2016), "Group equivariant convolutional networks", ICML: their "P4-P4"
  convolution.

  Parameters (flax names): ``kernel (kernel_size, kernel_size, 4, C, features)`` (axis 2: the input
  rotation), ``bias (features,)`` (if ``use_bias``), shared by the four output rotations.

  Shapes: inputs ``(N, H, W, 4, C)`` -> outputs ``(N, H', W', 4, features)``, ``H'`` as in
  `P4LiftingConv`.

  Attributes:
    features: output channels per rotation.
    kernel_size: the side of the square kernel; must be odd.
    padding: ``"SAME"`` (zeros, the output keeps the input's size) or ``"VALID"`` (no padding).
    use_bias: add a learned bias per output feature.
    kernel_init: initialiser of the kernel (default: LeCun normal, fan-in ``k * k * 4 * C``).
    bias_init: initialiser of the bias.
    dtype: the dtype of the computation (default: that of the inputs and parameters, promoted).
    param_dtype: the dtype of the parameters.
    precision: the ``jax.lax.Precision`` of the convolution.
  """

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """The p4 feature map of a batch of p4 feature maps.

    Args:
      inputs: ``(N, H, W, 4, C)`` (e.g. from `P4LiftingConv`), with the ``C`` of initialisation.

    Returns:
      ``(N, H', W', 4, features)``.
    """
    _checks.input_rank("P4GroupConv", inputs, (5,), "(N, H, W, 4, C)")
    if inputs.shape[3] != NUM_ROTATIONS:
      raise ValueError(f"P4GroupConv expects inputs of shape (N, H, W, 4, C), with the 4 "
                       f"rotations on axis 3; got {tuple(inputs.shape)}.")
    _check_kernel_channels(self, inputs.shape[-1], "P4GroupConv", inputs.shape)
    if self.padding == "VALID" and min(inputs.shape[1:3]) < self.kernel_size:
      raise ValueError(f"P4GroupConv with padding 'VALID' expects H, W >= kernel_size "
                       f"{self.kernel_size}; got inputs of shape {tuple(inputs.shape)}.")
    size, channels = self.kernel_size, inputs.shape[-1]
    kernel = self.param("kernel", self.kernel_init,
                        (size, size, NUM_ROTATIONS, channels, self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    # (k, k, 4, C, 4, F): output rotation r reads kernel[R^-r u, s - r].
    bank = jnp.stack([jnp.roll(jnp.rot90(kernel, r, axes=(0, 1)), r, axis=2)
                      for r in range(NUM_ROTATIONS)], axis=4)
    flat_inputs = inputs.reshape(inputs.shape[:3] + (NUM_ROTATIONS * channels,))
    outputs = _correlate(self, flat_inputs, bank.reshape(size, size, NUM_ROTATIONS * channels, -1))
    outputs = outputs.reshape(outputs.shape[:3] + (NUM_ROTATIONS, self.features))
    return _add_bias(self, outputs, bias)


class P4Conv(nn.Module):
  """A rotation-invariant p4 classifier: lifting conv, group convs, invariant pooling, ``Dense``.

  ``P4LiftingConv(channels[0])``, ReLU, then ``P4GroupConv(c)`` + ReLU for each ``c`` of
  ``channels[1:]`` (all ``"SAME"``-padded, so any ``H, W`` works), then pooling over the rotation
  axis (``pooling``: mean or max) and the mean over space, and ``Dense(num_classes)``. The logits
  of a square image and of its rotations by 90, 180 and 270 degrees are equal up to float rounding
  (the P4CNN of Cohen & Welling's rotated-MNIST experiments, in miniature, with the pooling over
  space done last).

  Cohen & Welling (2016), "Group equivariant convolutional networks", ICML.

  Parameters (flax names): ``P4LiftingConv_0`` (``kernel (k, k, C, channels[0])``, ``bias``),
  ``P4GroupConv_0`` ... ``P4GroupConv_{K-2}`` (``kernel (k, k, 4, in, out)``, ``bias``),
  ``Dense_0`` (``kernel (channels[-1], num_classes)``, ``bias``). The Fisher engine factors
  ``Dense_0`` and takes the exact per-example path for the p4 kernels and biases.

  Shapes: inputs ``(N, H, W, C)`` -> logits ``(N, num_classes)``.

  Attributes:
    channels: output channels per rotation: of the lifting convolution, then of each group
      convolution (one entry: the lifting convolution only).
    kernel_size: the side of every square kernel; must be odd.
    num_classes: the number of logits.
    pooling: ``"mean"`` or ``"max"`` over the four rotations of the last feature map.
  """
  channels: Sequence[int] = (8, 8)
  kernel_size: int = 3
  num_classes: int = 10
  pooling: str = "mean"

  def __post_init__(self):
    _checks.positive_ints("P4Conv", "channels", self.channels)
    _checks.positive_int("P4Conv", "kernel_size", self.kernel_size)
    if self.kernel_size % 2 != 1:
      raise ValueError(f"P4Conv: kernel_size must be odd (rotations about the kernel's centre "
                       f"pixel); got {self.kernel_size!r}.")
    _checks.positive_int("P4Conv", "num_classes", self.num_classes)
    if self.pooling not in POOLINGS:
      raise ValueError(f"P4Conv: pooling must be one of {POOLINGS}; got {self.pooling!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of a batch of images.

    Args:
      inputs: ``(N, H, W, C)``, with the ``C`` of initialisation; square for exact invariance.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _checks.input_rank("P4Conv", inputs, (4,), "(N, H, W, C)")
    x = nn.relu(P4LiftingConv(self.channels[0], self.kernel_size)(inputs))
    for features in self.channels[1:]:
      x = nn.relu(P4GroupConv(features, self.kernel_size)(x))
    x = jnp.max(x, axis=3) if self.pooling == "max" else jnp.mean(x, axis=3)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)
