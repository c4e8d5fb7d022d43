"""Per-example Jacobians, Hessian diagonals, gradient covariances and Lanczos spectra against
float64 brute-force references (``infojax.fisher.reference``) and dense ``numpy.linalg.eigh``."""

import functools

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij

LIK = ij.likelihoods.categorical()


# ----------------------------------------------------------------------------------------------
# Models: flax Dense and Conv, sequence outputs, plain functions of dicts.
# ----------------------------------------------------------------------------------------------


class MLP(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(jnp.tanh(nn.Dense(5)(x)))


class CNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Conv(3, (3, 3), strides=2, padding="VALID")(x))
    return nn.Dense(3)(x.mean(axis=(1, 2)))


class SequenceDense(nn.Module):
  """Outputs (N, T, 2): a per-example output of rank 2."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(2)(jnp.tanh(nn.Dense(4)(x)))


def _perturbed(params, key):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [p + 0.3 * jax.random.normal(k, p.shape, p.dtype)
                                      for p, k in zip(leaves, keys)])


def _normal(rng, shape):
  return rng.standard_normal(shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _flax_params(module, input_shape, seed):
  """Initialised once per module (on one example), then moved away from the initialisation so
  that no gradient is structurally small."""
  params = module.init(jax.random.key(seed), jnp.zeros((1,) + input_shape, jnp.float32))["params"]
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: np.asarray(p) + 0.3 * _normal(rng, p.shape), params)


def _flax_case(module, input_shape, num_examples, seed, target_shape=(), num_classes=3):
  rng = np.random.default_rng(seed + 100)
  inputs = _normal(rng, (num_examples,) + input_shape)
  targets = rng.integers(0, num_classes, (num_examples,) + target_shape).astype(np.int32)
  params = _flax_params(module, input_shape, seed)
  return (lambda p, x: module.apply({"params": p}, x)), params, inputs, targets


def _plain_apply(p, x):
  return jnp.sin(jnp.einsum("nij,ijk->nk", x["image"] * x["mask"], p["w"]) + p["b"][None])


def _plain_case(num_examples, seed):
  """A plain function of a dict of params and a dict of inputs (image and mask)."""
  rng = np.random.default_rng(seed)
  params = {"w": _normal(rng, (2, 3, 4)), "b": _normal(rng, (4,))}
  inputs = {"image": _normal(rng, (num_examples, 2, 3)),
            "mask": rng.uniform(size=(num_examples, 2, 3)).astype(np.float32)}
  targets = rng.integers(0, 4, (num_examples,)).astype(np.int32)
  return _plain_apply, params, inputs, targets


def _wide_apply(p, x):
  z = jnp.tanh(x[:, :, None] * p["scale"][None, None, :] + p["shift"])
  return z.reshape(x.shape[0], 8)


def _wide_case(num_examples, seed):
  """More outputs (8) than weights (5) or inputs (2) per example: the forward-mode path."""
  rng = np.random.default_rng(seed)
  params = {"scale": _normal(rng, (4,)), "shift": _normal(rng, ())}
  inputs = _normal(rng, (num_examples, 2))
  targets = rng.integers(0, 8, (num_examples,)).astype(np.int32)
  return _wide_apply, params, inputs, targets


MODULES = {"mlp": MLP(), "cnn": CNN(), "sequence": SequenceDense()}
CASES = {
    "mlp": lambda n: _flax_case(MODULES["mlp"], (3,), n, 0),
    "cnn": lambda n: _flax_case(MODULES["cnn"], (5, 5, 2), n, 1),
    "sequence": lambda n: _flax_case(MODULES["sequence"], (3, 2), n, 2, target_shape=(3,),
                                     num_classes=2),
    "plain": lambda n: _plain_case(n, 3),
    "wide": lambda n: _wide_case(n, 4),
}
FLAX_CASES = ("mlp", "cnn", "sequence")


def _cast(tree, dtype):
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _tolerance(dtype):
  return 1e-10 if dtype == jnp.float64 else 1e-5


def _assert_close(actual, expected, tolerance):
  """Per leaf: max |actual - expected| <= tolerance * max |expected|."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    assert a.shape == e.shape, jax.tree_util.keystr(path)
    scale = max(float(np.max(np.abs(e), initial=0.0)), 1e-300)
    error = float(np.max(np.abs(a - e), initial=0.0)) / scale
    assert error <= tolerance, f"{jax.tree_util.keystr(path)}: relative error {error:.3g}"


