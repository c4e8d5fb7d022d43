"""A multilayer perceptron on flattened inputs."""

from typing import Callable, Sequence, Union

import flax.linen as nn
import jax

from infojax.models import _checks


class MLP(nn.Module):
  """Fully connected network: flatten, ``Dense`` + activation per hidden layer, ``Dense`` logits.

  ``MLP((512, 512), 10)`` on MNIST is the 784-512-512-10 benchmark workload
  (``shared/bench/workloads.json``, "mlp"); ``MLP((10, 7, 5, 4, 3), 2, activation="tanh")`` on
  12-bit inputs is the 12-10-7-5-4-3-2 network of the information-plane experiments (Shwartz-Ziv
  & Tishby 2017, "Opening the black box of deep neural networks via information").

  Parameters: ``Dense_0`` ... ``Dense_{L}`` (flax names), each with ``kernel (in, out)`` and
  ``bias (out,)``; ``Dense_{L}`` gives the logits.

  Attributes:
    hidden_sizes: the widths of the hidden layers, e.g. ``(512, 512)``.
    num_classes: the number of logits.
    activation: a name in ``infojax.models._checks.ACTIVATIONS`` ("relu", "tanh", "sigmoid",
      "gelu", "elu", "softplus", "swish", "identity") or an elementwise callable.
  """
  hidden_sizes: Sequence[int]
  num_classes: int
  activation: Union[str, Callable] = "relu"

  def __post_init__(self):
    _checks.positive_ints("MLP", "hidden_sizes", self.hidden_sizes)
    _checks.positive_int("MLP", "num_classes", self.num_classes)
    _checks.activation_function("MLP", self.activation)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of the flattened inputs.

    Args:
      inputs: ``(N, ...)``: each example is flattened to ``(N, D)``; ``D`` must equal the size at
        initialisation.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    if inputs.ndim < 2 or 0 in inputs.shape[1:]:
      raise ValueError("MLP expects inputs of shape (N, ...) with at least one non-empty feature "
                       f"axis; got {tuple(inputs.shape)}.")
    x = inputs.reshape(inputs.shape[0], -1)
    _checks.input_features(self, "Dense_0", x.shape[-1], "MLP", "features per example",
                           inputs.shape)
    activation = _checks.activation_function("MLP", self.activation)
    for width in self.hidden_sizes:
      x = activation(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
