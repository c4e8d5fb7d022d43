"""Mutual information between a representation and a nuisance, ``I(z; n)``, by three estimators.

A representation z of the data is invariant to a nuisance n (a factor of the data irrelevant to the
task: position, illumination, the identity of the example) when ``I(z; n) = 0``, and minimal
sufficient representations are maximally invariant (Achille & Soatto, "Emergence of invariance and
disentanglement in deep representations", JMLR 19(50), 2018; science.md §4). This module measures
``I(z; n)`` from N paired samples ``(z_i, n_i)``, for a discrete nuisance (integer labels) or a
continuous one, with one of three estimators selected by a validated string:

* ``"gaussian"``: the mutual information of Gaussian approximations (sample covariances), in
  ``jax.numpy``; jit-able and vmap-able. Exact for jointly Gaussian ``(z, n)``, and blind to
  dependence that is not linear (continuous n) or not in the first two moments (discrete n).
* ``"binned"``: the plug-in (optionally Miller-Madow corrected) information of z discretised into
  equal-width bins per coordinate, as in Shwartz-Ziv & Tishby, "Opening the black box of deep
  neural networks via information", arXiv:1703.00810 (2017). NumPy, on the host.
* ``"knn"``: k-nearest-neighbour estimators: Kraskov, Stoegbauer & Grassberger, "Estimating mutual
  information", Phys. Rev. E 69, 066138 (2004), estimator 1, for a continuous nuisance, and Ross,
  "Mutual information between discrete and continuous data sets", PLoS ONE 9(2): e87357 (2014), for
  a discrete one. NumPy/SciPy (``scipy.spatial.cKDTree``), on the host.

All values are in nats. Every estimator returns a 0-d ``jax.Array`` whose dtype is the floating
dtype jax gives z (float32 unless ``jax_enable_x64``; the default float for integer z), promoted
with a continuous nuisance's. ``"binned"`` and ``"knn"`` compute in float64 NumPy and cast the
result.
"""

import functools
import math

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np
import optax
import scipy.spatial
import scipy.special

ESTIMATORS = ("gaussian", "binned", "knn")

# A Cholesky pivot (the variance of a coordinate given the coordinates before it) at or below this
# many machine epsilons of that coordinate's variance marks a covariance as numerically singular.
_SINGULAR_EPS = 100.0


# ----------------------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------------------


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _as_array_like(name, x):
  """``x`` unchanged if it has a dtype and a shape (NumPy, jax, tracer), else ``np.asarray(x)``."""
  if not (hasattr(x, "dtype") and hasattr(x, "shape")):
    x = np.asarray(x)
  if not (np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)):
    raise TypeError(f"{name} must be a numeric array; got dtype {x.dtype}.")
  if np.issubdtype(x.dtype, np.complexfloating):
    raise TypeError(f"{name} must be real; got dtype {x.dtype}.")
  return x


def _float_dtype(dtype):
  """The floating dtype jax computes a ``dtype`` array in (the default float for integers)."""
  if jnp.issubdtype(dtype, jnp.floating):
    return jax.dtypes.canonicalize_dtype(dtype)
  return jnp.result_type(float)


def _check_options(estimator, discrete, num_classes, ridge, num_bins, bin_range, bias_correction,
                   num_neighbors, jitter, key):
  if estimator not in ESTIMATORS:
    raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}.")
  if discrete not in (None, True, False):
    raise TypeError(f"discrete must be None (infer from the nuisance's dtype), True or False; got "
                    f"{discrete!r}.")
  if num_classes is not None and not (_is_int(num_classes) and num_classes >= 1):
    raise ValueError(f"num_classes must be None or a positive int; got {num_classes!r}.")
  if not (isinstance(ridge, (int, float, np.integer, np.floating))
          and not isinstance(ridge, bool) and math.isfinite(ridge) and ridge >= 0):
    raise ValueError(f"ridge must be a finite non-negative Python number; got {ridge!r}.")
  if ridge > 0 and estimator != "gaussian":
    raise ValueError(f'ridge applies to estimator="gaussian" only; got ridge={ridge!r} with '
                     f"estimator={estimator!r}.")
  if not (_is_int(num_bins) and num_bins >= 2):
    raise ValueError(f"num_bins must be an int >= 2; got {num_bins!r}.")
  if bin_range is not None:
    if estimator != "binned":
      raise ValueError(f'bin_range applies to estimator="binned" only; got estimator='
                       f"{estimator!r}.")
    if not (isinstance(bin_range, (tuple, list)) and len(bin_range) == 2
            and all(isinstance(b, (int, float, np.integer, np.floating)) for b in bin_range)
            and math.isfinite(bin_range[0]) and math.isfinite(bin_range[1])
            and bin_range[0] < bin_range[1]):
      raise ValueError(f"bin_range must be None or a pair of finite numbers (low, high) with "
                       f"low < high; got {bin_range!r}.")
  if bias_correction not in (True, False):
    raise TypeError(f"bias_correction must be True or False; got {bias_correction!r}.")
  if bias_correction and estimator == "knn":
    raise ValueError('bias_correction applies to estimator="gaussian" (exact Wishart correction) '
                     'and "binned" (Miller-Madow); the "knn" estimators have none.')
  if not (_is_int(num_neighbors) and num_neighbors >= 1):
    raise ValueError(f"num_neighbors must be an int >= 1; got {num_neighbors!r}.")
  if not (isinstance(jitter, (int, float, np.integer, np.floating))
          and not isinstance(jitter, bool) and math.isfinite(jitter) and jitter >= 0):
    raise ValueError(f"jitter must be a finite non-negative number; got {jitter!r}.")
  if jitter > 0:
    if estimator != "knn":
      raise ValueError(f'jitter applies to estimator="knn" only; got jitter={jitter!r} with '
                       f"estimator={estimator!r}.")
    if key is None:
      raise ValueError("jitter > 0 needs an explicit key (e.g. jax.random.key(0)); there is no "
                       "global random state.")


