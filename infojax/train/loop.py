"""The training loop: one jit-compiled `lax.scan` per epoch, exact evaluation, hooks, checkpoints.

The pieces, from the inside out:

* an `Objective`: the training loss of a batch and the per-example evaluation metrics, as pure
  functions (`classification` builds one from ``apply_fn(params, inputs) -> logits`` and a
  likelihood, `flax_classification` from a flax module with BatchNorm statistics in
  ``state.model_state``);
* `make_train_step` / `make_train_epoch`: one optimisation step as a pure function of
  ``(state, batch)``, and one epoch as a jitted `lax.scan` of it over the epoch's batches, stacked
  on device with shape ``(steps, batch_size, ...)``. Batches sharded over a ``'data'`` mesh axis
  (axis 1 of the stacked arrays) go through unchanged: the step is a pure function under `jax.jit`;
* `make_eval_set` / `make_evaluator`: the exact mean of per-example metrics over a whole split,
  padded to full batches with zero weights (no example is dropped or counted twice);
* `fit`: the driver. Each epoch: train (the scan), evaluate, call the hooks, append one record to
  ``workdir/metrics.jsonl`` (process 0), save a checkpoint every ``checkpoint_every`` epochs.
  Restarted with the same arguments it resumes from the newest checkpoint and reproduces the
  uninterrupted run bit for bit: batches depend only on ``(seed, epoch)``, per-step keys on
  ``(state.key, state.step)``.

Hooks are how experiments measure things without touching the loop: ``hook(epoch, state) -> dict``
of scalars, called after evaluation at every epoch (and at epoch 0, before training, when
``log_initial``); their values go into the epoch's record.
"""

import functools
import os
import sys
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from infojax import likelihoods
from infojax import parallel
from infojax.io import metrics as metrics_lib
from infojax.io.tensorboard import TENSORBOARD_DIR
from infojax.train.checkpoint import CHECKPOINT_DIR
from infojax.train.checkpoint import Checkpointer
from infojax.train.state import TrainState

METRICS_FILE = "metrics.jsonl"