@functools.lru_cache(maxsize=None)
def _cached_case(name, num_examples):
  return CASES[name](num_examples)


def _case(name, num_examples, dtype):
  """``(apply_fn, params, inputs, targets)`` as jax arrays, params and inputs in ``dtype``."""
  apply_fn, params, inputs, targets = _cached_case(name, num_examples)
  as_jax = functools.partial(jax.tree.map, lambda x: jnp.asarray(x, dtype))
  return apply_fn, as_jax(params), as_jax(inputs), jnp.asarray(targets)


# ----------------------------------------------------------------------------------------------
# Per-example Jacobians and products.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrt", ["params", "inputs"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_per_example_jacobians_match_reference(case, wrt, x64):
  """mlp, cnn, sequence and plain take the reverse-mode path, wide the forward-mode one."""
  apply_fn, params, inputs, _ = _case(case, 4, jnp.float64)
  expected = ij.fisher.reference.per_example_jacobians(apply_fn, params, inputs, wrt=wrt)
  output_shape = apply_fn(params, inputs).shape[1:]
  like = params if wrt == "params" else jax.tree.map(lambda x: x[0], inputs)
  jacobians = jax.jit(functools.partial(ij.fisher.per_example_jacobians, apply_fn, wrt=wrt))
  for dtype in (jnp.float64, jnp.float32):
    actual = jacobians(_cast(params, dtype), _cast(inputs, dtype))
    assert jax.tree.structure(actual) == jax.tree.structure(like)
    for a, leaf in zip(jax.tree.leaves(actual), jax.tree.leaves(like)):
      assert a.shape == (4,) + output_shape + leaf.shape and a.dtype == dtype
    _assert_close(actual, expected, _tolerance(dtype))


@pytest.mark.parametrize("case", ["sequence", "plain"])
def test_jacobians_of_one_example_and_in_chunks(case, x64):
  apply_fn, params, inputs, _ = _case(case, 1, jnp.float64)
  for wrt in ("params", "inputs"):
    expected = ij.fisher.reference.per_example_jacobians(apply_fn, params, inputs, wrt=wrt)
    actual = jax.jit(functools.partial(ij.fisher.per_example_jacobians, apply_fn, wrt=wrt))(
        params, inputs)
    _assert_close(actual, expected, 1e-10)
  apply_fn, params, inputs, _ = _case(case, 4, jnp.float64)
  expected = ij.fisher.reference.per_example_jacobians(apply_fn, params, inputs)
  actual = jax.jit(functools.partial(ij.fisher.per_example_jacobians, apply_fn, chunk_size=3))(
      params, inputs)     # one chunk of 3 in a lax.map, and a remainder of 1
  _assert_close(actual, expected, 1e-10)


def _flat_jacobians(jacobians, num_examples, num_outputs):
  """Leaves ``(N, *out, *leaf)`` -> ``(N, M, leaf size)``."""
  return [np.asarray(j).reshape(num_examples, num_outputs, -1) for j in jax.tree.leaves(jacobians)]


@pytest.mark.parametrize("case", ["cnn", "sequence", "plain"])
def test_per_example_jvp_and_vjp_match_reference(case, x64):
  dtype = jnp.float64
  apply_fn, params, inputs, _ = _case(case, 4, dtype)
  outputs = apply_fn(params, inputs)
  num_examples, output_shape = outputs.shape[0], outputs.shape[1:]
  num_outputs = int(np.prod(output_shape))
  keys = jax.random.split(jax.random.key(11), 3)

  tangent = _perturbed(jax.tree.map(jnp.zeros_like, params), keys[0])
  jacobians = _flat_jacobians(
      ij.fisher.reference.per_example_jacobians(apply_fn, params, inputs, wrt="params"),
      num_examples, num_outputs)
  expected = sum(j @ np.asarray(t).reshape(-1) for j, t in zip(jacobians, jax.tree.leaves(tangent)))
  actual = jax.jit(functools.partial(ij.fisher.per_example_jvp, apply_fn))(params, inputs, tangent)
  assert actual.shape == outputs.shape
  _assert_close(actual, expected.reshape(outputs.shape), 1e-10)

  input_tangent = _perturbed(jax.tree.map(jnp.zeros_like, inputs), keys[1])
  input_jacobians = _flat_jacobians(
      ij.fisher.reference.per_example_jacobians(apply_fn, params, inputs, wrt="inputs"),
      num_examples, num_outputs)
  expected = sum(np.einsum("nml,nl->nm", j, np.asarray(t).reshape(num_examples, -1))
                 for j, t in zip(input_jacobians, jax.tree.leaves(input_tangent)))
  actual = jax.jit(functools.partial(ij.fisher.per_example_jvp, apply_fn, wrt="inputs"))(
      params, inputs, input_tangent)
  _assert_close(actual, expected.reshape(outputs.shape), 1e-10)

  cotangents = jax.random.normal(keys[2], outputs.shape, dtype)
  u = np.asarray(cotangents).reshape(num_examples, num_outputs)
  expected = jax.tree.unflatten(
      jax.tree.structure(params),
      [np.einsum("nm,nml->nl", u, j).reshape((num_examples,) + p.shape)
       for j, p in zip(jacobians, jax.tree.leaves(params))])
  actual = jax.jit(functools.partial(ij.fisher.per_example_vjp, apply_fn, chunk_size=3))(
      params, inputs, cotangents)
  _assert_close(actual, expected, 1e-10)


