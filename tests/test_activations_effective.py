"""Effective information of the activations: closed forms, the float64 reference, Monte Carlo,
singular cases and bad input (science.md §2.9)."""

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij
from infojax.activations import effective
from infojax.activations import reference


def _linear(with_bias=True):
  def apply_fn(params, x):
    z = x @ params["kernel"]
    return z + params["bias"][None] if with_bias else z
  return apply_fn


def _linear_problem(seed=0, d=3, k=5, n=4, with_bias=True):
  rng = np.random.default_rng(seed)
  params = {"kernel": rng.normal(size=(d, k))}
  fisher = {"kernel": rng.uniform(0.5, 2.0, size=(d, k))}
  if with_bias:
    params["bias"] = rng.normal(size=k)
    fisher["bias"] = rng.uniform(0.5, 2.0, size=k)
  inputs = rng.normal(size=(n, d))
  to_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
  return to_jax(params), to_jax(fisher), jnp.asarray(inputs)


class _MLP(nn.Module):
  """Two tanh layers and a read-out; ``Dense_0``'s output is a hidden pre-activation."""
  width: int = 6
  outputs: int = 4

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(self.width)(x))
    h = jnp.tanh(nn.Dense(self.width)(h))
    return nn.Dense(self.outputs)(h)


def _mlp_problem(seed=0, d=3, n=3, dtype=jnp.float64):
  model = _MLP()
  key_params, key_inputs, key_fisher = jax.random.split(jax.random.key(seed), 3)
  inputs = jax.random.normal(key_inputs, (n, d), dtype)
  params = jax.tree.map(lambda p: p.astype(dtype), model.init(key_params, inputs)["params"])
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key_fisher, len(leaves))
  fisher = jax.tree.unflatten(treedef, [
      jax.random.uniform(k, leaf.shape, leaf.dtype, 0.2, 3.0) for k, leaf in zip(keys, leaves)])
  return _apply, params, fisher, inputs


# --- closed forms --------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["jacobian", "products"])
def test_linear_layer_matches_closed_form(x64, route):
  params, fisher, inputs = _linear_problem()
  w, fw, fb = (np.asarray(params["kernel"]), np.asarray(fisher["kernel"]),
               np.asarray(fisher["bias"]))
  beta = 0.3
  corrected = effective.activation_fisher(_linear(), params, inputs, weight_fisher=fisher,
                                          beta=beta, route=route)
  printed = effective.activation_fisher(_linear(), params, inputs, weight_fisher=fisher,
                                        beta=beta, route=route, paper_convention=True)
  for n, x in enumerate(np.asarray(inputs)):
    # z_i = sum_j x_j W_ji + b_i: J_f has x_j at (i, W_ji) and 1 at (i, b_i); C is diagonal.
    noise = beta * ((x[:, None] ** 2 / fw).sum(0) + 1.0 / fb)
    np.testing.assert_allclose(corrected[n], w @ np.diag(1.0 / noise) @ w.T, rtol=1e-10)
    signal = ((x[:, None] ** 2 * fw).sum(0) + fb) / beta
    np.testing.assert_allclose(printed[n], w @ np.diag(signal) @ w.T, rtol=1e-10)


def test_input_scale(x64):
  params, fisher, inputs = _linear_problem(with_bias=False)
  kwargs = dict(weight_fisher=fisher, beta=0.5)
  for paper, factor in ((False, 0.25), (True, 4.0)):
    once = effective.activation_fisher(_linear(False), params, inputs, paper_convention=paper,
                                       **kwargs)
    twice = effective.activation_fisher(_linear(False), params, 2 * inputs,
                                        paper_convention=paper, **kwargs)
    np.testing.assert_allclose(twice, factor * once, rtol=1e-10)


@pytest.mark.parametrize("correlation,expected", [(0.9, 0.19), (0.99, 0.0199), (0.0, 1.0)])
@pytest.mark.parametrize("route", ["jacobian", "products"])
def test_correlated_weights(x64, correlation, expected, route):
  """One activation reading one of two weights with dense Fisher [[1, r], [r, 1]]."""
  params = {"read": jnp.ones(()), "unread": jnp.ones(())}

  def apply_fn(p, x):
    return p["read"] * x        # x: (N, 1)

  dense = jnp.asarray([[1.0, correlation], [correlation, 1.0]])
  inputs = jnp.ones((1, 1))
  corrected = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=dense, beta=1.0,
                                          route=route)
  printed = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=dense, beta=1.0,
                                        route=route, paper_convention=True)
  np.testing.assert_allclose(corrected[0, 0, 0], 1 - correlation ** 2, rtol=1e-10)
  np.testing.assert_allclose(corrected[0, 0, 0], expected, rtol=1e-3)
  np.testing.assert_allclose(printed[0, 0, 0], 1.0, rtol=1e-12)