def _check_shapes(z, nuisance):
  """Returns ``(N, k, m)``: examples, coordinates of z, and of the nuisance (flattened)."""
  if z.ndim == 0:
    raise ValueError(f"z must have a leading example axis, shape (N,) or (N, k, ...); got shape "
                     f"{tuple(z.shape)}.")
  if nuisance.ndim == 0:
    raise ValueError(f"nuisance must have a leading example axis, shape (N,) or (N, m); got shape "
                     f"{tuple(nuisance.shape)}.")
  num_examples = z.shape[0]
  if nuisance.shape[0] != num_examples:
    raise ValueError(f"z and nuisance must have the same number of examples N (leading axis); got "
                     f"z shape {tuple(z.shape)} and nuisance shape {tuple(nuisance.shape)}.")
  if num_examples < 2:
    raise ValueError(f"z and nuisance need at least N = 2 examples; got N = {num_examples}.")
  k = math.prod(z.shape[1:])
  m = math.prod(nuisance.shape[1:])
  if k == 0:
    raise ValueError(f"z must have at least one coordinate per example; got shape "
                     f"{tuple(z.shape)}.")
  if m == 0:
    raise ValueError(f"nuisance must have at least one coordinate per example; got shape "
                     f"{tuple(nuisance.shape)}.")
  return num_examples, k, m


def _is_discrete(nuisance, discrete) -> bool:
  """Whether the nuisance is treated as discrete; checks that discrete labels are integers."""
  integer = (jnp.issubdtype(nuisance.dtype, jnp.integer)
             or jnp.issubdtype(nuisance.dtype, jnp.bool_))
  if discrete is None:
    return integer
  if discrete and not integer:
    if _is_traced(nuisance):
      raise TypeError(f"nuisance: discrete=True needs integer labels; got a traced array of dtype "
                      f"{nuisance.dtype} (cast to an integer dtype).")
    values = np.asarray(nuisance)
    whole = np.isfinite(values) & (values == np.round(values))
    if not np.all(whole):
      raise TypeError(f"nuisance: discrete=True needs integer labels; got dtype {nuisance.dtype} "
                      f"with non-integer values (e.g. {values[~whole].flat[0]!r}).")
  return bool(discrete)


def _host_labels(nuisance, num_classes):
  """Concrete labels ``(N,)`` in ``[0, C)`` and C: the distinct rows of a discrete nuisance.

  With ``num_classes`` (1-D nuisances only) the labels are kept as given and checked to lie in
  ``[0, num_classes)``; otherwise each distinct row is one class, numbered in sorted order.
  """
  values = np.asarray(nuisance)
  if num_classes is not None:
    if values.ndim != 1:
      raise ValueError(f"num_classes needs a 1-D nuisance of labels; got shape {values.shape}.")
    labels = values.astype(np.int64)
    if labels.min() < 0 or labels.max() >= num_classes:
      raise ValueError(f"nuisance labels must lie in [0, num_classes={num_classes}); got values in "
                       f"[{labels.min()}, {labels.max()}].")
    return labels, num_classes
  rows = values.reshape(values.shape[0], -1).astype(np.int64)
  unique, labels = np.unique(rows, axis=0, return_inverse=True)
  return labels.reshape(-1), unique.shape[0]


# ----------------------------------------------------------------------------------------------
# The public function.
# ----------------------------------------------------------------------------------------------