def test_per_example_vjp_of_the_nll_gradient_is_the_per_example_gradient(x64):
  apply_fn, params, inputs, targets = _case("mlp", 4, jnp.float64)
  outputs = apply_fn(params, inputs)
  cotangents = jax.vmap(jax.grad(lambda z, y: jnp.sum(LIK.nll(z, y))))(outputs, targets)
  actual = jax.jit(functools.partial(ij.fisher.per_example_vjp, apply_fn))(
      params, inputs, cotangents)
  expected = ij.fisher.reference.per_example_grads(apply_fn, params, (inputs, targets),
                                                   likelihood=LIK)
  _assert_close(actual, expected, 1e-10)


def test_jacobian_arguments_are_checked():
  apply_fn, params, inputs, _ = _case("plain", 4, jnp.float32)
  outputs = apply_fn(params, inputs)
  jacobians = ij.fisher.per_example_jacobians
  with pytest.raises(ValueError, match="wrt must be one of"):
    jacobians(apply_fn, params, inputs, wrt="weights")
  with pytest.raises(TypeError, match="params: every leaf must be a floating"):
    jacobians(apply_fn, {**params, "b": jnp.arange(4)}, inputs)
  with pytest.raises(ValueError, match="same leading"):
    jacobians(apply_fn, params, {**inputs, "mask": inputs["mask"][:2]})
  with pytest.raises(ValueError, match="leading example axis N = 4"):
    jacobians(lambda p, x: apply_fn(p, x).sum(0, keepdims=True), params, inputs)
  with pytest.raises(ValueError, match="chunk_size"):
    jacobians(apply_fn, params, inputs, chunk_size=0)
  with pytest.raises(TypeError, match='wrt="inputs" every leaf must be a floating'):
    jacobians(apply_fn, params, {**inputs, "mask": jnp.ones((4, 2, 3), jnp.int32)}, wrt="inputs")
  with pytest.raises(TypeError, match="apply_fn must be callable"):
    jacobians(None, params, inputs)
  with pytest.raises(ValueError, match="tangent leaves must have shape"):
    ij.fisher.per_example_jvp(apply_fn, params, inputs, {**params, "b": jnp.ones(3)})
  with pytest.raises(ValueError, match="tangent must have the pytree structure of inputs"):
    ij.fisher.per_example_jvp(apply_fn, params, inputs, params, wrt="inputs")
  with pytest.raises(ValueError, match=r"tangent leaves must have shape \(4, 2, 3\)"):
    ij.fisher.per_example_jvp(apply_fn, params, inputs, jax.tree.map(lambda x: x[0], inputs),
                              wrt="inputs")
  with pytest.raises(ValueError, match=r"cotangents must be an array .* = \(4, 4\); got \(4, 2\)"):
    ij.fisher.per_example_vjp(apply_fn, params, inputs, outputs[:, :2])


# ----------------------------------------------------------------------------------------------
# Hessian diagonals.
# ----------------------------------------------------------------------------------------------


def _reference_hessian_diagonal(apply_fn, params, inputs, targets):
  hessian = ij.fisher.reference.hessian(apply_fn, params, (inputs, targets), likelihood=LIK)
  _, unravel = jax.flatten_util.ravel_pytree(_cast(params, jnp.float64))
  return unravel(jnp.diag(hessian)), np.asarray(hessian)


