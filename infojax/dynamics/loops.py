"""SGD and Langevin paths through weight space as compiled programs.

A path is one ``lax.scan`` over its steps, so a whole training run, with its minibatch sampling,
its noise and the quantities recorded along the way, compiles to one program, and ``jax.vmap``
over the PRNG key, the learning rate, the momentum, the temperature or the initial parameters
turns a sweep over seeds and step sizes into one program too.

* `sgd_path`: minibatch SGD with momentum and weight decay (the optax update of `sgd_optimizer`);
* `langevin_path`: Euler-Maruyama Langevin dynamics ``dw = -grad U dt + sqrt(2 T) S dW`` with
  isotropic noise (``S = I``) or noise shaped like the per-example gradient covariance
  (``S = D(w)^{1/2}``, the diffusion of SGD; Chaudhari & Soatto 2018, "Stochastic gradient descent
  performs variational inference, converges to limit cycles for deep networks", ICLR; science.md
  §12);
* `euler_maruyama`: the same integrator for any drift, e.g. ``-grad U`` of a potential
  (Achille, Mbeng & Soatto 2019, "Dynamics and reachability of learning tasks", arXiv 1810.02440;
  science.md §7.1, §7.5).

With learning rate ``eta``, SGD of batch ``B`` has, near a minimum, the stationary law of the
Langevin dynamics at temperature ``T = eta sigma^2 / (2 B)`` per coordinate of gradient variance
``sigma^2`` (science.md §7.1); on a quadratic the discrete recursion's stationary variance is
exactly ``eta sigma^2 / (B (2 - eta h))`` for curvature ``h`` (A.13).

Steps are numbered from 0. Step ``t`` uses the minibatch `minibatch_indices(key, t, ...)`:
``"shuffle"`` draws a fresh permutation of the examples for each epoch of ``N // B`` steps (the
remaining ``N mod B`` examples of an epoch are not used in it; ``B = N`` is full-batch gradient
descent); ``"replacement"`` draws ``B`` indices uniformly with replacement at every step.
"""

from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from jax import lax

from infojax.dynamics import _checks

SAMPLINGS = ("shuffle", "replacement")
NOISES = ("isotropic", "gradient_covariance")


class Path(NamedTuple):
  """The end of a path and what was recorded along it.

  Attributes:
    params: the parameters after the last step (a pytree like the initial ones).
    history: a dict of arrays with a leading time axis R = ``num_steps // record_every``:
      ``"step"`` (the number of steps taken at each record: ``record_every, 2 record_every, ...,
      num_steps``), ``"loss"`` (for `sgd_path` and `langevin_path`: the mean, over the
      ``record_every`` steps before the record, of the loss that each step differentiated, i.e.
      the minibatch mean at the parameters before the update) and one entry per metric.
  """
  params: Any
  history: dict


def sgd_optimizer(learning_rate, *, momentum=0.0, weight_decay=0.0) -> optax.GradientTransformation:
  """The update of `sgd_path`: ``chain(add_decayed_weights(weight_decay), sgd(lr, momentum))``.

  The gradient of ``U(w) = L(w) + weight_decay ||w||^2 / 2`` followed by heavy-ball momentum
  ``m <- momentum m + g`` and ``w <- w - learning_rate m``. Every argument may be traced (swept by
  ``vmap``).
  """
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=momentum))


def per_example_nll(apply_fn: Callable, likelihood) -> Callable:
  """``loss_fn(params, (inputs, targets)) -> (B,)``, the per-example negative log-likelihoods
  ``likelihood.nll(apply_fn(params, inputs), targets)``: the ``loss_fn`` of `sgd_path` and
  `langevin_path` for a model and an `infojax.likelihoods` likelihood."""

  def loss_fn(params, batch):
    inputs, targets = batch
    return likelihood.nll(apply_fn(params, inputs), targets)

  return loss_fn


def _num_examples(data) -> int:
  leaves = jax.tree.leaves(data)
  if not leaves:
    raise ValueError("data must be a pytree of arrays with a leading example axis; it has no "
                     "leaves.")
  sizes = {int(jnp.shape(leaf)[0]) if jnp.ndim(leaf) else None for leaf in leaves}
  if None in sizes or len(sizes) != 1:
    raise ValueError("data: every leaf must have the same leading example axis N; got leading "
                     f"sizes {sorted(str(s) for s in sizes)}.")
  (size,) = sizes
  if size < 1:
    raise ValueError("data has no examples (N = 0).")
  return size