def mutual_information_with_nuisance(z, nuisance, *, estimator="gaussian", discrete=None,
                                     num_classes=None, ridge=0.0, num_bins=30, bin_range=None,
                                     bias_correction=False, num_neighbors=3, jitter=0.0,
                                     key=None) -> jax.Array:
  """Mutual information ``I(z; n)`` in nats between a representation and a nuisance.

  Args:
    z: the representation ``(N,)`` (one coordinate) or ``(N, k, ...)``, flattened to ``(N, k)``.
    nuisance: ``(N,)`` or ``(N, m, ...)``, flattened to ``(N, m)``. A discrete nuisance holds
      integer labels; a 2-D discrete nuisance is several discrete factors, and each distinct row
      is one joint class.
    estimator: ``"gaussian"``, ``"binned"`` or ``"knn"`` (see below).
    discrete: whether the nuisance is discrete; ``None`` infers it from the dtype (integer or bool:
      discrete). ``True`` with a floating nuisance requires whole-number values (else TypeError).
    num_classes: a discrete 1-D nuisance only: the number of classes C, labels in ``[0, C)``
      (checked when concrete). ``"gaussian"`` needs it when the labels are traced (under
      ``jit``/``vmap`` over the nuisance), since C must be static; otherwise each distinct label
      (or row) is a class. Classes without examples contribute nothing.
    ridge: ``"gaussian"`` only, a Python number (not traced; a new value does not recompile):
      adds ``ridge * tr(S) / dim`` to the diagonal of every covariance of z (and of a continuous
      nuisance, with its own trace), with S the covariance of all examples. This is the Gaussian
      MI after adding independent isotropic noise of that variance to z (and n), so it can only
      lower the estimate (data processing, and the convexity of ``tr(S^-1)`` for the discrete
      case). Use it (e.g. 1e-3) for rank-deficient representations such as dead ReLU units,
      constant coordinates, fewer examples than coordinates, or classes with at most k examples;
      it must be well above ``100 * eps`` of the dtype to lift a singular covariance.
    num_bins: ``"binned"``: equal-width bins per coordinate (Shwartz-Ziv & Tishby use 30).
    bin_range: ``"binned"``: ``None`` bins each coordinate over its own sample range
      ``[min, max]``; ``(low, high)`` uses the same fixed edges for every coordinate (e.g.
      ``(-1, 1)`` for tanh units, comparable across epochs), values outside fall in the end bins.
    bias_correction: ``"gaussian"``: subtract the exact expected bias of each log-determinant under
      Gaussianity (Wishart moments; below); ``"binned"``: Miller-Madow correction. Not for
      ``"knn"`` (ValueError).
    num_neighbors: ``"knn"``: the k of the k-th neighbour, ``1 <= k < N`` (Kraskov et al. suggest
      2 to 4; smaller k, less bias and more variance).
    jitter: ``"knn"``: standard deviation of Gaussian noise added to every standardised
      (unit-variance) coordinate of z and of a continuous nuisance, to break exact ties:
      repeated rows of z or of a continuous nuisance (e.g. ReLU zeros or quantised values) are
      point masses that the estimators cannot handle, reported as a ValueError. Jittered, the
      estimate is that of the slightly smoothed variables; 1e-6 to 1e-10 moves the value by far
      less than the estimator's error.
    key: a ``jax.random.key``, needed when ``jitter > 0``; the noise is a function of it alone.

  Returns:
    A 0-d ``jax.Array``, ``I(z; n)`` in nats, in the floating dtype of z (promoted with a continuous
    nuisance's). ``"gaussian"`` is traceable: under ``jit``/``vmap`` an invalid case (below) cannot
    raise and gives NaN, never a silent ``-inf`` or a meaningless finite number.

  Estimators (S is a maximum-likelihood sample covariance, ``(1/N) sum_i (x_i - mean)(x_i -
  mean)^T``):

  * ``"gaussian"``, continuous nuisance: ``1/2 log(|S_z| |S_n| / |S_zn|)``, the information of the
    Gaussian with the sample covariance of ``(z, n)``: ``-1/2 sum_i log(1 - rho_i^2)`` over the
    sample canonical correlations. Exact for jointly Gaussian ``(z, n)``; invariant to invertible
    affine maps of z and of n; blind to non-linear dependence. Discrete nuisance with classes c of
    frequency ``p_c``: ``1/2 log|S_z| - sum_c p_c 1/2 log|S_{z|c}|``, the difference between the
    entropy of a Gaussian fitted to all of z and the mean entropy of Gaussians fitted to each class
    (class-dependent means and covariances). Since the Gaussian maximises entropy for a given
    covariance, this is an upper bound on ``I(z; n)`` when every ``z | c`` is Gaussian (z is then a
    Gaussian mixture), above it by the negentropy ``h_Gauss(z) - h(z)`` of the mixture, and exact
    only when z is also Gaussian overall (all class means and covariances equal, I = 0); in general
    (non-Gaussian classes) it is neither a lower nor an upper bound. Bias (Gaussian data): upward by
    about ``k m / (2N)`` (continuous) and ``(C - 1) k (k + 1) / (4N)`` (discrete, C classes), since
    ``E log|S| = log|Sigma| + sum_{i=1..d} psi((N - i) / 2) + d log(2/N)`` for a d-dimensional ``S``
    from N examples; ``bias_correction=True`` subtracts these terms exactly, which needs ``N > k +
    m`` (continuous) or more than k examples in every class (discrete). A covariance is singular
    when a coordinate is constant (variance at most ``100 eps`` of its second moment) or a Cholesky
    pivot is at most ``100 eps`` of its diagonal entry (a coordinate is a linear function of earlier
    ones, e.g. ``N <= k``, a dead unit, or z determining a linear function of n, where the Gaussian
    MI is infinite); with ``ridge=0`` this raises a ValueError naming the cause (NaN when traced).
  * ``"binned"``: each coordinate (of z, and of a continuous nuisance) is cut into ``num_bins``
    equal-width bins, each distinct row of bin indices is one symbol, and the plug-in
    ``I = H(n) - H(n | z_bin) = H(z_bin) + H(n) - H(z_bin, n)`` of the empirical joint
    distribution is returned. It estimates the information of the quantised z, which is at most
    ``I(z; n)`` and depends on the bins. The plug-in is biased upward by about
    ``[(M_zn - 1) - (M_z - 1) - (M_n - 1)] / (2N)`` nats (M: occupied cells of the joint and of each
    marginal; ``(M_z - 1)(M_n - 1) / (2N)`` for independent variables), which
    ``bias_correction=True`` (Miller-Madow: each entropy plus ``(M - 1) / (2N)``) subtracts.
    With many coordinates nearly every row is its own symbol; once all N rows are distinct,
    ``H(n | z_bin) = 0`` and the estimate saturates at ``H(n)`` (of the binned nuisance, for a
    continuous one) whatever the dependence. Not jit-able: the number of distinct symbols
    (``np.unique`` over rows) depends on the values, a shape that jit cannot know in advance.
  * ``"knn"``: z and a continuous nuisance are standardised per coordinate (so the value is exactly
    invariant to per-coordinate affine maps), distances use the max-norm. Continuous nuisance:
    KSG estimator 1, ``psi(k) + psi(N) - <psi(n_z + 1) + psi(n_n + 1)>``, with ``n_z``, ``n_n`` the
    numbers of other points strictly within the distance to the k-th neighbour in the joint
    space. Discrete nuisance: Ross (2014), ``psi(N) - <psi(N_c)> + <psi(k_i)> - <psi(m_i)>``, with
    the k-th neighbour taken within the point's class of size ``N_c``, ``k_i = min(k, N_c - 1)``,
    ``m_i`` the points of the whole sample (self included) strictly within that distance; points
    whose class has one example are left out (N then counts the rest). Both are consistent,
    approximately invariant to invertible per-coordinate maps of z, nearly unbiased at I = 0 and
    can be slightly negative (not clipped, so averages stay unbiased); their bias grows with the
    dimension and the size of I. Not jit-able: neighbour searches run in ``scipy.spatial.cKDTree``
    on the host, with neighbour counts of data-dependent size.

  Cost: ``"gaussian"``: ``O(N d^2 + d^3)`` time and ``O(N d + d^2)`` memory with ``d = k + m``;
  discrete, ``O(C (N k^2 + k^3))`` time, ``O(N k + C k^2)`` memory. ``"binned"``: ``O(N (k + m)
  log N)`` (sorting). ``"knn"``: k-d trees, roughly ``O(N log N)`` per query in low dimension plus
  the neighbour counts (up to ``O(N^2)`` in high dimension, where k-d trees degrade).

  Raises:
    ValueError / TypeError naming the argument, for mismatched or too few examples (N >= 2),
    non-finite values, an unknown estimator, ``num_bins < 2``, ``num_neighbors`` outside
    ``[1, N)``, non-integer discrete labels, options given to an estimator that does not use them,
    a singular covariance with ``ridge=0``, or exact ties for ``"knn"`` without jitter; TypeError
    when ``"binned"`` or ``"knn"`` is called on traced values.
  """
  _check_options(estimator, discrete, num_classes, ridge, num_bins, bin_range, bias_correction,
                 num_neighbors, jitter, key)
  z = _as_array_like("z", z)
  nuisance = _as_array_like("nuisance", nuisance)
  num_examples, _, _ = _check_shapes(z, nuisance)
  is_discrete = _is_discrete(nuisance, discrete)
  if num_classes is not None and not is_discrete:
    raise ValueError("num_classes applies to a discrete nuisance only; this nuisance is treated "
                     "as continuous.")
  dtype = _float_dtype(z.dtype)
  if not is_discrete:
    dtype = jnp.result_type(dtype, _float_dtype(nuisance.dtype))
  if estimator == "gaussian":
    return _gaussian(z, nuisance, is_discrete=is_discrete, num_classes=num_classes,
                     ridge=float(ridge), bias_correction=bias_correction, dtype=dtype)

  for name, x in (("z", z), ("nuisance", nuisance)):
    if _is_traced(x):
      raise TypeError(f'{name}: estimator="{estimator}" runs on the host (NumPy/SciPy) and cannot '
                      'be traced by jit/vmap/grad; call it outside the transformation, or use '
                      'estimator="gaussian".')
  z_host = _finite_host("z", z)
  if is_discrete:
    labels, _ = _host_labels(nuisance, num_classes)
    n_host = None
  else:
    labels, n_host = None, _finite_host("nuisance", nuisance)

  if estimator == "binned":
    value = _binned(z_host, labels, n_host, num_bins=num_bins, bin_range=bin_range,
                    bias_correction=bias_correction)
  else:
    if num_neighbors >= num_examples:
      raise ValueError(f"num_neighbors must be < N = {num_examples} (the number of examples); "
                       f"got {num_neighbors}.")
    if jitter > 0:
      z_key, n_key = jax.random.split(key)
    else:
      z_key = n_key = None
    z_host = _standardise(z_host, jitter, z_key)
    _check_no_repeated_rows("z", z_host)
    if is_discrete:
      value = _ross(z_host, labels, num_neighbors)
    else:
      n_host = _standardise(n_host, jitter, n_key)
      _check_no_repeated_rows("nuisance", n_host)
      value = _ksg(z_host, n_host, num_neighbors)
  return jnp.asarray(value, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# "gaussian": jax.numpy.
# ----------------------------------------------------------------------------------------------


def _gaussian(z, nuisance, *, is_discrete, num_classes, ridge, bias_correction, dtype):
  """Dispatches to the jitted cores; raises on concrete invalid cases, NaN when traced."""
  num_examples = z.shape[0]
  z = jnp.asarray(z).reshape(num_examples, -1).astype(dtype)
  if is_discrete:
    if _is_traced(nuisance):
      if num_classes is None:
        raise ValueError("nuisance: traced discrete labels (under jit/vmap) need a static "
                         "num_classes, with labels in [0, num_classes).")
      if nuisance.ndim != 1:
        raise ValueError(f"nuisance: traced discrete labels must be 1-D (N,); got shape "
                         f"{tuple(nuisance.shape)}.")
      labels = nuisance.astype(jnp.int32)
    else:
      labels, num_classes = _host_labels(nuisance, num_classes)
      labels = jnp.asarray(labels, jnp.int32)
    mi, flags = _gaussian_discrete(z, labels, jnp.asarray(ridge, dtype), num_classes=num_classes,
                                   bias_correction=bias_correction)
  else:
    n = jnp.asarray(nuisance).reshape(num_examples, -1).astype(dtype)
    mi, flags = _gaussian_continuous(z, n, jnp.asarray(ridge, dtype),
                                     bias_correction=bias_correction)
  if _is_traced(mi):
    bad = functools.reduce(jnp.logical_or, [jnp.any(f) for name, f in flags.items()
                                            if name != "class_counts"])
    return jnp.where(bad, jnp.asarray(jnp.nan, mi.dtype), mi)
  _raise_gaussian_flags(jax.device_get(flags), ridge=ridge, num_examples=num_examples,
                        k=z.shape[1])
  return mi


def _raise_gaussian_flags(flags, *, ridge, num_examples, k):
  remedy = "pass ridge > 0 (e.g. 1e-3)" if ridge == 0 else f"increase ridge (now {ridge})"
  if flags["z_nonfinite"]:
    raise ValueError("z must be finite; it contains NaN or inf.")
  if flags.get("n_nonfinite", False):
    raise ValueError("nuisance must be finite; it contains NaN or inf.")
  if flags["labels"]:
    raise ValueError("nuisance labels must lie in [0, num_classes).")
  if flags["z_singular"]:
    raise ValueError(
        f"z: the sample covariance of its {k} coordinate(s) from N = {num_examples} examples is "
        "singular (a constant or dead coordinate, a coordinate that is a linear function of "
        f"others, or N <= k), so the Gaussian entropy is -inf; {remedy}.")
  if flags.get("n_singular", False):
    raise ValueError(
        "nuisance: the sample covariance of (z, nuisance) is singular beyond that of z (a constant "
        "nuisance coordinate, z determining a linear function of the nuisance, whose Gaussian MI "
        f"is infinite, or N <= k + m); {remedy}.")
  if "class_singular" in flags and np.any(flags["class_singular"]):
    c = int(np.argmax(flags["class_singular"]))
    raise ValueError(
        f"z: its sample covariance within class {c} (of {int(flags['class_counts'][c])} "
        f"examples) is singular (a coordinate constant within the class, or at most k = {k} "
        f"examples in the class), so the class's Gaussian entropy is -inf; {remedy}.")
  if flags["correction"]:
    raise ValueError(
        "bias_correction=True needs more examples than dimensions in every covariance (N > k + m "
        f"for a continuous nuisance, more than k = {k} examples per class for a discrete one).")


def _logdet(cov, tol):
  """``log|cov|`` over the last two axes via Cholesky, and whether cov is numerically singular."""
  chol = jnp.linalg.cholesky(cov)
  pivots = jnp.square(jnp.diagonal(chol, axis1=-2, axis2=-1))
  diagonal = jnp.diagonal(cov, axis1=-2, axis2=-1)
  singular = ~(pivots > tol * diagonal)  # also True for NaN (Cholesky failed) and zero variance
  return jnp.sum(jnp.log(pivots), axis=-1), singular


def _log_det_bias(dim, num):
  """``E log|S| - log|Sigma|`` for the ML covariance S of ``num`` Gaussian draws in ``dim`` dims.

  ``num * S`` is Wishart with ``num - 1`` degrees of freedom, so this is
  ``sum_{i=1..dim} psi((num - i) / 2) + dim log(2 / num)``; finite for ``num > dim``.
  """
  i = jnp.arange(1, dim + 1, dtype=num.dtype).reshape((1,) * num.ndim + (dim,))
  return jnp.sum(jsp.digamma((num[..., None] - i) / 2), axis=-1) + dim * jnp.log(2 / num)


def _constant(variance, second_moment, tol):
  return ~(variance > tol * second_moment)


@functools.partial(jax.jit, static_argnames=("bias_correction",))
def _gaussian_continuous(z, n, ridge, *, bias_correction):
  num_examples, k = z.shape
  m = n.shape[1]
  tol = _SINGULAR_EPS * jnp.finfo(z.dtype).eps
  x = jnp.concatenate([z, n], axis=1)
  second_moment = jnp.mean(jnp.square(x), axis=0)
  x = x - jnp.mean(x, axis=0, keepdims=True)
  cov = x.T @ x / num_examples
  variance = jnp.diagonal(cov)
  added = jnp.concatenate([jnp.full((k,), ridge * jnp.sum(variance[:k]) / k),
                           jnp.full((m,), ridge * jnp.sum(variance[k:]) / m)])
  cov = cov + jnp.diag(added)
  constant = _constant(variance, second_moment, tol) & (ridge == 0)  # the ridge lifts constants
  # S_z, S_n and S_zn in one batched Cholesky, the blocks padded to (k + m) x (k + m) with an
  # identity; each is factored on its own since a failed Cholesky is NaN throughout.
  in_z = jnp.arange(k + m) < k
  block = in_z[:, None] == in_z[None, :]
  eye = jnp.eye(k + m, dtype=cov.dtype)
  stacked = jnp.stack([jnp.where(block & in_z[:, None], cov, eye),
                       jnp.where(block & ~in_z[:, None], cov, eye), cov])
  log_dets, singular = _logdet(stacked, tol)
  mi = 0.5 * (log_dets[0] + log_dets[1] - log_dets[2])
  singular_z, singular_n, singular_joint = singular[0, :k], singular[1, k:], singular[2]
  correction = jnp.asarray(False)
  if bias_correction:
    num = jnp.asarray(num_examples, z.dtype)
    mi = mi - 0.5 * (_log_det_bias(k, num) + _log_det_bias(m, num) - _log_det_bias(k + m, num))
    correction = jnp.asarray(num_examples <= k + m)
  flags = {
      "z_nonfinite": ~jnp.all(jnp.isfinite(z)),
      "n_nonfinite": ~jnp.all(jnp.isfinite(n)),
      "labels": jnp.asarray(False),
      "z_singular": jnp.any(singular_z | constant[:k]),
      "n_singular": jnp.any(singular_joint) | jnp.any(singular_n | constant[k:]),
      "correction": correction,
  }
  return mi, flags


@functools.partial(jax.jit, static_argnames=("num_classes", "bias_correction"))
def _gaussian_discrete(z, labels, ridge, *, num_classes, bias_correction):
  num_examples, k = z.shape
  tol = _SINGULAR_EPS * jnp.finfo(z.dtype).eps
  second_moment = jnp.mean(jnp.square(z), axis=0)
  centred = z - jnp.mean(z, axis=0, keepdims=True)
  cov = centred.T @ centred / num_examples
  onehot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)  # out-of-range labels: zero rows
  counts = jnp.sum(onehot, axis=0)
  present = counts > 0
  safe_counts = jnp.maximum(counts, 1)
  class_means = onehot.T @ centred / safe_counts[:, None]
  residuals = centred - onehot @ class_means
  class_second_moments = onehot.T @ jnp.square(z) / safe_counts[:, None]

  def class_covariance(weights):
    return (residuals * weights[:, None]).T @ residuals

  class_covs = jax.lax.map(class_covariance, onehot.T) / safe_counts[:, None, None]
  eye = jnp.eye(k, dtype=z.dtype)
  added = ridge * jnp.trace(cov) / k
  cov = cov + added * eye
  class_covs = class_covs + added * eye[None]
  class_covs = jnp.where(present[:, None, None], class_covs, eye[None])  # absent: any PD matrix
  log_dets, singular = _logdet(jnp.concatenate([cov[None], class_covs]), tol)  # one Cholesky
  log_det, class_log_dets = log_dets[0], log_dets[1:]
  singular, class_singular = singular[0], singular[1:]
  singular = singular | (_constant(jnp.diagonal(cov), second_moment, tol) & (ridge == 0))
  class_singular = class_singular | (_constant(
      jnp.diagonal(class_covs, axis1=-2, axis2=-1), class_second_moments, tol) & (ridge == 0))
  class_singular = present & jnp.any(class_singular, axis=-1)
  weights = counts / num_examples
  mi = 0.5 * (log_det - jnp.sum(jnp.where(present, weights * class_log_dets, 0.0)))
  correction = jnp.asarray(False)
  if bias_correction:
    num = jnp.asarray(num_examples, z.dtype)
    class_bias = _log_det_bias(k, safe_counts)
    mi = mi - 0.5 * (_log_det_bias(k, num)
                     - jnp.sum(jnp.where(present & (counts > k), weights * class_bias, 0.0)))
    correction = jnp.any(present & (counts <= k))
  flags = {
      "z_nonfinite": ~jnp.all(jnp.isfinite(z)),
      "labels": jnp.any((labels < 0) | (labels >= num_classes)),
      "z_singular": jnp.any(singular),
      "class_singular": class_singular,
      "class_counts": counts,
      "correction": correction,
  }
  return mi, flags


