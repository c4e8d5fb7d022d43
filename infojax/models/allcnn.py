"""The lecture's All-CNN-C (Springenberg et al. 2015; Achille, Rovere & Soatto 2019)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models import _checks

NARROW = 96
WIDE = 192
BATCH_NORM_MOMENTUM = 0.9  # flax convention; PyTorch's momentum=0.1
BATCH_NORM_EPSILON = 1e-5


def layer_plan(width_multiplier: float) -> tuple:
  """The hidden convolutions of All-CNN-C as ``(features, kernel_size, stride)`` triples."""
  narrow = _checks.scaled_width(NARROW, width_multiplier)
  wide = _checks.scaled_width(WIDE, width_multiplier)
  return ((narrow, 3, 1), (narrow, 3, 1), (narrow, 3, 2),
          (wide, 3, 1), (wide, 3, 1), (wide, 3, 2),
          (wide, 3, 1), (wide, 1, 1))


class AllCNN(nn.Module):
  """All-CNN-C: strided convolutions only, no pooling or dense layer; global average of class maps.

  Springenberg, Dosovitskiy, Brox & Riedmiller (2015), "Striving for simplicity: the all
  convolutional net", ICLR workshop, model C, as used for the critical-period and Fisher experiments
  of Achille, Rovere & Soatto (2019), "Critical learning periods in deep networks", ICLR:

    conv3x3 96, conv3x3 96, conv3x3 96 stride 2, conv3x3 192, conv3x3 192, conv3x3 192 stride 2,
    conv3x3 192, conv1x1 192 (each followed by [BatchNorm and] ReLU), conv1x1 ``num_classes``,
    global average pool -> logits.

  3x3 convolutions pad 1 pixel on each side (PyTorch ``padding=1``), so any ``H, W >= 1`` works and
  a 32x32 image ends as an 8x8 class map. Springenberg et al. left the seventh convolution unpadded
  (6x6 map), used dropout and a ReLU on the class maps; all three are omitted here (dropout would
  make the model stochastic, and logits must be free to be negative).
  1,369,738 parameters at ``width_multiplier=1``, without BatchNorm, for 3 input channels and 10
  classes.

  BatchNorm (``batch_norm=True``; the convolutions before it then have no bias) makes an example's
  output depend on the rest of the batch in training mode, so per-example gradients and Fisher
  quantities are defined only with ``batch_norm=False`` or in eval mode (``train=False``, the
  default, using the running statistics). Train with
  ``model.apply(variables, x, train=True, mutable=["batch_stats"])``.

  Parameters (flax names): ``Conv_0`` ... ``Conv_8`` (``Conv_8`` gives the class maps), plus
  ``BatchNorm_0`` ... ``BatchNorm_7`` (``scale``, ``bias``; running ``mean``, ``var`` in the
  ``batch_stats`` collection) when ``batch_norm``.

  Attributes:
    num_classes: the number of logits.
    width_multiplier: scales the 96/192 filters (rounded, at least 1).
    batch_norm: insert BatchNorm (momentum 0.9 in flax's convention, epsilon 1e-5) before each ReLU.
  """
  num_classes: int
  width_multiplier: float = 1.0
  batch_norm: bool = False

  def __post_init__(self):
    _checks.positive_int("AllCNN", "num_classes", self.num_classes)
    _checks.width_multiplier("AllCNN", self.width_multiplier)
    if not isinstance(self.batch_norm, bool):
      raise ValueError(f"AllCNN: batch_norm must be a bool; got {self.batch_norm!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    """Logits of a batch of images.

    Args:
      inputs: ``(N, H, W, C)``, with the ``C`` of initialisation.
      train: BatchNorm uses (and updates) batch statistics; ignored without ``batch_norm``.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _checks.input_rank("AllCNN", inputs, (4,), "(N, H, W, C)")
    _checks.input_features(self, "Conv_0", inputs.shape[-1], "AllCNN", "channels", inputs.shape)
    x = inputs
    for features, kernel_size, stride in layer_plan(self.width_multiplier):
      x = nn.Conv(features, (kernel_size, kernel_size), strides=stride, padding=kernel_size // 2,
                  use_bias=not self.batch_norm)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM,
                         epsilon=BATCH_NORM_EPSILON)(x)
      x = nn.relu(x)
    class_maps = nn.Conv(self.num_classes, (1, 1), padding=0)(x)
    return jnp.mean(class_maps, axis=(1, 2))