def _check_batch_size(batch_size, num_examples: int) -> int:
  batch_size = _checks.check_positive_int("batch_size", batch_size)
  if batch_size > num_examples:
    raise ValueError(f"batch_size must be at most the number of examples N = {num_examples}; got "
                     f"{batch_size}.")
  return batch_size


def _check_sampling(sampling: str) -> None:
  if sampling not in SAMPLINGS:
    raise ValueError(f"sampling must be one of {SAMPLINGS}; got {sampling!r}.")


def _check_schedule(num_steps, record_every) -> int:
  """The number of records R; ``record_every`` must divide ``num_steps``."""
  num_steps = _checks.check_positive_int("num_steps", num_steps)
  record_every = _checks.check_positive_int("record_every", record_every)
  if num_steps % record_every:
    raise ValueError(f"record_every must divide num_steps (a record closes every record_every "
                     f"steps); got num_steps = {num_steps}, record_every = {record_every}.")
  return num_steps // record_every


def _check_metrics(metrics) -> dict:
  if metrics is None:
    return {}
  if not isinstance(metrics, Mapping):
    raise TypeError(f"metrics must be a dict {{name: fn(params, step)}}; got {type(metrics)}.")
  for name, fn in metrics.items():
    if name in ("step", "loss"):
      raise ValueError(f"metrics: {name!r} is recorded by the path itself; choose another name.")
    if not callable(fn):
      raise TypeError(f"metrics[{name!r}] must be a function fn(params, step); got {fn!r}.")
  return dict(metrics)


def _take(data, indices):
  return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), data)


def _check_per_example(loss_fn, params, batch, batch_size: int) -> None:
  """``loss_fn(params, batch)`` must return one loss per example, shape ``(batch_size,)``."""
  shape = jax.eval_shape(loss_fn, params, batch)
  if not hasattr(shape, "shape") or tuple(shape.shape) != (batch_size,):
    got = getattr(shape, "shape", shape)
    raise ValueError(f"loss_fn must return per-example losses, shape (batch_size,) = "
                     f"({batch_size},), for a batch of {batch_size} examples; got {got}. Return "
                     "the vector of losses, not their mean.")


