"""Disentanglement metrics: the beta-VAE and FactorVAE scores, the MIG and DCI.

A representation is disentangled when each ground-truth factor of variation of the data (for
dSprites: shape, scale, orientation, position x and y; science.md §9.4) is captured by one code
dimension and each code dimension by one factor. Four standard scores, each as specified by its
paper and computed as in the reference implementation of Locatello et al., "Challenging common
assumptions in the unsupervised learning of disentangled representations" (ICML 2019;
google-research/disentanglement_lib), whose settings are the defaults here:

* `beta_vae_metric` (Higgins et al., "beta-VAE: Learning basic visual concepts with a constrained
  variational framework", ICLR 2017; science.md §9.2): the accuracy of a linear classifier that
  predicts which factor two batches of observations share, from the mean absolute difference of
  their codes.
* `factor_vae_metric` (Kim & Mnih, "Disentangling by factorising", ICML 2018): the accuracy of a
  majority-vote classifier that predicts the factor held fixed in a batch from the code dimension
  of least normalised variance.
* `mig` (Chen, Li, Grosse & Duvenaud, "Isolating sources of disentanglement in variational
  autoencoders", NeurIPS 2018): the gap between the two largest mutual informations of a factor
  with a code dimension, normalised by the factor's entropy, averaged over the factors.
* `dci` (Eastwood & Williams, "A framework for the quantitative evaluation of disentangled
  representations", ICLR 2018): disentanglement, completeness and informativeness from the feature
  importances of one classifier per factor.

**Sampled codes.** The intervention scores take ``code_fn(key, factors) -> codes``: the caller
renders the observations of the given factors and encodes them, and drawing ``z ~ q(z|x)`` there
(rather than returning the mean of q) scores the codes the decoder actually sees
(disentanglement_lib calls these the "sampled" representations, as opposed to the "mean" ones).
`sample_codes` draws the ``(codes, factors)`` sample that `mig` and `dci` score in the same way.
``code_fn`` is called on a few large arrays (all factors of a metric are drawn first, then encoded
in chunks of ``chunk_size`` rows, every chunk of one shape, so a jitted ``code_fn`` compiles once);
each call gets its own key, split from the metric's ``key``.

**Not jit-able.** The metrics fit scikit-learn classifiers and count on the host (NumPy), so they
cannot run under ``jax.jit``/``vmap``; only ``code_fn`` (the caller's) and `sample_factors` can.
Information quantities are in nats.

**Factors of a single value** (size 1, or constant in a sample) carry no information and cannot be
intervened on: every metric skips them (the intervention scores never hold them fixed, `mig` gives
them a NaN gap outside its mean, `dci` a zero importance column outside its scores), and raises a
``ValueError`` when fewer than two factors vary.
"""

import functools
import math
from typing import Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from infojax import info
from infojax import parallel

ESTIMATORS = ("gbt", "random_forest")

# Rows of factors encoded per call of code_fn: 2**15 dSprites images (64 x 64 floats) are 512 MiB.
CHUNK_SIZE = 2 ** 15

# disentanglement_lib's settings (config/unsupervised_study_v1/metric_configs).
_NUM_TRAIN = 10_000
_NUM_EVAL = 5_000
_BATCH_SIZE = 64

# The classifiers' settings: scikit-learn's defaults, as disentanglement_lib uses them, except where
# noted in the functions' docstrings.
_ESTIMATOR_SETTINGS = {
    "gbt": dict(n_estimators=100, learning_rate=0.1, max_depth=3),
    "random_forest": dict(n_estimators=100, max_features=None, min_samples_leaf=5, n_jobs=1),
}


class InterventionScore(NamedTuple):
  """The score of an intervention-based metric (`beta_vae_metric`, `factor_vae_metric`).

  Attributes:
    train_accuracy: the classifier's accuracy on the points it was fitted to.
    eval_accuracy: its accuracy on independent points: the score.
    num_active_dims: the code dimensions the classifier used (all of them for the beta-VAE
      metric; those not pruned for the FactorVAE metric).
  """
  train_accuracy: float
  eval_accuracy: float
  num_active_dims: int


class MIGResult(NamedTuple):
  """The mutual information gap and what it is made of.

  Attributes:
    score: the MIG, the mean of ``gaps`` over the factors that vary.
    gaps: ``(F,)`` per factor ``(I_1 - I_2) / H(v_j)``, the largest two mutual informations of the
      factor with a code dimension; NaN for a constant factor.
    mutual_information: ``(K, F)`` ``I(z_k; v_j)`` of the discretised code dimension k and factor
      j, in nats.
    factor_entropy: ``(F,)`` the empirical entropy ``H(v_j)`` of each factor, in nats.
  """
  score: float
  gaps: np.ndarray
  mutual_information: np.ndarray
  factor_entropy: np.ndarray


