"""Exactness of the curvature engine against float64 brute-force references and closed forms."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij
from infojax.fisher import factored

KINDS = ("empirical", "true", "mc")
METHODS = ("vmap", "factored")


# ----------------------------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------------------------


class MLP(nn.Module):
  sizes: tuple = (7, 5)
  outputs: int = 3
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for size in self.sizes:
      x = jnp.tanh(nn.Dense(size, use_bias=self.use_bias)(x))
    return nn.Dense(self.outputs)(x)


class CNN(nn.Module):
  """Convs with strides, several paddings, dilation, with and without bias."""
  outputs: int = 4

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Conv(3, (3, 3), strides=2, padding=1)(x))
    x = jnp.tanh(nn.Conv(4, (2, 2), padding="SAME", use_bias=False)(x))
    x = jnp.tanh(nn.Conv(4, (3, 3), padding="VALID", kernel_dilation=1)(x))
    x = jnp.tanh(nn.Conv(5, (2, 2), padding=((1, 0), (0, 1)), kernel_dilation=(2, 1))(x))
    return nn.Dense(self.outputs)(x.mean(axis=(1, 2)))


class GroupedCNN(nn.Module):
  """A conv the patch path does not cover (grouped, circular) next to a 1-D conv."""

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Conv(4, (3,), padding="CIRCULAR")(x))
    x = jnp.tanh(nn.Conv(4, (3,), feature_group_count=2, strides=2)(x))
    return nn.Dense(3)(x.reshape(x.shape[0], -1))


class SequenceDense(nn.Module):
  """A Dense applied to every position of a sequence: per-example gradients are sums."""

  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Dense(6)(x))            # (N, T, 6)
    return nn.Dense(3)(x.mean(axis=1))


class WithNorms(nn.Module):
  """Normalisation layers, recognised by the factored strategy."""

  @nn.compact
  def __call__(self, x):
    x = nn.GroupNorm(num_groups=2)(nn.Conv(4, (3, 3))(x))
    x = nn.LayerNorm(use_bias=False)(jnp.tanh(nn.Dense(6)(x.mean(axis=(1, 2)))))
    x = nn.RMSNorm()(jnp.tanh(nn.Dense(5)(x)))
    return nn.Dense(3)(x)


class WithUnrecognisedLayer(nn.Module):
  """A parameterised layer that the factored strategy does not recognise."""

  @nn.compact
  def __call__(self, x):
    x = nn.Embed(4, 3)(jnp.argmax(x, axis=-1))       # (N, 3)
    return nn.Dense(3)(jnp.tanh(nn.Dense(6)(x)))


def _flax_case(module, input_shape, num_examples=6, seed=0, outputs=3):
  keys = jax.random.split(jax.random.key(seed), 4)
  inputs = jax.random.normal(keys[0], (num_examples,) + input_shape)
  params = module.init(keys[1], inputs)["params"]
  # Move away from the initialisation so that no gradient is structurally small.
  leaves, treedef = jax.tree.flatten(params)
  noise = jax.random.split(keys[2], len(leaves))
  params = jax.tree.unflatten(
      treedef, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, noise)])
  targets = jax.random.randint(keys[3], (num_examples,), 0, outputs)
  return (lambda p, x: module.apply({"params": p}, x)), params, (inputs, targets)


def _plain_case(num_examples=5, seed=1):
  """A model that is a plain function of a dict of arrays (no flax)."""
  keys = jax.random.split(jax.random.key(seed), 5)
  params = {"w1": jax.random.normal(keys[0], (4, 6)), "b1": jax.random.normal(keys[1], (6,)),
            "w2": jax.random.normal(keys[2], (6, 3))}

  def apply_fn(p, x):
    return jnp.sin(x @ p["w1"] + p["b1"][None]) @ p["w2"]

  inputs = jax.random.normal(keys[3], (num_examples, 4))
  targets = jax.random.randint(keys[4], (num_examples,), 0, 3)
  return apply_fn, params, (inputs, targets)


CASES = {
    "mlp": lambda: _flax_case(MLP(), (2, 3)),
    "mlp_nobias": lambda: _flax_case(MLP(use_bias=False), (4,)),
    "cnn": lambda: _flax_case(CNN(), (9, 9, 2), outputs=4),
    "grouped_cnn": lambda: _flax_case(GroupedCNN(), (8, 2)),
    "sequence_dense": lambda: _flax_case(SequenceDense(), (5, 4)),
    "norms": lambda: _flax_case(WithNorms(), (5, 5, 2)),
    "plain_function": _plain_case,
}


def _leaf_errors(actual, expected):
  """``{leaf path: ||a - e|| / max(||e||, tiny)}`` over the leaves of two pytrees of one
  structure."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected), (
      jax.tree.structure(actual), jax.tree.structure(expected))
  errors = {}
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    assert a.shape == e.shape, (jax.tree_util.keystr(path), a.shape, e.shape)
    norm = max(float(np.linalg.norm(e)), np.finfo(np.float64).tiny)
    errors[jax.tree_util.keystr(path) or "<root>"] = float(np.linalg.norm(a - e)) / norm
  return errors