# ----------------------------------------------------------------------------------------------
# "binned" and "knn": NumPy / SciPy on the host.
# ----------------------------------------------------------------------------------------------


def _finite_host(name, x):
  values = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
  if not np.all(np.isfinite(values)):
    raise ValueError(f"{name} must be finite; it contains NaN or inf.")
  return values


def _bin_symbols(x, num_bins, bin_range):
  """One symbol ``(N,)`` per distinct row of per-coordinate equal-width bin indices of ``x``."""
  if bin_range is None:
    low, high = x.min(axis=0), x.max(axis=0)
  else:
    low, high = np.full(x.shape[1], float(bin_range[0])), np.full(x.shape[1], float(bin_range[1]))
  width = (high - low) / num_bins
  width = np.where(width > 0, width, 1.0)  # a constant coordinate falls in one bin
  indices = np.clip(np.floor((x - low) / width), 0, num_bins - 1).astype(np.int64)
  _, symbols = np.unique(indices, axis=0, return_inverse=True)
  return symbols.reshape(-1)


def _plugin_entropy(symbols):
  """Plug-in entropy (nats) of the empirical distribution of ``symbols``, and occupied cells."""
  counts = np.bincount(symbols)
  counts = counts[counts > 0]
  total = symbols.size
  return math.log(total) - float(np.sum(counts * np.log(counts))) / total, counts.size