def test_monotone_in_weight_fisher(x64):
  apply_fn, params, fisher, inputs = _mlp_problem()
  more = jax.tree.map(lambda f: f * (1.0 + jax.random.uniform(jax.random.key(3), f.shape)), fisher)
  for paper in (False, True):
    low = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.1,
                                      paper_convention=paper)
    high = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=more, beta=0.1,
                                       paper_convention=paper)
    gaps = np.linalg.eigvalsh(np.asarray(high - low))
    assert gaps.min() >= -1e-10 * np.abs(np.asarray(high)).max()
    assert gaps.max() > 1e-3 * np.abs(np.asarray(high)).max()      # strictly more somewhere


# --- against the float64 reference ---------------------------------------------------------------

@pytest.mark.parametrize("route", ["jacobian", "products"])
@pytest.mark.parametrize("paper", [False, True])
def test_hidden_layer_matches_reference(x64, route, paper):
  _, params, fisher, inputs = _mlp_problem()

  def hidden(p, x):       # Dense_1's pre-activation, written out without a module path
    h = jnp.tanh(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"][None])
    return h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"][None]

  np.testing.assert_allclose(effective.activations_fn(_apply, "Dense_1")(params, inputs),
                             hidden(params, inputs), rtol=1e-12)
  got = effective.activation_fisher(_apply, params, inputs,
                                    weight_fisher=fisher, beta=0.2, layer="Dense_1", route=route,
                                    paper_convention=paper, chunk_size=2, tolerance=1e-13)
  expected = reference.activation_fisher(hidden, params, inputs, weight_fisher=fisher, beta=0.2,
                                         paper_convention=paper)
  np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def _apply(params, x):
  return _MLP().apply({"params": params}, x)


def test_outputs_and_dense_fisher_match_reference(x64):
  _, params, _, inputs = _mlp_problem(seed=1)
  size = jax.flatten_util.ravel_pytree(params)[0].size
  root = jax.random.normal(jax.random.key(5), (size, size), jnp.float64)
  dense = root @ root.T / size + 0.5 * jnp.eye(size)
  for paper in (False, True):
    got = effective.activation_fisher(_apply, params, inputs, weight_fisher=dense, beta=0.7,
                                      paper_convention=paper)
    expected = reference.activation_fisher(_apply, params, inputs, weight_fisher=dense, beta=0.7,
                                           paper_convention=paper)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_float32_matches_reference(x64):
  _, params, fisher, inputs = _mlp_problem(seed=2)
  expected = reference.activation_fisher(_apply, params, inputs, weight_fisher=fisher, beta=0.2)
  params32, fisher32 = (jax.tree.map(lambda a: a.astype(jnp.float32), t) for t in (params, fisher))
  for route in ("jacobian", "products"):
    got = effective.activation_fisher(_apply, params32, inputs.astype(jnp.float32),
                                      weight_fisher=fisher32, beta=0.2, route=route)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-4 * np.abs(expected).max())


def test_corrected_form_is_invariant_to_invertible_activation_maps(x64):
  """Fisher information about x does not change under an invertible map of the observation z;
  the printed form does (it is not a Fisher of z)."""
  _, params, fisher, inputs = _mlp_problem(seed=4)
  kwargs = dict(weight_fisher=fisher, beta=0.3)
  for paper, invariant in ((False, True), (True, False)):
    plain = effective.activation_fisher(_apply, params, inputs, paper_convention=paper, **kwargs)
    mapped = effective.activation_fisher(_apply, params, inputs, paper_convention=paper,
                                         layer=lambda z: jnp.sinh(2 * z) + z, **kwargs)
    assert np.allclose(mapped, plain, rtol=1e-8) == invariant


def test_noise_covariance_matches_monte_carlo(x64):
  """Linearisation check: Cov(f_{w+n}(x)) / beta -> J F^{-1} J^T as beta -> 0."""
  apply_fn, params, fisher, inputs = _mlp_problem(seed=6, n=2)
  beta = 1e-4
  covariance = effective.noise_covariance(apply_fn, params, inputs, weight_fisher=fisher, beta=beta)
  np.testing.assert_allclose(
      covariance, reference.noise_covariance(_apply, params, inputs, weight_fisher=fisher,
                                             beta=beta), rtol=1e-9)
  samples = 40000
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  noise = [jax.random.normal(k, (samples,) + leaf.shape, leaf.dtype) * jnp.sqrt(beta / f)[None]
           for k, leaf, f in zip(keys, leaves, jax.tree.leaves(fisher))]
  noisy = jax.vmap(lambda *n: apply_fn(jax.tree.unflatten(
      treedef, [leaf + e for leaf, e in zip(leaves, n)]), inputs))(*noise)   # (S, N, k)
  for n in range(inputs.shape[0]):
    measured = np.cov(np.asarray(noisy[:, n]).T)
    error = np.linalg.norm(measured - covariance[n]) / np.linalg.norm(covariance[n])
    assert error < 0.05, error