def _assert_close(actual, expected, tol, message=""):
  """Every leaf's relative error is at most ``tol`` (NaN fails); names the leaves that are not."""
  errors = _leaf_errors(actual, expected)
  failures = {path: error for path, error in errors.items() if not error <= tol}
  assert not failures, (
      f"{message}: relative error above {tol:g} in "
      + ", ".join(f"{path} ({error:.3g})" for path, error in failures.items()))


def _global_relative_error(actual, expected):
  """One norm over all leaves: a size of the error for rates (Monte Carlo), not a closeness test."""
  actual = np.concatenate([np.ravel(x).astype(np.float64) for x in jax.tree.leaves(actual)])
  expected = np.concatenate([np.ravel(x).astype(np.float64) for x in jax.tree.leaves(expected)])
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def _tolerance(dtype):
  return 1e-10 if dtype == jnp.float64 else 1e-5


def _cast(tree, dtype):
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


LIK = ij.likelihoods.categorical()

_STATIC = ("likelihood", "kind", "mc_samples", "method", "chunk_size")
diagonal = jax.jit(ij.fisher.diagonal, static_argnums=0, static_argnames=_STATIC)
trace = jax.jit(ij.fisher.trace, static_argnums=0, static_argnames=_STATIC + ("per_leaf",))
per_example_grads = jax.jit(ij.fisher.per_example_grads, static_argnums=0,
                            static_argnames=("likelihood", "method", "chunk_size"))


# ----------------------------------------------------------------------------------------------
# Diagonals and traces against the float64 reference.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_diagonal_matches_reference(case, kind, precision, x64):
  apply_fn, params, batch = CASES[case]()
  dtype = jnp.float64 if precision == "float64" else jnp.float32
  params, batch = _cast(params, dtype), _cast(batch, dtype)
  key = jax.random.key(7)
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind,
                                          key=key, mc_samples=3)
  methods = METHODS if ij.fisher.plan(apply_fn, params, batch[0]).reason is None else ("vmap",)
  for method in methods + ("auto",):
    actual = diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind, key=key,
                      mc_samples=3, method=method)
    assert jax.tree.structure(actual) == jax.tree.structure(params)
    assert all(a.dtype == dtype for a in jax.tree.leaves(actual))
    _assert_close(actual, expected, _tolerance(dtype), method)