def _binned(z, labels, n, *, num_bins, bin_range, bias_correction):
  z_symbols = _bin_symbols(z, num_bins, bin_range)
  n_symbols = labels if labels is not None else _bin_symbols(n, num_bins, bin_range)
  joint = z_symbols * (int(n_symbols.max()) + 1) + n_symbols
  h_z, cells_z = _plugin_entropy(z_symbols)
  h_n, cells_n = _plugin_entropy(n_symbols)
  h_joint, cells_joint = _plugin_entropy(joint)
  mi = h_z + h_n - h_joint
  if bias_correction:  # Miller-Madow: each plug-in entropy plus (occupied cells - 1) / (2N)
    mi += ((cells_z - 1) + (cells_n - 1) - (cells_joint - 1)) / (2 * z.shape[0])
  return mi


def _standardise(x, jitter, key):
  """Each coordinate centred and scaled to unit variance (constants: centred), plus jitter."""
  x = x - x.mean(axis=0)
  scale = x.std(axis=0)
  x = x / np.where(scale > 0, scale, 1.0)
  if jitter > 0:
    x = x + jitter * np.asarray(jax.random.normal(key, x.shape), dtype=np.float64)
  return x


_TIE_REMEDY = "pass jitter > 0 (e.g. 1e-8) with a key, or use estimator=\"binned\"."