class DCIResult(NamedTuple):
  """Disentanglement, completeness and informativeness (Eastwood & Williams 2018).

  Attributes:
    disentanglement: D, in [0, 1]: 1 when each code dimension matters for one factor only.
    completeness: C, in [0, 1]: 1 when each factor is captured by one code dimension only.
    informativeness_train: the classifiers' mean accuracy on the training codes.
    informativeness_test: their mean accuracy on the test codes.
    importance: ``(K, F)`` the importance of code dimension k for predicting factor j (each
      varying factor's column sums to 1 for the tree ensembles; zero for a constant factor).
  """
  disentanglement: float
  completeness: float
  informativeness_train: float
  informativeness_test: float
  importance: np.ndarray


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_count(name, value, minimum=1) -> int:
  if not _is_int(value):
    raise TypeError(f"{name} must be an integer; got {value!r}.")
  if value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}; got {value}.")
  return int(value)


def _check_key(name, key) -> None:
  if not parallel.is_prng_key(key):
    raise TypeError(f"{name} must be a typed PRNG key (jax.random.key); got {type(key).__name__}.")


def _check_factor_sizes(name, factor_sizes) -> np.ndarray:
  sizes = np.asarray(factor_sizes)
  if sizes.ndim != 1 or sizes.size == 0:
    raise ValueError(f"{name} must be a non-empty sequence of factor sizes; got shape "
                     f"{sizes.shape}.")
  if not np.issubdtype(sizes.dtype, np.integer):
    raise TypeError(f"{name} must hold integers; got dtype {sizes.dtype}.")
  if np.any(sizes < 1):
    raise ValueError(f"{name} must be >= 1 (values per factor); got {sizes.tolist()}.")
  return sizes.astype(np.int64)


def _varying_factors(name, sizes) -> np.ndarray:
  varying = np.flatnonzero(sizes > 1)
  if varying.size < 2:
    raise ValueError(f"{name} must have at least two factors with more than one value; got "
                     f"{sizes.tolist()}.")
  return varying


def _check_codes(name, codes) -> np.ndarray:
  """``codes`` as a float64 ``(n, K)`` NumPy array: 2-D, floating point, finite."""
  if not (hasattr(codes, "dtype") and hasattr(codes, "shape")):
    codes = np.asarray(codes)
  if not np.issubdtype(codes.dtype, np.floating):
    raise TypeError(f"{name} must be floating point; got dtype {codes.dtype}.")
  if codes.ndim != 2 or codes.shape[0] == 0 or codes.shape[1] == 0:
    raise ValueError(f"{name} must be a non-empty 2-D array (n, K); got shape {codes.shape}.")
  codes = np.asarray(codes, np.float64)
  if not np.all(np.isfinite(codes)):
    raise ValueError(f"{name} must be finite; it contains NaN or inf.")
  return codes


def _check_factors(name, factors, num) -> np.ndarray:
  """``factors`` as an int64 ``(num, F)`` NumPy array."""
  if not (hasattr(factors, "dtype") and hasattr(factors, "shape")):
    factors = np.asarray(factors)
  if not np.issubdtype(factors.dtype, np.integer):
    raise TypeError(f"{name} must hold integer factor values; got dtype {factors.dtype}.")
  if factors.ndim != 2 or factors.shape[0] != num or factors.shape[1] == 0:
    raise ValueError(f"{name} must be (n, F) with n = {num} rows, one per code; got shape "
                     f"{factors.shape}.")
  return np.asarray(factors, np.int64)


def _check_chunk_size(name, chunk_size) -> Optional[int]:
  return None if chunk_size is None else _check_count(name, chunk_size)


# ----------------------------------------------------------------------------------------------
# Sampling factors and codes.
# ----------------------------------------------------------------------------------------------


def sample_factors(key, factor_sizes: Sequence[int], num: int) -> jax.Array:
  """Factors drawn independently and uniformly: factor j uniform on ``{0, ..., factor_sizes[j]-1}``.

  The distribution of dSprites' factors (every combination once; science.md §9.4). Jit-able with
  ``factor_sizes`` and ``num`` static.

  Args:
    key: a PRNG key (``jax.random.key``).
    factor_sizes: the number of values of each of the F factors, integers >= 1.
    num: the number of samples.

  Returns:
    ``(num, F)`` int32.
  """
  _check_key("sample_factors: key", key)
  sizes = _check_factor_sizes("sample_factors: factor_sizes", factor_sizes)
  num = _check_count("sample_factors: num", num)
  return _uniform_factors(key, jnp.asarray(sizes, jnp.int32), num)


def _uniform_factors(key, sizes, num) -> jax.Array:
  """``(num, F)`` int32, column j uniform on ``[0, sizes[j])``; ``sizes`` ``(F,)`` may be traced."""
  shape = (num, sizes.shape[0])
  return jax.random.randint(key, shape, 0, jnp.broadcast_to(sizes, shape), dtype=jnp.int32)