@pytest.mark.parametrize("block", [None, 1, 3])
@pytest.mark.parametrize("case", ["cnn", "grouped_cnn", "norms"])
def test_columns_in_blocks_match_reference(case, block, monkeypatch, x64):
  """Every way of pulling the output columns back: all, one, or three at a time (4 true-Fisher
  columns leave a remainder); see factored.column_block."""
  monkeypatch.setattr(factored, "column_block", lambda *args: block)
  apply_fn, params, batch = CASES[case]()
  params, batch = _cast(params, jnp.float64), _cast(batch, jnp.float64)
  key = jax.random.key(3)
  for kind in ("true", "mc"):
    expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind,
                                            key=key, mc_samples=3)
    actual = jax.jit(lambda p, b, kind=kind: ij.fisher.diagonal(
        apply_fn, p, b, likelihood=LIK, kind=kind, key=key, mc_samples=3, method="factored"))(
            params, batch)
    _assert_close(actual, expected, 1e-10, kind)
    norms = jax.jit(lambda p, b, kind=kind: ij.fisher.trace(
        apply_fn, p, b, likelihood=LIK, kind=kind, key=key, mc_samples=3, method="factored"))(
            params, batch)
    np.testing.assert_allclose(norms, sum(float(jnp.sum(x)) for x in jax.tree.leaves(expected)),
                               rtol=1e-10)


@pytest.mark.parametrize("case", ["mlp", "cnn", "plain_function"])
@pytest.mark.parametrize("kind", KINDS)
def test_trace_matches_reference(case, kind, x64):
  apply_fn, params, batch = CASES[case]()
  key = jax.random.key(3)
  expected = ij.fisher.reference.trace(apply_fn, params, batch, likelihood=LIK, kind=kind, key=key)
  for method in ("vmap", "auto"):
    actual = trace(apply_fn, params, batch, likelihood=LIK, kind=kind, key=key,
                   method=method)
    assert abs(float(actual) - float(expected)) <= 1e-10 * abs(float(expected)), method
    per_leaf = trace(apply_fn, params, batch, likelihood=LIK, kind=kind, key=key,
                     method=method, per_leaf=True)
    assert jax.tree.structure(per_leaf) == jax.tree.structure(params)
    np.testing.assert_allclose(sum(jax.tree.leaves(per_leaf)), actual, rtol=1e-10)


@pytest.mark.parametrize("case", ["mlp", "cnn", "sequence_dense", "plain_function"])
def test_a_batch_of_one_example_matches_reference(case, x64):
  """N = 1: diagonals (every kind), trace and per-example gradients of a single example, every
  method ("auto" is one of them, chosen by the same plan)."""
  apply_fn, params, batch = CASES[case]()
  batch = jax.tree.map(lambda x: x[:1], batch)
  key = jax.random.key(5)
  methods = METHODS if ij.fisher.plan(apply_fn, params, batch[0]).reason is None else ("vmap",)
  for kind in KINDS:
    expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind,
                                            key=key, mc_samples=2)
    expected_trace = sum(float(jnp.sum(x)) for x in jax.tree.leaves(expected))
    for method in methods:
      actual = diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind, key=key,
                        mc_samples=2, method=method)
      _assert_close(actual, expected, 1e-10, f"{kind} {method}")
      if kind == "true":    # the trace's columns are those of the diagonal
        actual_trace = trace(apply_fn, params, batch, likelihood=LIK, kind=kind, method=method)
        np.testing.assert_allclose(actual_trace, expected_trace, rtol=1e-10, err_msg=method)
  expected = ij.fisher.reference.per_example_grads(apply_fn, params, batch, likelihood=LIK)
  expected_norms = np.sqrt(sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(expected)))
  for method in methods:
    actual = per_example_grads(apply_fn, params, batch, likelihood=LIK, method=method)
    _assert_close(actual, expected, 1e-10, method)
    norms = ij.fisher.per_example_grad_norms(apply_fn, params, batch, likelihood=LIK,
                                             method=method)
    assert norms.shape == (1,)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-10, err_msg=method)


