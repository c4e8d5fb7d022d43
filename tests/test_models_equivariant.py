"""Tests for the equivariant models: p4 rotation equivariance (Cohen & Welling 2016), Deep Sets
permutation invariance (Zaheer et al. 2017), exact Fisher diagonals on both, errors, registry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij
from infojax import models

KEY = jax.random.key(0)
LIK = ij.likelihoods.categorical()
EXACT = 1e-12     # float64 rounding, relative to the size of the outputs
ROTATIONS = range(4)


# Inputs and outputs are transformed with numpy (the same rotation as jnp.rot90), so that each test
# compiles only its jitted model.


def rotate_image(x, k):
  """``(N, H, W, ...)`` rotated by ``k`` quarter turns about the image centre."""
  return np.rot90(np.asarray(x), k, axes=(1, 2))


def rotate_p4(y, k):
  """The action of rotation ``k`` on a p4 feature map ``(N, H, W, 4, C)``: rotate each plane
  spatially and shift the rotation axis cyclically by ``k``."""
  return np.roll(rotate_image(y, k), k, axis=3)


def relative_error(actual, expected):
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def float64_variables(module, inputs, seed=1):
  """Float64 variables of ``module``'s structure drawn with numpy (no flax initialisers to compile):
  kernels ~ N(0, 1/fan_in) with fan_in the product of all but the last axis, biases ~ N(0, 0.3^2)
  (non-zero, so that a bias shared or misplaced would show)."""
  abstract = jax.eval_shape(module.init, KEY, inputs)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    scale = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if path[-1].key == "kernel" else 0.3
    return jnp.asarray(scale * rng.normal(size=leaf.shape), jnp.float64)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def normal(shape, seed=2):
  """Standard normal float64 numpy inputs."""
  return np.random.default_rng(seed).normal(size=shape)


# p4 layers: equivariance --------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_size,padding,side", [(3, "SAME", 7), (5, "VALID", 9),
                                                      (3, "SAME", 6)])
def test_lifting_conv_is_rotation_equivariant(kernel_size, padding, side, x64):
  layer = models.P4LiftingConv(4, kernel_size=kernel_size, padding=padding)
  inputs = normal((2, side, side, 3))
  variables = float64_variables(layer, inputs)
  apply = jax.jit(layer.apply)
  outputs = apply(variables, inputs)
  out_side = side if padding == "SAME" else side - kernel_size + 1
  assert outputs.shape == (2, out_side, out_side, 4, 4) and outputs.dtype == jnp.float64
  for k in ROTATIONS:
    rotated = apply(variables, rotate_image(inputs, k))
    assert relative_error(rotated, rotate_p4(outputs, k)) <= EXACT, k
    if k:   # the rotation axis must shift: a spatial rotation alone is not the answer
      assert relative_error(rotated, rotate_image(outputs, k)) > 1e-2, k


@pytest.mark.parametrize("kernel_size,padding,side", [(3, "SAME", 7), (3, "VALID", 6)])
def test_group_conv_is_rotation_equivariant(kernel_size, padding, side, x64):
  layer = models.P4GroupConv(5, kernel_size=kernel_size, padding=padding)
  inputs = normal((2, side, side, 4, 3))
  variables = float64_variables(layer, inputs)
  apply = jax.jit(layer.apply)
  outputs = apply(variables, inputs)
  for k in ROTATIONS:
    rotated = apply(variables, rotate_p4(inputs, k))
    assert relative_error(rotated, rotate_p4(outputs, k)) <= EXACT, k
    if k:   # the shift is by +k, not 0 (nor -k, different for odd k)
      assert relative_error(rotated, rotate_image(outputs, k)) > 1e-2, k
    if k % 2:
      assert relative_error(rotated, np.roll(rotate_image(outputs, k), -k, axis=3)) > 1e-2, k


def _correlate(inputs, kernel):
  return jax.lax.conv_general_dilated(inputs, kernel, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _group_conv_by_hand(params, inputs, direction):
  """Rotation r's output from ``roll(rot90(kernel, r), direction * r, axis=2)``, one at a time."""
  kernel, bias = params["kernel"], params["bias"]
  size, _, rotations, channels, features = kernel.shape
  flat_inputs = inputs.reshape(inputs.shape[:3] + (rotations * channels,))
  outputs = [_correlate(flat_inputs, jnp.roll(jnp.rot90(kernel, r, axes=(0, 1)), direction * r,
                                              axis=2).reshape(size, size, -1, features))
             for r in range(rotations)]
  return jnp.stack(outputs, axis=3) + bias.reshape(1, 1, 1, 1, features)