def _epoch_permutation(key, epoch, num_examples: int):
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def minibatch_indices(key, step, *, num_examples: int, batch_size: int, sampling: str = "shuffle"):
  """The example indices of step ``step`` of a path with this ``key``, shape ``(batch_size,)``.

  ``"shuffle"``: step ``t`` is position ``t mod (N // B)`` of epoch ``t // (N // B)``, whose order
  is ``jax.random.permutation(fold_in(key, epoch), N)``; with ``B = N`` every step takes all the
  examples in their order (full-batch gradient descent, no permutation drawn). ``"replacement"``:
  ``jax.random.randint(fold_in(key, t), (B,), 0, N)``. `sgd_path` and `langevin_path` draw exactly
  these (they keep an epoch's permutation instead of recomputing it); use this function to replay
  a path step by step.
  """
  _check_sampling(sampling)
  batch_size = _check_batch_size(batch_size, num_examples)
  if sampling == "replacement":
    return jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, num_examples)
  if batch_size == num_examples:
    return jnp.arange(num_examples)
  steps_per_epoch = num_examples // batch_size
  permutation = _epoch_permutation(key, step // steps_per_epoch, num_examples)
  return lax.dynamic_slice(permutation, ((step % steps_per_epoch) * batch_size,), (batch_size,))


def _sampler(key, num_examples: int, batch_size: Optional[int], sampling: str):
  """``(init_state, next)``: ``next(state, step) -> (state, indices or None)``.

  The shuffle sampler keeps the epoch's permutation in the state and draws the next one under a
  ``lax.cond`` on the (unbatched) step counter, so a permutation costs ``O(N log N)`` once per
  epoch, also when the path is vmapped over keys.
  """
  if batch_size is None or (sampling == "shuffle" and batch_size == num_examples):
    return (), lambda state, step: (state, None)   # every step uses all the data
  if sampling == "replacement":
    return (), lambda state, step: (state, jax.random.randint(
        jax.random.fold_in(key, step), (batch_size,), 0, num_examples))
  steps_per_epoch = num_examples // batch_size

  def next_indices(permutation, step):
    position = step % steps_per_epoch
    permutation = lax.cond(position == 0,
                           lambda: _epoch_permutation(key, step // steps_per_epoch, num_examples),
                           lambda: permutation)
    return permutation, lax.dynamic_slice(permutation, (position * batch_size,), (batch_size,))

  return jnp.zeros((num_examples,), int), next_indices   # the dtype of a permutation


def _scan_path(step_fn, carry, *, num_steps: int, record_every: int, record_fn):
  """Runs ``step_fn(carry, step) -> (carry, loss or None)`` for ``num_steps`` steps; every
  ``record_every`` steps ``record_fn(carry, steps_taken) -> dict`` is recorded.

  Two nested scans: the outer one over records, the inner one over the steps between them, so
  metrics cost nothing between records. The step counters are scan inputs, not carries, so they
  stay unbatched under ``vmap``.
  """
  def interval(carry, first):
    carry, losses = lax.scan(step_fn, carry, first + jnp.arange(record_every))
    steps_taken = first + record_every
    record = {"step": steps_taken, **record_fn(carry, steps_taken)}
    if losses is not None:
      record["loss"] = jnp.mean(losses)
    return carry, record

  return lax.scan(interval, carry, jnp.arange(0, num_steps, record_every))


def _record_fn(metrics: dict):
  return lambda params, step: {name: fn(params, step) for name, fn in metrics.items()}


def sgd_path(loss_fn: Callable, params, data, *, learning_rate, batch_size: int, num_steps: int,
             key, momentum=0.0, weight_decay=0.0, sampling: str = "shuffle",
             record_every: int = 1, metrics: Optional[Mapping[str, Callable]] = None) -> Path:
  """Minibatch SGD as one ``lax.scan``: the path of the weights and what it records.

  Each step draws the minibatch `minibatch_indices(key, step, ...)`, differentiates the minibatch
  mean of ``loss_fn`` and applies the update of `sgd_optimizer`; this equals a per-step Python
  loop of that optax update on the same batches.

  Args:
    loss_fn: ``loss_fn(params, batch) -> (B,)`` per-example losses (checked); ``batch`` is
      ``data`` indexed on its leading axis.
    params: the initial parameters, a pytree of floating arrays.
    data: a pytree of arrays with a leading example axis N (kept whole on device; sharded data
      works, the gather follows its sharding under ``jit``).
    learning_rate: ``eta > 0``; may be traced (``vmap`` over it).
    batch_size: ``B``, ``1 <= B <= N``.
    num_steps: the number of updates.
    key: the PRNG key of the minibatch sampling.
    momentum: heavy-ball momentum in ``[0, 1)``; may be traced.
    weight_decay: ``gamma >= 0``, the gradient of ``gamma ||w||^2 / 2`` added; may be traced.
    sampling: ``"shuffle"`` (epochs without replacement) or ``"replacement"``.
    record_every: record every this many steps; must divide ``num_steps``.
    metrics: ``{name: fn(params, step) -> scalar or pytree}`` evaluated on the parameters after
      every ``record_every`` steps (``step`` is the number of steps taken), e.g. a Fisher trace
      from ``infojax.fisher`` or the distance from the start.

  Returns:
    A `Path`: the final parameters and ``history`` (``"step"``, ``"loss"`` and each metric, with a
    leading axis ``num_steps // record_every``).

  Cost: ``num_steps`` gradients of a minibatch, plus the metrics at ``num_steps / record_every``
  points, plus one permutation of N per epoch. Memory: the parameters, the optimiser state, one
  minibatch and the history. ``jit`` and ``vmap`` (over ``key``, ``learning_rate``, ``momentum``,
  ``weight_decay`` and ``params``) compose; ``num_steps``, ``batch_size``, ``sampling`` and
  ``record_every`` are static.
  """
  num_examples = _num_examples(data)
  batch_size = _check_batch_size(batch_size, num_examples)
  _check_sampling(sampling)
  _check_schedule(num_steps, record_every)
  _checks.check_real("learning_rate", learning_rate)
  _checks.check_real("momentum", momentum, strict=False, maximum=1.0)
  _checks.check_real("weight_decay", weight_decay, strict=False)
  metrics = _check_metrics(metrics)
  _check_per_example(loss_fn, params, _take(data, jnp.arange(batch_size)), batch_size)
  optimizer = sgd_optimizer(learning_rate, momentum=momentum, weight_decay=weight_decay)
  sampler_state, next_indices = _sampler(key, num_examples, batch_size, sampling)

  def step_fn(carry, step):
    params, optimizer_state, sampler_state = carry
    sampler_state, indices = next_indices(sampler_state, step)
    batch = data if indices is None else _take(data, indices)
    loss, grads = jax.value_and_grad(lambda p: jnp.mean(loss_fn(p, batch)))(params)
    updates, optimizer_state = optimizer.update(grads, optimizer_state, params)
    return (optax.apply_updates(params, updates), optimizer_state, sampler_state), loss

  record = _record_fn(metrics)
  carry = (params, optimizer.init(params), sampler_state)
  (params, _, _), history = _scan_path(step_fn, carry, num_steps=num_steps,
                                       record_every=record_every,
                                       record_fn=lambda carry, step: record(carry[0], step))
  return Path(params, history)


def _normal_like(key, tree):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                                      for k, x in zip(keys, leaves)])