# The default chunking and column blocking depend on jax.device_count(), which is 8 in this suite
# (conftest.py): this runs the defaults of a single-device user in a fresh process.
_ONE_DEVICE_SCRIPT = r"""
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, sys.argv[1])
import infojax as ij  # noqa: E402
import test_fisher as t  # noqa: E402

errors, dtypes = {}, set()
for case in ("mlp", "cnn"):
  apply_fn, params, batch = t.CASES[case]()
  for kind in ("empirical", "true"):
    expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=t.LIK, kind=kind)
    expected_trace = sum(float(x.sum()) for x in jax.tree.leaves(expected))
    for method in ("auto", "vmap", "factored"):
      name = f"{case}/{kind}/{method}"
      actual = t.diagonal(apply_fn, params, batch, likelihood=t.LIK, kind=kind, method=method)
      dtypes.update(str(x.dtype) for x in jax.tree.leaves(actual))
      for leaf, error in t._leaf_errors(actual, expected).items():
        errors[f"{name}/diagonal{leaf}"] = error
      value = float(t.trace(apply_fn, params, batch, likelihood=t.LIK, kind=kind, method=method))
      errors[f"{name}/trace"] = abs(value - expected_trace) / abs(expected_trace)
print(json.dumps({"devices": jax.device_count(), "dtypes": sorted(dtypes), "errors": errors}))
"""


def test_single_device_defaults_match_reference():
  """chunk_size=None and every method on ONE device (XLA_FLAGS without the device count)."""
  env = dict(os.environ)
  flags = [flag for flag in env.get("XLA_FLAGS", "").split()
           if "xla_force_host_platform_device_count" not in flag]
  env.pop("XLA_FLAGS", None)
  if flags:
    env["XLA_FLAGS"] = " ".join(flags)
  env["JAX_PLATFORMS"] = "cpu"
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  result = subprocess.run([sys.executable, "-c", _ONE_DEVICE_SCRIPT, tests_dir], env=env,
                          cwd=os.path.dirname(tests_dir), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["devices"] == 1, report
  assert report["dtypes"] == ["float64"], report
  failures = {name: error for name, error in report["errors"].items() if not error <= 1e-10}
  assert not failures, failures


def test_factored_strategy_is_chosen_only_when_every_parameter_is_understood():
  for case in ("mlp", "cnn", "grouped_cnn", "sequence_dense", "norms"):
    apply_fn, params, batch = CASES[case]()
    assert ij.fisher.plan(apply_fn, params, batch[0]).reason is None, case
  apply_fn, params, batch = _flax_case(WithUnrecognisedLayer(), (4,))
  reason = ij.fisher.plan(apply_fn, params, batch[0]).reason
  assert "Embed" in reason
  with pytest.raises(ValueError, match="factored"):
    ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK, method="factored")
  apply_fn, params, batch = _plain_case()
  assert ij.fisher.plan(apply_fn, params, batch[0]).reason is not None


def test_auto_is_exact_for_a_model_with_unrecognised_layers(x64):
  apply_fn, params, batch = _flax_case(WithUnrecognisedLayer(), (4,))
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  actual = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  _assert_close(actual, expected, 1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_chunking_and_jit_do_not_change_the_result(method):
  apply_fn, params, batch = CASES["cnn"]()
  full = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true", method=method)
  for chunk_size in (1, 4, 6, 100):
    chunked = jax.jit(lambda p, b, c=chunk_size: ij.fisher.diagonal(
        apply_fn, p, b, likelihood=LIK, kind="true", method=method, chunk_size=c))(params, batch)
    _assert_close(chunked, full, 1e-6, f"chunk_size={chunk_size}")


def test_diagonal_is_vmappable_over_parameter_sets():
  apply_fn, params, batch = CASES["mlp"]()
  stacked = jax.tree.map(lambda p: jnp.stack([p, 0.5 * p]), params)
  batched = jax.vmap(lambda p: ij.fisher.diagonal(apply_fn, p, batch, likelihood=LIK))(stacked)
  for i, scale in enumerate((1.0, 0.5)):
    single = diagonal(apply_fn, jax.tree.map(lambda p: scale * p, params), batch,
                      likelihood=LIK)
    _assert_close(jax.tree.map(lambda b: b[i], batched), single, 1e-6, f"scale={scale}")


# ----------------------------------------------------------------------------------------------
# Other likelihoods.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", [ij.likelihoods.gaussian(0.7), ij.likelihoods.bernoulli()],
                         ids=["gaussian", "bernoulli"])