def test_layers_compute_the_documented_filters_and_the_shift_direction_matters(x64):
  """Lifting: rotation r correlates with rot90(kernel, r); group: with the kernel rotated by r and
  rolled by +r along its input-rotation axis. Rolling by -r instead breaks the equivariance."""
  lifting = models.P4LiftingConv(3)
  images = normal((2, 7, 7, 2))
  params = float64_variables(lifting, images)["params"]
  by_hand = jax.jit(lambda params, images: jnp.stack(
      [_correlate(images, jnp.rot90(params["kernel"], r, axes=(0, 1))) for r in ROTATIONS],
      axis=3) + params["bias"].reshape(1, 1, 1, 1, 3))(params, images)
  assert relative_error(jax.jit(lifting.apply)({"params": params}, images), by_hand) <= EXACT

  group = models.P4GroupConv(3)
  feature_maps = normal((2, 7, 7, 4, 2))
  params = float64_variables(group, feature_maps)["params"]
  outputs = jax.jit(group.apply)({"params": params}, feature_maps)
  by_hand = jax.jit(_group_conv_by_hand, static_argnums=2)
  assert relative_error(outputs, by_hand(params, feature_maps, +1)) <= EXACT
  wrong = by_hand(params, feature_maps, -1)
  wrong_rotated = by_hand(params, rotate_p4(feature_maps, 1), -1)
  assert relative_error(wrong_rotated, rotate_p4(wrong, 1)) > 1e-2


def test_a_plain_conv_fails_the_equivariance_test(x64):
  conv = nn.Conv(4, (3, 3))
  inputs = normal((2, 7, 7, 3))
  variables = float64_variables(conv, inputs)
  apply = jax.jit(conv.apply)
  outputs = apply(variables, inputs)
  for k in (1, 2, 3):
    assert relative_error(apply(variables, rotate_image(inputs, k)),
                          rotate_image(outputs, k)) > 1e-2, k


# P4Conv: invariance -------------------------------------------------------------------------------


@pytest.mark.parametrize("pooling,side", [("mean", 9), ("max", 8)])
def test_p4conv_logits_are_rotation_invariant(pooling, side, x64):
  model = models.P4Conv(channels=(4, 4, 4), num_classes=5, pooling=pooling)
  inputs = normal((3, side, side, 2))
  variables = float64_variables(model, inputs)
  apply = jax.jit(model.apply)
  logits = apply(variables, inputs)
  assert logits.shape == (3, 5) and logits.dtype == jnp.float64
  assert not np.allclose(logits[0], logits[1])
  for k in ROTATIONS:
    assert relative_error(apply(variables, rotate_image(inputs, k)), logits) <= EXACT, k
  # p4 is not the group of reflections: a transposed image has other logits.
  transposed = apply(variables, np.swapaxes(inputs, 1, 2))
  assert relative_error(transposed, logits) > 1e-3


def test_a_plain_cnn_classifier_is_not_rotation_invariant(x64):
  model = models.ConvNet(channels=(4, 4), strides=(1, 1), num_classes=5)
  inputs = normal((3, 9, 9, 2))
  variables = float64_variables(model, inputs)
  apply = jax.jit(model.apply)
  logits = apply(variables, inputs)
  assert relative_error(apply(variables, rotate_image(inputs, 1)), logits) > 1e-3


# Deep Sets: invariance and equivariance -----------------------------------------------------------


def permutations(num_elements, count=5, seed=0):
  rng = np.random.default_rng(seed)
  perms = [rng.permutation(num_elements) for _ in range(count)]
  assert all((perm != np.arange(num_elements)).any() for perm in perms)
  return perms


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_deepsets_logits_are_permutation_invariant(pooling, x64):
  model = models.DeepSets(phi_sizes=(8, 8), rho_sizes=(8,), num_classes=4, pooling=pooling)
  sets = normal((3, 7, 2))
  variables = float64_variables(model, sets)
  apply = jax.jit(model.apply)
  logits = apply(variables, sets)
  assert logits.shape == (3, 4) and logits.dtype == jnp.float64
  assert not np.allclose(logits[0], logits[1])
  for perm in permutations(7):
    assert relative_error(apply(variables, sets[:, perm]), logits) <= EXACT, perm


def test_flattening_the_set_fails_the_invariance_test(x64):
  model = models.MLP((8,), 4)
  sets = normal((3, 7, 2))
  variables = float64_variables(model, sets)
  apply = jax.jit(model.apply)
  logits = apply(variables, sets)
  for perm in permutations(7):
    assert relative_error(apply(variables, sets[:, perm]), logits) > 1e-3, perm