def _encode(name, code_fn, key, factors, chunk_size) -> np.ndarray:
  """``code_fn`` applied to ``factors`` ``(n, F)`` in equal chunks, one key each: ``(n, K)``.

  The chunks all have ``ceil(n / ceil(n / chunk_size))`` rows (the last padded with repeats of the
  first row, whose codes are dropped), so a jitted ``code_fn`` compiles once.
  """
  factors = np.asarray(factors)
  num = factors.shape[0]
  num_calls = 1 if chunk_size is None else -(-num // chunk_size)
  rows = -(-num // num_calls)
  padding = np.broadcast_to(factors[:1], (num_calls * rows - num, factors.shape[1]))
  chunks = np.concatenate([factors, padding]).reshape(num_calls, rows, factors.shape[1])
  codes = []
  for call_key, chunk in zip(jax.random.split(key, num_calls), chunks):
    chunk_codes = _check_codes(f"{name}: code_fn's output", code_fn(call_key, jnp.asarray(chunk)))
    if chunk_codes.shape[0] != rows or (codes and chunk_codes.shape[1] != codes[0].shape[1]):
      raise ValueError(f"{name}: code_fn must return one code per row of factors, (n, K) with the "
                       f"same K on every call; got shape {chunk_codes.shape} for {rows} rows.")
    codes.append(chunk_codes)
  return np.concatenate(codes)[:num]


def sample_codes(code_fn: Callable, factor_sizes: Sequence[int], *, key, num: int,
                 chunk_size: Optional[int] = CHUNK_SIZE):
  """A sample of ``(codes, factors)`` for `mig` and `dci`: uniform factors and their codes.

  Args:
    code_fn: ``code_fn(key, factors) -> codes``, factors ``(m, F)`` int32 and codes ``(m, K)``
      float: renders the observations and encodes them (a sample ``z ~ q(z|x)``, or the mean).
    factor_sizes: the number of values of each factor.
    key: a PRNG key.
    num: the number of samples.
    chunk_size: the most rows per call of ``code_fn`` (None: one call).

  Returns:
    ``(codes, factors)``: float64 ``(num, K)`` and int64 ``(num, F)`` NumPy arrays.

  Cost: ``ceil(num / chunk_size)`` calls of ``code_fn``.
  """
  name = "sample_codes"
  _check_key(f"{name}: key", key)
  if not callable(code_fn):
    raise TypeError(f"{name}: code_fn must be callable; got {type(code_fn).__name__}.")
  chunk_size = _check_chunk_size(f"{name}: chunk_size", chunk_size)
  factor_key, code_key = jax.random.split(key)
  factors = sample_factors(factor_key, factor_sizes, num)
  return _encode(name, code_fn, code_key, factors, chunk_size), np.asarray(factors, np.int64)


def _intervention_labels(key, varying, num_varying, num_train, num_eval) -> jax.Array:
  """The factor held fixed for each training point, then for each evaluation point, ``(P,)``.

  In each part every varying factor is held equally often (to within one), in random order.
  ``varying`` ``(F,)`` lists the ``num_varying`` factors of more than one value first.
  """
  order_keys = jax.random.uniform(key, (num_train + num_eval,))

  def part(start, num):
    cycle = varying[jnp.arange(num) % num_varying]
    return cycle[jnp.argsort(order_keys[start:start + num])]

  return jnp.concatenate([part(0, num_train), part(num_train, num_eval)])


def _hold_fixed(factors, labels, values) -> jax.Array:
  """``factors`` ``(P, B, F)`` with column ``labels[p]`` of point p replaced by ``values``'s."""
  held = jnp.arange(factors.shape[-1])[None, None, :] == labels[:, None, None]
  return jnp.where(held, jnp.broadcast_to(values, factors.shape), factors)


# The factor sizes and the varying factors are traced (one compilation per F and sample sizes).
@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _beta_vae_factors(key, sizes, varying, num_varying, num_train, num_eval, batch_size):
  """The labels ``(P,)`` and the pairs' factors ``(2, P, B, F)`` flattened to ``(2 P B, F)``."""
  label_key, factor_key = jax.random.split(key)
  labels = _intervention_labels(label_key, varying, num_varying, num_train, num_eval)
  shape = (2, num_train + num_eval, batch_size, sizes.shape[0])
  pairs = _uniform_factors(factor_key, sizes, math.prod(shape[:3])).reshape(shape)
  second = _hold_fixed(pairs[1], labels, pairs[0])
  return labels, jnp.concatenate([pairs[0], second]).reshape(-1, shape[-1])


@functools.partial(jax.jit, static_argnums=(4, 5, 6, 7))
def _factor_vae_factors(key, sizes, varying, num_varying, num_train, num_eval, batch_size,
                        num_variance_estimate):
  """The labels ``(P,)``; the factors for the variances ``(V, F)``, then the batches'."""
  label_key, factor_key = jax.random.split(key)
  labels = _intervention_labels(label_key, varying, num_varying, num_train, num_eval)
  shape = (num_train + num_eval, batch_size, sizes.shape[0])
  factors = _uniform_factors(factor_key, sizes, num_variance_estimate + shape[0] * batch_size)
  batches = factors[num_variance_estimate:].reshape(shape)
  batches = _hold_fixed(batches, labels, batches[:, :1, :])
  return labels, jnp.concatenate([factors[:num_variance_estimate], batches.reshape(-1, shape[-1])])


def _check_intervention_arguments(name, code_fn, factor_sizes, key, num_train, num_eval,
                                  batch_size, chunk_size, min_batch_size):
  _check_key(f"{name}: key", key)
  if not callable(code_fn):
    raise TypeError(f"{name}: code_fn must be callable; got {type(code_fn).__name__}.")
  sizes = _check_factor_sizes(f"{name}: factor_sizes", factor_sizes)
  varying = _varying_factors(f"{name}: factor_sizes", sizes)
  num_train = _check_count(f"{name}: num_train", num_train, minimum=varying.size)
  num_eval = _check_count(f"{name}: num_eval", num_eval)
  batch_size = _check_count(f"{name}: batch_size", batch_size, minimum=min_batch_size)
  chunk_size = _check_chunk_size(f"{name}: chunk_size", chunk_size)
  # The samplers' traced arguments: sizes, the varying factors first, and how many vary.
  varying = np.concatenate([varying, np.zeros(sizes.size - varying.size, varying.dtype)])
  traced = (jnp.asarray(sizes, jnp.int32), jnp.asarray(varying, jnp.int32),
            jnp.int32(np.count_nonzero(sizes > 1)))
  return traced, num_train, num_eval, batch_size, chunk_size


# ----------------------------------------------------------------------------------------------
# The intervention metrics.
# ----------------------------------------------------------------------------------------------


def beta_vae_metric(code_fn: Callable, factor_sizes: Sequence[int], *, key,
                    num_train: int = _NUM_TRAIN, num_eval: int = _NUM_EVAL,
                    batch_size: int = _BATCH_SIZE, chunk_size: Optional[int] = CHUNK_SIZE,
                    max_iter: int = 1000) -> InterventionScore:
  """The beta-VAE disentanglement metric (Higgins et al., ICLR 2017; science.md §9.2).

  Each of the ``num_train + num_eval`` points is made by choosing a factor y, drawing
  ``batch_size`` pairs of factor vectors that agree on factor y and are independent elsewhere,
  encoding both members of every pair, and averaging ``|z_1 - z_2|`` over the pairs: a feature
  ``(K,)`` with label y. A linear classifier (``sklearn.linear_model.LogisticRegression``:
  multinomial, L2 penalty ``C = 1``, lbfgs, unstandardised features, as in disentanglement_lib,
  with ``max_iter`` raised from 100 so that it converges) is fitted to the training points; the
  score is its accuracy on the evaluation points. A disentangled code has ``|z_1 - z_2| ~ 0`` in the
  dimension of the shared factor.

  Estimator settings: disentanglement_lib's defaults (``batch_size = L = 64`` pairs per point,
  10,000 training and 5,000 evaluation points); a chance-level code scores ``1/F'`` (F' factors of
  more than one value). Two departures from disentanglement_lib: the shared factor runs through
  the varying factors in equal numbers (shuffled) rather than being drawn independently for each
  point, so that every class is present, and factors of size 1 are never the shared one.

  Args:
    code_fn: ``code_fn(key, factors) -> codes``: factors ``(m, F)`` int32 (factor j in
      ``[0, factor_sizes[j])``) to codes ``(m, K)`` float, sampled from the encoder.
    factor_sizes: the number of values of each of the F factors.
    key: a PRNG key (factors, labels and code_fn's keys are split from it).
    num_train, num_eval: the classifier's training and evaluation points.
    batch_size: the pairs averaged per point (L).
    chunk_size: the most factor rows per call of ``code_fn`` (None: one call).
    max_iter: the classifier's lbfgs iterations.

  Returns:
    `InterventionScore` (``num_active_dims = K``).

  Cost: ``2 batch_size (num_train + num_eval)`` codes, in ``ceil(that / chunk_size)`` calls of
  ``code_fn``; one logistic regression on ``(num_train, K)`` features.
  """
  name = "beta_vae_metric"
  traced, num_train, num_eval, batch_size, chunk_size = _check_intervention_arguments(
      name, code_fn, factor_sizes, key, num_train, num_eval, batch_size, chunk_size, 1)
  max_iter = _check_count(f"{name}: max_iter", max_iter)
  factor_key, code_key = jax.random.split(key)
  labels, factors = _beta_vae_factors(factor_key, *traced, num_train, num_eval, batch_size)
  labels = np.asarray(labels)
  codes = _encode(name, code_fn, code_key, factors, chunk_size)
  codes = codes.reshape(2, num_train + num_eval, batch_size, -1)
  features = np.mean(np.abs(codes[0] - codes[1]), axis=1)
  from sklearn import linear_model  # pylint: disable=import-outside-toplevel
  model = linear_model.LogisticRegression(max_iter=max_iter, random_state=0)
  model.fit(features[:num_train], labels[:num_train])
  return InterventionScore(
      train_accuracy=float(model.score(features[:num_train], labels[:num_train])),
      eval_accuracy=float(model.score(features[num_train:], labels[num_train:])),
      num_active_dims=int(codes.shape[-1]))


def factor_vae_metric(code_fn: Callable, factor_sizes: Sequence[int], *, key,
                      num_train: int = _NUM_TRAIN, num_eval: int = _NUM_EVAL,
                      batch_size: int = _BATCH_SIZE, num_variance_estimate: int = 10_000,
                      prune_threshold: float = 0.05,
                      chunk_size: Optional[int] = CHUNK_SIZE) -> InterventionScore:
  """The FactorVAE disentanglement metric (Kim & Mnih, "Disentangling by factorising", ICML 2018).

  Each code dimension is divided by its empirical standard deviation ``s_k`` over
  ``num_variance_estimate`` codes of uniform factors (``ddof = 1``), and dimensions with
  ``s_k < prune_threshold`` (or ``s_k = 0``) are pruned as collapsed. Each of the
  ``num_train + num_eval`` votes is made by choosing a factor y, drawing ``batch_size`` factor
  vectors that all share one random value of factor y, encoding them, and taking the active
  dimension of least variance of the normalised codes within the batch (``ddof = 1``): the vote
  (y, k). The majority-vote classifier maps each dimension k to the factor that won most of its
  training votes (ties, and dimensions without votes: the lowest factor index); the score is its
  accuracy on the evaluation votes. A code scoring 1 has one dimension per factor, and its
  argmin-variance dimension identifies the fixed factor.

  Estimator settings: disentanglement_lib's (``batch_size = 64``, 10,000 training and 5,000
  evaluation votes, 10,000 codes for the variances, ``prune_threshold = 0.05``). A chance-level
  code scores ``1/F'`` on evaluation (F' factors of more than one value); its training accuracy is
  higher (the votes are fitted). Differences from disentanglement_lib: votes are recorded at the
  index of the dimension among all K (disentanglement_lib records its index among the active
  dimensions, which mislabels the votes when some dimension is pruned); the held factor cycles
  through the varying factors in equal numbers (shuffled); size-1 factors are never held. With
  sampled codes, a collapsed dimension (``q(z_k|x)`` equal to the prior) is not pruned: its standard
  deviation is about 1, but so is its normalised variance within any batch, so it rarely wins a
  vote. With no active dimension the accuracies are 0.

  Args:
    code_fn: ``code_fn(key, factors) -> codes``, as for `beta_vae_metric`.
    factor_sizes: the number of values of each of the F factors.
    key: a PRNG key.
    num_train, num_eval: the training and evaluation votes.
    batch_size: the codes per vote (>= 2).
    num_variance_estimate: the codes for the standard deviations (>= 2).
    prune_threshold: the smallest standard deviation of an active (unpruned) dimension, >= 0.
    chunk_size: the most factor rows per call of ``code_fn`` (None: one call).

  Returns:
    `InterventionScore` (``num_active_dims``: the dimensions not pruned).

  Cost: ``num_variance_estimate + batch_size (num_train + num_eval)`` codes, in
  ``ceil(that / chunk_size)`` calls of ``code_fn``.
  """
  name = "factor_vae_metric"
  traced, num_train, num_eval, batch_size, chunk_size = _check_intervention_arguments(
      name, code_fn, factor_sizes, key, num_train, num_eval, batch_size, chunk_size, 2)
  num_variance_estimate = _check_count(f"{name}: num_variance_estimate", num_variance_estimate,
                                       minimum=2)
  if not (isinstance(prune_threshold, (int, float, np.integer, np.floating))
          and math.isfinite(prune_threshold) and prune_threshold >= 0):
    raise ValueError(f"{name}: prune_threshold must be a finite number >= 0; got "
                     f"{prune_threshold!r}.")
  factor_key, code_key = jax.random.split(key)
  labels, factors = _factor_vae_factors(factor_key, *traced, num_train, num_eval, batch_size,
                                        num_variance_estimate)
  labels = np.asarray(labels)
  codes = _encode(name, code_fn, code_key, factors, chunk_size)
  scale = np.std(codes[:num_variance_estimate], axis=0, ddof=1)
  active = np.flatnonzero((scale > 0) & (scale >= prune_threshold))
  if active.size == 0:
    return InterventionScore(train_accuracy=0.0, eval_accuracy=0.0, num_active_dims=0)
  normalised = codes[num_variance_estimate:, active].reshape(-1, batch_size, active.size)
  normalised = normalised / scale[active]
  chosen = active[np.argmin(np.var(normalised, axis=1, ddof=1), axis=1)]
  votes = np.zeros((np.size(factor_sizes), codes.shape[1]), np.int64)
  np.add.at(votes, (labels[:num_train], chosen[:num_train]), 1)
  classifier = np.argmax(votes, axis=0)
  predicted = classifier[chosen]
  return InterventionScore(
      train_accuracy=float(np.mean(predicted[:num_train] == labels[:num_train])),
      eval_accuracy=float(np.mean(predicted[num_train:] == labels[num_train:])),
      num_active_dims=int(active.size))


# ----------------------------------------------------------------------------------------------
# The mutual information gap.
# ----------------------------------------------------------------------------------------------


def _histogram_bins(codes, num_bins) -> np.ndarray:
  """``(n, K)`` bin indices in ``[0, num_bins)``: equal-width bins between each column's extremes.

  Bin b of dimension k is ``[e_b, e_{b+1})`` with ``e = linspace(min z_k, max z_k, num_bins + 1)``,
  the last bin closed (``numpy.histogram``'s bins, as disentanglement_lib's discretiser). A constant
  dimension falls in one bin.
  """
  edges = np.linspace(codes.min(axis=0), codes.max(axis=0), num_bins + 1)  # (num_bins + 1, K)
  return np.stack([np.searchsorted(edges[1:-1, k], codes[:, k], side="right")
                   for k in range(codes.shape[1])], axis=1)


def _relabel(factors):
  """Each factor's values as ``0..S_j-1`` (sorted), ``(n, F)``, and ``S`` ``(F,)``."""
  columns = [np.unique(column, return_inverse=True) for column in factors.T]
  labels = np.stack([inverse.reshape(-1) for _, inverse in columns], axis=1)
  return labels, np.array([values.size for values, _ in columns])


def _joint_counts(bins, num_bins, labels, num_values) -> np.ndarray:
  """``(F, K, num_bins, S)`` counts of (bin of z_k, value of v_j), ``S = max S_j`` (``bincount``).

  Factors with fewer values have zero columns, which change neither entropies nor informations.
  """
  num_codes = bins.shape[1]
  num_factors = labels.shape[1]
  size = int(num_values.max())
  cell = np.arange(num_factors)[None, :, None] * num_codes + np.arange(num_codes)[None, None, :]
  index = (cell * num_bins + bins[:, None, :]) * size + labels[:, :, None]  # (n, F, K)
  counts = np.bincount(index.reshape(-1), minlength=num_factors * num_codes * num_bins * size)
  return counts.reshape(num_factors, num_codes, num_bins, size)


def mig(codes, factors, *, num_bins: int = 20) -> MIGResult:
  """The mutual information gap (Chen, Li, Grosse & Duvenaud, NeurIPS 2018).

  ``MIG = (1/F') sum_j [I(z_{k_1}; v_j) - I(z_{k_2}; v_j)] / H(v_j)``, where ``k_1`` and ``k_2``
  are the code dimensions of largest and second-largest mutual information with factor ``v_j``,
  and the mean runs over the F' factors that vary. Estimator (disentanglement_lib's "discrete
  MIG"): each code dimension is discretised into ``num_bins`` equal-width bins between its minimum
  and maximum in this sample (`numpy.histogram`'s bins); ``I`` and ``H`` are the exact discrete
  (plug-in) quantities of the empirical joint distributions, computed with
  `infojax.info.mutual_information` and `infojax.info.entropy` (in jax's default float: float32
  unless ``jax_enable_x64``). Chen et al. compute ``I(z_k; v_j)`` from the encoder's density
  instead; on codes sampled from the encoder the histogram estimates the information of the
  discretised ``z_k``, below theirs by the discretisation (and above by the plug-in bias).
  The plug-in estimate is biased upwards by about ``(B_k - 1)(S_j - 1) / (2n)`` nats (occupied bins
  ``B_k``, values ``S_j``), so an independent code scores slightly above 0. Defaults: 20 bins (and
  10,000 codes) in disentanglement_lib.

  The result does not depend on the order of the examples: the bins and the joint counts are exact
  functions of the sample as a set.

  Args:
    codes: ``(n, K)`` float, ``K >= 2``, finite.
    factors: ``(n, F)`` integer factor values (any integers; each factor's distinct values are its
      outcomes). Constant factors get a NaN gap; at least one factor must vary.
    num_bins: bins per code dimension, >= 2.

  Returns:
    `MIGResult`.

  Cost: ``O(n F K)`` time and memory for the counts, ``O(F K num_bins S)`` for the tables.
  """
  codes = _check_codes("mig: codes", codes)
  if codes.shape[1] < 2:
    raise ValueError(f"mig: codes must have at least 2 dimensions (K) for a gap; got shape "
                     f"{codes.shape}.")
  factors = _check_factors("mig: factors", factors, codes.shape[0])
  num_bins = _check_count("mig: num_bins", num_bins, minimum=2)
  labels, num_values = _relabel(factors)
  if np.all(num_values == 1):
    raise ValueError("mig: factors must have at least one factor that varies; all are constant.")
  counts = _joint_counts(_histogram_bins(codes, num_bins), num_bins, labels, num_values)
  num = codes.shape[0]
  mutual_information = np.asarray(info.mutual_information(counts / num), np.float64).T  # (K, F)
  factor_entropy = np.asarray(info.entropy(np.sum(counts[:, 0], axis=1) / num), np.float64)
  top_two = -np.sort(-mutual_information, axis=0)[:2]
  varying = num_values > 1
  gaps = np.full(factors.shape[1], np.nan)
  gaps[varying] = (top_two[0, varying] - top_two[1, varying]) / factor_entropy[varying]
  return MIGResult(score=float(np.mean(gaps[varying])), gaps=gaps,
                   mutual_information=mutual_information, factor_entropy=factor_entropy)


# ----------------------------------------------------------------------------------------------
# DCI.
# ----------------------------------------------------------------------------------------------


def _weighted_specificity(importance) -> float:
  """``sum_r w_r (1 - H(P_r) / log C)`` over the rows r of an ``(R, C)`` importance matrix.

  ``P_r`` is row r normalised, ``w_r`` its share of the total importance (zero rows: weight 0).
  """
  totals = np.sum(importance, axis=1)
  rows = totals > 0
  shares = importance[rows] / totals[rows, None]
  entropy = np.asarray(info.entropy(shares), np.float64) / math.log(importance.shape[1])
  return float(np.sum(totals[rows] / np.sum(totals) * (1.0 - entropy)))


def disentanglement_completeness(importance):
  """D and C of an importance matrix (Eastwood & Williams, ICLR 2018, Sec. 2).

  With ``R`` the ``(K, F)`` importance of code dimension k for factor j:

  * ``D = sum_k rho_k (1 - H_F(P_k))``, ``P_kj = R_kj / sum_j R_kj``, ``H_F`` the entropy in base
    F (the number of factors), ``rho_k = sum_j R_kj / sum_kj R_kj``;
  * ``C = sum_j rho'_j (1 - H_K(P'_j))``, ``P'_jk = R_kj / sum_k R_kj``, base K, weighted by the
    factors' shares ``rho'_j`` of the importance (disentanglement_lib's weighting; equal weights
    for tree ensembles, whose columns sum to 1).

  Rows or columns of zero importance have zero weight; an all-zero matrix gives ``D = C = 0``.
  Entropies are `infojax.info.entropy` (jax's default float).

  Args:
    importance: ``(K, F)`` non-negative, finite, ``K >= 2`` and ``F >= 2``.

  Returns:
    ``(disentanglement, completeness)``, floats in [0, 1].
  """
  if not (hasattr(importance, "dtype") and hasattr(importance, "shape")):
    importance = np.asarray(importance)
  if not (np.issubdtype(importance.dtype, np.floating)
          or np.issubdtype(importance.dtype, np.integer)):
    raise TypeError(f"importance must be real; got dtype {importance.dtype}.")
  importance = np.asarray(importance, np.float64)
  if importance.ndim != 2 or min(importance.shape) < 2:
    raise ValueError(f"importance must be (K, F) with K >= 2 code dimensions and F >= 2 factors; "
                     f"got shape {importance.shape}.")
  if not np.all(np.isfinite(importance) & (importance >= 0)):
    raise ValueError("importance must be finite and non-negative.")
  if not np.any(importance > 0):
    return 0.0, 0.0
  return _weighted_specificity(importance), _weighted_specificity(importance.T)


def _classifier(estimator, options, seed):
  from sklearn import ensemble  # pylint: disable=import-outside-toplevel
  settings = {**_ESTIMATOR_SETTINGS[estimator], "random_state": seed, **options}
  if estimator == "gbt":
    return ensemble.GradientBoostingClassifier(**settings)
  return ensemble.RandomForestClassifier(**settings)


def dci(codes_train, factors_train, codes_test, factors_test, *, estimator: str = "gbt",
        estimator_options: Optional[Mapping] = None, seed: int = 0) -> DCIResult:
  """Disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018).

  One classifier per factor predicts the factor's value from the code; the impurity-based feature
  importances of the fitted ensemble (``feature_importances_``, non-negative, summing to 1) form
  column j of the importance matrix ``R`` ``(K, F)``, from which `disentanglement_completeness`
  gives D and C; informativeness is the classifiers' mean accuracy on the training and the test
  codes. Estimators (scikit-learn, with ``random_state = seed``; ``estimator_options`` overrides
  any setting):

  * ``"gbt"``: ``GradientBoostingClassifier`` with scikit-learn's defaults (100 stages of depth-3
    regression trees, learning rate 0.1, all features per split), disentanglement_lib's
    estimator. Costs ``100 S_j`` trees for a factor of ``S_j > 2`` values (one per class and
    stage): for many-valued factors pass fewer ``n_estimators``, or use
  * ``"random_forest"``: ``RandomForestClassifier`` of 100 trees with all features considered at
    every split (``max_features=None``; the default ``sqrt(K)`` credits dimensions that won only
    because the informative one was not a candidate) and ``min_samples_leaf=5`` (so that the
    leaves do not fit noise in uninformative dimensions). Cheaper for many-valued factors.

  Eastwood & Williams use regressors (Lasso, random forests) on continuous factors and report
  the prediction error; disentanglement_lib, followed here, classifies the discrete factors and
  reports accuracy. Defaults there: 10,000 training and 5,000 test codes.

  Constant training factors are skipped (zero importance column, left out of D, C and the
  informativeness). The training examples are put in a canonical (lexicographic) order before
  fitting, so the result does not depend on their order, bit for bit.

  Args:
    codes_train: ``(n, K)`` float, finite, ``K >= 2``.
    factors_train: ``(n, F)`` integer factor values; at least two factors must vary.
    codes_test: ``(m, K)`` float, finite.
    factors_test: ``(m, F)`` integer.
    estimator: ``"gbt"`` or ``"random_forest"``.
    estimator_options: keyword arguments for the scikit-learn estimator.
    seed: the estimators' ``random_state``.

  Returns:
    `DCIResult`.

  Cost: F ensemble fits on ``(n, K)``; see ``estimator``.
  """
  if estimator not in ESTIMATORS:
    raise ValueError(f"dci: estimator must be one of {ESTIMATORS}; got {estimator!r}.")
  options = {} if estimator_options is None else estimator_options
  if not isinstance(options, Mapping):
    raise TypeError(f"dci: estimator_options must be a mapping of keyword arguments; got "
                    f"{type(options).__name__}.")
  if not _is_int(seed):
    raise TypeError(f"dci: seed must be an integer; got {seed!r}.")
  codes_train = _check_codes("dci: codes_train", codes_train)
  if codes_train.shape[1] < 2:
    raise ValueError(f"dci: codes_train must have at least 2 dimensions (K); got shape "
                     f"{codes_train.shape}.")
  factors_train = _check_factors("dci: factors_train", factors_train, codes_train.shape[0])
  codes_test = _check_codes("dci: codes_test", codes_test)
  if codes_test.shape[1] != codes_train.shape[1]:
    raise ValueError(f"dci: codes_test must have the K = {codes_train.shape[1]} dimensions of "
                     f"codes_train; got shape {codes_test.shape}.")
  factors_test = _check_factors("dci: factors_test", factors_test, codes_test.shape[0])
  if factors_test.shape[1] != factors_train.shape[1]:
    raise ValueError(f"dci: factors_test must have the F = {factors_train.shape[1]} factors of "
                     f"factors_train; got shape {factors_test.shape}.")
  varying = np.flatnonzero(np.ptp(factors_train, axis=0) > 0)
  if varying.size < 2:
    raise ValueError(f"dci: factors_train must have at least two factors that vary; "
                     f"{varying.size} of {factors_train.shape[1]} do.")
  codes_train = codes_train + 0.0  # -0.0 -> +0.0, so that equal values are equal bit for bit
  order = np.lexsort(np.concatenate([codes_train, factors_train], axis=1).T[::-1])
  codes_train, factors_train = codes_train[order], factors_train[order]
  importance = np.zeros((codes_train.shape[1], factors_train.shape[1]))
  accuracy_train, accuracy_test = [], []
  for j in varying:
    model = _classifier(estimator, options, int(seed)).fit(codes_train, factors_train[:, j])
    importance[:, j] = np.abs(model.feature_importances_)
    accuracy_train.append(np.mean(model.predict(codes_train) == factors_train[:, j]))
    accuracy_test.append(np.mean(model.predict(codes_test) == factors_test[:, j]))
  disentanglement, completeness = disentanglement_completeness(importance[:, varying])
  return DCIResult(disentanglement=disentanglement, completeness=completeness,
                   informativeness_train=float(np.mean(accuracy_train)),
                   informativeness_test=float(np.mean(accuracy_test)), importance=importance)
