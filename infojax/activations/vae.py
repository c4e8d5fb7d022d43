"""Variational autoencoders with a tunable bottleneck: beta-VAE and capacity annealing.

A VAE (Kingma & Welling 2014) encodes ``x`` into a diagonal Gaussian ``q(z|x) = N(mean(x),
diag exp(log_variance(x)))``, decodes a sample ``z = mean + exp(log_variance / 2) * eps`` into the
parameters of ``p(x|z)``, and maximises the evidence lower bound
``ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))``. With reconstruction as the task this is the
information bottleneck's Lagrangian (science.md §5.1): the batch mean of the KL bounds ``I(x; z)``
from above, and the factorised prior pushes the code towards independent coordinates.

* **beta-VAE** (Higgins et al., "beta-VAE: learning basic visual concepts with a constrained
  variational framework", ICLR 2017; science.md §9.2): minimise
  ``-E_q[log p(x|z)] + beta KL(q(z|x) || p(z))`` (`beta_vae_loss`); ``beta > 1`` trades
  reconstruction for a more factorised code.
* **Capacity annealing** (Burgess et al., "Understanding disentangling in beta-VAE", 2018,
  arXiv 1804.03599; science.md §9.3): minimise ``-E_q[log p(x|z)] + gamma |KL - C|``
  (`capacity_loss`) with the target capacity ``C`` raised linearly from 0 (`linear_capacity`);
  the factors of variation are expected to enter the code one at a time as ``C`` grows.

The pieces are small pure functions in the style of optax losses (per-example values; the caller
reduces, except `capacity_loss`, whose constraint is on the batch mean): `kl_per_dimension` (the
KL of each latent coordinate, so that active units can be read off with `active_units`),
`reconstruction_nll` (nats, summed over the pixels, through `infojax.likelihoods`), and the
module `VAE` (flax.linen: MLP or small convolutional encoder and decoder; ``encode``/``decode``
methods for latent traversals, `traversal_codes`). Decoders: ``"bernoulli"`` (logits; binary
images) and ``"gaussian"`` with a **fixed** scale ``decoder_scale`` (means; the scale is a
hyper-parameter, not learned). All quantities in nats.
"""

import math
from typing import Callable, NamedTuple, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from infojax import info
from infojax import likelihoods
from infojax._validation import is_concrete
from infojax.models import _checks

DECODERS = ("bernoulli", "gaussian")


class VAEOutputs(NamedTuple):
  """One pass of a `VAE`.

  Attributes:
    mean: ``(B, K)`` the posterior means.
    log_variance: ``(B, K)`` the posterior log-variances.
    z: ``(B, K)`` the reparameterised sample ``mean + exp(log_variance / 2) * eps``.
    decoder_outputs: ``(B, *output_shape)`` the parameters of ``p(x|z)``: logits (Bernoulli) or
      means (Gaussian).
  """
  mean: jax.Array
  log_variance: jax.Array
  z: jax.Array
  decoder_outputs: jax.Array


def decoder_likelihood(decoder: str, *, scale: float = 1.0) -> likelihoods.Likelihood:
  """The likelihood ``p(x|z)`` of a decoder name.

  Args:
    decoder: ``"bernoulli"`` (outputs are logits, targets in {0, 1}) or ``"gaussian"`` (outputs
      are means, fixed standard deviation ``scale``).
    scale: the Gaussian's standard deviation (ignored for ``"bernoulli"``).

  Returns:
    `infojax.likelihoods.bernoulli()` or `infojax.likelihoods.gaussian(scale)`.
  """
  if decoder == "bernoulli":
    return likelihoods.bernoulli()
  if decoder == "gaussian":
    return likelihoods.gaussian(scale)
  raise ValueError(f"decoder must be one of {DECODERS}; got {decoder!r}.")