# --- singular cases ------------------------------------------------------------------------------

class _Conv(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(2, (3, 3), padding="SAME")(x).reshape(x.shape[0], -1)


def _conv_problem():
  model = _Conv()
  inputs = jax.random.normal(jax.random.key(0), (2, 4, 4, 1), jnp.float64)
  params = jax.tree.map(lambda p: p.astype(jnp.float64),
                        model.init(jax.random.key(1), inputs)["params"])
  fisher = jax.tree.map(lambda p: jnp.full(p.shape, 2.0, p.dtype), params)
  return _apply, params, fisher, inputs


@pytest.mark.parametrize("route", ["jacobian", "products"])
def test_convolution_noise_is_degenerate_without_activation_noise(x64, route):
  """32 activations from 20 shared weights: C has rank <= 20 and the input leaves its range."""
  _, params, fisher, inputs = _conv_problem()

  def apply_fn(p, x):
    return _Conv().apply({"params": p}, x)

  with pytest.raises(ValueError, match="activation_noise > 0"):
    effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.1,
                                route=route)
  jitted = jax.jit(lambda p: effective.activation_fisher(apply_fn, p, inputs, weight_fisher=fisher,
                                                         beta=0.1, route=route))(params)
  assert np.all(np.isnan(jitted))
  got = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.1,
                                    activation_noise=0.05, route=route, tolerance=1e-12)
  expected = reference.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.1,
                                         activation_noise=0.05)
  np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_dead_units_carry_no_information(x64):
  """A unit that is constant in the input and the weights is in neither range: pseudo-inverse."""
  params, fisher, inputs = _linear_problem(k=4)

  def apply_fn(p, x):
    z = x @ p["kernel"] + p["bias"][None]
    return jnp.concatenate([z, jnp.zeros((x.shape[0], 2))], axis=1)

  got = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.3)
  expected = effective.activation_fisher(_linear(), params, inputs, weight_fisher=fisher, beta=0.3)
  np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_effective_information_matches_formula(x64):
  apply_fn, params, fisher, inputs = _mlp_problem(seed=8)
  result = effective.effective_information(apply_fn, params, inputs, weight_fisher=fisher,
                                           beta=0.2, input_entropy=1.5)
  expected_fisher = reference.activation_fisher(_apply, params, inputs, weight_fisher=fisher,
                                                beta=0.2)
  information, terms = reference.effective_information(expected_fisher, input_entropy=1.5)
  np.testing.assert_allclose(result.information, information, rtol=1e-9)
  np.testing.assert_allclose(result.per_example, terms, rtol=1e-9)
  assert np.all(np.asarray(result.rank) == 3)
  # Less weight Fisher (more noise) -> less effective information.
  less = effective.effective_information(apply_fn, params, inputs, beta=0.2, input_entropy=1.5,
                                         weight_fisher=jax.tree.map(lambda f: 0.5 * f, fisher))
  assert less.information < result.information
  assert ij.activations.effective_information is effective.effective_information


def test_narrow_layer_needs_pseudo_determinant(x64):
  params, fisher, inputs = _linear_problem(d=5, k=3)
  with pytest.raises(ValueError, match=r"k = 3 activations for inputs of dimension d = 5"):
    effective.effective_information(_linear(), params, inputs, weight_fisher=fisher, beta=0.3)
  result = effective.effective_information(_linear(), params, inputs, weight_fisher=fisher,
                                           beta=0.3, pseudo_determinant=True)
  assert np.all(np.asarray(result.rank) == 3)
  fisher_zx = effective.activation_fisher(_linear(), params, inputs, weight_fisher=fisher, beta=0.3)
  for n, f in enumerate(np.asarray(fisher_zx)):
    values = np.linalg.eigvalsh(f)[-3:]
    np.testing.assert_allclose(result.log_determinant[n], np.log(values).sum(), rtol=1e-9)
    np.testing.assert_allclose(result.per_example[n],
                               0.5 * np.log(values).sum() - 1.5 * np.log(2 * np.pi * np.e),
                               rtol=1e-9)


def test_rank_deficient_fisher_raises(x64):
  """k >= d but the layer ignores one input coordinate: F_z|x is singular."""
  params, fisher, inputs = _linear_problem(d=3, k=5)
  params = {**params, "kernel": params["kernel"].at[2].set(0.0)}
  with pytest.raises(ValueError, match="rank 2 < d = 3"):
    effective.effective_information(_linear(), params, inputs, weight_fisher=fisher, beta=0.3)