@pytest.mark.parametrize("kind", KINDS)
def test_other_likelihoods_match_reference(likelihood, kind, x64):
  apply_fn, params, (inputs, _) = CASES["cnn"]()
  outputs = apply_fn(params, inputs)
  if likelihood.name == "gaussian":
    targets = outputs + jax.random.normal(jax.random.key(2), outputs.shape)
  else:
    targets = jax.random.bernoulli(jax.random.key(2), 0.4, outputs.shape).astype(jnp.float32)
  batch = (inputs, targets)
  key = jax.random.key(4)
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=likelihood,
                                          kind=kind, key=key, mc_samples=2)
  for method in METHODS:
    actual = diagonal(apply_fn, params, batch, likelihood=likelihood, kind=kind,
                      key=key, mc_samples=2, method=method)
    _assert_close(actual, expected, 1e-10, method)


def test_sequence_outputs_use_one_fisher_block_per_prediction(x64):
  """Categorical outputs with an extra axis: the output Fisher is block-diagonal over positions."""

  class PerPosition(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(jnp.tanh(nn.Dense(4)(x)))   # (N, T, 3) logits

  apply_fn, params, (inputs, _) = _flax_case(PerPosition(), (2, 5))
  targets = jax.random.randint(jax.random.key(0), inputs.shape[:2], 0, 3)
  batch = (inputs, targets)
  # Brute force: E_y over the T independent predictions of sum_t grad nll_t, exactly.
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  for method in METHODS:
    actual = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true",
                      method=method)
    _assert_close(actual, expected, 1e-10, method)
  # The true Fisher is an expectation of squared gradients over the sampled labels: check that
  # the columns' outer products equal the exact covariance of grad_z nll for one example.
  logits = apply_fn(params, inputs[:1])[0]
  factor = LIK.fisher_factor(logits).reshape(6, 6)
  probs = jax.nn.softmax(logits, axis=-1)
  covariance = jax.scipy.linalg.block_diag(*[jnp.diag(p) - jnp.outer(p, p) for p in probs])
  np.testing.assert_allclose(factor.T @ factor, covariance, atol=1e-12)


def test_reference_true_fisher_comes_from_its_definition_not_the_factor(x64):
  """A wrong ``fisher_factor`` changes the engine's true Fisher but not the reference's."""
  apply_fn, params, batch = _plain_case()
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  wrong = LIK._replace(fisher_factor=lambda z: 2.0 * LIK.fisher_factor(z))
  _assert_close(ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=wrong,
                                             kind="true"), expected, 1e-12)
  engine = ij.fisher.diagonal(apply_fn, params, batch, likelihood=wrong, kind="true",
                              method="vmap")
  _assert_close(engine, jax.tree.map(lambda x: 4.0 * x, expected), 1e-10)


def test_reference_true_fisher_of_an_unknown_likelihood_is_an_error(x64):
  apply_fn, params, batch = _plain_case()
  unknown = LIK._replace(name="poisson")
  with pytest.raises(ValueError, match="poisson"):
    ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=unknown, kind="true")
  with pytest.raises(ValueError, match="poisson"):
    ij.fisher.reference.matrix(apply_fn, params, batch, likelihood=unknown, kind="true")
  # Only the true Fisher needs the definition: the empirical one works for any likelihood.
  _assert_close(
      ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=unknown),
      ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK), 1e-12)
  no_scale = ij.likelihoods.gaussian(0.5)._replace(scale=None)
  outputs = apply_fn(params, batch[0])
  with pytest.raises(ValueError, match="scale"):
    ij.fisher.reference.diagonal(apply_fn, params, (batch[0], outputs), likelihood=no_scale,
                                 kind="true")


# ----------------------------------------------------------------------------------------------
# Monte Carlo, closed forms.
# ----------------------------------------------------------------------------------------------