def sample_code(key: jax.Array, mean: jax.Array, log_variance: jax.Array) -> jax.Array:
  """The reparameterised sample ``z = mean + exp(log_variance / 2) * eps``, ``eps ~ N(0, I)``.

  Args:
    key: a PRNG key.
    mean, log_variance: ``(..., K)`` the posterior parameters.

  Returns:
    ``z`` with the shape of ``mean``.
  """
  noise = jax.random.normal(key, jnp.shape(mean), jnp.result_type(mean))
  return mean + jnp.exp(0.5 * log_variance) * noise


class _Encoder(nn.Module):
  """Optional stride-2 4x4 convolutions, then dense layers, then ``Dense(2 K)``."""
  latent_dim: int
  hidden_sizes: Sequence[int]
  conv_channels: Sequence[int]
  activation: Callable

  @nn.compact
  def __call__(self, x):
    for channels in self.conv_channels:
      x = self.activation(nn.Conv(channels, (4, 4), strides=2, padding="SAME")(x))
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden_sizes:
      x = self.activation(nn.Dense(width)(x))
    out = nn.Dense(2 * self.latent_dim)(x)
    return out[:, :self.latent_dim], out[:, self.latent_dim:]


class _Decoder(nn.Module):
  """Dense layers (reversed widths), then a dense output or stride-2 transposed convolutions."""
  output_shape: Sequence[int]
  hidden_sizes: Sequence[int]
  conv_channels: Sequence[int]
  activation: Callable

  @nn.compact
  def __call__(self, z):
    x = z
    for width in reversed(self.hidden_sizes):
      x = self.activation(nn.Dense(width)(x))
    if not self.conv_channels:
      return nn.Dense(math.prod(self.output_shape))(x).reshape((z.shape[0],) + self.output_shape)
    height, width, channels = self.output_shape
    factor = 2 ** len(self.conv_channels)
    start = (height // factor, width // factor, self.conv_channels[-1])
    x = self.activation(nn.Dense(math.prod(start))(x)).reshape((z.shape[0],) + start)
    widths = tuple(reversed(self.conv_channels[:-1])) + (channels,)
    for index, features in enumerate(widths):
      x = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")(x)
      if index < len(widths) - 1:
        x = self.activation(x)
    return x


class VAE(nn.Module):
  """A VAE with a diagonal Gaussian posterior, a standard normal prior and a chosen decoder.

  Encoder: ``len(conv_channels)`` stride-2 4x4 convolutions (``padding="SAME"``, none by default),
  flatten, ``Dense`` + activation per ``hidden_sizes``, then ``Dense(2 latent_dim)`` split into
  the mean and the log-variance. Decoder: ``Dense`` + activation per reversed ``hidden_sizes``,
  then either ``Dense(prod(output_shape))`` (no convolutions) or a ``Dense`` to a
  ``(H / 2^L, W / 2^L, conv_channels[-1])`` map and ``L`` stride-2 4x4 transposed convolutions
  back to ``output_shape`` (for 64x64 sprites, Burgess et al. 2018 use, as recalled, not checked
  against the paper: four 32-channel convolutions and ``hidden_sizes=(256, 256)``). Parameters:
  ``encoder_network`` and ``decoder_network``.

  Use ``model.apply(params, x, key)`` for a pass (`VAEOutputs`), and
  ``model.apply(params, x, method=VAE.encode)`` / ``model.apply(params, z, method=VAE.decode)``
  for the two halves. Cost: one forward pass of each network per call.

  Attributes:
    latent_dim: ``K``, the number of latent coordinates.
    output_shape: the shape of one example ``x`` (and of the decoder's output), e.g.
      ``(32, 32, 1)``; with ``conv_channels`` it must be ``(H, W, C)`` with ``H`` and ``W``
      divisible by ``2 ** len(conv_channels)``.
    hidden_sizes: the encoder's dense widths (the decoder uses them reversed).
    conv_channels: the channels of the encoder's convolutions (``()``: an MLP VAE).
    activation: a name in ``infojax.models._checks.ACTIVATIONS`` or an elementwise callable.
    decoder: ``"bernoulli"`` (logits) or ``"gaussian"`` (means, fixed scale); see `likelihood`.
    decoder_scale: the standard deviation of the Gaussian decoder (fixed, not learned).
  """
  latent_dim: int
  output_shape: Sequence[int]
  hidden_sizes: Sequence[int] = (256, 256)
  conv_channels: Sequence[int] = ()
  activation: Union[str, Callable] = "relu"
  decoder: str = "bernoulli"
  decoder_scale: float = 1.0

  def __post_init__(self):
    _checks.positive_int("VAE", "latent_dim", self.latent_dim)
    shape = _checks.positive_ints("VAE", "output_shape", tuple(self.output_shape))
    _checks.positive_ints("VAE", "hidden_sizes", tuple(self.hidden_sizes))
    if self.conv_channels:
      _checks.positive_ints("VAE", "conv_channels", tuple(self.conv_channels))
      factor = 2 ** len(self.conv_channels)
      if len(shape) != 3 or shape[0] % factor or shape[1] % factor:
        raise ValueError(
            f"VAE: with conv_channels {tuple(self.conv_channels)!r}, output_shape must be "
            f"(H, W, C) with H and W divisible by {factor}; got {shape!r}.")
    _checks.activation_function("VAE", self.activation)
    decoder_likelihood(self.decoder, scale=self.decoder_scale)
    super().__post_init__()

  @property
  def likelihood(self) -> likelihoods.Likelihood:
    """The decoder's likelihood ``p(x|z)`` (`decoder_likelihood`)."""
    return decoder_likelihood(self.decoder, scale=self.decoder_scale)

  def setup(self):
    activation = _checks.activation_function("VAE", self.activation)
    self.encoder_network = _Encoder(self.latent_dim, tuple(self.hidden_sizes),
                                    tuple(self.conv_channels), activation)
    self.decoder_network = _Decoder(tuple(self.output_shape), tuple(self.hidden_sizes),
                                    tuple(self.conv_channels), activation)

  def encode(self, x: jax.Array):
    """The posterior parameters ``(mean, log_variance)``, each ``(B, K)``, of ``x`` ``(B, ...)``.

    ``x.shape[1:]`` must equal ``output_shape``.
    """
    if tuple(x.shape[1:]) != tuple(self.output_shape):
      raise ValueError(f"VAE.encode: x must have shape (B, *{tuple(self.output_shape)}); got "
                       f"{tuple(x.shape)}.")
    return self.encoder_network(x)

  def decode(self, z: jax.Array) -> jax.Array:
    """The decoder's outputs ``(B, *output_shape)`` (logits or means) for codes ``z`` ``(B, K)``."""
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f"VAE.decode: z must have shape (B, {self.latent_dim}); got "
                       f"{tuple(z.shape)}.")
    return self.decoder_network(z)

  def __call__(self, x: jax.Array, key: jax.Array) -> VAEOutputs:
    """Encodes ``x`` ``(B, *output_shape)``, samples ``z`` with ``key`` (`sample_code`), decodes."""
    mean, log_variance = self.encode(x)
    z = sample_code(key, mean, log_variance)
    return VAEOutputs(mean, log_variance, z, self.decode(z))


