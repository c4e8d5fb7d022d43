"""LeNet-5 (LeCun et al. 1998), with 'SAME' padding so that 8x8 digits, MNIST and CIFAR all fit."""

import flax.linen as nn
import jax

from infojax.models import _checks

MIN_SIZE = 4  # two 2x2 poolings need at least 4 pixels per side to leave one


class LeNet5(nn.Module):
  """LeNet-5: conv 6@5x5, max-pool, conv 16@5x5, max-pool, dense 120, 84, ``num_classes``.

  LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document
  recognition", in its modern form: ReLU activations and 2x2 max pooling (stride 2) in place of
  tanh and trainable subsampling. Both convolutions use 'SAME' padding (2 pixels on each side), so
  any input with ``H, W >= 4`` works: the feature map after the second pooling is
  ``floor(floor(H/2)/2) x floor(floor(W/2)/2) x 16``, i.e. 2x2x16 for 8x8 digits, 7x7x16 for MNIST
  and 8x8x16 for CIFAR (the 1998 network instead padded 28x28 digits to 32x32 and used 'VALID'
  convolutions, reaching 5x5x16). ``dense 120`` is sized at initialisation, so later inputs must
  have the same ``H, W, C``.

  Parameters (flax names): ``Conv_0``, ``Conv_1`` (``kernel (5, 5, in, out)``, ``bias``),
  ``Dense_0``, ``Dense_1``, ``Dense_2`` (``kernel (in, out)``, ``bias``).

  Attributes:
    num_classes: the number of logits.
  """
  num_classes: int

  def __post_init__(self):
    _checks.positive_int("LeNet5", "num_classes", self.num_classes)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of a batch of images.

    Args:
      inputs: ``(N, H, W, C)`` with ``H, W >= 4``, the same ``H, W, C`` as at initialisation.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    expected = f"(N, H, W, C) with H, W >= {MIN_SIZE}"
    _checks.input_rank("LeNet5", inputs, (4,), expected)
    if min(inputs.shape[1:3]) < MIN_SIZE:
      raise ValueError(f"LeNet5 expects inputs of shape {expected}; got {tuple(inputs.shape)}.")
    _checks.input_features(self, "Conv_0", inputs.shape[-1], "LeNet5", "channels", inputs.shape)
    x = inputs
    for features in (6, 16):
      x = nn.relu(nn.Conv(features, (5, 5), padding="SAME")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    _checks.input_features(self, "Dense_0", x.shape[-1], "LeNet5",
                           "features after the second pooling (H, W differ)", inputs.shape)
    for features in (120, 84):
      x = nn.relu(nn.Dense(features)(x))
    return nn.Dense(self.num_classes)(x)