def _check_no_repeated_rows(name, x):
  """Exact ties (point masses) break the k-NN estimators, which assume continuous densities."""
  distinct = np.unique(x, axis=0).shape[0]
  if distinct < x.shape[0]:
    raise ValueError(
        f"{name}: {x.shape[0] - distinct} of its N = {x.shape[0]} rows repeat earlier ones exactly "
        "(e.g. ReLU zeros or quantised values); the k-NN estimators assume a continuous "
        f"distribution without point masses; {_TIE_REMEDY}")


def _tie_error(count, where):
  return ValueError(
      f"knn: {count} example(s) have a zero distance to their k-th neighbour {where} (exactly "
      f"repeated rows), where the k-NN estimators are undefined; {_TIE_REMEDY}")


def _count_within(tree, points, radius):
  """Points of ``tree`` (self included) strictly within ``radius`` of each point, max-norm."""
  strict = np.nextafter(radius, 0)
  return np.asarray(tree.query_ball_point(points, strict, p=np.inf, return_length=True))


def _ksg(z, n, num_neighbors):
  """KSG estimator 1 (Kraskov et al. 2004, eq. 8) with the max-norm."""
  num_examples = z.shape[0]
  joint = np.concatenate([z, n], axis=1)
  distances, _ = scipy.spatial.cKDTree(joint).query(joint, k=num_neighbors + 1, p=np.inf)
  radius = distances[:, -1]
  if np.any(radius == 0):
    raise _tie_error(int(np.sum(radius == 0)), "in the joint space of (z, nuisance)")
  count_z = _count_within(scipy.spatial.cKDTree(z), z, radius)  # n_z + 1
  count_n = _count_within(scipy.spatial.cKDTree(n), n, radius)  # n_n + 1
  digamma = scipy.special.digamma
  return float(digamma(num_neighbors) + digamma(num_examples)
               - np.mean(digamma(count_z) + digamma(count_n)))


