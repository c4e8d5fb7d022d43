"""Expert selection by task distance, and the cost of fine-tuning one task's weights on another.

Achille et al. (2019), "Task2Vec: Task Embedding for Meta-Learning", ICCV (arXiv 1902.03545),
Sec. 5 (model selection; science.md §6.4-6.5): given a bank of experts, one network trained per
source task, pick for a new target task the expert whose source task is nearest by the asymmetric
distance ``d(t_a -> t_b) = d_sym(t_a, t_b) - alpha d_sym(t_a, t_0)`` (`select_expert`), and judge
the choice by the chosen expert's error after fine-tuning on the target against the best expert's
in the bank (`selection_gap`; `random_selection_gap` for the baseline of choosing at random).
And Achille, Paolini, Mbeng & Soatto (arXiv 1904.03292, Sec. 6; science.md §3.4): a distance
between tasks should predict how hard it is to fine-tune from one to the other; `make_fine_tune`
records the accuracy along a fine-tuning run, `steps_to_accuracy` reads off its cost (censored at
the budget), and `rank_correlation` measures the agreement of costs and distances (Spearman's rho,
with a bootstrap spread and a permutation p-value).

Every function is pure and works under ``jit`` and ``vmap``; value checks (finite, non-negative
embeddings, indices in range) run only on concrete arguments.
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from infojax import train
from infojax._validation import is_concrete
from infojax.tasks import task2vec


class FineTuneCurve(NamedTuple):
  """A fine-tuning run, evaluated every ``eval_every`` steps.

  Attributes:
    params: the weights after the last step.
    steps: ``(E,)`` int32, the steps at which the run was evaluated (0, eval_every, ...,
      num_steps).
    accuracy: ``(E,)`` the accuracy on the evaluation set at those steps.
    loss: ``(E,)`` the mean negative log-likelihood (nats) on the evaluation set at those steps.
  """
  params: object
  steps: jax.Array
  accuracy: jax.Array
  loss: jax.Array


class RankCorrelation(NamedTuple):
  """Spearman's rank correlation with its spread.

  Attributes:
    correlation: Spearman's rho of the given pairs (average ranks for ties).
    bootstrap_std: the standard deviation of rho over bootstrap resamples of the pairs (indices
      ``floor(n u)`` of i.i.d. uniforms ``u``; resamples in which either side is constant, rho
      undefined, are left out).
    p_value: the two-sided permutation p-value, ``(1 + #{|rho_perm| >= |rho|}) / (1 + R)`` over R
      random permutations of ``y`` (the orders ``argsort`` of i.i.d. uniforms).
  """
  correlation: jax.Array
  bootstrap_std: jax.Array
  p_value: jax.Array


# ----------------------------------------------------------------------------------------------
# Expert selection.
# ----------------------------------------------------------------------------------------------


def _bank(experts) -> task2vec.Embedding:
  """The bank as an `Embedding` of ``(K, D)`` float arrays (scale ones for plain arrays)."""
  if isinstance(experts, task2vec.Embedding):
    hessian, scale = jnp.asarray(experts.hessian), jnp.asarray(experts.scale)
  else:
    hessian = jnp.asarray(experts)
    scale = jnp.ones_like(hessian)
  if not jnp.issubdtype(hessian.dtype, jnp.floating):
    hessian, scale = (x.astype(jnp.result_type(float)) for x in (hessian, scale))
  if hessian.ndim != 2 or hessian.shape[0] == 0 or hessian.shape != scale.shape:
    raise ValueError("experts: expected a non-empty (K, D) array of embeddings (or an Embedding "
                     f"with (K, D) fields); got {hessian.shape} and {scale.shape}.")
  bank = task2vec.Embedding(hessian, scale)
  if is_concrete(bank):  # the value checks of `task2vec.distance`, row by row (host rows)
    values, scales = np.asarray(hessian), np.asarray(scale)
    for k in range(values.shape[0]):
      task2vec.as_embedding(f"experts[{k}]", task2vec.Embedding(values[k], scales[k]))
  return bank


def expert_distances(target, experts, trivial, *, alpha: float = 0.15) -> jax.Array:
  """The asymmetric distance from every expert's source task to the target task.

  ``distances[k] = task2vec.asymmetric_distance(experts[k], target, trivial, alpha=alpha)``
  ``= d_sym(t_k, t) - alpha d_sym(t_k, t_0)`` (science.md §6.4): the expert's task is the source
  ``a``, the target the ``b`` of `infojax.tasks.task2vec.asymmetric_distance`.

  Args:
    target: the target task's embedding, an `Embedding` or a ``(D,)`` array.
    experts: the bank, ``(K, D)`` (or an `Embedding` with ``(K, D)`` fields), one row per expert's
      source task.
    trivial: the trivial embedding ``(D,)`` (`infojax.tasks.task2vec.trivial_embedding`).
    alpha: the weight of the complexity term; ``0`` gives the symmetric distance.

  Returns:
    ``(K,)``.

  Cost: O(K D), one vmapped program.
  """
  bank = _bank(experts)
  if is_concrete(alpha) and not np.all(np.isfinite(np.asarray(alpha, dtype=float))):
    raise ValueError(f"alpha must be a finite real number; got {alpha!r}.")
  target = task2vec.as_embedding("target", target)
  trivial = task2vec.as_embedding("trivial", trivial)
  for name, e in (("target", target), ("trivial", trivial)):
    if e.hessian.shape != bank.hessian.shape[1:]:
      raise ValueError(f"experts and {name} must have the same shape (D,) per embedding; got "
                       f"{bank.hessian.shape[1:]} and {e.hessian.shape}.")
  return _bank_distances(bank, target, trivial, alpha)


@jax.jit
def _bank_distances(bank, target, trivial, alpha):
  return jax.vmap(lambda expert: task2vec.asymmetric_distance(expert, target, trivial,
                                                              alpha=alpha))(bank)


def select_expert(target, experts, trivial, *, alpha: float = 0.15):
  """The expert nearest the target by the asymmetric distance (Task2Vec's model selection).

  Args:
    target, experts, trivial, alpha: as in `expert_distances`.

  Returns:
    ``(index, distances)``: the int32 index of the chosen expert (the first of equal minima) and the
    ``(K,)`` distances.

  Cost: O(K D). Jit- and vmap-able (over targets, say).
  """
  distances = expert_distances(target, experts, trivial, alpha=alpha)
  return jnp.argmin(distances).astype(jnp.int32), distances


def _errors(errors) -> jax.Array:
  errors = jnp.asarray(errors)
  if errors.ndim != 1 or errors.shape[0] == 0:
    raise ValueError(f"errors: expected a non-empty (K,) vector, one error per expert; got shape "
                     f"{errors.shape}.")
  if not jnp.issubdtype(errors.dtype, jnp.floating):
    errors = errors.astype(jnp.result_type(float))
  if is_concrete(errors) and not np.all(np.isfinite(np.asarray(errors))):
    raise ValueError("errors: entries must be finite.")
  return errors


def selection_gap(errors, chosen):
  """How much worse the chosen expert is than the best in the bank.

  Args:
    errors: ``(K,)`` each expert's error on the target (after fine-tuning, say).
    chosen: the index of the chosen expert, an integer in ``[0, K)``.

  Returns:
    ``(gap, rank)``: ``errors[chosen] - min(errors)`` (>= 0) and the int32 number of experts with a
    strictly smaller error than the chosen one (0: a best expert was chosen).

  Cost: O(K). Jit- and vmap-able.
  """
  errors = _errors(errors)
  chosen = jnp.asarray(chosen)
  if chosen.shape != () or not jnp.issubdtype(chosen.dtype, jnp.integer):
    raise TypeError(f"chosen: expected an integer index; got {chosen.dtype} of shape "
                    f"{chosen.shape}.")
  if is_concrete(chosen) and not 0 <= int(chosen) < errors.shape[0]:
    raise ValueError(f"chosen must be in [0, {errors.shape[0]}) (the experts); got {int(chosen)}.")
  return _selection_gap(errors, chosen)


@jax.jit
def _selection_gap(errors, chosen):
  value = errors[chosen]
  return value - jnp.min(errors), jnp.sum(errors < value).astype(jnp.int32)


def random_selection_gap(errors):
  """The expected `selection_gap` of an expert chosen uniformly at random.

  Args:
    errors: ``(K,)``.

  Returns:
    ``(gap, rank)``: ``mean(errors) - min(errors)`` and the mean over the experts of their rank
    (float).

  Cost: O(K^2). Jit- and vmap-able.
  """
  errors = _errors(errors)
  return _random_selection_gap(errors)


@jax.jit
def _random_selection_gap(errors):
  ranks = jnp.sum(errors[None, :] < errors[:, None], axis=1)
  return jnp.mean(errors) - jnp.min(errors), jnp.mean(ranks.astype(errors.dtype))


# ----------------------------------------------------------------------------------------------
# Fine-tuning cost.
# ----------------------------------------------------------------------------------------------


def steps_to_accuracy(steps, accuracy, threshold):
  """The first evaluated step at which the accuracy reaches a threshold; censored at the budget.

  Args:
    steps: ``(E,)`` increasing steps at which a run was evaluated (the last is the budget).
    accuracy: ``(E,)`` the accuracy at those steps.
    threshold: the target accuracy, a scalar.

  Returns:
    ``(cost, censored)``: ``steps[e]`` for the first ``e`` with ``accuracy[e] >= threshold``, and
    ``False``; or, when the run never reaches it, ``steps[-1]`` (a lower bound of the cost) and
    ``True``.

  Cost: O(E). Jit- and vmap-able.
  """
  steps, accuracy = jnp.asarray(steps), jnp.asarray(accuracy)
  if steps.ndim != 1 or steps.shape[0] == 0 or accuracy.shape != steps.shape:
    raise ValueError(f"steps and accuracy must be non-empty vectors of one shape (E,); got "
                     f"{steps.shape} and {accuracy.shape}.")
  if is_concrete(steps) and np.any(np.diff(np.asarray(steps)) <= 0):
    raise ValueError("steps must be strictly increasing.")
  if jnp.ndim(threshold) != 0:
    raise ValueError(f"threshold must be a scalar; got shape {jnp.shape(threshold)}.")
  return _steps_to_accuracy(steps, accuracy, threshold)


@jax.jit
def _steps_to_accuracy(steps, accuracy, threshold):
  reached = accuracy >= threshold
  censored = ~jnp.any(reached)
  return jnp.where(censored, steps[-1], steps[jnp.argmax(reached)]), censored


def sample_batch(data, key, batch_size: int):
  """``batch_size`` examples drawn without replacement: ``permutation(key, N)[:batch_size]``.

  Args:
    data: a pytree of arrays with a leading example axis N (e.g. ``{"image", "label"}``).
    key: a PRNG key.
    batch_size: at most N (a static integer).

  Returns:
    The pytree of the drawn examples. Jit- and vmap-able; O(N) for the permutation.
  """
  num_examples = jax.tree.leaves(data)[0].shape[0]
  index = jax.random.permutation(key, num_examples)[:batch_size]
  return jax.tree.map(lambda x: x[index], data)


def make_fine_tune(apply_fn: Callable, optimizer: optax.GradientTransformation, *,
                   num_steps: int, batch_size: int, eval_every: int) -> Callable:
  """A jitted fine-tuning run that records the accuracy on an evaluation set along the way.

  ``num_steps`` steps of ``optimizer`` on the mean cross-entropy (`infojax.train.classification`),
  each on ``batch_size`` training examples drawn without replacement
  (`sample_batch` with ``fold_in(key, step)``); the full evaluation set is scored at step 0
  and after every ``eval_every`` steps. Compiled once per data shape; the returned function is pure,
  so ``jax.vmap`` runs a whole bank of experts (stacked ``params``) at once.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    optimizer: an optax transformation (e.g. `infojax.train.make_optimizer`).
    num_steps: the budget, a positive multiple of ``eval_every``.
    batch_size: examples per step, positive (at most the training examples).
    eval_every: steps between evaluations, positive.

  Returns:
    ``fn(params, train_data, eval_data, key) -> FineTuneCurve``, the data ``{"image", "label"}``
    dicts, ``key`` a PRNG key; ``num_steps // eval_every + 1`` evaluations.

  Cost: ``num_steps`` forward-backward passes of ``batch_size`` examples plus
  ``num_steps // eval_every + 1`` forward passes of the evaluation set, one ``lax.scan``.
  """
  for name, value in (("num_steps", num_steps), ("batch_size", batch_size),
                      ("eval_every", eval_every)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer; got {value!r}.")
  if num_steps % eval_every:
    raise ValueError(f"num_steps ({num_steps}) must be a multiple of eval_every ({eval_every}).")
  objective = train.classification(apply_fn)
  train_step = train.make_train_step(objective, optimizer)
  num_evals = num_steps // eval_every

  def evaluate(params, eval_data):
    metrics = objective.evaluate(params, {}, eval_data)
    return jnp.mean(metrics["accuracy"]), jnp.mean(metrics["loss"])

  @jax.jit
  def fine_tune(params, train_data, eval_data, key):
    num_train = train_data["label"].shape[0]
    if batch_size > num_train:
      raise ValueError(f"batch_size ({batch_size}) exceeds the {num_train} training examples.")
    state = train.init_state(params, optimizer, key=key)

    def step(state, _):
      batch = sample_batch(train_data, jax.random.fold_in(key, state.step), batch_size)
      return train_step(state, batch)[0], None

    def block(state, _):
      state, _ = jax.lax.scan(step, state, None, length=eval_every)
      return state, evaluate(state.params, eval_data)

    first = evaluate(params, eval_data)
    state, (accuracy, loss) = jax.lax.scan(block, state, None, length=num_evals)
    steps = jnp.arange(num_evals + 1, dtype=jnp.int32) * eval_every
    return FineTuneCurve(params=state.params, steps=steps,
                         accuracy=jnp.concatenate([first[0][None], accuracy]),
                         loss=jnp.concatenate([first[1][None], loss]))

  return fine_tune


# ----------------------------------------------------------------------------------------------
# Rank correlation.
# ----------------------------------------------------------------------------------------------


def _average_ranks(x):
  """Ranks 1..n with ties given their average rank (scipy's ``rankdata``), O(n^2)."""
  less = jnp.sum(x[None, :] < x[:, None], axis=1)
  equal = jnp.sum(x[None, :] == x[:, None], axis=1)
  return less + (equal + 1) / 2.0


def spearman(x, y) -> jax.Array:
  """Spearman's rank correlation (Pearson's of the average ranks); NaN if either side is constant.

  Args:
    x, y: ``(n,)`` with ``n >= 2``.

  Returns:
    A scalar in ``[-1, 1]``.

  Cost: O(n^2) time and memory (the ranks by comparison). Jit- and vmap-able.
  """
  x, y = _pair(x, y)
  return _spearman(x, y)


def _pair(x, y):
  x, y = jnp.asarray(x), jnp.asarray(y)
  if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 2:
    raise ValueError(f"x and y must be vectors of one shape (n,), n >= 2; got {x.shape} and "
                     f"{y.shape}.")
  dtype = jnp.result_type(x.dtype, y.dtype, float)
  return x.astype(dtype), y.astype(dtype)


@jax.jit
def _spearman(x, y):
  rx, ry = _average_ranks(x), _average_ranks(y)
  rx, ry = rx - jnp.mean(rx), ry - jnp.mean(ry)
  return jnp.sum(rx * ry) / jnp.sqrt(jnp.sum(rx * rx) * jnp.sum(ry * ry))


@functools.partial(jax.jit, static_argnames="num_resamples")
def _spread(x, y, key, num_resamples):
  size = x.shape[0]
  value = _spearman(x, y)
  # One draw of i.i.d. uniforms: bootstrap indices floor(n u) and permutations argsort(u).
  uniforms = jax.random.uniform(key, (2, num_resamples, size), dtype=x.dtype)
  index = jnp.minimum(jnp.floor(uniforms[0] * size).astype(jnp.int32), size - 1)
  boot = jax.vmap(_spearman)(x[index], y[index])
  order = jnp.argsort(uniforms[1], axis=1)
  perm = jax.vmap(_spearman, in_axes=(None, 0))(x, y[order])
  # Equal |rho| up to rounding counts as extreme (the identity permutation, tied rank patterns).
  extreme = jnp.sum(jnp.abs(perm) >= jnp.abs(value) * (1.0 - 1e-6))
  p_value = jnp.where(jnp.isnan(value), jnp.nan, (1.0 + extreme) / (1.0 + num_resamples))
  return RankCorrelation(value, jnp.nanstd(boot), p_value)


def rank_correlation(x, y, *, key, num_resamples: int = 1000) -> RankCorrelation:
  """Spearman's rho of ``(x, y)`` pairs with a bootstrap spread and a permutation p-value.

  Args:
    x, y: ``(n,)``, ``n >= 2`` (e.g. a distance and a fine-tuning cost per task pair).
    key: a PRNG key (the resamples).
    num_resamples: R, bootstrap resamples and permutations each, positive.

  Returns:
    A `RankCorrelation`. A constant side gives a NaN ``correlation`` and ``p_value``.

  Cost: O(R n^2). Jit-able (``num_resamples`` static) and vmap-able.
  """
  if (isinstance(num_resamples, bool) or not isinstance(num_resamples, (int, np.integer))
      or num_resamples < 1):
    raise ValueError(f"num_resamples must be a positive integer; got {num_resamples!r}.")
  if key is None:
    raise ValueError("rank_correlation resamples the pairs and needs a PRNG key: pass key=.")
  x, y = _pair(x, y)
  return _spread(x, y, key, num_resamples)