@pytest.mark.parametrize("case", ["mlp", "cnn", "sequence", "plain"])
def test_exact_hessian_diagonal_matches_reference(case, x64):
  apply_fn, params, inputs, targets = _case(case, 4, jnp.float64)
  expected, _ = _reference_hessian_diagonal(apply_fn, params, inputs, targets)
  for dtype, chunk_size in ((jnp.float64, None), (jnp.float32, 7)):
    actual = jax.jit(functools.partial(ij.fisher.hessian_diagonal, apply_fn, likelihood=LIK,
                                       chunk_size=chunk_size))(
                                           _cast(params, dtype), (_cast(inputs, dtype), targets))
    assert all(a.dtype == dtype for a in jax.tree.leaves(actual))
    _assert_close(actual, expected, _tolerance(dtype))


def test_exact_hessian_diagonal_of_one_example(x64):
  apply_fn, params, inputs, targets = _case("plain", 1, jnp.float64)
  expected, _ = _reference_hessian_diagonal(apply_fn, params, inputs, targets)
  actual = ij.fisher.hessian_diagonal(apply_fn, params, (inputs, targets), likelihood=LIK,
                                      chunk_size=5)
  _assert_close(actual, expected, 1e-10)


def test_hutchinson_is_exact_with_zero_error_for_a_diagonal_hessian(x64):
  """With z_i**2 = 1, every probe of a diagonal Hessian returns the diagonal itself; Gaussian
  probes, or a z o Hz with a wrong sign or scale, would not."""
  keys = jax.random.split(jax.random.key(5), 4)
  params = {"w": jax.random.normal(keys[0], (3, 4), jnp.float64),
            "b": jax.random.normal(keys[1], (4,), jnp.float64)}
  inputs = jax.random.normal(keys[2], (6, 3, 4), jnp.float64)
  targets = jax.random.normal(keys[3], (6, 16), jnp.float64)

  def apply_fn(p, x):
    # Every output depends on one weight, so the Hessian of the Gaussian nll is diagonal.
    return jnp.concatenate([(x * p["w"][None]).reshape(x.shape[0], 12),
                            p["b"][None] ** 3 * x[:, 0, :]], axis=1)

  batch = (inputs, targets)
  lik = ij.likelihoods.gaussian(scale=0.5)
  hessian = ij.fisher.reference.hessian(apply_fn, params, batch, likelihood=lik)
  assert np.allclose(hessian, np.diag(np.diag(hessian)), atol=1e-12)
  exact = jax.flatten_util.ravel_pytree(params)[1](np.diag(hessian))
  estimate = jax.jit(functools.partial(
      ij.fisher.hessian_diagonal, apply_fn, likelihood=lik, method="hutchinson", num_samples=5))(
          params, batch, key=jax.random.key(0))
  assert isinstance(estimate, ij.fisher.Estimate)
  _assert_close(estimate.mean, exact, 1e-12)
  for error in jax.tree.leaves(estimate.standard_error):
    assert np.max(error) <= 1e-12


def test_hutchinson_is_unbiased_with_the_right_standard_error(x64):
  apply_fn, params, inputs, targets = _case("mlp", 4, jnp.float64)
  batch = (inputs, targets)
  exact, hessian = _reference_hessian_diagonal(apply_fn, params, inputs, targets)
  # Per probe, Var[(z o Hz)_i] = sum_{j != i} H_ij**2.
  off_diagonal = hessian - np.diag(np.diag(hessian))
  _, unravel = jax.flatten_util.ravel_pytree(exact)
  estimate_fn = jax.jit(functools.partial(ij.fisher.hessian_diagonal, apply_fn, likelihood=LIK,
                                          method="hutchinson"), static_argnames="num_samples")
  errors = {}
  for num_samples in (300, 1200):
    estimate = estimate_fn(params, batch, key=jax.random.key(num_samples),
                           num_samples=num_samples)
    predicted = unravel(np.sqrt(np.sum(off_diagonal ** 2, axis=1) / num_samples))
    for mean, error, value, expected_error in zip(
        jax.tree.leaves(estimate.mean), jax.tree.leaves(estimate.standard_error),
        jax.tree.leaves(exact), jax.tree.leaves(predicted)):
      assert np.all(np.abs(mean - value) <= 4.5 * error)
      np.testing.assert_allclose(error, expected_error, rtol=0.2)
    errors[num_samples] = np.array([np.mean(e) for e in jax.tree.leaves(estimate.standard_error)])
  np.testing.assert_allclose(errors[300] / errors[1200], 2.0, rtol=0.12)