def _ross(z, labels, num_neighbors):
  """Ross (2014) estimator for a discrete nuisance, with the max-norm."""
  class_sizes = np.bincount(labels)[labels]
  keep = class_sizes > 1
  if not np.any(keep):
    raise ValueError("nuisance: every class has a single example; the knn estimator needs classes "
                     "of at least 2 examples.")
  z, labels, class_sizes = z[keep], labels[keep], class_sizes[keep]
  radius = np.empty(z.shape[0])
  neighbours = np.empty(z.shape[0])
  for label in np.unique(labels):
    members = labels == label
    k = min(num_neighbors, int(class_sizes[members][0]) - 1)
    distances, _ = scipy.spatial.cKDTree(z[members]).query(z[members], k=k + 1, p=np.inf)
    radius[members] = distances[:, -1]
    neighbours[members] = k
  if np.any(radius == 0):
    raise _tie_error(int(np.sum(radius == 0)), "within their class")
  counts = _count_within(scipy.spatial.cKDTree(z), z, radius)  # m_i
  digamma = scipy.special.digamma
  return float(digamma(z.shape[0]) - np.mean(digamma(class_sizes)) + np.mean(digamma(neighbours))
               - np.mean(digamma(counts)))


# ----------------------------------------------------------------------------------------------
# A variational lower bound by a held-out decoder.
# ----------------------------------------------------------------------------------------------