def test_mc_converges_to_true_at_the_monte_carlo_rate():
  apply_fn, params, batch = CASES["mlp"]()
  exact = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  errors = {}
  for samples in (16, 1024):
    runs = [diagonal(apply_fn, params, batch, likelihood=LIK, kind="mc",
                     mc_samples=samples, key=jax.random.key(seed)) for seed in range(4)]
    errors[samples] = np.mean([_global_relative_error(r, exact) for r in runs])
  # The error falls like 1/sqrt(S): a factor 8 from 16 to 1024 samples (allow 4 to 16).
  ratio = errors[16] / errors[1024]
  assert 4.0 < ratio < 16.0, errors
  assert errors[1024] < 0.05


def test_fisher_equals_hessian_for_a_model_linear_in_its_parameters(x64):
  """Softmax regression: H = F at every w (science.md §2.5, §15 A.6)."""
  keys = jax.random.split(jax.random.key(0), 3)
  params = {"w": jax.random.normal(keys[0], (4, 3)), "b": jax.random.normal(keys[1], (3,))}
  inputs = jax.random.normal(keys[2], (7, 4))
  targets = jnp.arange(7) % 3

  def apply_fn(p, x):
    return x @ p["w"] + p["b"][None]

  batch = (inputs, targets)
  hessian = ij.fisher.reference.hessian(apply_fn, params, batch, likelihood=LIK)
  fisher = ij.fisher.reference.matrix(apply_fn, params, batch, likelihood=LIK, kind="true")
  assert float(jnp.max(jnp.abs(hessian - fisher))) < 1e-10
  fisher_diagonal = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  flat = jax.flatten_util.ravel_pytree(fisher_diagonal)[0]
  np.testing.assert_allclose(flat, jnp.diag(hessian), rtol=1e-10)
  vector = {"w": jnp.sin(jnp.arange(12.0)).reshape(4, 3), "b": jnp.array([0.3, -1.0, 0.5])}
  hvp = ij.fisher.hessian_vector_product(apply_fn, params, batch, vector, likelihood=LIK)
  fvp = ij.fisher.vector_product(apply_fn, params, batch, vector, likelihood=LIK, kind="true")
  _assert_close(fvp, hvp, 1e-10)


def test_gaussian_linear_regression_fisher_is_the_scaled_gram_matrix(x64):
  """For y ~ N(Xw, s^2), F = X^T X / (N s^2): the diagonal is sum_n x_ni^2 / (N s^2)."""
  inputs = jax.random.normal(jax.random.key(0), (9, 4))
  params = {"w": jax.random.normal(jax.random.key(1), (4, 1))}
  targets = jax.random.normal(jax.random.key(2), (9, 1))
  scale = 0.5
  lik = ij.likelihoods.gaussian(scale)
  actual = diagonal(lambda p, x: x @ p["w"], params, (inputs, targets), likelihood=lik,
                    kind="true")
  expected = jnp.sum(inputs ** 2, axis=0) / (9 * scale ** 2)
  np.testing.assert_allclose(actual["w"][:, 0], expected, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# Per-example gradients and norms; products.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["mlp", "cnn", "sequence_dense", "norms", "plain_function"])
def test_per_example_grads_and_norms_match_reference(case, x64):
  apply_fn, params, batch = CASES[case]()
  expected = ij.fisher.reference.per_example_grads(apply_fn, params, batch, likelihood=LIK)
  expected_norms = ij.fisher.reference.per_example_grad_norms(apply_fn, params, batch,
                                                              likelihood=LIK)
  methods = METHODS if case != "plain_function" else ("vmap",)
  for method in methods:
    actual = per_example_grads(apply_fn, params, batch, likelihood=LIK, method=method)
    _assert_close(actual, expected, 1e-10, method)
    norms = ij.fisher.per_example_grad_norms(apply_fn, params, batch, likelihood=LIK,
                                             method=method, chunk_size=4)
    assert norms.shape == (batch[0].shape[0],)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_vector_product_matches_reference(kind, x64):
  apply_fn, params, batch = CASES["cnn"]()
  vector = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape),
                        params)
  key = jax.random.key(11)
  expected = ij.fisher.reference.vector_product(apply_fn, params, batch, vector, likelihood=LIK,
                                                kind=kind, key=key, mc_samples=2)
  actual = ij.fisher.vector_product(apply_fn, params, batch, vector, likelihood=LIK, kind=kind,
                                    key=key, mc_samples=2)
  _assert_close(actual, expected, 1e-10)
  hvp = ij.fisher.hessian_vector_product(apply_fn, params, batch, vector, likelihood=LIK)
  expected_hvp = ij.fisher.reference.hessian_vector_product(apply_fn, params, batch, vector,
                                                            likelihood=LIK)
  _assert_close(hvp, expected_hvp, 1e-10)