# --- transformations -----------------------------------------------------------------------------

def test_jit_vmap_chunks_and_sharding():
  apply_fn, params, fisher, inputs = _mlp_problem(seed=9, n=8, dtype=jnp.float32)
  eager = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.2)
  jitted = jax.jit(lambda p, x: effective.activation_fisher(apply_fn, p, x, weight_fisher=fisher,
                                                            beta=0.2))(params, inputs)
  np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
  chunked = effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=0.2,
                                        chunk_size=3)
  np.testing.assert_allclose(chunked, eager, rtol=1e-5, atol=1e-6)
  betas = jnp.asarray([0.1, 0.2, 0.4])
  swept = jax.vmap(lambda b: effective.effective_information(
      apply_fn, params, inputs, weight_fisher=fisher, beta=b).information)(betas)
  for b, value in zip(betas, swept):
    single = effective.effective_information(apply_fn, params, inputs, weight_fisher=fisher,
                                             beta=float(b)).information
    np.testing.assert_allclose(value, single, rtol=1e-5)
  # beta multiplies the corrected Fisher by 1/beta: I_eff drops by d/2 log 2 when beta doubles.
  np.testing.assert_allclose(swept[0] - swept[1], 1.5 * np.log(2.0), rtol=1e-4)
  for axis_type in (jax.sharding.AxisType.Auto, jax.sharding.AxisType.Explicit):
    mesh = jax.make_mesh((8,), ("batch",), axis_types=(axis_type,))
    sharded = jax.device_put(inputs, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("batch")))
    with jax.set_mesh(mesh):
      got = jax.jit(lambda x: effective.activation_fisher(apply_fn, params, x,
                                                          weight_fisher=fisher, beta=0.2))(sharded)
    np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-6)


# --- bad input -----------------------------------------------------------------------------------

def test_bad_input():
  apply_fn, params, fisher, inputs = _mlp_problem(dtype=jnp.float32)
  kwargs = dict(weight_fisher=fisher, beta=0.1)
  with pytest.raises(ValueError, match="no flax module at 'Dense_7'.*Dense_0, Dense_1, Dense_2"):
    effective.activation_fisher(apply_fn, params, inputs, layer="Dense_7", **kwargs)
  with pytest.raises(ValueError, match="weight_fisher must be a pytree like params"):
    effective.activation_fisher(apply_fn, params, inputs, beta=0.1,
                                weight_fisher={"Dense_0": fisher["Dense_0"]})
  wrong_shape = {**fisher, "Dense_0": {**fisher["Dense_0"], "bias": jnp.ones(2)}}
  with pytest.raises(ValueError, match="weight_fisher must be a pytree like params"):
    effective.activation_fisher(apply_fn, params, inputs, beta=0.1, weight_fisher=wrong_shape)
  zero = {**fisher, "Dense_0": {**fisher["Dense_0"], "bias": jnp.zeros(6)}}
  with pytest.raises(ValueError, match="weight_fisher: every entry must be positive"):
    effective.activation_fisher(apply_fn, params, inputs, beta=0.1, weight_fisher=zero)
  effective.activation_fisher(apply_fn, params, inputs, beta=0.1, weight_fisher=zero,
                              paper_convention=True)      # the printed form does not invert F
  with pytest.raises(ValueError, match="positive definite"):
    size = jax.flatten_util.ravel_pytree(params)[0].size
    effective.activation_fisher(apply_fn, params, inputs, beta=0.1,
                                weight_fisher=-jnp.eye(size))
  for beta in (0.0, -1.0, float("nan")):
    with pytest.raises(ValueError, match="beta must be > 0"):
      effective.activation_fisher(apply_fn, params, inputs, weight_fisher=fisher, beta=beta)
  with pytest.raises(ValueError, match="activation_noise must be >= 0"):
    effective.activation_fisher(apply_fn, params, inputs, activation_noise=-1.0, **kwargs)
  with pytest.raises(ValueError, match="route must be one of"):
    effective.activation_fisher(apply_fn, params, inputs, route="fast", **kwargs)
  with pytest.raises(TypeError, match="inputs must be one floating-point array"):
    effective.activation_fisher(apply_fn, params, {"x": inputs}, **kwargs)
  with pytest.raises(ValueError, match="inputs must be a floating-point array"):
    effective.activation_fisher(apply_fn, params, inputs.astype(jnp.int32), **kwargs)
  with pytest.raises(TypeError, match="layer must be None"):
    effective.activation_fisher(apply_fn, params, inputs, layer=3, **kwargs)
  with pytest.raises(ValueError, match="does not treat examples independently"):
    effective.activation_fisher(lambda p, x: apply_fn(p, x - x.mean(0, keepdims=True)), params,
                                inputs, **kwargs)