def decoder_lower_bound(z, nuisance, *, groups=None, num_folds: int = 5, l2: float = 1e-3,
                        num_steps: int = 300, learning_rate: float = 0.1, seed: int = 0
                        ) -> jax.Array:
  """A lower bound on ``I(z; n)`` for a discrete nuisance: ``H(n) - E[-log q(n | z)]`` held out.

  Barber & Agakov, "The IM algorithm: a variational approach to information maximization"
  (NeurIPS 2003): for any decoder ``q``, ``I(z; n) = H(n) - H(n | z) >= H(n) - E_{p(z, n)}
  [-log q(n | z)]``. Here ``q`` is a softmax regression on the standardised z (L2 penalty ``l2``,
  ``num_steps`` full-batch Adam steps), fitted ``num_folds`` times, each time on all but one fold
  and evaluated on that fold, so every example is scored by a decoder that never saw it; ``H(n)``
  is the entropy of the empirical class frequencies. Unlike the Gaussian estimator it never
  exceeds ``H(n)`` and does not grow with the dimension of z, and unlike k-NN estimators it keeps
  working in hundreds of dimensions. It is exact when the classes are Gaussian with a shared
  covariance (the Bayes posterior is then a softmax of a linear function) and enough data fit it;
  otherwise it is below ``I(z; n)`` by ``E KL(p(n | z) || q(n | z))`` plus the estimation error,
  and slightly negative (down to about ``-(C - 1) k / N``) for independent variables.

  Args:
    z: the representation ``(N,)`` or ``(N, k, ...)``, flattened to ``(N, k)``.
    nuisance: ``(N,)`` integer labels.
    groups: ``(N,)`` integers or ``None``: examples of one group are always in the same fold. Pass
      the example identity when z holds several noisy draws per example, or the decoder scores
      draws of an example it was fitted on and overstates the bound.
    num_folds: folds of the cross-validation, ``2 <= num_folds <= `` the number of groups.
    l2: the penalty on the decoder's weights (per standardised coordinate), ``>= 0``.
    num_steps, learning_rate: the Adam fit of each fold's decoder.
    seed: the seed of the (group) fold assignment.

  Returns:
    A 0-d float32 (float64 under x64) ``jax.Array``, nats.

  Cost: ``num_folds * num_steps`` passes of an ``(N, k) x (k, C)`` product, the folds vmapped in one
  compiled program; memory ``O(num_folds (N C + k C))``. The fold assignment and the checks run on
  the host.
  """
  z = np.asarray(_finite_host("z", _as_array_like("z", z)), np.float64)
  z = z.reshape(z.shape[0], -1)
  labels = np.asarray(nuisance)
  if labels.shape != (z.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"nuisance must be integer labels of shape (N,) = ({z.shape[0]},); got shape "
                     f"{labels.shape} and dtype {labels.dtype}.")
  _, labels = np.unique(labels, return_inverse=True)
  num_classes = int(labels.max()) + 1
  groups = np.arange(z.shape[0]) if groups is None else np.asarray(groups)
  if groups.shape != (z.shape[0],):
    raise ValueError(f"groups must have shape (N,) = ({z.shape[0]},); got {groups.shape}.")
  unique_groups, group_index = np.unique(groups, return_inverse=True)
  if (isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer))
      or not 2 <= num_folds <= unique_groups.size):
    raise ValueError(f"num_folds must be an int in [2, {unique_groups.size}] (the number of "
                     f"groups); got {num_folds!r}.")
  if not (np.isfinite(l2) and l2 >= 0):
    raise ValueError(f"l2 must be finite and >= 0; got {l2!r}.")
  for name, value in (("num_steps", num_steps), ("learning_rate", learning_rate)):
    if not value > 0:
      raise ValueError(f"{name} must be > 0; got {value!r}.")
  fold_of_group = np.random.default_rng(seed).permutation(unique_groups.size) % num_folds
  folds = fold_of_group[group_index]
  frequencies = np.bincount(labels, minlength=num_classes) / labels.size
  entropy = -float(np.sum(frequencies[frequencies > 0] * np.log(frequencies[frequencies > 0])))
  dtype = jnp.result_type(float)
  held_out = _held_out_cross_entropy(
      jnp.asarray(z, dtype), jnp.asarray(labels), jnp.asarray(folds), num_classes=num_classes,
      num_folds=int(num_folds), l2=float(l2), num_steps=int(num_steps),
      optimizer=optax.adam(learning_rate))
  return jnp.asarray(entropy, dtype) - held_out


@functools.partial(jax.jit, static_argnames=("num_classes", "num_folds", "num_steps", "optimizer"))
def _held_out_cross_entropy(z, labels, folds, *, num_classes, num_folds, l2, num_steps, optimizer):
  """Mean over examples of ``-log q_f(n | z)``, ``q_f`` fitted without fold ``f`` (its own)."""
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=z.dtype)

  def fit_and_score(fold):
    train = (folds != fold).astype(z.dtype)[:, None]
    count = jnp.sum(train)
    mean = jnp.sum(train * z, axis=0, keepdims=True) / count
    std = jnp.sqrt(jnp.sum(train * (z - mean) ** 2, axis=0, keepdims=True) / count)
    x = (z - mean) / jnp.where(std > 0, std, 1.0)

    def loss(params):
      logits = x @ params["w"] + params["b"][None]
      nll = -jnp.sum(one_hot * jax.nn.log_softmax(logits), axis=1, keepdims=True)
      return jnp.sum(train * nll) / count + l2 * jnp.sum(params["w"] ** 2)

    params = {"w": jnp.zeros((z.shape[1], num_classes), z.dtype),
              "b": jnp.zeros((num_classes,), z.dtype)}

    def step(carry, _):
      params, state = carry
      grads = jax.grad(loss)(params)
      updates, state = optimizer.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), None, length=num_steps)
    logits = x @ params["w"] + params["b"][None]
    nll = -jnp.sum(one_hot * jax.nn.log_softmax(logits), axis=1)
    return jnp.sum(jnp.where(folds == fold, nll, 0.0))

  return jnp.sum(jax.vmap(fit_and_score)(jnp.arange(num_folds))) / z.shape[0]