def _gradient_and_noise_direction(loss_fn, params, batch, batch_size, noise, key):
  """The minibatch-mean gradient, the mean loss and a draw ``S xi`` of the noise direction.

  ``gradient_covariance``: with ``g_n`` the per-example gradients and ``g`` their mean, ``D =
  (1/B) sum_n (g_n - g)(g_n - g)^T``, and ``(1/sqrt B) sum_n eps_n (g_n - g)`` with ``eps ~ N(0,
  I_B)`` has covariance exactly ``D``: it is ``(1/sqrt B)(J^T eps - (sum eps) g)``, one more VJP
  through the same linearisation, with no per-example gradient formed.
  """
  losses, vjp = jax.vjp(lambda p: loss_fn(p, batch), params)
  (gradient,) = vjp(jnp.full(losses.shape, 1.0 / batch_size, losses.dtype))
  if noise == "isotropic":
    return jnp.mean(losses), gradient, _normal_like(key, params)
  eps = jax.random.normal(key, losses.shape, losses.dtype)
  (weighted,) = vjp(eps)
  scale = 1.0 / jnp.sqrt(jnp.asarray(batch_size, losses.dtype))
  direction = jax.tree.map(lambda a, g: scale * (a - jnp.sum(eps) * g), weighted, gradient)
  return jnp.mean(losses), gradient, direction


