"""Tests for infojax.train.checkpoint: orbax save/restore of a TrainState, by epoch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from infojax import train


def _state(seed):
  keys = jax.random.split(jax.random.key(seed), 3)
  params = {"conv": {"kernel": jax.random.normal(keys[0], (3, 3, 1, 4))},
            "dense": {"kernel": jax.random.normal(keys[1], (4, 2)), "bias": jnp.zeros(2)}}
  optimizer = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(1e-2))
  state = train.init_state(params, optimizer, key=jax.random.key(seed + 100),
                           model_state={"batch_stats": {"mean": jnp.arange(4.0)}})
  # Take one real step so the optimiser moments and the count are non-trivial.
  grads = jax.tree.map(jnp.ones_like, params)
  updates, opt_state = optimizer.update(grads, state.opt_state, params)
  return state._replace(params=optax.apply_updates(params, updates), opt_state=opt_state,
                        step=jnp.asarray(7, jnp.int32))


def _assert_states_equal(a, b):
  assert jax.tree.structure(a._replace(key=None)) == jax.tree.structure(b._replace(key=None))
  for x, y in zip(jax.tree.leaves(a._replace(key=None)), jax.tree.leaves(b._replace(key=None))):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert jax.random.key_impl(a.key) == jax.random.key_impl(b.key)
  np.testing.assert_array_equal(jax.random.key_data(a.key), jax.random.key_data(b.key))


def test_round_trip_restores_every_leaf_and_the_typed_key(tmp_path):
  saved = _state(0)
  with train.Checkpointer(str(tmp_path)) as checkpointer:
    assert checkpointer.latest_epoch() is None
    checkpointer.save(3, saved)
    restored = checkpointer.restore(3, like=_state(1))
  _assert_states_equal(saved, restored)
  # The restored key draws the same numbers as the saved one.
  np.testing.assert_array_equal(jax.random.normal(saved.key, (5,)),
                                jax.random.normal(restored.key, (5,)))


def test_latest_epoch_and_pruning_across_instances(tmp_path):
  states = {epoch: _state(epoch) for epoch in (2, 4, 6)}
  with train.Checkpointer(str(tmp_path), max_to_keep=2) as checkpointer:
    for epoch, state in states.items():
      checkpointer.save(epoch, state)
  with train.Checkpointer(str(tmp_path), max_to_keep=2) as checkpointer:
    assert checkpointer.latest_epoch() == 6
    assert checkpointer.epochs() == [4, 6]
    _assert_states_equal(states[4], checkpointer.restore(4, like=_state(0)))
    with pytest.raises(ValueError, match="no checkpoint for epoch 2"):
      checkpointer.restore(2, like=_state(0))


def test_rejects_untyped_keys_and_bad_options(tmp_path):
  state = _state(0)
  with train.Checkpointer(str(tmp_path)) as checkpointer:
    with pytest.raises(TypeError, match="typed PRNG key"):
      checkpointer.save(1, state._replace(key=jax.random.key_data(state.key)))
  with pytest.raises(ValueError, match="max_to_keep"):
    train.Checkpointer(str(tmp_path / "other"), max_to_keep=0)


def test_round_trip_of_any_pytree_with_nested_named_tuples_and_keys(tmp_path):
  """A posterior fit's state: named tuples nested in tuples, a typed key among the leaves."""
  from infojax import weights  # pylint: disable=import-outside-toplevel
  params = {"b": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}, "a": jnp.zeros(2)}
  fit = weights.information_lagrangian_fit(lambda p, _: jnp.sum(jnp.square(p["a"] - 1.0)),
                                           beta=1.0, optimizer=optax.adam(1e-2))
  saved, _ = fit.update(fit.init(weights.gaussian_posterior(params, 0.01), jax.random.key(3),
                                 prior_variance=0.1), None)
  like = fit.init(weights.gaussian_posterior(jax.tree.map(jnp.zeros_like, params), 0.5),
                  jax.random.key(0), prior_variance=0.2)
  with train.Checkpointer(str(tmp_path)) as checkpointer:
    checkpointer.save(0, {"state": saved, "keys": jax.random.split(jax.random.key(5), 2)})
    restored = checkpointer.restore(0, {"state": like, "keys": jax.random.split(like.key, 2)})
  assert jax.tree.structure(restored["state"]) == jax.tree.structure(saved)
  for x, y in zip(jax.tree.leaves(saved), jax.tree.leaves(restored["state"])):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  np.testing.assert_array_equal(jax.random.key_data(restored["keys"]),
                                jax.random.key_data(jax.random.split(jax.random.key(5), 2)))
