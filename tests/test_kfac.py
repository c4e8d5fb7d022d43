"""K-FAC factors: exact where the Kronecker form must be, and means of per-example factors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij

LIK = ij.likelihoods.categorical()


class Model(nn.Module):
  conv: bool = False

  @nn.compact
  def __call__(self, x):
    if self.conv:                        # one output position: the kernel covers the input
      x = nn.Conv(3, (3, 3), padding="VALID")(x).reshape(x.shape[0], -1)
    h = jnp.tanh(nn.Dense(5)(x.reshape(x.shape[0], -1)))
    return nn.Dense(4, use_bias=False)(h)


def _case(conv, num_examples, seed=0):
  shape = (3, 3, 2) if conv else (3,)
  keys = jax.random.split(jax.random.key(seed), 3)
  inputs = jax.random.normal(keys[0], (num_examples,) + shape)
  module = Model(conv=conv)
  params = jax.tree.map(lambda p: p.astype(jnp.zeros(()).dtype),
                        module.init(keys[1], inputs)["params"])
  return ((lambda p, x: module.apply({"params": p}, x)), params,
          (inputs, jax.random.randint(keys[2], (num_examples,), 0, 4)))


def _block(params, dense_matrix, kernel_path, bias_path):
  """Rows and columns of the dense Fisher for [kernel row-major; bias] of one layer."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  index = unravel(jnp.arange(flat.size, dtype=jnp.float64))
  by_path = {jax.tree_util.keystr(p): np.asarray(v).astype(int)
             for p, v in jax.tree_util.tree_leaves_with_path(index)}
  kernel = by_path[kernel_path]
  rows = kernel.reshape(-1, kernel.shape[-1])
  if bias_path is not None:
    rows = np.concatenate([rows, by_path[bias_path][None]], axis=0)
  order = rows.reshape(-1)
  return dense_matrix[np.ix_(order, order)]


@pytest.mark.parametrize("conv", [False, True])
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_one_example_of_a_layer_is_exactly_a_kronecker_product(conv, kind, x64):
  apply_fn, params, batch = _case(conv, 1)
  factors = ij.fisher.kfac_factors(apply_fn, params, batch, likelihood=LIK, kind=kind)
  assert set(factors) == ({"Conv_0", "Dense_0", "Dense_1"} if conv else {"Dense_0", "Dense_1"})
  dense = np.asarray(ij.fisher.reference.matrix(apply_fn, params, batch, likelihood=LIK,
                                                kind=kind))
  for name, factor in factors.items():
    exact = _block(params, dense, factor.kernel_path, factor.bias_path)
    np.testing.assert_allclose(np.kron(factor.a, factor.g), exact, rtol=1e-10,
                               atol=1e-12 * np.abs(exact).max(), err_msg=name)


def test_factors_are_means_over_examples_and_chunking_does_not_change_them(x64):
  apply_fn, params, batch = _case(True, 5)
  factors = ij.fisher.kfac_factors(apply_fn, params, batch, likelihood=LIK, kind="true")
  alone = [ij.fisher.kfac_factors(apply_fn, params, jax.tree.map(lambda x: x[n:n + 1], batch),
                                  likelihood=LIK, kind="true") for n in range(5)]
  chunked = jax.jit(lambda p, b: ij.fisher.kfac_factors(apply_fn, p, b, likelihood=LIK,
                                                        kind="true", chunk_size=2))(params, batch)
  for name, factor in factors.items():
    np.testing.assert_allclose(factor.a, np.mean([f[name].a for f in alone], axis=0), rtol=1e-10)
    np.testing.assert_allclose(factor.g, np.mean([f[name].g for f in alone], axis=0), rtol=1e-10)
    np.testing.assert_allclose(chunked[name].a, factor.a, rtol=1e-10)
    np.testing.assert_allclose(chunked[name].g, factor.g, rtol=1e-10)


def test_a_weight_used_outside_its_layer_is_refused():
  class Tied(nn.Module):
    @nn.compact
    def __call__(self, x):
      dense = nn.Dense(3)
      return jnp.tanh(dense(x)) @ dense.variables["params"]["kernel"].T

  module = Tied()
  inputs = jnp.ones((2, 4))
  params = module.init(jax.random.key(0), inputs)["params"]
  with pytest.raises(ValueError, match=r"\['Dense_0'\]\['kernel'\]"):
    ij.fisher.kfac_factors(lambda p, x: module.apply({"params": p}, x), params,
                           (inputs, jnp.ones((2, 4))), likelihood=ij.likelihoods.gaussian(),
                           kind="true")