def test_deepsets_sizes_and_pooling(x64):
  """Any set size on one set of parameters; without rho; mean pooling ignores duplication."""
  model = models.DeepSets(phi_sizes=(6,), rho_sizes=(), num_classes=3, pooling="mean")
  variables = float64_variables(model, np.zeros((1, 4, 2)))
  assert sorted(variables["params"]) == ["Dense_0", "Dense_1"]
  sets = normal((2, 5, 2))
  apply = jax.jit(model.apply)
  logits = apply(variables, sets)
  doubled = apply(variables, np.concatenate([sets, sets], axis=1))
  assert relative_error(doubled, logits) <= EXACT
  params = jax.eval_shape(models.DeepSets((8, 6), (5,), num_classes=3).init, KEY,
                          jnp.zeros((1, 4, 2)))["params"]
  assert [params[f"Dense_{i}"]["kernel"].shape for i in range(4)] == [(2, 8), (8, 6), (6, 5),
                                                                      (5, 3)]


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_permutation_equivariant_layer_permutes_its_outputs(pooling, x64):
  layer = models.PermutationEquivariant(5, pooling=pooling)
  sets = normal((2, 6, 3))
  variables = float64_variables(layer, sets)
  assert jax.tree.map(jnp.shape, variables["params"]) == {
      "Lambda": {"kernel": (3, 5), "bias": (5,)}, "Gamma": {"kernel": (3, 5)}}
  apply = jax.jit(layer.apply)
  outputs = apply(variables, sets)
  assert outputs.shape == (2, 6, 5)
  for perm in permutations(6):
    assert relative_error(apply(variables, sets[:, perm]), outputs[:, perm]) <= EXACT, perm
  # Gamma couples the elements: changing element 1 changes the output of element 0.
  changed_sets = sets.copy()
  changed_sets[:, 1] *= -3.0
  changed = apply(variables, changed_sets)
  assert relative_error(changed[:, 0], outputs[:, 0]) > 1e-3


# Fisher: exact on both, and which leaves are factored ---------------------------------------------


