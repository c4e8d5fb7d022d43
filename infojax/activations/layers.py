"""Stochastic bottleneck layers: Information Dropout and the Deep Variational IB (VIB).

Both layers minimise the information Lagrangian of the activations, ``H_{p,q}(y|z) + beta I(x; z)``
(science.md §4.1, §5.1), through its variational upper bound ``E_x KL(p(z|x) || q(z))``: each
returns the noisy code ``z`` together with the KL of ``p(z|x)`` from the layer's prior, and the
caller adds ``beta`` times it to the cross-entropy.

* `InformationDropout` (Achille & Soatto, "Information Dropout: learning optimal representations
  through noisy computation", PAMI 2018, arXiv:1611.01353; science.md §5): multiplicative
  log-normal noise ``z = f(x) * exp(alpha(x) xi)``, ``xi ~ N(0, 1)``, whose scale ``alpha(x)`` is
  predicted from the same input by a parallel layer. With ReLU ``f`` and the (improper)
  log-uniform prior the KL is ``-log alpha`` up to a constant (`log_uniform_kl`); with softplus
  ``f`` and a log-normal prior with learned scalar parameters it is the KL of two Gaussians in log
  space (`log_normal_kl`). The official code is ucla-vision/information-dropout (``cifar.py``,
  ``cluttered.py``, ``utils.py``); this module follows its experiment scripts, which apply
  ``alpha_max`` once, ``alpha = 0.001 + alpha_max sigmoid(.)`` (the README's minimal example
  multiplies by ``alpha_max`` a second time; science.md §5.3 says use once).
* `VariationalBottleneck` (Alemi, Fischer, Dillon & Murphy, "Deep Variational Information
  Bottleneck", ICLR 2017, arXiv:1612.00410; science.md §9.1): a Gaussian encoder head
  ``z = mean(x) + scale(x) eps`` with prior ``N(0, I)``; `average_log_probs` is its test-time
  averaging of the predictive distribution over samples of ``z``.

**The beta convention.** We use the per-example objective of science.md §5.1 and §9.1,

    loss = mean over the batch of [ CE(y_i, z_i) + beta * sum over units of KL_i ],

i.e. the KL of every bottleneck layer is summed over its units (and spatial positions) and averaged
over the batch, exactly like the cross-entropy. The official Information Dropout code instead
divides the summed KL by the training-set size, ``loss = CE + beta_code * KL / N_train``
(science.md §5.3), so ``beta = beta_code / N_train``: its CIFAR-10 default ``beta_code = 3`` with
``N_train = 50000`` is ``beta = 6e-5`` here. Alemi et al.'s ``beta`` (1e-3 on MNIST) is already
per-example and needs no conversion.

Everything is pure ``jax.numpy`` / ``flax.linen``: jit-able and vmap-able (over inputs, and over
the ``"dropout"`` key of ``module.apply`` for several noise draws). All KLs are in nats.
"""

import math
from typing import Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from infojax import info
from infojax._validation import is_concrete

PRIORS = ("log_uniform", "log_normal")

# Added to alpha in the official code "for numerical stability"; the lower end of alpha's range.
ALPHA_OFFSET = 0.001


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _check_alpha_max(where: str, alpha_max) -> None:
  """Raises ValueError unless a concrete ``alpha_max`` is a finite number > 0 (traced: no check)."""
  if isinstance(alpha_max, bool):
    raise ValueError(f"{where}: alpha_max must be a finite number > 0; got {alpha_max!r}.")
  if is_concrete(alpha_max):
    value = np.asarray(alpha_max)
    if value.ndim or not np.issubdtype(value.dtype, np.number) or not (
        np.isfinite(value) and value > 0):
      raise ValueError(f"{where}: alpha_max must be a finite number > 0; got {alpha_max!r}.")


def _check_features(where: str, features) -> None:
  if isinstance(features, bool) or not isinstance(features, (int, np.integer)) or features < 1:
    raise ValueError(f"{where}: features must be a positive int; got {features!r}.")