def kl_per_dimension(mean: jax.Array, log_variance: jax.Array) -> jax.Array:
  """``KL(N(mean_k, exp(log_variance_k)) || N(0, 1))`` for each latent coordinate, nats.

  ``0.5 (exp(log_variance) - 1 - log_variance + mean^2)`` through
  `infojax.info.gaussian_kl_elementwise`; the sum over ``k`` is ``KL(q(z|x) || p(z))``, and its
  batch mean is an upper bound on ``I(x; z)`` (science.md §5.1). Cost ``O(B K)``.

  Args:
    mean, log_variance: ``(..., K)`` the posterior parameters.

  Returns:
    ``(..., K)`` the KL of each coordinate.
  """
  zeros = jnp.zeros_like(mean)
  return info.gaussian_kl_elementwise(mean, log_variance, zeros, zeros)


def _check_likelihood(likelihood) -> None:
  if not isinstance(likelihood, likelihoods.Likelihood) or likelihood.name not in DECODERS:
    raise ValueError(
        "likelihood must be infojax.likelihoods.bernoulli() or gaussian(scale) (the decoders "
        f"{DECODERS}); got {likelihood!r}.")


def reconstruction_nll(decoder_outputs: jax.Array, x: jax.Array, *,
                       likelihood: likelihoods.Likelihood) -> jax.Array:
  """``-log p(x|z)`` of each example, summed over its pixels, in nats.

  Args:
    decoder_outputs: ``(B, ...)`` logits (Bernoulli) or means (Gaussian).
    x: ``(B, ...)`` the data, the same shape; values in {0, 1} for the Bernoulli decoder (a
      concrete ``x`` is checked; under ``jit`` another value gives NaN).
    likelihood: `infojax.likelihoods.bernoulli()` or `infojax.likelihoods.gaussian(scale)`
      (e.g. ``VAE.likelihood``).

  Returns:
    ``(B,)`` the summed negative log-likelihood. Cost ``O(B D)``.
  """
  _check_likelihood(likelihood)
  if jnp.ndim(decoder_outputs) < 1:
    raise ValueError("reconstruction_nll: decoder_outputs need a leading example axis.")
  x = jnp.asarray(x)
  likelihood.validate_targets(tuple(decoder_outputs.shape), x)
  values = likelihood.nll(decoder_outputs, x)
  return jnp.sum(values.reshape(values.shape[0], -1), axis=1)