def langevin_path(loss_fn: Callable, params, data, *, learning_rate, temperature, num_steps: int,
                  key, noise: str = "isotropic", batch_size: Optional[int] = None,
                  weight_decay=0.0, sampling: str = "shuffle", record_every: int = 1,
                  metrics: Optional[Mapping[str, Callable]] = None) -> Path:
  """Euler-Maruyama Langevin dynamics on ``U(w) = L(w) + weight_decay ||w||^2 / 2``.

  ``w <- w - eta grad U(w) + sqrt(2 T eta) S xi``, ``xi ~ N(0, I)``, the discretisation of
  ``dw = -grad U dt + sqrt(2 T) S dW`` with time step ``eta`` (science.md §7.1):

  * ``noise="isotropic"``: ``S = I``; the stationary law is ``exp(-U/T)`` as ``eta -> 0``;
  * ``noise="gradient_covariance"``: ``S = D(w)^{1/2}``, ``D`` the covariance of the per-example
    gradients of the examples the step uses; with ``T = eta / (2B)`` this is the diffusion that
    SGD of batch ``B`` approximates (Chaudhari & Soatto 2018; science.md §12). ``S xi`` is drawn
    exactly from ``N(0, D)`` without forming ``D`` (one extra VJP).

  Args:
    loss_fn: ``loss_fn(params, batch) -> per-example losses`` (checked); ``L`` is their mean.
    params: the initial parameters.
    data: a pytree with a leading example axis N.
    learning_rate: the time step ``eta > 0``; may be traced.
    temperature: ``T > 0``; may be traced.
    num_steps: the number of steps.
    key: the PRNG key of the noise and the minibatches.
    noise: ``"isotropic"`` or ``"gradient_covariance"``.
    batch_size: ``None`` (default): the drift and ``D`` use the whole of ``data`` every step;
      an integer ``B``: a minibatch of ``B`` examples drawn as in `sgd_path` (stochastic-gradient
      Langevin dynamics).
    weight_decay: ``gamma >= 0``; may be traced.
    sampling, record_every, metrics: as in `sgd_path`.

  Returns:
    A `Path` with ``history["loss"]`` the mean over each record's steps of the loss at the
    parameters before the step.

  Cost per step: one VJP of the (mini)batch losses (two for ``"gradient_covariance"``) and one
  normal draw per parameter. ``jit`` and ``vmap`` compose as in `sgd_path`.
  """
  if noise not in NOISES:
    raise ValueError(f"noise must be one of {NOISES}; got {noise!r}.")
  num_examples = _num_examples(data)
  if batch_size is not None:
    batch_size = _check_batch_size(batch_size, num_examples)
    _check_sampling(sampling)
  _check_schedule(num_steps, record_every)
  _checks.check_real("learning_rate", learning_rate)
  _checks.check_real("temperature", temperature)
  _checks.check_real("weight_decay", weight_decay, strict=False)
  metrics = _check_metrics(metrics)
  used = num_examples if batch_size is None else batch_size
  _check_per_example(loss_fn, params, _take(data, jnp.arange(used)), used)
  sample_key, noise_key = jax.random.split(key)
  sampler_state, next_indices = _sampler(sample_key, num_examples, batch_size, sampling)

  def step_fn(carry, step):
    params, sampler_state = carry
    sampler_state, indices = next_indices(sampler_state, step)
    batch = data if indices is None else _take(data, indices)
    loss, gradient, direction = _gradient_and_noise_direction(
        loss_fn, params, batch, used, noise, jax.random.fold_in(noise_key, step))
    scale = jnp.sqrt(2.0 * temperature * learning_rate)
    params = jax.tree.map(
        lambda w, g, s: (w - learning_rate * (g + weight_decay * w) + scale * s).astype(w.dtype),
        params, gradient, direction)
    return (params, sampler_state), loss

  record = _record_fn(metrics)
  (params, _), history = _scan_path(step_fn, (params, sampler_state), num_steps=num_steps,
                                    record_every=record_every,
                                    record_fn=lambda carry, step: record(carry[0], step))
  return Path(params, history)


def euler_maruyama(drift: Callable, x0, *, step_size, temperature, num_steps: int, key,
                   record_every: int = 1,
                   metrics: Optional[Mapping[str, Callable]] = None) -> Path:
  """Euler-Maruyama paths of ``dx = drift(x) dt + sqrt(2 T) dW``.

  ``x <- x + h drift(x) + sqrt(2 T h) xi``, ``xi ~ N(0, I)``; with ``drift = -grad U`` the
  stationary law is ``exp(-U / T)`` as ``h -> 0`` (science.md §7.1, §7.5). ``vmap`` over ``key``
  (and ``x0``) runs many paths in one program.

  Args:
    drift: ``drift(x) -> pytree like x``.
    x0: the starting point, a pytree of floating arrays.
    step_size: the time step ``h > 0``; may be traced.
    temperature: ``T > 0`` (the diffusion coefficient ``D`` of science.md §7); may be traced.
    num_steps: the number of steps (time ``num_steps * h``).
    key: the PRNG key of the noise; step ``t`` uses ``fold_in(key, t)``.
    record_every, metrics: as in `sgd_path` (``metrics`` of ``(x, step)``).

  Returns:
    A `Path` whose ``params`` is the final ``x``; ``history`` holds ``"step"`` and the metrics.

  Cost: ``num_steps`` drift evaluations and normal draws.
  """
  _check_schedule(num_steps, record_every)
  _checks.check_real("step_size", step_size)
  _checks.check_real("temperature", temperature)
  metrics = _check_metrics(metrics)

  def step_fn(x, step):
    xi = _normal_like(jax.random.fold_in(key, step), x)
    scale = jnp.sqrt(2.0 * temperature * step_size)
    x = jax.tree.map(lambda x, f, n: (x + step_size * f + scale * n).astype(x.dtype),
                     x, drift(x), xi)
    return x, None

  x, history = _scan_path(step_fn, x0, num_steps=num_steps, record_every=record_every,
                          record_fn=_record_fn(metrics))
  return Path(x, history)
