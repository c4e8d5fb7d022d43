"""Never a silent wrong answer: parameters used outside their layer, examples that are not
independent, bad labels and inputs, and the plan that says which leaf takes which path."""

import json
import os
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij

LIK = ij.likelihoods.categorical()
GAUSS = ij.likelihoods.gaussian(1.0)
KINDS = ("empirical", "true")


def _assert_close(actual, expected, tol):
  """Relative error of every leaf within ``tol``, naming the leaf that is not."""
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    error = np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-300)
    assert error <= tol, f"{jax.tree_util.keystr(path)}: relative error {error:.3g} > {tol}"


def _noisy(params, key, scale=0.3):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(
      treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


def _init(module, inputs, seed=0):
  params = module.init(jax.random.key(seed), inputs)["params"]
  params = jax.tree.map(lambda p: p.astype(jnp.zeros(()).dtype), params)  # float64 under x64
  return (lambda p, x: module.apply({"params": p}, x)), _noisy(params, jax.random.key(seed + 1))


# ----------------------------------------------------------------------------------------------
# Parameters used outside their layer.
# ----------------------------------------------------------------------------------------------


class TiedAutoencoder(nn.Module):
  """The decoder reuses the encoder's kernel: ``h @ kernel.T``."""

  @nn.compact
  def __call__(self, x):
    encoder = nn.Dense(3)
    h = jnp.tanh(encoder(x))
    return h @ encoder.variables["params"]["kernel"].T


class KernelReadDirectly(nn.Module):
  """A kernel used by its layer and read again, scaled, by the model."""

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(4)
    h = jnp.tanh(dense(x))
    return nn.Dense(3)(h) + jnp.sum(dense.variables["params"]["kernel"] ** 2)


class ScaleOutsideNorm(nn.Module):
  """A LayerNorm scale also applied outside the norm."""

  @nn.compact
  def __call__(self, x):
    norm = nn.LayerNorm()
    h = norm(nn.Dense(4)(x))
    h = h * norm.variables["params"]["scale"][None]
    return nn.Dense(3)(jnp.tanh(h))


def _tied_case(module, outputs_dim, num_examples=5, seed=0):
  inputs = jax.random.normal(jax.random.key(seed + 7), (num_examples, 4))
  apply_fn, params = _init(module, inputs, seed)
  if outputs_dim is None:          # a regression model: Gaussian targets
    targets = jax.random.normal(jax.random.key(seed + 8), (num_examples, 4))
    return apply_fn, params, (inputs, targets), GAUSS
  targets = jax.random.randint(jax.random.key(seed + 8), (num_examples,), 0, outputs_dim)
  return apply_fn, params, (inputs, targets), LIK


TIED = {
    "tied_autoencoder": lambda: _tied_case(TiedAutoencoder(), None),
    "kernel_read_directly": lambda: _tied_case(KernelReadDirectly(), 3),
    "scale_outside_norm": lambda: _tied_case(ScaleOutsideNorm(), 3),
}
OTHER_USE = {"tied_autoencoder": ("['Dense_0']['kernel']", "transpose"),
             "kernel_read_directly": ("['Dense_0']['kernel']", "outside the recognised layers"),
             "scale_outside_norm": ("['LayerNorm_0']['scale']", "outside the recognised layers")}


@pytest.mark.parametrize("case", sorted(TIED))
@pytest.mark.parametrize("kind", KINDS)
def test_parameters_used_outside_their_layer_take_the_exact_path(case, kind, x64):
  apply_fn, params, batch, likelihood = TIED[case]()
  expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=likelihood,
                                          kind=kind)
  for precision, tol in ((jnp.float32, 1e-5), (jnp.float64, 1e-10)):
    cast = jax.tree.map(lambda x: x.astype(precision), (params, batch[0]))
    p, x = cast
    b = (x, batch[1].astype(precision) if likelihood is GAUSS else batch[1])
    auto = ij.fisher.diagonal(apply_fn, p, b, likelihood=likelihood, kind=kind)
    _assert_close(auto, expected, tol)
    jitted = jax.jit(lambda p, b: ij.fisher.diagonal(apply_fn, p, b, likelihood=likelihood,
                                                     kind=kind))(p, b)
    _assert_close(jitted, expected, tol)
  reference_trace = sum(float(jnp.sum(v)) for v in jax.tree.leaves(expected))
  trace = ij.fisher.trace(apply_fn, p, b, likelihood=likelihood, kind=kind)   # float64
  np.testing.assert_allclose(float(trace), reference_trace, rtol=1e-10)