def decoder_mean(decoder_outputs: jax.Array, *, likelihood: likelihoods.Likelihood) -> jax.Array:
  """``E[x|z]``: ``sigmoid(logits)`` (Bernoulli) or the means themselves (Gaussian)."""
  _check_likelihood(likelihood)
  if likelihood.name == "bernoulli":
    return jax.nn.sigmoid(decoder_outputs)
  return decoder_outputs


def _check_non_negative(name: str, value) -> None:
  if jnp.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar; got shape {jnp.shape(value)}.")
  if is_concrete(value) and not (np.isfinite(float(value)) and float(value) >= 0):
    raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")


def _check_terms(nll, kl) -> None:
  if jnp.ndim(nll) != 1 or jnp.ndim(kl) != 2 or jnp.shape(kl)[0] != jnp.shape(nll)[0]:
    raise ValueError(f"nll must have shape (B,) and kl shape (B, K); got {jnp.shape(nll)} and "
                     f"{jnp.shape(kl)}.")


def beta_vae_loss(nll: jax.Array, kl: jax.Array, *, beta) -> jax.Array:
  """The beta-VAE loss of each example, ``nll + beta sum_k kl_k`` (Higgins et al. 2017).

  ``beta = 1`` gives the negative ELBO. Higgins et al. also quote a normalised
  ``beta_norm = beta M / N`` (``M`` latent coordinates, ``N`` input dimensions; science.md §9.2,
  unverified): the same ``beta`` weighs the KL more heavily, relative to the summed
  reconstruction, on smaller images.

  Args:
    nll: ``(B,)`` `reconstruction_nll`.
    kl: ``(B, K)`` `kl_per_dimension`.
    beta: a scalar ``>= 0`` (checked when concrete; a traced ``beta`` is not checked).

  Returns:
    ``(B,)`` the per-example loss; the caller reduces (e.g. the batch mean).
  """
  _check_terms(nll, kl)
  _check_non_negative("beta", beta)
  return nll + beta * jnp.sum(kl, axis=1)


