"""Tests for infojax.models: shapes, parameter counts, purity, per-example independence, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from infojax import models

KEY = jax.random.key(0)
NUM_CLASSES = 10

DIGITS = (3, 8, 8, 1)
MNIST = (3, 28, 28, 1)
CIFAR = (3, 32, 32, 3)
MNIST1D = (3, 40)
MNIST1D_CHANNEL = (3, 40, 1)


# (id, model, input shape): every model on the input sizes it serves, at small widths.
CASES = [
    ("mlp-digits", models.MLP((16, 8), NUM_CLASSES), DIGITS),
    ("mlp-mnist", models.MLP((32,), NUM_CLASSES, activation="tanh"), MNIST),
    ("lenet-digits", models.LeNet5(NUM_CLASSES), DIGITS),
    ("lenet-mnist", models.LeNet5(NUM_CLASSES), MNIST),
    ("lenet-cifar", models.LeNet5(NUM_CLASSES), CIFAR),
    ("allcnn-digits", models.AllCNN(NUM_CLASSES, width_multiplier=0.125), DIGITS),
    ("allcnn-cifar", models.AllCNN(NUM_CLASSES, width_multiplier=0.125), CIFAR),
    ("allcnn-bn", models.AllCNN(NUM_CLASSES, width_multiplier=0.125, batch_norm=True), DIGITS),
    ("resnet-group", models.ResNet18(NUM_CLASSES, width_multiplier=0.125), CIFAR),
    ("resnet-none", models.ResNet18(NUM_CLASSES, width_multiplier=0.125, norm="none"), DIGITS),
    ("resnet-batch", models.ResNet18(NUM_CLASSES, width_multiplier=0.125, norm="batch"), DIGITS),
    ("cnn1d", models.CNN1D(NUM_CLASSES), MNIST1D),
    ("cnn1d-channel", models.CNN1D(NUM_CLASSES, channels=(8, 8)), MNIST1D_CHANNEL),
    ("convnet", models.ConvNet(channels=(8, 16, 16)), CIFAR),
]
IDS = [case[0] for case in CASES]


def param_count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def abstract_params(model, shape):
  """Parameter shapes without running the model (``jax.eval_shape``)."""
  return jax.eval_shape(model.init, KEY, jnp.zeros(shape))["params"]


def conv_params(kernel, in_channels, out_channels, bias=True):
  return kernel * kernel * in_channels * out_channels + (out_channels if bias else 0)


def dense_params(inputs, outputs):
  return inputs * outputs + outputs


def random_variables(model, shape, seed=0):
  """Variables of the model's structure drawn with numpy (fast: no flax initialisers to compile).

  Kernels ~ N(0, 1/fan_in), biases and running means ~ N(0, 0.1^2), norm scales and running
  variances ~ U(0.5, 1.5).
  """
  abstract = jax.eval_shape(model.init, KEY, jnp.zeros(shape))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      values = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))
    elif name in ("scale", "var"):
      values = rng.uniform(0.5, 1.5, size=leaf.shape)
    else:
      values = 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(values, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


def split_variables(variables):
  return variables["params"], {name: v for name, v in variables.items() if name != "params"}


# Shapes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,model,shape", CASES, ids=IDS)
def test_output_is_logits_per_example(name, model, shape):
  variables = jax.eval_shape(model.init, KEY, jnp.zeros(shape))
  for batch_size in (1, 5):
    batch_shape = (batch_size,) + shape[1:]
    logits = jax.eval_shape(model.apply, variables, jnp.zeros(batch_shape))
    assert logits.shape == (batch_size, NUM_CLASSES), name
    assert logits.dtype == jnp.float32


def test_cnn1d_accepts_signals_with_and_without_channel_axis():
  model = models.CNN1D(NUM_CLASSES, channels=(4, 4))
  apply_fn = models.make_apply_fn(model)
  params = random_variables(model, MNIST1D)["params"]
  signals = jax.random.normal(jax.random.key(1), MNIST1D)
  np.testing.assert_array_equal(apply_fn(params, signals), apply_fn(params, signals[..., None]))


# Parameter counts by formula ----------------------------------------------------------------------


def test_mlp_benchmark_workload_parameter_count():
  params = abstract_params(models.MLP((512, 512), 10), (1, 28, 28, 1))
  expected = dense_params(784, 512) + dense_params(512, 512) + dense_params(512, 10)
  assert param_count(params) == expected == 669_706
  assert [params[f"Dense_{i}"]["kernel"].shape for i in range(3)] == [(784, 512), (512, 512),
                                                                      (512, 10)]


def test_convnet_defaults_are_the_benchmark_cnn_workload():
  model = models.ConvNet()
  params = abstract_params(model, (1, 32, 32, 3))
  expected = (conv_params(3, 3, 32) + conv_params(3, 32, 64) + conv_params(3, 64, 64)
              + dense_params(64, 10))
  assert param_count(params) == expected
  assert (model.strides, model.padding, model.num_classes) == ((1, 2, 2), 1, 10)

  # stride-2 convolutions with padding 1: 32 -> 32 -> 16 -> 8
  def intermediates(params, inputs):
    _, state = model.apply({"params": params}, inputs, capture_intermediates=True,
                           mutable=["intermediates"])
    return state["intermediates"]

  features = jax.eval_shape(intermediates, params, jnp.zeros((1, 32, 32, 3)))
  maps = [features[f"Conv_{i}"]["__call__"][0].shape for i in range(3)]
  assert maps == [(1, 32, 32, 32), (1, 16, 16, 64), (1, 8, 8, 64)]


@pytest.mark.parametrize("shape,side", [(DIGITS, 2), (MNIST, 7), (CIFAR, 8)])
def test_lenet_parameter_count(shape, side):
  channels = shape[-1]
  expected = (conv_params(5, channels, 6) + conv_params(5, 6, 16)
              + dense_params(side * side * 16, 120) + dense_params(120, 84) + dense_params(84, 10))
  assert param_count(abstract_params(models.LeNet5(10), shape)) == expected


def test_allcnn_parameter_count():
  expected = (conv_params(3, 3, 96) + 2 * conv_params(3, 96, 96) + conv_params(3, 96, 192)
              + 3 * conv_params(3, 192, 192) + conv_params(1, 192, 192) + conv_params(1, 192, 10))
  assert param_count(abstract_params(models.AllCNN(10), CIFAR)) == expected == 1_369_738


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_resnet18_parameter_count_matches_cifar_resnet18(norm):
  # 11,173,962: the CIFAR ResNet-18 with BatchNorm of kuangliu/pytorch-cifar; GroupNorm has the same
  # per-channel scale and bias.
  params = abstract_params(models.ResNet18(10, norm=norm), CIFAR)
  assert param_count(params) == 11_173_962


def test_resnet18_without_norm_has_conv_biases_instead():
  normalised = abstract_params(models.ResNet18(10, norm="group"), CIFAR)
  plain = abstract_params(models.ResNet18(10, norm="none"), CIFAR)
  norm_params = sum(leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(normalised)
                    if "GroupNorm" in jax.tree_util.keystr(path))
  conv_biases = param_count(plain) - (param_count(normalised) - norm_params)
  # one bias per conv output channel == half the norm parameters (scale and bias per channel)
  assert conv_biases == norm_params // 2


# Width multiplier ---------------------------------------------------------------------------------


def test_allcnn_width_multiplier_scales_channels():
  params = abstract_params(models.AllCNN(10, width_multiplier=0.5), CIFAR)
  out_channels = [params[f"Conv_{i}"]["kernel"].shape[-1] for i in range(9)]
  assert out_channels == [48, 48, 48, 96, 96, 96, 96, 96, 10]
  assert params["Conv_7"]["kernel"].shape == (1, 1, 96, 96)


@pytest.mark.parametrize("multiplier,widths",
                         [(0.125, (8, 16, 32, 64)), (2.0, (128, 256, 512, 1024))])
def test_resnet18_width_multiplier_scales_channels(multiplier, widths):
  params = abstract_params(models.ResNet18(10, width_multiplier=multiplier), CIFAR)
  assert params["Conv_0"]["kernel"].shape == (3, 3, 3, widths[0])
  for stage, width in enumerate(widths):
    for block in (2 * stage, 2 * stage + 1):
      assert params[f"BasicBlock_{block}"]["Conv_1"]["kernel"].shape == (3, 3, width, width)
  assert params["Dense_0"]["kernel"].shape == (widths[-1], 10)
  # projections exactly where the shape changes: the first block of stages 2-4
  projected = [block for block in range(8) if "Conv_2" in params[f"BasicBlock_{block}"]]
  assert projected == [2, 4, 6]


def test_group_norm_groups_divide_channels():
  assert [models.resnet.num_groups(c) for c in (8, 19, 40, 64, 512)] == [8, 19, 20, 32, 32]
  params = abstract_params(models.ResNet18(10, width_multiplier=0.625), CIFAR)  # 40 channels
  assert params["GroupNorm_0"]["scale"].shape == (40,)


def test_parameterised_layers_are_flax_dense_and_conv():
  """Every parameter of the norm-free models sits in a flax Dense/Conv (the Fisher fast path)."""
  for name, model, shape in CASES:
    if name in ("allcnn-bn", "resnet-group", "resnet-batch"):
      continue
    for path, _ in jax.tree_util.tree_leaves_with_path(abstract_params(model, shape)):
      layer, leaf = path[-2].key, path[-1].key
      assert layer.split("_")[0] in ("Dense", "Conv") and leaf in ("kernel", "bias"), (name, path)


# Purity, jit, per-example independence ------------------------------------------------------------


def assert_examples_independent(apply_fn, params, inputs):
  """Row n of apply_fn on the batch equals apply_fn on example n alone, and ignores other examples.

  The single-example calls run as ``vmap`` over batches of one, which is a loop over examples.
  """
  batched_fn = jax.jit(apply_fn)
  batched = batched_fn(params, inputs)
  singles = jax.jit(jax.vmap(lambda example: apply_fn(params, example[None])[0]))(inputs)
  np.testing.assert_allclose(batched, singles, rtol=1e-4, atol=1e-5)
  perturbed = batched_fn(params, inputs.at[1:].multiply(-3.0))
  np.testing.assert_allclose(perturbed[0], batched[0], rtol=1e-4, atol=1e-5)


# One input size per architecture and variant (the others differ only in shapes, checked above).
NUMERIC_CASES = [case for case in CASES
                 if case[0] not in ("mlp-mnist", "lenet-mnist", "allcnn-cifar", "resnet-batch")]


@pytest.mark.parametrize("name,model,shape", NUMERIC_CASES, ids=[case[0] for case in NUMERIC_CASES])
def test_apply_is_pure_jit_matches_eager_and_examples_are_independent(name, model, shape):
  if name.startswith("resnet"):
    # GroupNorm on a 1x1 map normalises 2 values per group, which amplifies rounding differences;
    # 16x16 inputs keep 2x2 positions in the last stage.
    shape = (2, 16, 16, shape[-1])
  params, model_state = split_variables(random_variables(model, shape))
  apply_fn = models.make_apply_fn(model, model_state)
  inputs = jax.random.normal(jax.random.key(1), shape)
  eager = apply_fn(params, inputs)
  assert eager.shape == (shape[0], NUM_CLASSES) and np.all(np.isfinite(eager))
  assert not np.allclose(eager[0], eager[1])  # the checks below cannot pass on constant outputs
  np.testing.assert_array_equal(apply_fn(params, inputs), eager)
  np.testing.assert_allclose(jax.jit(apply_fn)(params, inputs), eager, rtol=1e-4, atol=1e-5)
  assert_examples_independent(apply_fn, params, inputs)


def test_batch_norm_couples_examples_in_training_mode_only():
  model = models.AllCNN(NUM_CLASSES, width_multiplier=0.125, batch_norm=True)
  variables = random_variables(model, DIGITS)
  inputs = jax.random.normal(jax.random.key(1), DIGITS)

  @jax.jit
  def train_apply(inputs):
    return model.apply(variables, inputs, train=True, mutable=["batch_stats"])

  train_logits, updates = train_apply(inputs)
  perturbed_logits, _ = train_apply(inputs.at[1:].multiply(-3.0))
  assert not np.allclose(train_logits[0], perturbed_logits[0], atol=1e-3)
  # the running statistics move towards the batch statistics
  batch_mean = updates["batch_stats"]["BatchNorm_0"]["mean"]
  assert not np.allclose(batch_mean, variables["batch_stats"]["BatchNorm_0"]["mean"])
  # eval mode with the updated statistics treats examples independently
  apply_fn = models.make_apply_fn(model, updates)
  assert_examples_independent(apply_fn, variables["params"], inputs)


# init / make_apply_fn -----------------------------------------------------------------------------


def test_init_returns_params_and_a_pure_apply():
  model = models.MLP((8,), NUM_CLASSES)
  apply_fn, params = models.init(model, KEY, (1, 6))
  expected_shapes = jax.tree.map(lambda leaf: leaf.shape, abstract_params(model, (1, 6)))
  assert jax.tree.map(lambda leaf: leaf.shape, params) == expected_shapes
  inputs = jax.random.normal(jax.random.key(1), (7, 6))
  logits = apply_fn(params, inputs)
  np.testing.assert_array_equal(apply_fn(params, inputs), logits)
  np.testing.assert_allclose(logits, model.apply({"params": params}, inputs), rtol=1e-6)
  _, other_params = models.init(model, jax.random.key(1), (1, 6))
  assert not np.allclose(other_params["Dense_0"]["kernel"], params["Dense_0"]["kernel"])


class _DenseBatchNorm(nn.Module):
  """A minimal BatchNorm model for the state-handling tests."""

  @nn.compact
  def __call__(self, inputs, train: bool = False):
    return nn.BatchNorm(use_running_average=not train)(nn.Dense(3)(inputs))


def test_init_closes_over_initial_batch_stats_in_eval_mode():
  model = _DenseBatchNorm()
  apply_fn, params = models.init(model, KEY, (1, 4))
  assert set(params) == {"Dense_0", "BatchNorm_0"}
  inputs = jax.random.normal(jax.random.key(1), (5, 4))
  # initial running statistics are mean 0, variance 1: eval mode is the affine map only
  dense = inputs @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None]
  expected = dense / np.sqrt(1.0 + 1e-5)
  np.testing.assert_allclose(apply_fn(params, inputs), expected, rtol=1e-5, atol=1e-6)
  trained_stats = {"BatchNorm_0": {"mean": jnp.ones(3), "var": jnp.full(3, 4.0)}}
  trained_fn = models.make_apply_fn(model, {"batch_stats": trained_stats})
  np.testing.assert_allclose(trained_fn(params, inputs), (dense - 1.0) / np.sqrt(4.0 + 1e-5),
                             rtol=1e-5, atol=1e-6)


def test_init_and_make_apply_fn_reject_bad_arguments():
  with pytest.raises(ValueError, match="input_shape"):
    models.init(models.LeNet5(10), KEY, (0, 8, 8, 1))
  with pytest.raises(ValueError, match="input_shape"):
    models.init(models.LeNet5(10), KEY, ())
  with pytest.raises(ValueError, match="model_state"):
    models.make_apply_fn(models.LeNet5(10), {"params": {}})


# Errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model,bad_shape,expected", [
    (models.MLP((4,), 10), (5,), r"MLP expects inputs of shape \(N, \.\.\.\)"),
    (models.LeNet5(10), (3, 8), r"LeNet5 expects inputs of shape \(N, H, W, C\) with H, W >= 4; "
                                r"got \(3, 8\)"),
    (models.LeNet5(10), (3, 3, 8, 1), r"H, W >= 4; got \(3, 3, 8, 1\)"),
    (models.AllCNN(10), (3, 32, 32), r"AllCNN expects inputs of shape \(N, H, W, C\); got"),
    (models.ResNet18(10), (32, 32, 3), r"ResNet18 expects inputs of shape \(N, H, W, C\)"),
    (models.CNN1D(10), (3, 40, 1, 1), r"CNN1D expects inputs of shape \(N, L\) or \(N, L, C\)"),
    (models.ConvNet(), (3, 32, 32), r"ConvNet expects inputs of shape \(N, H, W, C\)"),
    (models.ConvNet(padding=0), (3, 4, 4, 3), r"large enough"),
    (models.ConvNet(), (3, 0, 32, 3), r"ConvNet expects"),
    (models.MLP((4,), 10), (3, 0), r"MLP expects"),
])
def test_wrong_input_rank_or_size_is_a_clear_error(model, bad_shape, expected):
  with pytest.raises(ValueError, match=expected):
    jax.eval_shape(model.init, KEY, jnp.zeros(bad_shape))


@pytest.mark.parametrize("model,init_shape,bad_shape,expected", [
    (models.MLP((4,), 10), (1, 8, 8, 1), (2, 28, 28, 1), "initialised for inputs with 64 features"),
    (models.LeNet5(10), (1, 32, 32, 3), (2, 32, 32, 1), "initialised for inputs with 3 channels"),
    (models.LeNet5(10), (1, 32, 32, 3), (2, 28, 28, 3), "1024 features after the second pooling"),
    (models.AllCNN(10, width_multiplier=0.125), CIFAR, (2, 32, 32, 1), "with 3 channels"),
    (models.ResNet18(10, width_multiplier=0.125), CIFAR, (2, 32, 32, 1), "with 3 channels"),
    (models.CNN1D(10), MNIST1D, (2, 40, 3), "with 1 channels"),
    (models.CNN1D(10), MNIST1D, (2, 60), "flattened features"),
    (models.ConvNet(), CIFAR, (2, 32, 32, 1), "with 3 channels"),
])
def test_inputs_unlike_those_at_initialisation_are_a_clear_error(model, init_shape, bad_shape,
                                                                 expected):
  variables = jax.eval_shape(model.init, KEY, jnp.zeros(init_shape))
  with pytest.raises(ValueError, match=expected):
    jax.eval_shape(model.apply, variables, jnp.zeros(bad_shape))


@pytest.mark.parametrize("build,expected", [
    (lambda: models.MLP((), 10), "hidden_sizes"),
    (lambda: models.MLP((4, 0), 10), "hidden_sizes"),
    (lambda: models.MLP((4,), 10, activation="relu6x"), "unknown activation"),
    (lambda: models.LeNet5(0), "num_classes"),
    (lambda: models.AllCNN(10, width_multiplier=0.0), "width_multiplier"),
    (lambda: models.AllCNN(10, batch_norm="yes"), "batch_norm"),
    (lambda: models.ResNet18(10, norm="layer"), "norm must be one of"),
    (lambda: models.ResNet18(10, width_multiplier=float("nan")), "width_multiplier"),
    (lambda: models.CNN1D(10, stride=0), "stride"),
    (lambda: models.ConvNet(padding=-1), "padding"),
    (lambda: models.ConvNet(strides=(1, 2)), "one entry per convolution"),
])
def test_invalid_attributes_are_a_clear_error(build, expected):
  with pytest.raises(ValueError, match=expected):
    build()


def test_mlp_accepts_a_callable_activation():
  model = models.MLP((4,), 3, activation=nn.leaky_relu)
  apply_fn = models.make_apply_fn(model)
  params = random_variables(model, (2, 5))["params"]
  inputs = jax.random.normal(jax.random.key(1), (2, 5))
  hidden = nn.leaky_relu(inputs @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None])
  expected = hidden @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"][None]
  np.testing.assert_allclose(apply_fn(params, inputs), expected, rtol=1e-5, atol=1e-6)


# Registry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs,model_class", [
    ("mlp", {"hidden_sizes": (8,)}, models.MLP),
    ("lenet", {}, models.LeNet5),
    ("lenet5", {}, models.LeNet5),
    ("allcnn", {"width_multiplier": 0.5}, models.AllCNN),
    ("resnet18", {"norm": "none"}, models.ResNet18),
    ("cnn1d", {"kernel_size": 3}, models.CNN1D),
    ("convnet", {"channels": (4, 4), "strides": (1, 2)}, models.ConvNet),
])
def test_get_model_builds_the_named_model(name, kwargs, model_class):
  model = models.get_model(name, num_classes=7, **kwargs)
  assert type(model) is model_class
  assert model.num_classes == 7
  for field, value in kwargs.items():
    assert getattr(model, field) == value


def test_get_model_unknown_name_lists_known_models():
  with pytest.raises(ValueError, match=r"unknown model 'vgg'.*'allcnn'.*'resnet18'"):
    models.get_model("vgg", num_classes=10)


def test_get_model_bad_arguments_are_clear_errors():
  with pytest.raises(TypeError, match=r"'lenet'.*no attributes \['width_multiplier'\]"):
    models.get_model("lenet", num_classes=10, width_multiplier=2.0)
  with pytest.raises(TypeError, match=r"'mlp'.*hidden_sizes"):
    models.get_model("mlp", num_classes=10)
  with pytest.raises(ValueError, match="num_classes"):
    models.get_model("convnet", num_classes=-1)