def test_hessian_diagonal_arguments_are_checked():
  apply_fn, params, inputs, targets = _case("mlp", 4, jnp.float32)
  batch = (inputs, targets)
  with pytest.raises(ValueError, match="method must be one of"):
    ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood=LIK, method="lanczos")
  with pytest.raises(ValueError, match="needs a PRNG key"):
    ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood=LIK, method="hutchinson")
  with pytest.raises(ValueError, match="num_samples must be an integer >= 2"):
    ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood=LIK, method="hutchinson",
                               key=jax.random.key(0), num_samples=1)
  with pytest.raises(ValueError, match="chunk_size"):
    ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood=LIK, chunk_size=-1)
  with pytest.raises(TypeError, match="likelihood must be"):
    ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood="categorical")


# ----------------------------------------------------------------------------------------------
# Gradient covariance.
# ----------------------------------------------------------------------------------------------


def _covariance_calls(apply_fn, params, batch, v, *, methods=("auto",), chunk_size=None):
  """``(diagonals by method, trace, product)``, all from one jitted program."""
  call = functools.partial(ij.fisher.gradient_covariance, apply_fn, likelihood=LIK,
                           chunk_size=chunk_size)

  def outputs(p, b, v):
    return ([call(p, b, output="diagonal", method=m) for m in methods], call(p, b, output="trace"),
            call(p, b, output="product", v=v))

  return jax.jit(outputs)(params, batch, v)


@pytest.mark.parametrize("case", ["mlp", "cnn", "plain"])
def test_gradient_covariance_matches_reference(case, x64):
  apply_fn, params, inputs, targets = _case(case, 4, jnp.float64)
  batch = (inputs, targets)
  covariance = np.asarray(ij.fisher.reference.gradient_covariance(apply_fn, params, batch,
                                                                  likelihood=LIK))
  _, unravel = jax.flatten_util.ravel_pytree(params)
  v = _perturbed(jax.tree.map(jnp.zeros_like, params), jax.random.key(2))
  flat_v = np.asarray(jax.flatten_util.ravel_pytree(v)[0])
  expected_diagonal, expected_product = unravel(np.diag(covariance)), unravel(covariance @ flat_v)
  # "auto" takes the factored strategy for the flax models and vmap for the plain function.
  runs = [(jnp.float64, ("vmap", "auto"), None), (jnp.float32, ("auto",), 2)]
  for dtype, methods, chunk_size in runs:
    diagonals, trace, product = _covariance_calls(
        apply_fn, _cast(params, dtype), (_cast(inputs, dtype), targets), _cast(v, dtype),
        methods=methods, chunk_size=chunk_size)
    for diagonal in diagonals:
      assert all(d.dtype == dtype for d in jax.tree.leaves(diagonal))
      _assert_close(diagonal, expected_diagonal, _tolerance(dtype))
    np.testing.assert_allclose(trace, np.trace(covariance), rtol=_tolerance(dtype))
    _assert_close(product, expected_product, _tolerance(dtype))
  # D is a covariance: positive semi-definite, of rank at most N - 1.
  eigenvalues = np.linalg.eigvalsh(covariance)
  assert eigenvalues.min() >= -1e-12 * eigenvalues.max()
  assert np.sum(eigenvalues > 1e-10 * eigenvalues.max()) <= 3


def test_gradient_covariance_of_one_example_is_zero(x64):
  apply_fn, params, inputs, targets = _case("mlp", 1, jnp.float64)
  batch = (inputs, targets)
  scale = max(float(np.max(np.asarray(g) ** 2)) for g in jax.tree.leaves(
      ij.fisher.reference.per_example_grads(apply_fn, params, batch, likelihood=LIK)))
  v = jax.tree.map(jnp.ones_like, params)
  diagonals, trace, product = _covariance_calls(apply_fn, params, batch, v)
  for leaf in jax.tree.leaves((diagonals, trace, product)):
    assert np.max(np.abs(leaf)) <= 1e-10 * scale


def test_gradient_covariance_arguments_are_checked():
  apply_fn, params, inputs, targets = _case("mlp", 4, jnp.float32)
  batch = (inputs, targets)
  covariance = functools.partial(ij.fisher.gradient_covariance, apply_fn, params, batch,
                                 likelihood=LIK)
  with pytest.raises(ValueError, match="output must be one of"):
    covariance(output="matrix")
  with pytest.raises(ValueError, match="needs v="):
    covariance(output="product")
  with pytest.raises(ValueError, match='v is used only with output="product"'):
    covariance(output="trace", v=params)
  with pytest.raises(ValueError, match="v must have the pytree structure of params"):
    covariance(output="product", v=jax.tree.leaves(params))
  with pytest.raises(ValueError, match="v leaves must have the shapes of params"):
    covariance(output="product", v=jax.tree.map(lambda x: x[..., :1], params))
  with pytest.raises(ValueError, match="method must be one of"):
    covariance(method="dense")