@pytest.mark.parametrize("case", sorted(TIED))
def test_factored_names_the_leaf_and_its_other_use(case):
  apply_fn, params, batch, likelihood = TIED[case]()
  leaf, use = OTHER_USE[case]
  plan = ij.fisher.plan(apply_fn, params, batch[0])
  strategies = {entry.path: entry.strategy for entry in plan.leaves}
  assert strategies[leaf] == "vmap"
  assert "factored" in strategies.values()           # the other leaves keep the fast path
  with pytest.raises(ValueError, match="factored") as error:
    ij.fisher.diagonal(apply_fn, params, batch, likelihood=likelihood, method="factored")
  assert leaf in str(error.value) and use in str(error.value)


def test_per_example_grads_and_norms_of_a_tied_model(x64):
  apply_fn, params, batch, likelihood = TIED["tied_autoencoder"]()
  expected = ij.fisher.reference.per_example_grads(apply_fn, params, batch, likelihood=likelihood)
  _assert_close(ij.fisher.per_example_grads(apply_fn, params, batch, likelihood=likelihood),
                expected, 1e-10)
  norms = ij.fisher.per_example_grad_norms(apply_fn, params, batch, likelihood=likelihood)
  np.testing.assert_allclose(
      norms, ij.fisher.reference.per_example_grad_norms(apply_fn, params, batch,
                                                        likelihood=likelihood), rtol=1e-10)


class PartlyRecognised(nn.Module):
  """An embedding (not recognised), Dense layers (recognised) and a leaf the model never reads."""

  @nn.compact
  def __call__(self, x):
    self.param("unused", nn.initializers.ones, (2,))
    h = nn.Embed(4, 3)(jnp.argmax(x, axis=-1))
    return nn.Dense(3)(jnp.tanh(nn.Dense(5)(h)))


def test_the_plan_says_which_leaf_takes_which_path(x64):
  inputs = jax.random.normal(jax.random.key(0), (6, 4))
  apply_fn, params = _init(PartlyRecognised(), inputs)
  batch = (inputs, jnp.array([0, 1, 2, 0, 1, 2]))
  plan = ij.fisher.plan(apply_fn, params, inputs)
  strategies = {entry.path: entry.strategy for entry in plan.leaves}
  assert strategies == {"['Dense_0']['bias']": "factored", "['Dense_0']['kernel']": "factored",
                        "['Dense_1']['bias']": "factored", "['Dense_1']['kernel']": "factored",
                        "['Embed_0']['embedding']": "vmap", "['unused']": "unused"}
  assert "Embed_0" in plan.reason and "gather" in str(plan)
  assert ij.fisher.check_model(apply_fn, params, inputs) == plan
  for kind in KINDS:
    expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind)
    _assert_close(ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind),
                  expected, 1e-10)
    assert float(jnp.max(jnp.abs(expected["unused"]))) == 0.0


def test_plan_under_jit_and_for_a_jitted_apply_fn():
  """A jitted apply_fn hides its layers inside one sub-program: the plan looks inside it."""
  inputs = jax.random.normal(jax.random.key(0), (4, 4))
  apply_fn, params = _init(TiedAutoencoder(), inputs)
  jitted = jax.jit(apply_fn)
  plans = [ij.fisher.plan(f, params, inputs) for f in (apply_fn, jitted)]
  assert plans[0].leaves == plans[1].leaves
  strategies = jax.jit(lambda p, x: jnp.asarray(
      [entry.strategy == "factored" for entry in ij.fisher.plan(apply_fn, p, x).leaves]))(
          params, inputs)
  assert list(np.asarray(strategies)) == [True, False]