class _EquivariantSetNet(nn.Module):
  """PermutationEquivariant, ReLU, sum over the set, Dense: a Deep Sets variant for the plan."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(models.PermutationEquivariant(4, pooling="max")(x))
    return nn.Dense(3)(jnp.sum(x, axis=1))


FISHER_CASES = {
    "p4conv": (models.P4Conv(channels=(3, 3), num_classes=3), (4, 5, 5, 2)),
    "deepsets": (models.DeepSets((4, 4), (4,), num_classes=3, pooling="sum"), (4, 5, 2)),
    "equivariant_set_net": (_EquivariantSetNet(), (4, 5, 2)),
}
EXPECTED_VMAP = {
    "p4conv": {"['P4LiftingConv_0']['kernel']", "['P4LiftingConv_0']['bias']",
               "['P4GroupConv_0']['kernel']", "['P4GroupConv_0']['bias']"},
    "deepsets": set(),
    "equivariant_set_net": set(),
}
_STATIC = ("likelihood", "kind")
diagonal = jax.jit(ij.fisher.diagonal, static_argnums=0, static_argnames=_STATIC)


def _assert_leaves_close(actual, expected, tol, message):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for (path, a), e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    error = np.linalg.norm(a - e) / max(np.linalg.norm(e), np.finfo(np.float64).tiny)
    assert error <= tol, (message, jax.tree_util.keystr(path), error)


@pytest.mark.parametrize("case", sorted(FISHER_CASES))
def test_fisher_diagonal_is_exact_and_the_plan_factors_the_dense_layers(case, x64):
  model, shape = FISHER_CASES[case]
  inputs = jnp.asarray(normal(shape, seed=3))
  params = float64_variables(model, inputs)["params"]
  labels = jax.random.randint(jax.random.key(4), (shape[0],), 0, 3)

  def apply_fn(params, inputs):
    return model.apply({"params": params}, inputs)

  plan = ij.fisher.plan(apply_fn, params, inputs)
  print(plan)
  strategies = {leaf.path: leaf.strategy for leaf in plan.leaves}
  assert {path for path, strategy in strategies.items() if strategy == "vmap"} == (
      EXPECTED_VMAP[case]), plan
  assert {path for path, strategy in strategies.items() if strategy == "factored"} == (
      set(strategies) - EXPECTED_VMAP[case]), plan
  assert any("Dense" in path for path in strategies)
  for kind in ("empirical", "true"):
    expected = ij.fisher.reference.diagonal(apply_fn, params, (inputs, labels), likelihood=LIK,
                                            kind=kind)
    assert all(float(jnp.max(leaf)) > 0 for leaf in jax.tree.leaves(expected)), kind
    # "auto": all factored for the set models, mixed (factored Dense, vmap p4 leaves) for P4Conv.
    actual = diagonal(apply_fn, params, (inputs, labels), likelihood=LIK, kind=kind)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(actual))
    _assert_leaves_close(actual, expected, 1e-10, kind)


# Errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("build,expected", [
    (lambda: models.P4LiftingConv(4, kernel_size=2), "kernel_size must be odd"),
    (lambda: models.P4LiftingConv(0), "features"),
    (lambda: models.P4LiftingConv(4, use_bias="yes"), "use_bias"),
    (lambda: models.P4GroupConv(4, padding="CIRCULAR"), "padding must be one of"),
    (lambda: models.P4GroupConv(4, kernel_size=0), "kernel_size"),
    (lambda: models.P4Conv(kernel_size=4), "kernel_size must be odd"),
    (lambda: models.P4Conv(pooling="sum"), "pooling must be one of"),
    (lambda: models.P4Conv(channels=()), "channels"),
    (lambda: models.P4Conv(num_classes=0), "num_classes"),
    (lambda: models.DeepSets(pooling="median"), "pooling must be one of"),
    (lambda: models.DeepSets(phi_sizes=()), "phi_sizes"),
    (lambda: models.DeepSets(rho_sizes=(4, 0)), "rho_sizes"),
    (lambda: models.DeepSets(rho_sizes=4), "rho_sizes"),
    (lambda: models.DeepSets(num_classes=-1), "num_classes"),
    (lambda: models.PermutationEquivariant(0), "features"),
    (lambda: models.PermutationEquivariant(4, pooling="min"), "pooling must be one of"),
])
def test_invalid_attributes_are_a_clear_error(build, expected):
  with pytest.raises(ValueError, match=expected):
    build()


@pytest.mark.parametrize("module,bad_shape,expected", [
    (models.P4Conv(), (3, 8, 8), r"P4Conv expects inputs of shape \(N, H, W, C\)"),
    (models.P4LiftingConv(4), (3, 8, 8, 4, 1), r"P4LiftingConv expects inputs of shape"),
    (models.P4LiftingConv(4, kernel_size=5, padding="VALID"), (3, 4, 8, 1), "H, W >= kernel_size"),
    (models.P4GroupConv(4), (3, 8, 8, 3, 2), "the 4 rotations on axis 3"),
    (models.P4GroupConv(4), (3, 8, 8, 2), r"P4GroupConv expects inputs of shape \(N, H, W, 4,"),
    (models.DeepSets(), (3, 6), r"DeepSets expects inputs of shape \(N, M, d\)"),
    (models.DeepSets(), (3, 0, 2), r"DeepSets expects"),
    (models.PermutationEquivariant(4), (3, 6, 2, 1), "PermutationEquivariant expects"),
])
def test_wrong_input_shapes_are_a_clear_error(module, bad_shape, expected):
  with pytest.raises(ValueError, match=expected):
    jax.eval_shape(module.init, KEY, jnp.zeros(bad_shape))


@pytest.mark.parametrize("module,init_shape,bad_shape,expected", [
    (models.P4Conv(), (1, 8, 8, 3), (2, 8, 8, 1), "P4LiftingConv was initialised for inputs "
                                                  "with 3 channels"),
    (models.P4GroupConv(4), (1, 8, 8, 4, 2), (2, 8, 8, 4, 3), "with 2 channels"),
    (models.DeepSets(), (1, 5, 2), (2, 5, 3), "with 2 features per element"),
    (models.PermutationEquivariant(4), (1, 5, 2), (2, 5, 3), "with 2 features per element"),
])
def test_inputs_unlike_those_at_initialisation_are_a_clear_error(module, init_shape, bad_shape,
                                                                 expected):
  variables = jax.eval_shape(module.init, KEY, jnp.zeros(init_shape))
  with pytest.raises(ValueError, match=expected):
    jax.eval_shape(module.apply, variables, jnp.zeros(bad_shape))


# Registry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,model_class,shape", [
    ("p4conv", {"channels": (4, 4), "pooling": "max"}, models.P4Conv, (3, 7, 7, 1)),
    ("deepsets", {"phi_sizes": (8,), "rho_sizes": (), "pooling": "mean"}, models.DeepSets,
     (3, 6, 2)),
])
def test_get_model_builds_the_equivariant_models(name, kwargs, model_class, shape):
  assert models.MODELS[name] is model_class
  model = models.get_model(name, num_classes=7, **kwargs)
  assert type(model) is model_class and model.num_classes == 7
  for field, value in kwargs.items():
    assert getattr(model, field) == value
  apply_fn, params = models.init(model, KEY, (1,) + shape[1:])
  inputs = jax.random.normal(jax.random.key(1), shape)
  logits = jax.jit(apply_fn)(params, inputs)
  assert logits.shape == (shape[0], 7) and logits.dtype == jnp.float32
  # Examples are independent: each row equals the model on that example alone.
  singles = jax.jit(jax.vmap(lambda example: apply_fn(params, example[None])[0]))(inputs)
  np.testing.assert_allclose(logits, singles, rtol=1e-5, atol=1e-6)
  with pytest.raises(TypeError, match="no attributes"):
    models.get_model(name, num_classes=7, width_multiplier=2.0)