Batch = Any  # a pytree of arrays with a leading example axis (the loaders give {"image", "label"})
Hook = Callable[[int, TrainState], Mapping[str, Any]]


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite.

  Attributes:
    epoch: the epoch (counting from 1) in which it happened.
    step: the global index (counting from 0) of the first step with a non-finite loss.
    step_in_epoch: the same step, counted from 0 within the epoch.
    value: the offending loss.
    last_checkpoint: the epoch of the newest checkpoint kept on disk, or None.
  """

  def __init__(self, *, epoch: int, step: int, step_in_epoch: int, value: float,
               last_checkpoint: Optional[int], checkpoint_dir: Optional[str]):
    self.epoch = epoch
    self.step = step
    self.step_in_epoch = step_in_epoch
    self.value = value
    self.last_checkpoint = last_checkpoint
    where = ("no checkpoint was saved" if last_checkpoint is None else
             f"the last good checkpoint (epoch {last_checkpoint}) is kept in {checkpoint_dir}")
    super().__init__(
        f"non-finite training loss ({value}) at epoch {epoch}, step {step} (step {step_in_epoch} "
        f"of the epoch, counting from 0); training stopped and {where}. Lower the learning rate or "
        "check the data for NaN/inf values.")


class Objective(NamedTuple):
  """What the loop minimises and what it measures, as pure functions.

  Attributes:
    loss: ``(params, model_state, batch, key) -> (loss, (model_state, metrics))``: the scalar
      training loss of a batch (differentiated in ``params``), the updated non-trainable state,
      and a dict of scalar batch metrics (e.g. ``{"accuracy": ...}``) logged as ``train_<name>``
      epoch means.
    evaluate: ``(params, model_state, batch) -> dict`` of per-example metrics, each of shape
      ``(B,)`` (e.g. ``{"loss": nll, "accuracy": correct}``); the loop averages them exactly over
      a split.
  """
  loss: Callable
  evaluate: Callable


def _nll_and_correct(likelihood, logits, labels):
  nll = likelihood.nll(logits, labels)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return nll, correct


def classification(apply_fn: Callable, *, likelihood: Optional[likelihoods.Likelihood] = None,
                   input_key: str = "image", label_key: str = "label") -> Objective:
  """Mean negative log-likelihood and accuracy for ``apply_fn(params, inputs) -> logits``.

  Args:
    apply_fn: a pure function of ``(params, inputs (B, ...))`` returning logits ``(B, C)``.
    likelihood: the predictive distribution; default `infojax.likelihoods.categorical()`
      (cross-entropy in nats).
    input_key, label_key: the fields of a batch dict holding the inputs and the integer labels.

  Returns:
    An `Objective` whose training metrics are ``accuracy``, and whose evaluation metrics are
    ``loss`` (per-example nll) and ``accuracy``. ``model_state`` is passed through unchanged.
  """
  likelihood = likelihoods.categorical() if likelihood is None else likelihood

  def loss(params, model_state, batch, key):
    del key
    logits = apply_fn(params, batch[input_key])
    nll, correct = _nll_and_correct(likelihood, logits, batch[label_key])
    return jnp.mean(nll), (model_state, {"accuracy": jnp.mean(correct)})

  def evaluate(params, model_state, batch):
    del model_state
    logits = apply_fn(params, batch[input_key])
    nll, correct = _nll_and_correct(likelihood, logits, batch[label_key])
    return {"loss": nll, "accuracy": correct}

  return Objective(loss=loss, evaluate=evaluate)


def flax_classification(model, *, likelihood: Optional[likelihoods.Likelihood] = None,
                        input_key: str = "image", label_key: str = "label") -> Objective:
  """Like `classification`, for a flax module whose non-trainable state lives in ``model_state``.

  With a non-empty ``model_state`` (e.g. ``{"batch_stats": ...}`` of BatchNorm) training applies
  ``model.apply(variables, inputs, train=True, mutable=[its collections], rngs={"dropout": key})``
  and keeps the updated collections; evaluation applies the model in its default (eval) mode with
  the current ``model_state``. With an empty ``model_state`` it is `classification` of
  ``model.apply({"params": params}, inputs)``.

  Args:
    model: an unbound flax module (e.g. from `infojax.models.get_model`) taking ``train=`` when it
      has non-trainable state.
    likelihood, input_key, label_key: as in `classification`.

  Returns:
    An `Objective`.
  """
  likelihood = likelihoods.categorical() if likelihood is None else likelihood

  def loss(params, model_state, batch, key):
    variables = {"params": params, **model_state}
    if model_state:
      logits, model_state = model.apply(variables, batch[input_key], train=True,
                                        mutable=list(model_state), rngs={"dropout": key})
    else:
      logits = model.apply(variables, batch[input_key])
    nll, correct = _nll_and_correct(likelihood, logits, batch[label_key])
    return jnp.mean(nll), (model_state, {"accuracy": jnp.mean(correct)})

  def evaluate(params, model_state, batch):
    logits = model.apply({"params": params, **model_state}, batch[input_key])
    nll, correct = _nll_and_correct(likelihood, logits, batch[label_key])
    return {"loss": nll, "accuracy": correct}

  return Objective(loss=loss, evaluate=evaluate)


def make_train_step(objective: Objective, optimizer: optax.GradientTransformation) -> Callable:
  """One optimisation step, ``(state, batch) -> (state, metrics)``, pure and jit-able.

  The step's key is ``fold_in(state.key, state.step)``; ``metrics`` holds the batch ``loss`` and the
  objective's batch metrics (scalars).
  """
  grad_fn = jax.value_and_grad(objective.loss, has_aux=True)

  def train_step(state: TrainState, batch: Batch):
    step_key = jax.random.fold_in(state.key, state.step)
    (loss, (model_state, batch_metrics)), grads = grad_fn(
        state.params, state.model_state, batch, step_key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = TrainState(params=params, opt_state=opt_state, step=state.step + 1, key=state.key,
                           model_state=model_state)
    return new_state, {"loss": loss, **batch_metrics}

  return train_step


def make_train_epoch(objective: Objective, optimizer: optax.GradientTransformation) -> Callable:
  """One epoch as one compiled program: `lax.scan` of the train step over stacked batches.

  Returns:
    A jitted ``train_epoch(state, batches) -> (state, per_step_metrics)``; ``batches`` is a pytree
    of arrays of shape ``(steps, batch_size, ...)`` and each per-step metric has shape ``(steps,)``.
    Compiles once per batch shape.
  """
  train_step = make_train_step(objective, optimizer)

  @jax.jit
  def train_epoch(state: TrainState, batches: Batch):
    return jax.lax.scan(train_step, state, batches)

  return train_epoch


class EvalSet(NamedTuple):
  """A split prepared for exact batched evaluation.

  Attributes:
    batches: the split padded to a whole number of batches, shape ``(steps, batch_size, ...)``.
    weights: float32 ``(steps, batch_size)``, 1 for real examples and 0 for padding.
  """
  batches: Batch
  weights: jax.Array


def _leading_size(tree, name) -> int:
  sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
  if not sizes or None in sizes or len(sizes) != 1:
    raise ValueError(
        f"{name}: every array must have the same leading (example) axis; got leading sizes "
        f"{sorted(map(str, sizes))}.")
  return sizes.pop()


def make_eval_set(arrays: Batch, *, batch_size: int, put_on_device: Callable = jax.device_put,
                  multiple_of: int = 1) -> EvalSet:
  """Pads a split to full batches (repeating its first examples, with weight 0) and stacks them.

  Args:
    arrays: a pytree of arrays with a common leading axis N (e.g. ``{"image", "label"}``).
    batch_size: examples per evaluation batch; ``min(batch_size, N)`` is used, rounded up to a
      multiple of ``multiple_of``.
    put_on_device: moves the stacked arrays to the devices (e.g. a sharding function).
    multiple_of: e.g. the number of devices the batch axis is sharded over.

  Returns:
    An `EvalSet` with ``ceil(N / batch_size)`` batches.
  """
  num_examples = _leading_size(arrays, "make_eval_set")
  if num_examples == 0:
    raise ValueError("make_eval_set: the split is empty.")
  if batch_size < 1:
    raise ValueError(f"make_eval_set: batch_size must be positive; got {batch_size}.")
  if multiple_of < 1:
    raise ValueError(f"make_eval_set: multiple_of must be positive; got {multiple_of}.")
  batch_size = -(-min(batch_size, num_examples) // multiple_of) * multiple_of
  steps = -(-num_examples // batch_size)
  index = np.arange(steps * batch_size) % num_examples
  weights = (np.arange(steps * batch_size) < num_examples).astype(np.float32)
  stacked = jax.tree.map(
      lambda a: np.asarray(a)[index].reshape((steps, batch_size) + np.shape(a)[1:]), arrays)
  return EvalSet(batches=put_on_device(stacked),
                 weights=put_on_device(weights.reshape(steps, batch_size)))


def make_evaluator(objective: Objective) -> Callable:
  """The exact mean of the objective's per-example metrics over an `EvalSet`.

  Returns:
    A jitted ``evaluate(params, model_state, eval_set) -> dict`` of scalar means (one batch at a
    time through `lax.map`, so memory is that of one batch).
  """

  def batch_sums(params, model_state, batch, weights):
    per_example = objective.evaluate(params, model_state, batch)
    for name, values in per_example.items():
      if values.shape != weights.shape:
        raise ValueError(
            f"Objective.evaluate: metric {name!r} must have one value per example, shape "
            f"{weights.shape}; got {values.shape}.")
    return {name: jnp.sum(values * weights) for name, values in per_example.items()}

  @jax.jit
  def evaluate(params, model_state, eval_set: EvalSet):
    sums = jax.lax.map(lambda xs: batch_sums(params, model_state, *xs),
                       (eval_set.batches, eval_set.weights))
    total = jnp.sum(eval_set.weights)
    return {name: jnp.sum(values) / total for name, values in sums.items()}

  return evaluate


class FitResult(NamedTuple):
  """The outcome of `fit`.

  Attributes:
    state: the final `TrainState`.
    history: the metric records of every epoch, ``[epoch 0 (if logged), 1, ..., num_epochs]``; on
      processes other than 0, only the records computed by this call.
  """
  state: TrainState
  history: list


def _epoch_batches(train_data, epoch, *, batch_size, seed):
  if callable(train_data):
    return train_data(epoch)
  if batch_size is None:
    raise ValueError("fit: batch_size is required when train_data is a mapping of arrays.")
  from infojax import data  # pylint: disable=import-outside-toplevel
  return data.batches(train_data, batch_size, seed=seed, epoch=epoch)


def _merge(record, new, source):
  clash = set(record) & set(new)
  if clash:
    raise ValueError(f"fit: {source} returned metric names already in the record: {sorted(clash)}.")
  record.update(new)


def _fetch(tree) -> dict:
  return metrics_lib.to_json_value(jax.device_get(dict(tree)))


def _check_finite(losses, *, epoch, first_step, checkpointer):
  """Raises `NonFiniteLossError` at the first non-finite per-step loss of an epoch."""
  losses = np.asarray(jax.device_get(losses))
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    raise NonFiniteLossError(
        epoch=epoch, step=first_step + int(bad[0]), step_in_epoch=int(bad[0]),
        value=float(losses[bad[0]]),
        last_checkpoint=checkpointer.latest_epoch() if checkpointer else None,
        checkpoint_dir=checkpointer.directory if checkpointer else None)


def _resume(workdir, state, *, num_epochs, checkpoint_every, max_checkpoints_to_keep):
  """Opens the run's checkpoints and restores the newest; drops metric records beyond it.

  Returns:
    ``(checkpointer or None, state, first epoch to train, kept records)``.
  """
  if workdir is None:
    return None, state, 1, []
  os.makedirs(workdir, exist_ok=True)
  checkpointer, latest = None, None
  if checkpoint_every:
    checkpointer = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR),
                                max_to_keep=max_checkpoints_to_keep)
    latest = checkpointer.latest_epoch()
  if latest is not None:
    if latest > num_epochs:
      checkpointer.close()
      raise ValueError(f"fit: {workdir} holds a checkpoint of epoch {latest}, beyond num_epochs="
                       f"{num_epochs}; use a fresh workdir.")
    state = checkpointer.restore(latest, state)
  history = metrics_lib.truncate_metrics(os.path.join(workdir, METRICS_FILE), max_epoch=latest)
  return checkpointer, state, 1 if latest is None else latest + 1, history


def fit(objective: Objective, optimizer: optax.GradientTransformation, state: TrainState, *,
        train_data: Union[Batch, Callable[[int], Batch]], num_epochs: int,
        batch_size: Optional[int] = None, seed: int = 0,
        eval_data: Optional[Mapping[str, Batch]] = None, eval_batch_size: int = 1000,
        hooks: Sequence[Hook] = (), workdir: Optional[str] = None, checkpoint_every: int = 1,
        max_checkpoints_to_keep: Optional[int] = 2, log_initial: bool = True,
        progress: bool = True, mesh: Optional[jax.sharding.Mesh] = None,
        data_per_process: bool = False, put_on_device: Optional[Callable] = None,
        tensorboard: bool = False) -> FitResult:
  """Trains for ``num_epochs`` epochs, resuming from the newest checkpoint in ``workdir`` if any.

  Each epoch ``e`` (counting from 1) is one call of the compiled scan over its batches, then exact
  evaluation of each split in ``eval_data``, then the hooks, then one record
  ``{"epoch", "step", "train_loss", "train_<metric>"..., "<split>_loss", ..., <hook metrics>}``
  appended to ``workdir/metrics.jsonl`` (process 0), then a checkpoint if ``e`` is a multiple of
  ``checkpoint_every`` or the last epoch. ``train_*`` values are means over the epoch's training
  steps (training-mode, parameters changing); evaluate the training split through ``eval_data``
  (e.g. as ``"train_eval"``) for its exact loss at the end of the epoch.

  Resuming: the newest complete checkpoint (epoch c) is restored, records beyond epoch c are dropped
  from the metrics file, and training continues at epoch c + 1. With the same arguments the result
  is identical to an uninterrupted run, wherever the previous run was killed.

  Args:
    objective: the `Objective` (e.g. `classification(apply_fn)`).
    optimizer: the optax optimiser ``state.opt_state`` belongs to.
    state: the initial `TrainState` (also the template checkpoints are restored into).
    train_data: either a pytree of arrays with a leading example axis, shuffled and batched each
      epoch by ``infojax.data.batches(train_data, batch_size, seed=seed, epoch=e)`` (the incomplete
      last batch is dropped), or a function ``epoch -> batches`` returning arrays of shape
      ``(steps, batch_size, ...)`` (change the data during training, e.g. a deficit window). It must
      depend only on the epoch, for resumption to reproduce the run.
    num_epochs: epochs to train in total (including those of a resumed run).
    batch_size: the training batch size (for array ``train_data``).
    seed: the shuffling seed (for array ``train_data``).
    eval_data: split name -> arrays, each evaluated exactly every epoch, giving ``<name>_<metric>``
      (e.g. ``{"test": test_arrays}`` gives ``test_loss``, ``test_accuracy``). ``"train"`` is
      reserved.
    eval_batch_size: examples per evaluation batch.
    hooks: functions ``hook(epoch, state) -> dict`` of scalars, added to each record (names must
      not clash).
    workdir: where metrics and checkpoints go; ``None`` keeps everything in memory.
    checkpoint_every: save every this many epochs (and at the last); 0 disables checkpoints (and
      resumption).
    max_checkpoints_to_keep: the newest checkpoints kept on disk (``None``: all).
    log_initial: also record epoch 0 (evaluation and hooks on the initial state, no training).
    progress: show a tqdm bar on stderr (process 0; tqdm hides it when stderr is not a terminal).
    tensorboard: also write every record as TensorBoard scalars in ``workdir/tensorboard``
      (`infojax.io.tensorboard`; the optional tensorboardX), to watch the run live; a resumed
      run replaces the events of the epochs it redoes.
    mesh: a data-parallel device mesh (`infojax.parallel.data_mesh`), possibly spanning several
      processes. The state is replicated over it (leaves already laid out on it, e.g. by
      `infojax.parallel.shard_params`, keep their layout), and each epoch's batches and the
      evaluation sets are sharded over its ``"data"`` axis with `infojax.parallel.put_sharded`:
      every process passes the same full arrays and places only its devices' rows, so the run
      gives the numbers of one device (up to float rounding in the reductions) whatever the number
      of devices and processes. The batch size must be a multiple of the device count.
    data_per_process: with a mesh, ``train_data`` and ``eval_data`` hold only this process's share
      of each split (``infojax.data.load(..., process_local=True)``, equal shares), for data too
      large to hold on every process: each process batches its share (``batch_size`` stays the
      global batch; each process contributes ``batch_size / process_count`` examples) and the
      pieces become global arrays with `infojax.parallel.shard_batch`. Evaluation is exact over
      the union of the shares. The batches then differ from those of a single-process run.
    put_on_device: applied to each epoch's stacked batches and to the evaluation sets before use,
      instead of the mesh's placement (e.g. a custom sharding of axis 1 of the stacked training
      arrays). Default: the mesh's placement with a mesh, else ``jax.device_put``.

  Returns:
    A `FitResult` with the final state and the history of records.

  Raises:
    NonFiniteLossError: when a training loss is NaN or inf; nothing from that epoch is recorded
      or saved.
  """
  if not isinstance(state, TrainState):
    raise TypeError(f"fit: state must be a TrainState; got {type(state).__name__}.")
  if int(num_epochs) != num_epochs or num_epochs < 1:
    raise ValueError(f"fit: num_epochs must be a positive integer; got {num_epochs!r}.")
  if int(checkpoint_every) != checkpoint_every or checkpoint_every < 0:
    raise ValueError(
        f"fit: checkpoint_every must be a non-negative integer; got {checkpoint_every!r}.")
  eval_data = dict(eval_data or {})
  if "train" in eval_data:
    raise ValueError("fit: eval_data may not be named 'train' (train_* holds the training-step "
                     "means); use e.g. 'train_eval'.")

  # Per process: examples per training batch, per evaluation batch, and the evaluation batch's
  # granularity (its devices).
  local_batch_size, local_eval_batch_size, eval_multiple = batch_size, eval_batch_size, 1
  if data_per_process and mesh is None:
    raise ValueError("fit: data_per_process=True needs a mesh (infojax.parallel.data_mesh()).")
  if mesh is not None:
    processes = jax.process_count() if data_per_process else 1
    eval_multiple = mesh.shape[parallel.DATA_AXIS] // processes
    if batch_size is not None and not callable(train_data):
      parallel.check_global_batch_size(batch_size, mesh)
      local_batch_size = batch_size // processes
    local_eval_batch_size = max(1, eval_batch_size // processes)
    state = parallel.to_mesh(state, mesh)
    if put_on_device is None:
      put_on_device = functools.partial(
          parallel.shard_batch if data_per_process else parallel.put_sharded, mesh=mesh,
          batch_axis=1)
  put_on_device = jax.device_put if put_on_device is None else put_on_device

  train_epoch = make_train_epoch(objective, optimizer)
  evaluate = make_evaluator(objective)
  eval_sets = {name: make_eval_set(arrays, batch_size=local_eval_batch_size,
                                   put_on_device=put_on_device, multiple_of=eval_multiple)
               for name, arrays in eval_data.items()}

  def measure(epoch, current, record):
    for name, eval_set in eval_sets.items():
      values = _fetch(evaluate(current.params, current.model_state, eval_set))
      _merge(record, {f"{name}_{k}": v for k, v in values.items()}, f"evaluation of {name!r}")
    for hook in hooks:
      _merge(record, _fetch(hook(epoch, current)), f"hook {getattr(hook, '__name__', hook)!r}")
    return record

  checkpointer, state, start, history = _resume(
      workdir, state, num_epochs=num_epochs, checkpoint_every=checkpoint_every,
      max_checkpoints_to_keep=max_checkpoints_to_keep)
  writer = (metrics_lib.MetricsWriter(
      os.path.join(workdir, METRICS_FILE),
      tensorboard_dir=os.path.join(workdir, TENSORBOARD_DIR) if tensorboard else None,
      tensorboard_purge_step=start if start > 1 else None) if workdir is not None else None)

  def emit(record):
    history.append(record)
    if writer is not None:
      writer.write(record)

  bar = tqdm.tqdm(total=num_epochs, initial=start - 1, desc="epochs", file=sys.stderr, leave=False,
                  disable=None if progress and metrics_lib.is_primary_process() else True)
  try:
    if start == 1 and log_initial:
      emit(measure(0, state, {"epoch": 0, "step": int(state.step)}))
    for epoch in range(start, num_epochs + 1):
      batches = put_on_device(_epoch_batches(train_data, epoch, batch_size=local_batch_size,
                                             seed=seed))
      new_state, step_metrics = train_epoch(state, batches)
      _check_finite(step_metrics["loss"], epoch=epoch, first_step=int(state.step),
                    checkpointer=checkpointer)
      state = new_state
      record = {"epoch": epoch, "step": int(state.step)}
      record.update({f"train_{k}": v for k, v in
                     _fetch(jax.tree.map(jnp.mean, step_metrics)).items()})
      emit(measure(epoch, state, record))
      if checkpointer is not None and (epoch % checkpoint_every == 0 or epoch == num_epochs):
        checkpointer.save(epoch, state)
      bar.update(1)
      bar.set_postfix_str(metrics_lib.format_record(
          record, keys=[k for k in record if k.endswith(("_loss", "_accuracy"))]))
  finally:
    bar.close()
    if writer is not None:
      writer.close()
    if checkpointer is not None:
      checkpointer.close()
  return FitResult(state=state, history=history)
