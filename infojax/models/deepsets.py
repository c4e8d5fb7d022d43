"""Deep Sets: permutation-invariant and permutation-equivariant networks on sets (Zaheer et al.).

Zaheer, Kottur, Ravanbakhsh, Poczos, Salakhutdinov & Smola (2017), "Deep Sets", NeurIPS. A set of
``M`` elements of dimension ``d`` is an array ``(M, d)`` whose row order carries no information; a
batch is ``(N, M, d)``. Every parameterised layer is a flax ``Dense`` (applied to each element, or
to the pooled set), so the Fisher engine's factored fast path covers every parameter here.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from infojax.models import _checks

POOLINGS = ("sum", "mean", "max")


def _check_pooling(model_name: str, pooling: str) -> None:
  if pooling not in POOLINGS:
    raise ValueError(f"{model_name}: pooling must be one of {POOLINGS}; got {pooling!r}.")


def _pool(x: jax.Array, pooling: str, keepdims: bool = False) -> jax.Array:
  """Sum, mean or max over the set axis (axis 1) of ``(N, M, F)``."""
  reduce = {"sum": jnp.sum, "mean": jnp.mean, "max": jnp.max}[pooling]
  return reduce(x, axis=1, keepdims=keepdims)


def _check_sets(model_name: str, inputs: jax.Array) -> None:
  _checks.input_rank(model_name, inputs, (3,), "(N, M, d): N sets of M elements of dimension d")


class PermutationEquivariant(nn.Module):
  """The permutation-equivariant layer of Deep Sets: ``x Lambda + pool(x) Gamma`` per element.

  ``output[n, m] = inputs[n, m] @ Lambda + bias + pool_m'(inputs[n, m']) @ Gamma``, with ``pool``
  the sum, mean or max over the set; permuting the elements of the input permutes the rows of the
  output the same way. Zaheer et al. (2017), "Deep Sets", NeurIPS, Lemma 3 (there with a sum,
  and a variant with a max subtracted; the sign is absorbed into ``Gamma``). No nonlinearity.

  Parameters (flax names): ``Lambda`` (a ``Dense``: ``kernel (d, features)``, ``bias``),
  ``Gamma`` (a ``Dense`` without bias: ``kernel (d, features)``).

  Shapes: inputs ``(N, M, d)`` -> outputs ``(N, M, features)``.

  Attributes:
    features: the output dimension of each element.
    pooling: ``"sum"``, ``"mean"`` or ``"max"`` over the set, fed to ``Gamma``.
  """
  features: int
  pooling: str = "mean"

  def __post_init__(self):
    _checks.positive_int("PermutationEquivariant", "features", self.features)
    _check_pooling("PermutationEquivariant", self.pooling)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """The transformed elements of a batch of sets.

    Args:
      inputs: ``(N, M, d)``, with the ``d`` of initialisation; any ``M``.

    Returns:
      ``(N, M, features)``.
    """
    _check_sets("PermutationEquivariant", inputs)
    _checks.input_features(self, "Lambda", inputs.shape[-1], "PermutationEquivariant",
                           "features per element", inputs.shape)
    elements = nn.Dense(self.features, name="Lambda")(inputs)                    # (N, M, F)
    pooled = nn.Dense(self.features, use_bias=False, name="Gamma")(
        _pool(inputs, self.pooling, keepdims=True))                               # (N, 1, F)
    return elements + pooled


class DeepSets(nn.Module):
  """A permutation-invariant set classifier: ``rho(pool_m phi(x_m))``, then ``Dense(num_classes)``.

  ``phi`` (``Dense`` + ReLU for each of ``phi_sizes``) maps each element of a set on its own;
  the set is pooled (sum, mean or max over its elements); ``rho`` (``Dense`` + ReLU for each of
  ``rho_sizes``, possibly none) and a final ``Dense(num_classes)`` map the pooled vector to the
  logits. The logits do not depend on the order of the elements (to float rounding of the
  pooling's sum). Zaheer et al. (2017), "Deep Sets", NeurIPS, Theorem 2: every permutation-invariant
  function of a set of countably many values has this form ``rho(sum_m phi(x_m))``.

  Sets of any size ``M`` (fixed within one batch) may be fed to one set of parameters; with
  ``"sum"`` pooling the logits may depend on ``M``, with ``"mean"`` or ``"max"`` a set and its
  copy repeated twice have the same logits.

  Parameters (flax names): ``Dense_0`` ... ``Dense_{P-1}`` (``phi``, ``P = len(phi_sizes)``),
  ``Dense_P`` ... ``Dense_{P+R-1}`` (``rho``, ``R = len(rho_sizes)``), ``Dense_{P+R}`` (the
  logits); each ``kernel (in, out)``, ``bias (out,)``.

  Shapes: inputs ``(N, M, d)`` -> logits ``(N, num_classes)``.

  Attributes:
    phi_sizes: the widths of the element-wise layers (at least one).
    rho_sizes: the widths of the layers after pooling (may be empty).
    num_classes: the number of logits.
    pooling: ``"sum"``, ``"mean"`` or ``"max"`` over the elements of each set.
  """
  phi_sizes: Sequence[int] = (32, 32)
  rho_sizes: Sequence[int] = (32,)
  num_classes: int = 10
  pooling: str = "sum"

  def __post_init__(self):
    _checks.positive_ints("DeepSets", "phi_sizes", self.phi_sizes)
    rho_sizes = self.rho_sizes
    if (isinstance(rho_sizes, (str, bytes)) or not isinstance(rho_sizes, Sequence) or any(
        isinstance(width, bool) or not isinstance(width, int) or width < 1 for width in rho_sizes)):
      raise ValueError(f"DeepSets: rho_sizes must be a sequence of positive ints (possibly empty); "
                       f"got {rho_sizes!r}.")
    _checks.positive_int("DeepSets", "num_classes", self.num_classes)
    _check_pooling("DeepSets", self.pooling)
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    """Logits of a batch of sets.

    Args:
      inputs: ``(N, M, d)``: N sets of M elements, each of the ``d`` of initialisation.

    Returns:
      Logits of shape ``(N, num_classes)``.
    """
    _check_sets("DeepSets", inputs)
    _checks.input_features(self, "Dense_0", inputs.shape[-1], "DeepSets", "features per element",
                           inputs.shape)
    x = inputs
    for width in self.phi_sizes:
      x = nn.relu(nn.Dense(width)(x))                                             # (N, M, width)
    x = _pool(x, self.pooling)                                                    # (N, width)
    for width in self.rho_sizes:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