# ----------------------------------------------------------------------------------------------
# Lanczos eigenvalues and stochastic Lanczos quadrature.
# ----------------------------------------------------------------------------------------------


def _matrix_operator(matrix, dtype=jnp.float64):
  """A pytree operator ``v -> A v`` over params {"a": (3, 2), "b": (6,)}, and the params."""
  params = {"a": jnp.zeros((3, 2), dtype), "b": jnp.zeros((6,), dtype)}
  _, unravel = jax.flatten_util.ravel_pytree(params)
  matrix = jnp.asarray(matrix, dtype)

  def matvec(v):
    return unravel(matrix @ jax.flatten_util.ravel_pytree(v)[0])

  return matvec, params


def _random_psd(seed, size=12, rank=None):
  rng = np.random.default_rng(seed)
  factor = rng.standard_normal((size, rank or size))
  return factor @ factor.T / size


def _check_eigenpairs(result, matrix, k, tolerance):
  values, vectors = np.linalg.eigh(matrix)
  values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
  np.testing.assert_allclose(result.eigenvalues, values, rtol=tolerance)
  flat = np.stack([np.asarray(jax.flatten_util.ravel_pytree(
      jax.tree.map(lambda x, i=i: x[i], result.eigenvectors))[0]) for i in range(k)])
  overlaps = np.abs(np.sum(flat * vectors.T, axis=1))
  np.testing.assert_allclose(overlaps, 1.0, atol=max(tolerance, 1e-8))


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_eigenvalues_match_dense_eigh(precision, x64):
  dtype = jnp.float64 if precision == "float64" else jnp.float32
  matrix = _random_psd(0)
  matvec, params = _matrix_operator(matrix, dtype)
  eigen = jax.jit(functools.partial(ij.fisher.eigenvalues, matvec, k=4, num_iterations=12))
  result = eigen(params, key=jax.random.key(0))
  assert isinstance(result, ij.fisher.Eigenpairs)
  assert result.eigenvalues.shape == (4,) and result.eigenvalues.dtype == dtype
  assert result.eigenvectors["a"].shape == (4, 3, 2)
  _check_eigenpairs(result, matrix, 4, 1e-8 if dtype == jnp.float64 else 1e-4)


def test_eigenvalues_survive_breakdown_without_nans(x64):
  """Repeated eigenvalues and a null space make the Krylov space invariant after 3 steps."""
  rng = np.random.default_rng(1)
  basis, _ = np.linalg.qr(rng.standard_normal((12, 12)))
  spectrum = np.array([5.0, 5.0, 5.0, 2.0, 2.0] + [0.0] * 7)
  matrix = basis @ np.diag(spectrum) @ basis.T
  matvec, params = _matrix_operator(matrix)
  result = ij.fisher.eigenvalues(matvec, params, k=6, num_iterations=12, key=jax.random.key(3))
  np.testing.assert_allclose(result.eigenvalues, spectrum[:6], atol=1e-10)
  flat = np.stack([np.asarray(jax.flatten_util.ravel_pytree(
      jax.tree.map(lambda x, i=i: x[i], result.eigenvectors))[0]) for i in range(6)])
  assert np.all(np.isfinite(flat))
  np.testing.assert_allclose(flat @ flat.T, np.eye(6), atol=1e-10)
  np.testing.assert_allclose(flat @ matrix, result.eigenvalues[:, None] * flat, atol=1e-10)
  # The quadrature puts no weight on the blocks after a restart: the moments stay exact.
  density = ij.fisher.spectral_density(matvec, params, num_iterations=12, num_probes=3,
                                       key=jax.random.key(4))
  assert np.all(np.isfinite(density.nodes)) and np.all(np.isfinite(density.density))
  probes = np.stack([np.asarray(jax.random.rademacher(k, (12,), jnp.float64))
                     for k in jax.random.split(jax.random.key(4), 3)])
  for power in range(4):
    exact = np.einsum("pi,ij,pj->p", probes, np.linalg.matrix_power(matrix, power), probes) / 12
    np.testing.assert_allclose(np.sum(density.weights * density.nodes ** power, axis=1), exact,
                               rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(np.sum(density.weights, axis=1), 1.0, atol=1e-12)
  zero = ij.fisher.eigenvalues(lambda v: jax.tree.map(jnp.zeros_like, v), params, k=2,
                               num_iterations=5, key=jax.random.key(0))
  assert np.all(zero.eigenvalues == 0.0)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(zero.eigenvectors))