def capacity_loss(nll: jax.Array, kl: jax.Array, *, gamma, capacity) -> jax.Array:
  """Burgess et al.'s capacity objective, ``mean_b nll_b + gamma |mean_b sum_k kl_bk - C|``.

  The constraint is on the **batch mean** of the KL, inside the absolute value, as in Burgess et
  al. (2018) and the reference implementations: ``C`` is a capacity of the channel, a bound on
  ``I(x; z) <= E_x KL(q(z|x) || p(z))``, not a number of nats that every example must carry (an
  ``|KL_b - C|`` per example would forbid images that need fewer nats). So the function reduces
  the batch and returns a scalar. Below ``C`` the gradient raises the KL, above it lowers it.

  Args:
    nll: ``(B,)`` `reconstruction_nll`.
    kl: ``(B, K)`` `kl_per_dimension`.
    gamma: the constraint's weight, a scalar ``>= 0`` (Burgess et al.: 1000 on dSprites).
    capacity: the target ``C >= 0`` in nats (e.g. `linear_capacity`). Both are checked when
      concrete.

  Returns:
    A scalar.
  """
  _check_terms(nll, kl)
  _check_non_negative("gamma", gamma)
  _check_non_negative("capacity", capacity)
  return jnp.mean(nll) + gamma * jnp.abs(jnp.mean(jnp.sum(kl, axis=1)) - capacity)


def linear_capacity(step, *, max_capacity: float, num_steps: int) -> jax.Array:
  """The annealed capacity ``C(step) = max_capacity * min(step / num_steps, 1)``, nats.

  Burgess et al. (2018) raise ``C`` from 0 to 25 nats over 100,000 iterations on dSprites.

  Args:
    step: the training step (an int, possibly traced); negative steps give 0.
    max_capacity: ``C_max >= 0`` in nats.
    num_steps: the steps of the linear ramp, a positive int.

  Returns:
    A float scalar.
  """
  _check_non_negative("max_capacity", max_capacity)
  if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
    raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}.")
  fraction = jnp.clip(jnp.asarray(step, jnp.float32) / num_steps, 0.0, 1.0)
  return max_capacity * fraction


def posterior_mean_activity(mean: jax.Array) -> jax.Array:
  """Burda et al.'s activity of each latent coordinate, ``Var_x E_q[z_k | x]``.

  Burda, Grosse & Salakhutdinov, "Importance weighted autoencoders" (ICLR 2016), §5.2: a unit is
  active when the variance over the data of its posterior mean exceeds ``10^-2`` (use
  `active_units` with ``threshold=0.01``).

  Args:
    mean: ``(B, K)`` posterior means over a sample of the data.

  Returns:
    ``(K,)`` the variances over the batch axis.
  """
  if jnp.ndim(mean) != 2:
    raise ValueError(f"mean must have shape (B, K); got {jnp.shape(mean)}.")
  return jnp.var(mean, axis=0)


def active_units(statistic: jax.Array, *, threshold: float = 0.01) -> jax.Array:
  """The active latent coordinates: those whose statistic exceeds ``threshold``.

  Args:
    statistic: ``(..., K)`` per coordinate: the batch mean of `kl_per_dimension` (nats; an unused
      coordinate has ``q(z_k|x) = p(z_k)`` and a KL of 0), or `posterior_mean_activity`
      (Burda et al. 2016, threshold 0.01).
    threshold: a scalar ``>= 0``.

  Returns:
    A boolean mask with the shape of ``statistic``; ``sum`` it for the number of active units.
  """
  _check_non_negative("threshold", threshold)
  return jnp.asarray(statistic) > threshold


def traversal_codes(code: jax.Array, offsets: jax.Array) -> jax.Array:
  """Codes for latent traversals: ``code + offsets[t] e_k`` for every coordinate ``k``.

  Args:
    code: ``(K,)`` a starting code (e.g. the posterior mean of one image).
    offsets: ``(T,)`` the displacements along each coordinate, in units of the prior's standard
      deviation (1), e.g. ``linspace(-3, 3, 7)``.

  Returns:
    ``(K, T, K)``: row ``k`` moves coordinate ``k`` only; decode ``reshape(K T, K)``.
  """
  code, offsets = jnp.asarray(code), jnp.asarray(offsets)
  if code.ndim != 1 or offsets.ndim != 1:
    raise ValueError(f"code must have shape (K,) and offsets shape (T,); got {code.shape} and "
                     f"{offsets.shape}.")
  directions = jnp.eye(code.shape[0], dtype=code.dtype)[:, None, :]
  return code[None, None, :] + directions * offsets.astype(code.dtype)[None, :, None]
