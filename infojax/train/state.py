"""The training state: everything a run needs to continue, as one pytree."""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
  """The state of a training run, a pytree that `jax.jit`, `lax.scan` and orbax handle as a whole.

  Attributes:
    params: the model parameters (any pytree of arrays).
    opt_state: the optax optimiser state for ``params``.
    step: int32 scalar, the number of optimisation steps taken so far.
    key: a typed PRNG key (``jax.random.key``); step ``t`` draws its randomness (dropout, label
      sampling) from ``jax.random.fold_in(key, t)``, so the key itself never changes and a resumed
      run draws the same numbers as an uninterrupted one.
    model_state: non-trainable model variables updated in the forward pass (e.g. flax BatchNorm
      ``{"batch_stats": ...}``); ``{}`` for models without any.
  """
  params: Any
  opt_state: Any
  step: jax.Array
  key: jax.Array
  model_state: Any


def init_state(params, optimizer: optax.GradientTransformation, *, key: jax.Array,
               model_state: Optional[Any] = None) -> TrainState:
  """Starts a run: step 0 and a fresh optimiser state for ``params``.

  Args:
    params: the initial parameters.
    optimizer: an optax transformation, e.g. from `infojax.train.make_optimizer`.
    key: a typed PRNG key (``jax.random.key(seed)``) for the run's per-step randomness.
    model_state: non-trainable variables (BatchNorm statistics); ``None`` means ``{}``.

  Returns:
    A `TrainState`.
  """
  if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
    raise TypeError(
        "init_state: key must be a typed PRNG key from jax.random.key(seed); "
        f"got {type(key).__name__} with dtype {getattr(key, 'dtype', None)}.")
  return TrainState(
      params=params,
      opt_state=optimizer.init(params),
      step=jnp.zeros((), jnp.int32),
      key=key,
      model_state={} if model_state is None else model_state)
