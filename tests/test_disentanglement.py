"""Tests of infojax.activations.disentanglement on synthetic codes whose answer is known.

The factors have sizes (3, 6, 5, 8). The codes are:

* the identity: the factors themselves, permuted and scaled, plus a little Gaussian noise (the code
  sampled from an encoder whose posterior is narrow): every metric scores about 1;
* a rotation of the standardised factors: the same information, spread over the dimensions, which
  every metric scores lower;
* noise independent of the factors: MIG and DCI's D are about 0, the intervention metrics are at
  chance, 1/4.

The intervention metrics (beta-VAE, FactorVAE) use small samples (200 + 200 points) with L = 8 pairs
or codes per point: with the default L = 64 both still score 1.0 on the random rotation below
(each of its columns has a distinct dominant row, and averages over 64 pairs separate the four
classes), so only a small L or a maximally mixing rotation lowers them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax.activations import disentanglement

SIZES = (3, 6, 5, 8)
NUM_FACTORS = len(SIZES)
PERMUTATION = np.array([2, 0, 3, 1])
SCALE = np.array([0.5, 2.0, 1.0, 3.0], np.float32)
NOISE = 0.05  # the identity code's noise, in units of the spacing of the factor's values
FACTOR_MEAN = (np.array(SIZES) - 1) / 2.0
FACTOR_STD = np.sqrt((np.array(SIZES) ** 2 - 1) / 12.0)  # a discrete uniform's
# A random rotation (Haar, seed 3): its largest entry is 0.895, and each column's dominant row
# differs.
ROTATION = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))[0]
# A maximally mixing rotation: every entry is +-1/2.
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
INTERVENTION = dict(num_train=200, num_eval=200, batch_size=8)


def _code_parameters(matrix, shift=0.0, factor_noise=0.0, code_noise=0.0):
  """``z = (v + factor_noise * e - shift) @ matrix + code_noise * e'``, e and e' standard normal."""
  matrix = np.asarray(matrix, np.float64)
  return (matrix, np.broadcast_to(shift, (matrix.shape[0],)),
          np.broadcast_to(factor_noise, (matrix.shape[0],)), np.float64(code_noise))


# The factors permuted and scaled (code dimension k is factor PERMUTATION[k] times its scale).
IDENTITY_MATRIX = np.zeros((4, 4))
IDENTITY_MATRIX[PERMUTATION, range(4)] = SCALE[PERMUTATION]
CODES = {
    "identity": _code_parameters(IDENTITY_MATRIX, factor_noise=NOISE),
    # The standardised factors, rotated.
    "rotation": _code_parameters(ROTATION / FACTOR_STD[:, None], FACTOR_MEAN, NOISE * FACTOR_STD),
    "mixing": _code_parameters(HADAMARD / FACTOR_STD[:, None], FACTOR_MEAN, NOISE * FACTOR_STD),
    "noise": _code_parameters(np.zeros((4, 4)), code_noise=1.0),
}


@jax.jit
def _linear_code(key, factors, matrix, shift, factor_noise, code_noise):
  factor_key, code_key = jax.random.split(key)
  values = factors.astype(jnp.float32)
  values = values + factor_noise[None] * jax.random.normal(factor_key, values.shape) - shift[None]
  return values @ matrix + code_noise * jax.random.normal(code_key,
                                                          (values.shape[0], matrix.shape[1]))


def code_fn(kind):
  """A ``code_fn(key, factors)`` sampling the codes of ``kind`` (one compilation for all)."""
  parameters = [np.asarray(x, np.float32) for x in CODES[kind]]
  return lambda key, factors: _linear_code(key, factors, *parameters)


def _numpy_sample(num, seed, kind):
  """``(codes, factors)`` in float64 NumPy, for MIG and DCI."""
  matrix, shift, factor_noise, code_noise = CODES[kind]
  rng = np.random.default_rng(seed)
  factors = np.stack([rng.integers(0, size, num) for size in SIZES], axis=1)
  values = factors + factor_noise * rng.normal(size=factors.shape) - shift
  return values @ matrix + code_noise * rng.normal(size=(num, matrix.shape[1])), factors


# ----------------------------------------------------------------------------------------------
# Sampling.
# ----------------------------------------------------------------------------------------------


def test_rotations_are_orthogonal_and_mix():
  for rotation in (ROTATION, HADAMARD):
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(4), atol=1e-12)
  assert np.abs(ROTATION).max() < 0.9
  assert len(set(np.argmax(np.abs(ROTATION), axis=0))) == 4


def test_sample_factors_is_uniform_in_range_and_jits():
  key = jax.random.key(0)
  factors = disentanglement.sample_factors(key, SIZES, 4000)
  assert factors.shape == (4000, NUM_FACTORS) and factors.dtype == jnp.int32
  values = np.asarray(factors)
  for j, size in enumerate(SIZES):
    counts = np.bincount(values[:, j], minlength=size)
    assert counts.size == size  # nothing at or above size, nothing negative (bincount would raise)
    # Each value's count is Binomial(4000, 1/size): within 5 standard deviations of its mean.
    mean = 4000 / size
    assert np.all(np.abs(counts - mean) < 5 * math.sqrt(mean))
  jitted = jax.jit(disentanglement.sample_factors, static_argnums=(1, 2))(key, SIZES, 4000)
  np.testing.assert_array_equal(np.asarray(jitted), values)


def test_sample_codes_chunks_keep_codes_with_their_factors():
  calls = []

  def exact_code(key, factors):
    calls.append(factors.shape)
    return np.asarray(factors)[:, ::-1] * 2.0

  codes, factors = disentanglement.sample_codes(exact_code, SIZES, key=jax.random.key(1),
                                                num=1001, chunk_size=300)
  assert calls == [(251, NUM_FACTORS)] * 4  # 4 calls of one shape (3 rows of padding)
  assert codes.shape == (1001, NUM_FACTORS) and factors.shape == (1001, NUM_FACTORS)
  np.testing.assert_array_equal(codes, factors[:, ::-1] * 2.0)
  calls.clear()
  disentanglement.sample_codes(exact_code, SIZES, key=jax.random.key(1), num=1001, chunk_size=None)
  assert calls == [(1001, NUM_FACTORS)]


# ----------------------------------------------------------------------------------------------
# The intervention metrics.
# ----------------------------------------------------------------------------------------------


METRICS = {
    "beta_vae": lambda code_fn, sizes=SIZES, **kwargs: disentanglement.beta_vae_metric(
        code_fn, sizes, key=jax.random.key(0), **{**INTERVENTION, **kwargs}),
    "factor_vae": lambda code_fn, sizes=SIZES, **kwargs: disentanglement.factor_vae_metric(
        code_fn, sizes, key=jax.random.key(0), num_variance_estimate=1000,
        **{**INTERVENTION, **kwargs}),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_intervention_metric_identity_rotation_noise(metric):
  identity, rotation, mixing, noise = (
      METRICS[metric](code_fn(kind)) for kind in ("identity", "rotation", "mixing", "noise"))
  assert identity.eval_accuracy > 0.95 and identity.train_accuracy > 0.95
  assert rotation.eval_accuracy < identity.eval_accuracy - 0.05
  assert mixing.eval_accuracy < 0.5
  chance = 1.0 / NUM_FACTORS  # the standard error of 200 evaluation points is 0.03
  assert abs(noise.eval_accuracy - chance) < 0.1
  assert identity.num_active_dims == NUM_FACTORS


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_intervention_metric_holds_each_varying_factor_equally_often(metric):
  sizes = (3, 6, 1, 8)  # factor 2 has one value and is never the one held fixed
  seen = []

  def exact_code(key, factors):
    seen.append(np.asarray(factors))
    return np.asarray(factors, np.float64)

  score = METRICS[metric](exact_code, sizes, chunk_size=None)
  assert score.eval_accuracy > 0.95 and len(seen) == 1
  num_points, batch_size = 400, INTERVENTION["batch_size"]
  if metric == "beta_vae":  # batch_size pairs per point
    first, second = seen[0].reshape(2, num_points, batch_size, 4)
    held = np.all(first == second, axis=1)
  else:  # 1000 codes for the variances, then batch_size codes per point
    batches = seen[0][1000:].reshape(num_points, batch_size, 4)
    held = np.all(batches == batches[:, :1], axis=1)
  varying = [0, 1, 3]
  assert np.all(held[:, varying].sum(axis=1) == 1)  # one varying factor held per point
  for part in (held[:200], held[200:]):  # the training points, then the evaluation points
    assert sorted(part[:, varying].sum(axis=0)) == [66, 67, 67]
  with pytest.raises(ValueError, match="factor_sizes"):
    METRICS[metric](exact_code, (3, 1, 1, 1))


def test_factor_vae_prunes_collapsed_dimensions():
  # Dimensions 0 and 5 have standard deviation 0.01 < 0.05, the others are the identity code's.
  matrix = np.concatenate([np.zeros((4, 1)), IDENTITY_MATRIX, np.zeros((4, 1))], axis=1)
  parameters = [np.asarray(x, np.float32)
                for x in _code_parameters(matrix, factor_noise=NOISE, code_noise=0.01)]

  def code_with_collapsed_dims(key, factors):
    return _linear_code(key, factors, *parameters)

  result = METRICS["factor_vae"](code_with_collapsed_dims)
  assert result.num_active_dims == NUM_FACTORS
  assert result.eval_accuracy > 0.95
  none_active = METRICS["factor_vae"](code_with_collapsed_dims, prune_threshold=100.0)
  assert none_active == (0.0, 0.0, 0)


# ----------------------------------------------------------------------------------------------
# MIG.
# ----------------------------------------------------------------------------------------------


def test_mig_identity_rotation_noise():
  identity = disentanglement.mig(*_numpy_sample(1000, 0, "identity"))
  rotation = disentanglement.mig(*_numpy_sample(1000, 0, "rotation"))
  noise = disentanglement.mig(*_numpy_sample(1000, 0, "noise"))
  assert identity.score > 0.9 and np.all(identity.gaps > 0.9)
  # The identity's code dimension k = PERMUTATION^-1(j) holds all of factor j: I = H(v_j).
  np.testing.assert_allclose(identity.mutual_information[np.argsort(PERMUTATION), range(4)],
                             identity.factor_entropy, rtol=1e-5)
  assert rotation.score < identity.score - 0.3
  assert 0 <= noise.score < 0.05
  assert identity.gaps.shape == (4,) and identity.mutual_information.shape == (4, 4)


def test_mig_does_not_depend_on_the_order_of_the_data():
  codes, factors = _numpy_sample(500, 1, "rotation")
  order = np.random.default_rng(2).permutation(500)
  result = disentanglement.mig(codes, factors)
  permuted = disentanglement.mig(codes[order], factors[order])
  assert result.score == permuted.score
  for field in ("gaps", "mutual_information", "factor_entropy"):
    np.testing.assert_array_equal(getattr(result, field), getattr(permuted, field))


def _reference_mig(codes, factors, num_bins):
  """MIG by explicit loops, float64: bins, counts, entropies and informations one by one."""
  num, num_codes = codes.shape
  num_factors = factors.shape[1]
  bins = np.zeros((num, num_codes), np.int64)
  for k in range(num_codes):
    edges = np.histogram(codes[:, k], num_bins)[1]
    bins[:, k] = np.digitize(codes[:, k], edges[:-1]) - 1
  information = np.zeros((num_codes, num_factors))
  entropy = np.zeros(num_factors)
  for j in range(num_factors):
    factor_counts = {}
    for i in range(num):
      factor_counts[factors[i, j]] = factor_counts.get(factors[i, j], 0) + 1
    entropy[j] = -sum(c / num * math.log(c / num) for c in factor_counts.values())
    for k in range(num_codes):
      joint, bin_counts = {}, {}
      for i in range(num):
        joint[bins[i, k], factors[i, j]] = joint.get((bins[i, k], factors[i, j]), 0) + 1
        bin_counts[bins[i, k]] = bin_counts.get(bins[i, k], 0) + 1
      information[k, j] = sum(
          c / num * math.log(c * num / (bin_counts[b] * factor_counts[v]))
          for (b, v), c in joint.items())
  gaps = []
  for j in range(num_factors):
    ranked = sorted(information[:, j], reverse=True)
    gaps.append((ranked[0] - ranked[1]) / entropy[j])
  return sum(gaps) / num_factors, np.array(gaps), information, entropy


@pytest.mark.parametrize("kind", ["rotation", "noise"])
def test_mig_matches_brute_force_float64(x64, kind):
  codes, factors = _numpy_sample(300, 3, kind)
  score, gaps, information, entropy = _reference_mig(codes, factors, num_bins=7)
  result = disentanglement.mig(codes, factors, num_bins=7)
  assert result.mutual_information.dtype == np.float64
  np.testing.assert_allclose(result.mutual_information, information, rtol=0, atol=1e-12)
  np.testing.assert_allclose(result.factor_entropy, entropy, rtol=0, atol=1e-12)
  np.testing.assert_allclose(result.gaps, gaps, rtol=0, atol=1e-12)
  assert abs(result.score - score) < 1e-12


def test_mig_skips_a_constant_factor(x64):
  codes, factors = _numpy_sample(300, 4, "rotation")
  with_constant = np.concatenate([factors[:, :2], np.full((300, 1), 7), factors[:, 2:]], axis=1)
  result = disentanglement.mig(codes, with_constant)
  reference = disentanglement.mig(codes, factors)
  assert np.isnan(result.gaps[2]) and result.factor_entropy[2] == 0
  np.testing.assert_allclose(np.delete(result.gaps, 2), reference.gaps, rtol=0, atol=1e-12)
  assert abs(result.score - reference.score) < 1e-12
  with pytest.raises(ValueError, match="factors"):
    disentanglement.mig(codes, np.zeros((300, 2), np.int32))


# ----------------------------------------------------------------------------------------------
# DCI.
# ----------------------------------------------------------------------------------------------

# Fewer trees than the defaults (100), to keep the tests fast.
FAST_GBT = dict(estimator="gbt", estimator_options=dict(n_estimators=20))
FAST_FOREST = dict(estimator="random_forest", estimator_options=dict(n_estimators=25))


def _dci(kind, num_train=300, seed=0, **kwargs):
  codes, factors = _numpy_sample(num_train, seed, kind)
  codes_test, factors_test = _numpy_sample(300, seed + 100, kind)
  return disentanglement.dci(codes, factors, codes_test, factors_test, **kwargs)


def test_dci_identity_rotation_noise():
  identity = _dci("identity", **FAST_GBT)
  rotation = _dci("rotation", **FAST_GBT)
  noise = _dci("noise", **FAST_GBT)
  assert identity.disentanglement > 0.9 and identity.completeness > 0.9
  assert identity.informativeness_test > 0.9
  # The identity's importance sits on the permuted diagonal.
  assert np.all(np.argmax(identity.importance, axis=0) == np.argsort(PERMUTATION))
  assert rotation.disentanglement < identity.disentanglement - 0.3
  assert rotation.completeness < identity.completeness - 0.3
  assert noise.disentanglement < 0.1 and noise.completeness < 0.1
  chance = np.mean([1.0 / size for size in SIZES])
  assert noise.informativeness_test < chance + 0.1
  np.testing.assert_allclose(noise.importance.sum(axis=0), 1.0, rtol=1e-12)


def test_dci_random_forest_identity_and_rotation():
  identity = _dci("identity", **FAST_FOREST)
  rotation = _dci("rotation", **FAST_FOREST)
  assert identity.disentanglement > 0.9 and identity.completeness > 0.9
  assert rotation.disentanglement < identity.disentanglement - 0.3


@pytest.mark.parametrize("options", [FAST_GBT, FAST_FOREST],
                         ids=["gbt", "random_forest"])
def test_dci_does_not_depend_on_the_order_of_the_data(options):
  codes, factors = _numpy_sample(300, 5, "rotation")
  codes_test, factors_test = _numpy_sample(200, 6, "rotation")
  train_order = np.random.default_rng(7).permutation(300)
  test_order = np.random.default_rng(8).permutation(200)
  result = disentanglement.dci(codes, factors, codes_test, factors_test, **options)
  permuted = disentanglement.dci(codes[train_order], factors[train_order], codes_test[test_order],
                                 factors_test[test_order], **options)
  for field in ("disentanglement", "completeness", "informativeness_train",
                "informativeness_test"):
    assert getattr(result, field) == getattr(permuted, field)
  np.testing.assert_array_equal(result.importance, permuted.importance)


def test_dci_skips_a_constant_factor():
  codes, factors = _numpy_sample(300, 9, "rotation")
  codes_test, factors_test = _numpy_sample(200, 10, "rotation")

  def with_constant(f):
    return np.concatenate([f[:, :1], np.zeros((f.shape[0], 1), np.int64), f[:, 1:]], axis=1)

  result = disentanglement.dci(codes, with_constant(factors), codes_test,
                               with_constant(factors_test), **FAST_GBT)
  reference = disentanglement.dci(codes, factors, codes_test, factors_test, **FAST_GBT)
  np.testing.assert_array_equal(result.importance[:, 1], 0.0)
  np.testing.assert_array_equal(np.delete(result.importance, 1, axis=1), reference.importance)
  assert result[:4] == reference[:4]


def test_disentanglement_completeness_closed_forms(x64):
  d_c = disentanglement.disentanglement_completeness
  assert d_c(np.eye(4)) == (1.0, 1.0)
  assert d_c(np.eye(4)[PERMUTATION] * SCALE[:, None]) == (1.0, 1.0)
  d, c = d_c(np.ones((5, 3)))
  assert abs(d) < 1e-12 and abs(c) < 1e-12
  # Code 0 serves factor 0 only (D_0 = 1), code 1 both equally (D_1 = 0), weights 1/3 and 2/3;
  # factor 0 is split over both codes (C_0 = 0), factor 1 sits in code 1 (C_1 = 1), weights 2/3
  # and 1/3.
  d, c = d_c(np.array([[1.0, 0.0], [1.0, 1.0]]))
  assert abs(d - 1 / 3) < 1e-12 and abs(c - 1 / 3) < 1e-12
  # Entropies in base F for D, base K for C: each factor split over 2 of K = 3 codes.
  d, c = d_c(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
  assert abs(d - 0.5) < 1e-12 and abs(c - (1 - math.log(2) / math.log(3))) < 1e-12
  # A code of zero importance has zero weight.
  d, c = d_c(np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
  assert abs(d - 1.0) < 1e-12 and abs(c - 1.0) < 1e-12
  assert d_c(np.zeros((3, 2))) == (0.0, 0.0)


# ----------------------------------------------------------------------------------------------
# Bad inputs.
# ----------------------------------------------------------------------------------------------

_CODES, _FACTORS = _numpy_sample(50, 11, "noise")
_KEY = jax.random.key(0)

BAD_INPUTS = [
    (lambda: disentanglement.sample_factors(0, SIZES, 10), TypeError, "key"),
    (lambda: disentanglement.sample_factors(_KEY, (3, 0), 10), ValueError, "factor_sizes"),
    (lambda: disentanglement.sample_factors(_KEY, (3.0, 2.0), 10), TypeError, "factor_sizes"),
    (lambda: disentanglement.sample_factors(_KEY, (), 10), ValueError, "factor_sizes"),
    (lambda: disentanglement.sample_factors(_KEY, SIZES, 0), ValueError, "num"),
    (lambda: disentanglement.sample_factors(_KEY, SIZES, 2.5), TypeError, "num"),
    (lambda: disentanglement.beta_vae_metric(code_fn("identity"), SIZES, key=_KEY, num_train=0),
     ValueError, "num_train"),
    (lambda: disentanglement.beta_vae_metric(code_fn("identity"), SIZES, key=_KEY, num_eval=-1),
     ValueError, "num_eval"),
    (lambda: disentanglement.beta_vae_metric(code_fn("identity"), SIZES, key=_KEY, batch_size=0),
     ValueError, "batch_size"),
    (lambda: disentanglement.beta_vae_metric("code", SIZES, key=_KEY), TypeError, "code_fn"),
    (lambda: disentanglement.beta_vae_metric(code_fn("identity"), SIZES, key=_KEY, chunk_size=0),
     ValueError, "chunk_size"),
    (lambda: METRICS["beta_vae"](lambda key, f: np.full((f.shape[0], 2), np.nan)), ValueError,
     "code_fn"),
    (lambda: METRICS["beta_vae"](lambda key, f: np.zeros((f.shape[0] - 1, 2))), ValueError,
     "code_fn"),
    (lambda: METRICS["factor_vae"](lambda key, f: np.zeros((f.shape[0], 2, 1))), ValueError,
     "code_fn"),
    (lambda: METRICS["beta_vae"](lambda key, f: f), TypeError, "code_fn"),
    (lambda: disentanglement.factor_vae_metric(code_fn("identity"), SIZES, key=_KEY, batch_size=1),
     ValueError, "batch_size"),
    (lambda: disentanglement.factor_vae_metric(code_fn("identity"), SIZES, key=_KEY,
                                               num_variance_estimate=1),
     ValueError, "num_variance_estimate"),
    (lambda: disentanglement.factor_vae_metric(code_fn("identity"), SIZES, key=_KEY,
                                               prune_threshold=-1.0),
     ValueError, "prune_threshold"),
    (lambda: disentanglement.mig(_CODES[:, 0], _FACTORS), ValueError, "codes"),
    (lambda: disentanglement.mig(_CODES[:, :1], _FACTORS), ValueError, "codes"),
    (lambda: disentanglement.mig(np.where(_CODES > 1, np.inf, _CODES), _FACTORS), ValueError,
     "codes"),
    (lambda: disentanglement.mig(_CODES.astype(np.int64), _FACTORS), TypeError, "codes"),
    (lambda: disentanglement.mig(_CODES, _FACTORS.astype(np.float32)), TypeError, "factors"),
    (lambda: disentanglement.mig(_CODES, _FACTORS[:-1]), ValueError, "factors"),
    (lambda: disentanglement.mig(_CODES, _FACTORS, num_bins=1), ValueError, "num_bins"),
    (lambda: disentanglement.dci(_CODES, _FACTORS, _CODES, _FACTORS, estimator="lasso"),
     ValueError, "estimator"),
    (lambda: disentanglement.dci(_CODES, _FACTORS, _CODES[:, :3], _FACTORS), ValueError,
     "codes_test"),
    (lambda: disentanglement.dci(_CODES, _FACTORS, _CODES, _FACTORS[:, :3]), ValueError,
     "factors_test"),
    (lambda: disentanglement.dci(_CODES, _FACTORS[:10], _CODES, _FACTORS), ValueError,
     "factors_train"),
    (lambda: disentanglement.dci(_CODES, _FACTORS * 0, _CODES, _FACTORS), ValueError,
     "factors_train"),
    (lambda: disentanglement.dci(_CODES, _FACTORS, _CODES, _FACTORS, estimator_options=[1]),
     TypeError, "estimator_options"),
    (lambda: disentanglement.disentanglement_completeness(-np.eye(3)), ValueError, "importance"),
    (lambda: disentanglement.disentanglement_completeness(np.ones((1, 3))), ValueError,
     "importance"),
]


@pytest.mark.parametrize("call, error, name", BAD_INPUTS)
def test_bad_inputs_raise_naming_the_argument(call, error, name):
  with pytest.raises(error, match=name):
    call()