def _fisher_case():
  apply_fn, params, inputs, targets = _case("mlp", 4, jnp.float64)
  batch = (inputs, targets)

  def matvec(v):
    return ij.fisher.vector_product(apply_fn, params, batch, v, likelihood=LIK, kind="true")

  fisher = np.asarray(ij.fisher.reference.matrix(apply_fn, params, batch, likelihood=LIK,
                                                 kind="true"))
  return matvec, params, fisher


def test_fisher_spectrum_matches_dense_reference(x64):
  matvec, params, fisher = _fisher_case()
  size = fisher.shape[0]
  eigen = jax.jit(functools.partial(ij.fisher.eigenvalues, matvec, k=3, num_iterations=size))
  _check_eigenpairs(eigen(params, key=jax.random.key(1)), fisher, 3, 1e-8)
  # A few steps suffice for the top eigenvalue of this low-rank (rank 8) Fisher.
  few = ij.fisher.eigenvalues(matvec, params, k=1, num_iterations=10, key=jax.random.key(2))
  np.testing.assert_allclose(few.eigenvalues, np.linalg.eigvalsh(fisher)[-1:], rtol=1e-8)


def test_stochastic_lanczos_quadrature_moments_and_density(x64):
  matrix = _random_psd(2)
  size = matrix.shape[0]
  matvec, params = _matrix_operator(matrix)
  num_probes, key = 40, jax.random.key(7)
  result = jax.jit(functools.partial(ij.fisher.spectral_density, matvec, num_iterations=4,
                                     num_probes=num_probes))(params, key=key)
  assert isinstance(result, ij.fisher.SpectralDensity)
  assert result.nodes.shape == result.weights.shape == (num_probes, 4)
  np.testing.assert_allclose(np.sum(result.weights, axis=1), 1.0, atol=1e-12)
  # Gauss quadrature with m = 4 nodes is exact for polynomials of degree < 8 (probe i as
  # documented): sum_l tau_l theta_l**p = z^T A^p z / P.
  probes = np.stack([np.asarray(jax.random.rademacher(k, (size,), jnp.float64))
                     for k in jax.random.split(key, num_probes)])
  for power in range(8):
    quadrature = np.sum(result.weights * result.nodes ** power, axis=1)
    exact = np.einsum("pi,ij,pj->p", probes, np.linalg.matrix_power(matrix, power), probes) / size
    np.testing.assert_allclose(quadrature, exact, rtol=1e-9)
  estimates = np.sum(result.weights * result.nodes, axis=1)
  standard_error = np.std(estimates, ddof=1) / np.sqrt(num_probes)
  assert abs(np.mean(estimates) - np.trace(matrix) / size) <= 4 * standard_error
  values = np.linalg.eigvalsh(matrix)
  assert np.all(result.nodes >= values[0] - 1e-10) and np.all(result.nodes <= values[-1] + 1e-10)
  # The smoothed density is non-negative and integrates to 1 on the default grid.
  assert np.all(result.density >= 0.0)
  np.testing.assert_allclose(np.trapezoid(result.density, result.grid), 1.0, atol=1e-3)
  # With every node resolved (m = P), each probe's nodes are the eigenvalues, with weights
  # (z . u_i)**2 / P of mean 1/P; on a custom grid the density is the stated Gaussian mixture.
  grid = jnp.linspace(-1.0, 4.0, 256)
  full = ij.fisher.spectral_density(matvec, params, num_iterations=size, num_probes=100, key=key,
                                    grid=grid, sigma=0.05)
  np.testing.assert_allclose(full.nodes, np.broadcast_to(values, (100, size)), atol=1e-10)
  np.testing.assert_allclose(np.mean(full.weights, axis=0), 1.0 / size, atol=0.05)
  assert full.grid.shape == (256,)
  kernel = np.exp(-0.5 * ((np.asarray(grid)[:, None, None] - np.asarray(full.nodes)[None]) / 0.05)
                  ** 2) / (0.05 * np.sqrt(2 * np.pi))
  np.testing.assert_allclose(full.density, np.sum(kernel * np.asarray(full.weights)[None],
                                                  axis=(1, 2)) / 100, rtol=1e-10, atol=1e-14)