def test_plan_follows_parameters_passed_through_a_sub_program():
  """A jitted identity (``jnp.rot90(k, 0)`` inside a jitted layer) returns the leaf unchanged: its
  later use is described, not "an output of the program" (which it is not)."""
  params = {"w": jnp.ones((4, 3))}

  def apply_fn(p, x):
    kernel = jax.jit(lambda k: (k, 2 * k))(p["w"])[0]
    return x @ kernel

  plan = ij.fisher.plan(apply_fn, params, jnp.ones((2, 4)))
  assert [entry.strategy for entry in plan.leaves] == ["vmap"]
  assert "dot_general" in plan.leaves[0].detail and "output" not in plan.leaves[0].detail
  passthrough = ij.fisher.plan(lambda p, x: jax.jit(lambda k: k)(p["w"]) * x.sum(),
                               params, jnp.ones((2, 4)))
  assert "mul" in passthrough.leaves[0].detail


# ----------------------------------------------------------------------------------------------
# Examples that are not independent.
# ----------------------------------------------------------------------------------------------


class Centred(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Dense(5)(x)
    return nn.Dense(3)(jnp.tanh(h - h.mean(0, keepdims=True)))


class TrainingBatchNorm(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.BatchNorm(use_running_average=False)(nn.Dense(5)(x))
    return nn.Dense(3)(jnp.tanh(h))


class BatchAttention(nn.Module):
  """Self-attention across the examples of the batch."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(5)(x)
    weights = jax.nn.softmax(h @ h.T, axis=-1)
    return nn.Dense(3)(weights @ h)


class BatchDropout(nn.Module):
  """A dropout mask drawn for the whole batch with a fixed key."""

  @nn.compact
  def __call__(self, x):
    h = nn.Dense(5)(x)
    mask = jax.random.bernoulli(jax.random.key(3), 0.5, h.shape)
    return nn.Dense(3)(jnp.where(mask, h, 0.0))


MIXING = {"centred": Centred, "batch_norm": TrainingBatchNorm, "attention": BatchAttention,
          "dropout": BatchDropout}


def _mixing_case(name):
  inputs = jax.random.normal(jax.random.key(0), (6, 4))
  module = MIXING[name]()
  variables = module.init(jax.random.key(1), inputs)
  params = _noisy(variables["params"], jax.random.key(2))
  others = {k: v for k, v in variables.items() if k != "params"}

  def apply_fn(p, x):
    if others:
      return module.apply({"params": p, **others}, x, mutable=list(others))[0]
    return module.apply({"params": p}, x)
  return apply_fn, params, (inputs, jnp.array([0, 1, 2, 0, 1, 2]))


@pytest.mark.parametrize("name", sorted(MIXING))
def test_models_that_mix_examples_are_refused_in_eager_calls(name):
  apply_fn, params, batch = _mixing_case(name)
  message = "does not treat examples independently"
  calls = [
      lambda: ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK),
      lambda: ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK, kind="true",
                                 method="vmap"),
      lambda: ij.fisher.trace(apply_fn, params, batch, likelihood=LIK),
      lambda: ij.fisher.per_example_grads(apply_fn, params, batch, likelihood=LIK),
      lambda: ij.fisher.per_example_grad_norms(apply_fn, params, batch, likelihood=LIK),
      lambda: ij.fisher.vector_product(apply_fn, params, batch, params, likelihood=LIK),
      lambda: ij.fisher.check_model(apply_fn, params, batch[0]),
      lambda: ij.fisher.per_example_jacobians(apply_fn, params, batch[0]),
      lambda: ij.fisher.gradient_covariance(apply_fn, params, batch, likelihood=LIK),
      lambda: ij.fisher.kfac_factors(apply_fn, params, batch, likelihood=LIK),
  ]
  for call in calls:
    with pytest.raises(ValueError, match=message):
      call()
  # The Hessian of the batch loss is defined for any model: no per-example structure needed.
  ij.fisher.hessian_vector_product(apply_fn, params, batch, params, likelihood=LIK)
  ij.fisher.hessian_diagonal(apply_fn, params, batch, likelihood=LIK, method="hutchinson",
                             key=jax.random.key(0), num_samples=2)


def test_independent_models_pass_the_check_and_traced_calls_are_not_checked():
  inputs = jax.random.normal(jax.random.key(0), (6, 4))
  apply_fn, params = _init(PartlyRecognised(), inputs)
  ij.fisher.check_model(apply_fn, params, inputs)
  ij.fisher.check_model(apply_fn, params, inputs[:1])      # N = 1: nothing to compare
  # Under jit nothing can be evaluated: the documented limit. The call runs (and is wrong).
  apply_fn, params, batch = _mixing_case("centred")
  jax.jit(lambda p, b: ij.fisher.diagonal(apply_fn, p, b, likelihood=LIK))(params, batch)
  with pytest.raises(ValueError, match="outside jit"):
    jax.jit(lambda p, x: ij.fisher.check_model(apply_fn, p, x))(params, batch[0])


# ----------------------------------------------------------------------------------------------
# Labels, targets and inputs.
# ----------------------------------------------------------------------------------------------


def _mlp_case(num_examples=5):
  inputs = jax.random.normal(jax.random.key(0), (num_examples, 4))

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(jnp.tanh(nn.Dense(5)(x)))

  apply_fn, params = _init(MLP(), inputs)
  return apply_fn, params, inputs


@pytest.mark.parametrize("bad_label", [-1, 3, 7])
@pytest.mark.parametrize("method", ["vmap", "factored"])
def test_out_of_range_labels_never_give_a_finite_result_under_jit(bad_label, method):
  apply_fn, params, inputs = _mlp_case()
  targets = jnp.array([0, 1, bad_label, 2, 1])

  def quantities(p, x, y):
    batch = (x, y)
    return (ij.fisher.diagonal(apply_fn, p, batch, likelihood=LIK, method=method),
            ij.fisher.trace(apply_fn, p, batch, likelihood=LIK, method=method),
            ij.fisher.per_example_grads(apply_fn, p, batch, likelihood=LIK, method=method),
            ij.fisher.per_example_grad_norms(apply_fn, p, batch, likelihood=LIK, method=method))

  diagonal, trace, grads, norms = jax.jit(quantities)(params, inputs, targets)
  assert all(np.all(np.isnan(leaf)) for leaf in jax.tree.leaves(diagonal))
  assert np.isnan(trace)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isnan(leaf[2])) and np.all(np.isfinite(np.delete(leaf, 2, axis=0)))
  assert np.isnan(norms[2]) and np.all(np.isfinite(np.delete(norms, 2)))
  with pytest.raises(ValueError, match="targets must lie in"):
    quantities(params, inputs, targets)


def test_true_and_mc_fisher_need_no_targets(x64):
  apply_fn, params, inputs = _mlp_case()
  targets = jnp.array([0, 1, 2, 2, 1])
  key = jax.random.key(3)
  for kind in ("true", "mc"):
    for method in ("vmap", "factored"):
      with_targets = ij.fisher.diagonal(apply_fn, params, (inputs, targets), likelihood=LIK,
                                        kind=kind, key=key, method=method)
      without = ij.fisher.diagonal(apply_fn, params, (inputs, None), likelihood=LIK, kind=kind,
                                   key=key, method=method)
      _assert_close(without, with_targets, 0.0)
      jitted = jax.jit(lambda p, x, k=kind, m=method: ij.fisher.trace(
          apply_fn, p, (x, None), likelihood=LIK, kind=k, key=key, method=m))(params, inputs)
      np.testing.assert_allclose(jitted, sum(float(jnp.sum(v)) for v in jax.tree.leaves(without)),
                                 rtol=1e-10)
  product = ij.fisher.vector_product(apply_fn, params, (inputs, None), params, likelihood=LIK)
  _assert_close(product, ij.fisher.vector_product(apply_fn, params, (inputs, targets), params,
                                                  likelihood=LIK), 0.0)
  for call in (lambda: ij.fisher.diagonal(apply_fn, params, (inputs, None), likelihood=LIK),
               lambda: ij.fisher.per_example_grads(apply_fn, params, (inputs, None),
                                                   likelihood=LIK),
               lambda: ij.fisher.hessian_vector_product(apply_fn, params, (inputs, None), params,
                                                        likelihood=LIK)):
    with pytest.raises(ValueError, match="targets are None"):
      call()


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_non_finite_inputs_get_an_eager_error(bad):
  apply_fn, params, inputs = _mlp_case()
  batch = (inputs.at[1, 2].set(bad), jnp.array([0, 1, 2, 2, 1]))
  with pytest.raises(ValueError, match=r"inputs: leaf .* non-finite"):
    ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK)
  with pytest.raises(ValueError, match="non-finite"):
    ij.fisher.check_model(apply_fn, params, batch[0])


# ----------------------------------------------------------------------------------------------
# Pytree inputs, products with methods and chunks, plain-JAX users.
# ----------------------------------------------------------------------------------------------


class MaskedImages(nn.Module):
  """Inputs are a dict of an image and a mask."""

  @nn.compact
  def __call__(self, inputs):
    h = nn.Conv(3, (3, 3))(inputs["image"] * inputs["mask"][..., None])
    return nn.Dense(4)(jnp.tanh(h).reshape(h.shape[0], -1))


def _pytree_case():
  keys = jax.random.split(jax.random.key(0), 3)
  inputs = {"image": jax.random.normal(keys[0], (5, 4, 4, 2)),
            "mask": jax.random.bernoulli(keys[1], 0.7, (5, 4, 4)).astype(jnp.float32)}
  apply_fn, params = _init(MaskedImages(), inputs)
  return apply_fn, params, (inputs, jax.random.randint(keys[2], (5,), 0, 4))


@pytest.mark.parametrize("method", ["auto", "vmap", "factored"])
def test_inputs_may_be_any_pytree(method, x64):
  apply_fn, params, batch = _pytree_case()
  for kind in KINDS:
    expected = ij.fisher.reference.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind)
    _assert_close(ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind,
                                     method=method, chunk_size=2), expected, 1e-10)
  grads = ij.fisher.per_example_grads(apply_fn, params, batch, likelihood=LIK, method=method)
  _assert_close(grads, ij.fisher.reference.per_example_grads(apply_fn, params, batch,
                                                             likelihood=LIK), 1e-10)


@pytest.mark.parametrize("method", ["auto", "vmap", "factored"])
@pytest.mark.parametrize("chunk_size", [None, 1, 2])
def test_vector_product_takes_method_and_chunk_size(method, chunk_size, x64):
  apply_fn, params, batch = _pytree_case()
  vector = _noisy(jax.tree.map(jnp.zeros_like, params), jax.random.key(5), 1.0)
  for kind in ("true", "empirical"):
    expected = ij.fisher.reference.vector_product(apply_fn, params, batch, vector,
                                                  likelihood=LIK, kind=kind)
    actual = jax.jit(lambda p, b, v, k=kind: ij.fisher.vector_product(
        apply_fn, p, b, v, likelihood=LIK, kind=k, method=method, chunk_size=chunk_size))(
            params, batch, vector)
    _assert_close(actual, expected, 1e-10)
  apply_fn, params, batch, likelihood = TIED["tied_autoencoder"]()
  if method == "factored":
    with pytest.raises(ValueError, match="factored"):
      ij.fisher.vector_product(apply_fn, params, batch, params, likelihood=likelihood,
                               method=method)


def test_the_engine_works_without_flax():
  """flax is imported only where layers are intercepted: a plain-JAX user does not need it."""
  script = textwrap.dedent("""
      import json, sys
      sys.modules["flax"] = None          # any `import flax` now raises ImportError
      import jax, jax.numpy as jnp
      import infojax as ij
      params = {"w": jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.ones(3)}
      apply_fn = lambda p, x: jnp.tanh(x @ p["w"] + p["b"])
      batch = (jnp.linspace(-1, 1, 20).reshape(5, 4), jnp.array([0, 1, 2, 0, 1]))
      lik = ij.likelihoods.categorical()
      auto = ij.fisher.diagonal(apply_fn, params, batch, likelihood=lik, kind="true")
      vmap = ij.fisher.diagonal(apply_fn, params, batch, likelihood=lik, kind="true",
                                method="vmap")
      plan = ij.fisher.plan(apply_fn, params, batch[0])
      print(json.dumps({
          "error": max(float(jnp.max(jnp.abs(a - b))) for a, b in
                       zip(jax.tree.leaves(auto), jax.tree.leaves(vmap))),
          "strategies": [leaf.strategy for leaf in plan.leaves],
          "flax": [m for m in sys.modules if m.startswith("flax") and sys.modules[m]]}))
  """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["error"] == 0.0
  assert report["strategies"] == ["vmap", "vmap"]
  assert report["flax"] == []


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_mixed_plans_on_a_sharded_batch_give_the_single_device_answer(axis_type):
  """The per-leaf mix of strategies (a tied kernel on the exact path) on 8 sharded devices."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  inputs = jax.random.normal(jax.random.key(7), (16, 4))
  apply_fn, params = _init(TiedAutoencoder(), inputs)
  batch = (inputs, jax.random.normal(jax.random.key(8), (16, 4)))
  types = {"explicit": jax.sharding.AxisType.Explicit, "auto": jax.sharding.AxisType.Auto}
  mesh = jax.make_mesh((8,), ("data",), axis_types=(types[axis_type],))
  sharded = jax.device_put(batch, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      "data")))
  replicated = jax.device_put(params, jax.sharding.NamedSharding(mesh,
                                                                 jax.sharding.PartitionSpec()))
  for kind in KINDS:
    expected = ij.fisher.diagonal(apply_fn, params, batch, likelihood=GAUSS, kind=kind)
    with jax.set_mesh(mesh):
      actual = jax.jit(lambda p, b, k=kind: ij.fisher.diagonal(
          apply_fn, p, b, likelihood=GAUSS, kind=k))(replicated, sharded)
      product = jax.jit(lambda p, b, k=kind: ij.fisher.vector_product(
          apply_fn, p, b, p, likelihood=GAUSS, kind=k, chunk_size=4))(replicated, sharded)
    _assert_close(actual, expected, 1e-5)
    _assert_close(product, ij.fisher.vector_product(apply_fn, params, batch, params,
                                                    likelihood=GAUSS, kind=kind), 1e-5)