def _check_positive_ints(where: str, field: str, values) -> None:
  if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values or any(
      isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
    raise ValueError(f"{where}: {field} must be a non-empty sequence of positive ints; got "
                     f"{values!r}.")


# ----------------------------------------------------------------------------------------------
# Information Dropout: noise scale, noise and KL terms (elementwise).
# ----------------------------------------------------------------------------------------------


def alpha_from_logits(logits, *, alpha_max) -> jax.Array:
  """The noise scale ``alpha = 0.001 + alpha_max * sigmoid(logits)``, elementwise.

  ``alpha`` lies in ``(0.001, alpha_max + 0.001)``. This is the official experiment scripts'
  parameterisation (``alpha_max`` applied once; the README's minimal example applies it twice:
  science.md §5.3). Defaults there: ``alpha_max`` 0.7 (CIFAR-10) and 1.0 (Cluttered MNIST).

  Args:
    logits: any shape, the output of the layer that predicts the noise.
    alpha_max: a finite number > 0.

  Returns:
    ``alpha``, the shape of ``logits``. Cost: one sigmoid per element.
  """
  _check_alpha_max("alpha_from_logits", alpha_max)
  return ALPHA_OFFSET + alpha_max * jax.nn.sigmoid(logits)


def log_uniform_kl(alpha, *, alpha_max) -> jax.Array:
  """``-log(alpha / (alpha_max + 0.001))``: the KL of ReLU activations from a log-uniform prior.

  With ``z = f(x) exp(alpha xi)``, ``f(x) > 0``, and the improper log-uniform prior
  ``q(log z) = const``, ``KL(p(z|x) || q(z)) = -H(log eps) + const = -log alpha + const``
  (Achille & Soatto 2018; science.md §5.2). The official code fixes the constant so that
  the KL vanishes at the upper end of alpha's range: it is exactly 0 at
  ``alpha = alpha_max + 0.001`` (the supremum of `alpha_from_logits`, approached as the logits
  grow), ``log(1 + 0.001 / alpha_max)`` (about 1.4e-3 nats for ``alpha_max = 0.7``) at
  ``alpha = alpha_max``, and grows to ``log(1000 alpha_max + 1)`` as ``alpha -> 0.001``.

  Args:
    alpha: the noise scale, any shape, in ``(0, alpha_max + 0.001]``.
    alpha_max: a finite number > 0, the one used by `alpha_from_logits`.

  Returns:
    The elementwise KL in nats, the shape of ``alpha``.
  """
  _check_alpha_max("log_uniform_kl", alpha_max)
  return -jnp.log(alpha / (alpha_max + ALPHA_OFFSET))


def log_normal_kl(activations, alpha, *, prior_mean, prior_scale, floor=1e-4) -> jax.Array:
  """``KL(N(log max(f, floor), alpha^2) || N(prior_mean, prior_scale^2))``, elementwise.

  For softplus activations ``f > 0`` with multiplicative noise ``log z = log f + alpha xi`` and a
  log-normal prior ``log z ~ N(mu_1, sigma_1^2)``, the KL between the two log-normals equals that
  between the Gaussians of their logarithms (a change of variables leaves the KL unchanged):
  ``[alpha^2 + (log f - mu_1)^2] / (2 sigma_1^2) + log(sigma_1 / alpha) - 1/2`` (science.md §5.2).
  As in the official code, ``f`` is clamped at ``floor`` before the logarithm. Zero exactly when
  ``alpha = sigma_1`` and ``log max(f, floor) = mu_1``.

  Args:
    activations: ``f(x) >= 0``, any shape.
    alpha: the noise scale (> 0), broadcast against ``activations``.
    prior_mean: ``mu_1``, broadcast against ``activations`` (a learned scalar per layer in
      `InformationDropout`).
    prior_scale: ``sigma_1 > 0``, likewise.
    floor: the clamp of ``f`` before ``log``.

  Returns:
    The elementwise KL in nats, the broadcast shape. Built on
    `infojax.info.gaussian_kl_elementwise` (accurate when ``alpha`` is near ``sigma_1``).
  """
  log_f = jnp.log(jnp.maximum(activations, floor))
  return info.gaussian_kl_elementwise(log_f, 2.0 * jnp.log(alpha), prior_mean,
                                      2.0 * jnp.log(prior_scale))


def log_normal_noise(key: jax.Array, alpha) -> jax.Array:
  """Multiplicative log-normal noise ``exp(alpha * xi)``, ``xi ~ N(0, 1)``, of ``alpha``'s shape.

  ``log eps ~ N(0, alpha^2)``: the mean is 0 in log space, so ``E eps = exp(alpha^2 / 2)``, not 1
  (science.md §5.1). Reparameterised: differentiable in ``alpha``.

  Args:
    key: a `jax.random.key`.
    alpha: the noise scale, any shape, floating.

  Returns:
    The noise, the shape and dtype of ``alpha``.
  """
  alpha = jnp.asarray(alpha)
  return jnp.exp(alpha * jax.random.normal(key, alpha.shape, alpha.dtype))


# ----------------------------------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------------------------------


class InformationDropout(nn.Module):
  """A layer ``f`` with learned multiplicative log-normal noise and its KL (Achille & Soatto 2018).

  ``f(x) = activation(layer(x))`` with ``layer`` a ``Dense`` (``kernel_size=None``) or a ``Conv``,
  and ``alpha(x) = 0.001 + alpha_max sigmoid(layer_alpha(x))`` from a parallel layer of the same
  shape on the same input (science.md §5.3: the "information pool" is the stride-2 3x3 conv
  version). In training (``deterministic=False``) the output is ``z = f(x) exp(alpha(x) xi)``,
  ``xi ~ N(0, 1)`` drawn from the ``"dropout"`` rng stream; at test time (``deterministic=True``)
  the noise is off and ``z = f(x)`` (the code's ``sigma0 = 0``), so no rng is needed. The official
  blocks add BatchNorm before the activation; put normalisation in the surrounding network if
  wanted.

  Priors (science.md §5.2):

  * ``"log_uniform"``: ReLU activation, ``kl = -log(alpha / (alpha_max + 0.001))``
    (`log_uniform_kl`; as in the official code it is charged on every unit, also where ``f = 0``);
  * ``"log_normal"``: softplus activation, ``kl = KL(N(log f, alpha^2) || N(mu_1, sigma_1^2))``
    (`log_normal_kl`), with ``mu_1`` (param ``prior_mean``, init 0) and ``log sigma_1`` (param
    ``prior_log_scale``, init 0, i.e. ``sigma_1 = 1`` as in the code) learned scalars.

  ``kl`` is elementwise, the shape of ``z``: the caller sums it over units (and positions) and
  averages over the batch, and adds ``beta`` times it to the mean cross-entropy. The official code
  divides the sum by the training-set size instead: ``beta = beta_code / N_train`` (module
  docstring). Summed over channels only, a conv layer's kl is a heat map of where the
  representation keeps information about the input.

  Parameters (flax names): ``f`` and ``alpha`` (each ``kernel``, ``bias``); with the log-normal
  prior also ``prior_mean`` and ``prior_log_scale`` (scalars).

  Attributes:
    features: output units (Dense) or channels (Conv), a positive int.
    kernel_size: ``None`` for Dense layers, else the Conv kernel, e.g. ``(3, 3)``.
    strides: the Conv strides (Dense: must stay 1).
    padding: the Conv padding ("SAME", "VALID", ...).
    alpha_max: the largest noise scale (minus 0.001), a finite number > 0. Official defaults: 0.7
      (CIFAR-10), 1.0 (Cluttered MNIST).
    prior: "log_uniform" (ReLU) or "log_normal" (softplus).
  """
  features: int
  kernel_size: Optional[Sequence[int]] = None
  strides: Union[int, Sequence[int]] = 1
  padding: str = "SAME"
  alpha_max: float = 0.7
  prior: str = "log_uniform"

  def __post_init__(self):
    _check_features("InformationDropout", self.features)
    _check_alpha_max("InformationDropout", self.alpha_max)
    if self.prior not in PRIORS:
      raise ValueError(f"InformationDropout: prior must be one of {PRIORS}; got {self.prior!r}.")
    if self.kernel_size is None:
      if self.strides != 1:
        raise ValueError("InformationDropout: strides apply to Conv layers only (kernel_size set); "
                         f"got strides={self.strides!r} with kernel_size=None.")
    else:
      _check_positive_ints("InformationDropout", "kernel_size", self.kernel_size)
      strides = (self.strides,) if isinstance(self.strides, (int, np.integer)) else self.strides
      _check_positive_ints("InformationDropout", "strides", strides)
    super().__post_init__()

  def _layer(self, name: str) -> nn.Module:
    if self.kernel_size is None:
      return nn.Dense(self.features, name=name)
    return nn.Conv(self.features, tuple(self.kernel_size), strides=self.strides,
                   padding=self.padding, name=name)

  @nn.compact
  def __call__(self, inputs: jax.Array, *, deterministic: bool) -> Tuple[jax.Array, jax.Array]:
    """The noisy activations and their elementwise KL.

    Args:
      inputs: ``(..., D)`` (Dense) or ``(N, H, W, C)`` (Conv).
      deterministic: True at test time (noise off, no rng); False in training (needs the
        ``"dropout"`` rng: ``module.apply(..., rngs={"dropout": key})``).

    Returns:
      ``(z, kl)``, both of shape ``(..., features)`` (Dense) or ``(N, H', W', features)`` (Conv);
      ``kl`` in nats, deterministic given the parameters and inputs (it does not depend on the
      noise draw). Cost: twice that of one layer of this shape.
    """
    pre_activation = self._layer("f")(inputs)
    alpha = alpha_from_logits(self._layer("alpha")(inputs), alpha_max=self.alpha_max)
    if self.prior == "log_uniform":
      activations = nn.relu(pre_activation)
      kl = log_uniform_kl(alpha, alpha_max=self.alpha_max)
    else:
      activations = nn.softplus(pre_activation)
      prior_mean = self.param("prior_mean", nn.initializers.zeros, (), activations.dtype)
      prior_log_scale = self.param("prior_log_scale", nn.initializers.zeros, (), activations.dtype)
      kl = log_normal_kl(activations, alpha, prior_mean=prior_mean,
                         prior_scale=jnp.exp(prior_log_scale))
    if deterministic:
      return activations, kl
    return activations * log_normal_noise(self.make_rng("dropout"), alpha), kl


class VariationalBottleneck(nn.Module):
  """The Deep VIB encoder head: a Gaussian code ``z ~ N(mean(x), diag scale(x)^2)`` and its KL.

  ``Dense(2K)`` gives ``mean`` (the first K outputs) and ``raw`` (the last K);
  ``scale = softplus(raw + scale_bias)``, with ``scale_bias = -5`` as in Alemi et al.'s code
  (``ds.NormalWithSoftplusScale(mu, rho - 5.0)``, alexalemi/vib_demo), so the code starts nearly
  deterministic. In training ``z = mean + scale * eps``, ``eps ~ N(0, I)`` from the ``"dropout"``
  rng; with ``deterministic=True``, ``z = mean``. The KL is from the marginal approximation
  ``r(z) = N(0, I)``, summed over the K coordinates (science.md §9.1). For S samples of z, vmap
  ``module.apply`` over S ``"dropout"`` keys and average the predictions with `average_log_probs`
  (12 at test time in the paper). Loss: ``mean_batch(CE) + beta * mean_batch(kl)``; the paper's
  MNIST value is ``beta = 1e-3``.

  Parameters (flax names): ``Dense_0`` (``kernel (D, 2K)``, ``bias (2K,)``).

  Attributes:
    features: K, the code size (256 in the paper's MNIST model), a positive int.
    scale_bias: added to the raw scale before the softplus.
  """
  features: int
  scale_bias: float = -5.0

  def __post_init__(self):
    _check_features("VariationalBottleneck", self.features)
    if isinstance(self.scale_bias, bool) or not isinstance(self.scale_bias, (int, float)) or (
        not math.isfinite(self.scale_bias)):
      raise ValueError(f"VariationalBottleneck: scale_bias must be a finite number; got "
                       f"{self.scale_bias!r}.")
    super().__post_init__()

  @nn.compact
  def __call__(self, inputs: jax.Array, *, deterministic: bool) -> Tuple[jax.Array, jax.Array]:
    """The code and its KL from ``N(0, I)``.

    Args:
      inputs: ``(..., D)``, e.g. ``(B, D)`` encoder features.
      deterministic: True: ``z = mean`` (no rng); False: one reparameterised sample (needs the
        ``"dropout"`` rng).

    Returns:
      ``(z, kl)``: ``z`` of shape ``(..., K)``; ``kl`` of shape ``(...)`` (``(B,)``), in nats.
      Cost: one ``Dense(2K)``.
    """
    params = nn.Dense(2 * self.features)(inputs)
    mean = params[..., :self.features]
    scale = jax.nn.softplus(params[..., self.features:] + self.scale_bias)
    zeros = jnp.zeros((), mean.dtype)
    kl = jnp.sum(info.gaussian_kl_elementwise(mean, 2.0 * jnp.log(scale), zeros, zeros), axis=-1)
    if deterministic:
      return mean, kl
    eps = jax.random.normal(self.make_rng("dropout"), mean.shape, mean.dtype)
    return mean + scale * eps, kl


def average_log_probs(logits) -> jax.Array:
  """``log (1/S) sum_s softmax(logits_s)``: the log of the sample-averaged predictive distribution.

  Deep VIB's test-time prediction averages the softmax over S samples of the code (Alemi et al.
  2017 use S = 12; science.md §9.1), computed stably as
  ``logsumexp_s(log_softmax(logits_s)) - log S``.

  Args:
    logits: ``(S, B, C)``, the logits of S samples for a batch of B inputs.

  Returns:
    ``(B, C)`` log-probabilities (each row's exponentials sum to 1). Cost: O(S B C).
  """
  logits = jnp.asarray(logits)
  if logits.ndim != 3:
    raise ValueError(f"average_log_probs: logits must have shape (S, B, C); got {logits.shape}.")
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  return jax.nn.logsumexp(log_probs, axis=0) - math.log(logits.shape[0])
