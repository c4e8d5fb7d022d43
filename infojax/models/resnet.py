"""The CIFAR ResNet-18 (He et al. 2016), with GroupNorm, no normalisation, or BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models import _checks

NORMS = ("group", "none", "batch")
MAX_GROUPS = 32
STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BLOCKS_PER_STAGE = 2
BATCH_NORM_MOMENTUM = 0.9  # flax convention; PyTorch's momentum=0.1
BATCH_NORM_EPSILON = 1e-5


def num_groups(channels: int) -> int:
  """The GroupNorm group count: the largest divisor of ``channels`` that is at most 32."""
  return max(d for d in range(1, min(MAX_GROUPS, channels) + 1) if channels % d == 0)


def _normalize(norm: str, channels: int, train: bool, x: jax.Array) -> jax.Array:
  """Applies the chosen normalisation (created as a submodule of the calling compact module)."""
  if norm == "group":
    return nn.GroupNorm(num_groups=num_groups(channels))(x)
  if norm == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM,
                        epsilon=BATCH_NORM_EPSILON)(x)
  return x


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (He et al. 2016, "basic block").

  ``relu(norm(conv(relu(norm(conv(x))))) + shortcut(x))``, where the shortcut is the identity, or a
  1x1 convolution (stride ``strides``) followed by the normalisation when the shape changes.
  Convolutions carry a bias only when ``norm == "none"``.

  Attributes:
    features: output channels.
    strides: the stride of the first convolution (and of the projection shortcut).
    norm: "group", "none" or "batch".
  """
  features: int
  strides: int
  norm: str

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    use_bias = self.norm == "none"
    y = nn.Conv(self.features, (3, 3), strides=self.strides, padding=1, use_bias=use_bias)(x)
    y = nn.relu(_normalize(self.norm, self.features, train, y))
    y = nn.Conv(self.features, (3, 3), padding=1, use_bias=use_bias)(y)
    y = _normalize(self.norm, self.features, train, y)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = nn.Conv(self.features, (1, 1), strides=self.strides, padding=0,
                         use_bias=use_bias)(x)
      shortcut = _normalize(self.norm, self.features, train, shortcut)
    return nn.relu(y + shortcut)


class ResNet18(nn.Module):
  """ResNet-18 for 32x32 images: 3x3 stem, four stages of two basic blocks, average pool, dense.

  He, Zhang, Ren & Sun (2016), "Deep residual learning for image recognition", CVPR, in the
  CIFAR form common since (e.g. kuangliu/pytorch-cifar): a 3x3 stride-1 stem with 64 channels and
  no max-pool, stages of 64/128/256/512 channels with strides 1/2/2/2, 1x1 projection shortcuts
  where the shape changes, global average pooling, ``Dense(num_classes)``. 3x3 convolutions pad 1
  pixel per side, so any ``H, W >= 1`` works (32x32 ends at 4x4). 11,173,962 parameters at
  ``width_multiplier=1`` with "group" or "batch" norm, 3 input channels and 10 classes.

  ``norm="group"`` (GroupNorm with the largest divisor of the channel count up to 32 as the number
  of groups; Wu & He 2018) and ``norm="none"`` treat examples independently, so per-example
  gradients and Fisher quantities are defined; the Fisher engine's factored fast path covers both
  (GroupNorm's per-example ``scale``/``bias`` gradients are formed from its normalised input).
  ``norm="batch"`` couples the examples of a batch in training mode; per-example quantities then
  need eval mode (``train=False``, the default, using running statistics). Train it with
  ``model.apply(variables, x, train=True, mutable=["batch_stats"])``.

  Parameters (flax names): ``Conv_0`` (stem) and its norm (``GroupNorm_0``/``BatchNorm_0``),
  ``BasicBlock_0`` ... ``BasicBlock_7`` (each ``Conv_0``, ``Conv_1``, projection ``Conv_2`` and
  their norms ``*Norm_0..2``), ``Dense_0`` (the classifier).

  Attributes:
    num_classes: the number of logits.
    width_multiplier: scales the 64/128/256/512 channels (rounded, at least 1).
    norm: "group" (default), "none" or "batch".
  """
  num_classes: int
  width_multiplier: float = 1.0
  norm: str = "group"

  def __post_init__(self):
    _checks.positive_int("ResNet18", "num_classes", self.num_classes)
    _checks.width_multiplier("ResNet18", self.width_multiplier)
    if self.norm not in NORMS:
      raise ValueError(f"ResNet18: norm must be one of {NORMS}; got {self.norm!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, train: bool = False) -> jax.Array:
    """Logits of a batch of images.

    Args:
      inputs: ``(N, H, W, C)``, with the ``C`` of initialisation.
      train: BatchNorm uses (and updates) batch statistics; ignored unless ``norm == "batch"``.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _checks.input_rank("ResNet18", inputs, (4,), "(N, H, W, C)")
    _checks.input_features(self, "Conv_0", inputs.shape[-1], "ResNet18", "channels", inputs.shape)
    stem = _checks.scaled_width(STAGE_CHANNELS[0], self.width_multiplier)
    x = nn.Conv(stem, (3, 3), padding=1, use_bias=self.norm == "none")(inputs)
    x = nn.relu(_normalize(self.norm, stem, train, x))
    for channels, stage_stride in zip(STAGE_CHANNELS, STAGE_STRIDES):
      features = _checks.scaled_width(channels, self.width_multiplier)
      for block in range(BLOCKS_PER_STAGE):
        x = BasicBlock(features, stage_stride if block == 0 else 1, self.norm)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)