def test_eager_calls_on_an_explicit_sharded_batch_are_checked_and_exact():
  """Regression: the eager independence check sliced the batch, which an Explicit-sharded array
  refuses (a ShardingTypeError); it now slices a host copy, so eager calls run, are exact, and
  still refuse a model that mixes examples."""
  if jax.device_count() < 8:
    pytest.skip("needs 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  inputs = jax.random.normal(jax.random.key(9), (16, 4))
  params = {"w": jax.random.normal(jax.random.key(10), (4, 6)),
            "v": jax.random.normal(jax.random.key(11), (6, 3))}

  def apply_fn(p, x):
    return jnp.tanh(x @ p["w"]) @ p["v"]

  batch = (inputs, jnp.arange(16) % 3)
  sharded = jax.device_put(batch, sharding)
  for kind in ("true", "empirical"):
    expected = ij.fisher.diagonal(apply_fn, params, batch, likelihood=LIK, kind=kind)
    with jax.set_mesh(mesh):
      actual = ij.fisher.diagonal(apply_fn, params, sharded, likelihood=LIK, kind=kind)
    _assert_close(actual, expected, 1e-5)
  mixing_fn, mixing_params, (mixing_inputs, mixing_labels) = _mixing_case("centred")
  mixing = jax.device_put((jnp.tile(mixing_inputs, (4, 1))[:16], jnp.arange(16) % 3), sharding)
  with jax.set_mesh(mesh), pytest.raises(ValueError, match="does not treat examples"):
    ij.fisher.diagonal(mixing_fn, mixing_params, mixing, likelihood=LIK)