def test_diagonal_is_the_diagonal_of_the_dense_matrix(x64):
  apply_fn, params, batch = CASES["mlp"]()
  matrix = ij.fisher.reference.matrix(apply_fn, params, batch, likelihood=LIK, kind="true")
  fisher_diagonal = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  np.testing.assert_allclose(jax.flatten_util.ravel_pytree(fisher_diagonal)[0], jnp.diag(matrix),
                             rtol=1e-10)


def test_per_layer_and_per_filter_aggregation():
  tree = {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.full((2,), 2.0)},
          "Conv_0": {"kernel": jnp.arange(24.0).reshape(2, 2, 3, 2)}}
  sums = ij.fisher.per_layer(tree)
  assert float(sums["Dense_0"]) == 10.0 and float(sums["Conv_0"]) == float(jnp.arange(24.0).sum())
  means = ij.fisher.per_layer(tree, reduce="mean")
  assert float(means["Dense_0"]) == 10.0 / 8
  filters = ij.fisher.per_filter(tree)
  np.testing.assert_allclose(filters["Conv_0"]["kernel"], [11.0, 12.0])
  assert filters["Dense_0"]["bias"].shape == (2,)
  with pytest.raises(ValueError, match="reduce"):
    ij.fisher.per_layer(tree, reduce="max")