def test_spectrum_arguments_are_checked():
  matvec, params = _matrix_operator(_random_psd(0), jnp.float32)
  key = jax.random.key(0)
  eigen = functools.partial(ij.fisher.eigenvalues, matvec, params)
  with pytest.raises(ValueError, match="k must be a positive integer"):
    eigen(k=0, num_iterations=5, key=key)
  with pytest.raises(ValueError, match="k must be at most num_iterations = 5"):
    eigen(k=6, num_iterations=5, key=key)
  with pytest.raises(ValueError, match="num_iterations must be at most the number of parameters"):
    eigen(k=2, num_iterations=13, key=key)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    eigen(k=2, num_iterations=5, key=None)
  with pytest.raises(ValueError, match="matvec"):
    ij.fisher.eigenvalues(lambda v: v["a"], params, k=1, num_iterations=3, key=key)
  density = functools.partial(ij.fisher.spectral_density, matvec, params, num_iterations=3)
  with pytest.raises(ValueError, match="num_probes must be a positive integer"):
    density(num_probes=0, key=key)
  with pytest.raises(ValueError, match="needs a PRNG key"):
    density(num_probes=2, key=None)
  with pytest.raises(ValueError, match="sigma must be positive"):
    density(num_probes=2, key=key, sigma=0.0)
  with pytest.raises(ValueError, match="grid must be a 1-D array"):
    density(num_probes=2, key=key, grid=jnp.zeros((3, 2)))
  with pytest.raises(ValueError, match="num_iterations must be a positive integer"):
    density(num_probes=2, key=key, num_iterations=0)


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_new_primitives_on_a_sharded_batch_give_the_single_device_answer(axis_type):
  """Each new primitive, jitted on a batch sharded over 8 devices, equals the unsharded call."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = jnp.tanh(nn.Conv(3, (3, 3), strides=2)(x))
      return nn.Dense(3)(x.reshape(x.shape[0], -1))

  module = Net()
  keys = jax.random.split(jax.random.key(0), 3)
  inputs = jax.random.normal(keys[0], (16, 6, 6, 2))
  params = module.init(keys[1], inputs)["params"]
  batch = (inputs, jax.random.randint(keys[2], (16,), 0, 3))
  apply_fn = lambda p, x: module.apply({"params": p}, x)   # noqa: E731
  lik = ij.likelihoods.categorical()
  key = jax.random.key(4)
  calls = {
      "jacobians": lambda p, b: ij.fisher.per_example_jacobians(apply_fn, p, b[0]),
      "jacobians_inputs": lambda p, b: ij.fisher.per_example_jacobians(
          apply_fn, p, b[0], wrt="inputs"),
      "jvp": lambda p, b: ij.fisher.per_example_jvp(apply_fn, p, b[0], p),
      "vjp": lambda p, b: ij.fisher.per_example_vjp(
          apply_fn, p, b[0], jnp.ones((b[0].shape[0], 3))),
      "hutchinson": lambda p, b: ij.fisher.hessian_diagonal(
          apply_fn, p, b, likelihood=lik, method="hutchinson", key=key, num_samples=4),
      "covariance": lambda p, b: ij.fisher.gradient_covariance(apply_fn, p, b, likelihood=lik),
      "covariance_product": lambda p, b: ij.fisher.gradient_covariance(
          apply_fn, p, b, likelihood=lik, output="product", v=p),
      "kfac": lambda p, b: ij.fisher.kfac_factors(apply_fn, p, b, likelihood=lik),
      "eigenvalues": lambda p, b: ij.fisher.eigenvalues(
          lambda v: ij.fisher.vector_product(apply_fn, p, b, v, likelihood=lik), p, k=2,
          num_iterations=4, key=key).eigenvalues,
  }
  types = {"explicit": jax.sharding.AxisType.Explicit, "auto": jax.sharding.AxisType.Auto}
  mesh = jax.make_mesh((8,), ("data",), axis_types=(types[axis_type],))
  sharded = jax.device_put(batch, jax.sharding.NamedSharding(mesh,
                                                             jax.sharding.PartitionSpec("data")))
  replicated = jax.device_put(params, jax.sharding.NamedSharding(mesh,
                                                                 jax.sharding.PartitionSpec()))
  for name, call in calls.items():
    expected = jax.jit(call)(params, batch)
    with jax.set_mesh(mesh):
      actual = jax.jit(call)(replicated, sharded)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=2e-5,
                                 atol=2e-6 * float(np.max(np.abs(e))), err_msg=name)