# ----------------------------------------------------------------------------------------------
# Sharded batches.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_sharded_batch_gives_the_single_device_answer(axis_type, kind):
  """Regression: a single vmap of per-example conv gradients over a sharded batch is wrong in
  XLA."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  apply_fn, params, batch = _flax_case(CNN(), (9, 9, 2), num_examples=16, outputs=4)
  expected = diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind)
  types = {"explicit": jax.sharding.AxisType.Explicit, "auto": jax.sharding.AxisType.Auto}
  mesh = jax.make_mesh((8,), ("data",), axis_types=(types[axis_type],))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  sharded = jax.device_put(batch, sharding)
  replicated = jax.device_put(params,
                              jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  for method in METHODS:
    with jax.set_mesh(mesh):
      actual = jax.jit(lambda p, b, m=method: ij.fisher.diagonal(
          apply_fn, p, b, likelihood=LIK, kind=kind, method=m))(replicated, sharded)
    _assert_close(actual, expected, 1e-5, method)
    trace_value = jax.jit(lambda p, b, m=method: ij.fisher.trace(
        apply_fn, p, b, likelihood=LIK, kind=kind, method=m))(replicated, sharded)
    np.testing.assert_allclose(trace_value,
                               sum(float(jnp.sum(x)) for x in jax.tree.leaves(expected)),
                               rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error():
  apply_fn, params, (inputs, targets) = CASES["mlp"]()

  def call(**kw):
    return ij.fisher.diagonal(apply_fn, kw.pop("params", params),
                              kw.pop("batch", (inputs, targets)),
                              likelihood=kw.pop("likelihood", LIK), **kw)
  with pytest.raises(ValueError, match="same leading"):
    call(batch=(inputs, targets[:-1]))
  with pytest.raises(ValueError, match=r"targets must lie in \[0, 2\]"):
    call(batch=(inputs, targets + 3))
  with pytest.raises(TypeError, match="integer class labels"):
    call(batch=(inputs, targets.astype(jnp.float32)))
  with pytest.raises(ValueError, match="targets must have shape"):
    call(batch=(inputs, targets[:, None]))
  bad = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(jnp.nan), params)
  with pytest.raises(ValueError, match="non-finite"):
    call(params=bad)
  with pytest.raises(ValueError, match="kind must be one of"):
    call(kind="fisher")
  with pytest.raises(ValueError, match="method must be one of"):
    call(method="kfac")
  with pytest.raises(ValueError, match="needs a PRNG key"):
    call(kind="mc")
  with pytest.raises(ValueError, match="mc_samples"):
    call(kind="mc", key=jax.random.key(0), mc_samples=0)
  with pytest.raises(ValueError, match="chunk_size"):
    call(chunk_size=0)
  with pytest.raises(TypeError, match="Likelihood"):
    call(likelihood="categorical")
  with pytest.raises(TypeError, match="tuple"):
    ij.fisher.diagonal(apply_fn, params, inputs, likelihood=LIK)
  with pytest.raises(ValueError, match="structure of params"):
    ij.fisher.vector_product(apply_fn, params, (inputs, targets), {"x": 1.0}, likelihood=LIK)
  with pytest.raises(ValueError, match="scale"):
    ij.likelihoods.gaussian(0.0)
  with pytest.raises(ValueError, match="0 or 1"):
    ij.fisher.diagonal(lambda p, x: x @ p, jnp.ones((3, 2)),
                       (jnp.ones((4, 3)), jnp.full((4, 2), 0.5)),
                       likelihood=ij.likelihoods.bernoulli())


# ----------------------------------------------------------------------------------------------
# The library's own models.
# ----------------------------------------------------------------------------------------------


LIBRARY_MODELS = {
    "convnet": (lambda: ij.models.ConvNet(channels=(3, 4, 4), strides=(1, 2, 2), num_classes=5),
                (8, 8, 2)),
    "lenet5": (lambda: ij.models.LeNet5(num_classes=5), (8, 8, 1)),
    "cnn1d": (lambda: ij.models.CNN1D(num_classes=5, channels=(3, 4), kernel_size=3), (12, 1)),
    "allcnn": (lambda: ij.models.AllCNN(num_classes=5, width_multiplier=1 / 24), (8, 8, 3)),
    "resnet18_none": (lambda: ij.models.ResNet18(num_classes=5, width_multiplier=1 / 16,
                                                 norm="none"), (8, 8, 3)),
    "resnet18_group": (lambda: ij.models.ResNet18(num_classes=5, width_multiplier=1 / 16,
                                                  norm="group"), (8, 8, 3)),
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n.startswith("resnet") else n
    for n in sorted(LIBRARY_MODELS)])
def test_library_models_match_reference(name, x64):
  make, input_shape = LIBRARY_MODELS[name]
  apply_fn, params = ij.models.init(make(), jax.random.key(0), (3,) + input_shape)
  # ij.models.init gives float32 parameters (flax's param_dtype); in float64 the engine must
  # agree with the reference to float64 rounding.
  params = _cast(params, jnp.float64)
  inputs = jax.random.normal(jax.random.key(1), (3,) + input_shape, jnp.float64)
  batch = (inputs, jnp.array([0, 3, 4]))
  assert ij.fisher.plan(apply_fn, params, inputs).reason is None
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  actual = diagonal(apply_fn, params, batch, likelihood=LIK, kind="true")
  assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(actual))
  _assert_close(actual, expected, 1e-10)


def test_closed_over_concrete_arguments_work_under_jit():
  """Validation inspects concrete values with host numpy, so closing over them inside jit works."""
  apply_fn, params, batch = CASES["mlp"]()
  inside = jax.jit(lambda: ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK))()
  outside = diagonal(apply_fn, params, batch, likelihood=LIK)
  _assert_close(inside, outside, 1e-6)
