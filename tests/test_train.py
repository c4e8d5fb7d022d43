"""Tests for infojax.train: optimisers, the scanned epoch, evaluation, fit, NaN stop, resume."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from infojax import config as config_lib
from infojax import parallel
from infojax import train

_WORKER = os.path.join(os.path.dirname(__file__), "_resume_worker.py")


# ----------------------------------------------------------------------------------------------
# Optimisers and schedules, against closed forms.
# ----------------------------------------------------------------------------------------------


def _schedule(steps_per_epoch=10, num_epochs=5, **fields):
  return train.make_schedule(config_lib.optimizer_config(**fields),
                             steps_per_epoch=steps_per_epoch, num_epochs=num_epochs)


@pytest.mark.parametrize("step", [0, 9, 10, 29, 30, 49])
def test_schedules_match_closed_forms(step):
  assert float(_schedule(lr=0.3)(step)) == pytest.approx(0.3)
  piecewise = _schedule(lr=0.3, schedule="piecewise", decay_epochs=(1, 3), decay_factor=0.1)
  assert float(piecewise(step)) == pytest.approx(0.3 * 0.1 ** ((step >= 10) + (step >= 30)))
  exponential = _schedule(lr=0.3, schedule="exponential", decay_factor=0.97)
  assert float(exponential(step)) == pytest.approx(0.3 * 0.97 ** (step / 10), rel=1e-5)
  cosine = _schedule(lr=0.3, schedule="cosine", decay_factor=0.1)
  expected = 0.3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / 50)))
  assert float(cosine(step)) == pytest.approx(expected, rel=1e-5)


def test_warmup_is_linear_then_the_schedule():
  schedule = _schedule(lr=0.2, schedule="cosine", warmup_epochs=1, decay_factor=0.0)
  assert float(schedule(0)) == pytest.approx(0.0)
  assert float(schedule(5)) == pytest.approx(0.1)
  # After the 10 warm-up steps, a cosine over the remaining 40 steps.
  expected = 0.2 * 0.5 * (1 + math.cos(math.pi * 20 / 40))
  assert float(schedule(30)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("fields, match", [
    ({"name": "rprop"}, "name must be one of"),
    ({"name": "rmsprop", "rmsprop_decay": 1.0}, "rmsprop_decay"),
    ({"schedule": "linear"}, "schedule must be one of"),
    ({"schedule": "piecewise", "decay_epochs": (3, 2)}, "strictly increasing"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"lr": -0.1}, "lr must be non-negative"),
])
def test_bad_optimizer_configs_are_rejected(fields, match):
  with pytest.raises(ValueError, match=match):
    train.make_optimizer(config_lib.optimizer_config(**fields), steps_per_epoch=5, num_epochs=2)


def test_bad_sizes_and_missing_fields_are_rejected():
  with pytest.raises(ValueError, match="steps_per_epoch"):
    _schedule(steps_per_epoch=0)
  with pytest.raises(ValueError, match="missing required field 'lr'"):
    train.make_optimizer({"name": "sgd"}, steps_per_epoch=5, num_epochs=2)
  with pytest.raises(ValueError, match="unknown fields"):
    config_lib.optimizer_config(learning_rate=0.1)


def _two_updates(fields, params, grads):
  optimizer = train.make_optimizer(config_lib.optimizer_config(**fields), steps_per_epoch=10,
                                   num_epochs=1)
  opt_state = optimizer.init(params)
  trajectory = []
  for grad in grads:
    updates, opt_state = optimizer.update(grad, opt_state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    trajectory.append(np.asarray(params))
  return trajectory


def test_sgd_momentum_nesterov_and_coupled_weight_decay_by_hand():
  w0 = np.array([1.0, -2.0], np.float32)
  g = [np.array([0.5, 0.25], np.float32), np.array([-1.0, 2.0], np.float32)]
  lr, mu, wd = 0.1, 0.9, 0.01
  for nesterov in (False, True):
    w, velocity, expected = w0.copy(), np.zeros(2), []
    for grad in g:
      d = grad + wd * w
      velocity = mu * velocity + d
      w = w - lr * ((d + mu * velocity) if nesterov else velocity)
      expected.append(w)
    got = _two_updates({"lr": lr, "momentum": mu, "nesterov": nesterov, "weight_decay": wd},
                       jnp.asarray(w0), [jnp.asarray(x) for x in g])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_adamw_decay_is_decoupled_and_adam_decay_is_coupled():
  w0 = np.array([1.0, -2.0], np.float32)
  g = np.array([0.5, -0.25], np.float32)
  lr, wd, eps = 0.1, 0.5, 1e-8
  # First Adam step: m_hat = d, v_hat = d**2, so the update is -lr * d / (|d| + eps).
  (adamw,) = _two_updates({"name": "adamw", "lr": lr, "weight_decay": wd}, jnp.asarray(w0),
                          [jnp.asarray(g)])
  np.testing.assert_allclose(adamw, w0 - lr * (g / (np.abs(g) + eps) + wd * w0), rtol=1e-6)
  (adam,) = _two_updates({"name": "adam", "lr": lr, "weight_decay": wd}, jnp.asarray(w0),
                         [jnp.asarray(g)])
  d = g + wd * w0
  np.testing.assert_allclose(adam, w0 - lr * d / (np.abs(d) + eps), rtol=1e-6)


def test_rmsprop_matches_optax_with_the_schedule_and_coupled_weight_decay():
  import optax  # pylint: disable=import-outside-toplevel
  w0 = jnp.asarray([1.0, -2.0, 0.5])
  grads = [jnp.asarray([0.5, -0.25, 2.0]), jnp.asarray([-1.0, 0.75, 0.1]),
           jnp.asarray([0.3, 0.3, -0.6])]
  lr, decay, wd = 0.1, 0.8, 0.01
  fields = {"name": "rmsprop", "lr": lr, "rmsprop_decay": decay, "weight_decay": wd,
            "schedule": "piecewise", "decay_epochs": (2,), "decay_factor": 0.5}
  optimizer = train.make_optimizer(config_lib.optimizer_config(**fields), steps_per_epoch=1,
                                   num_epochs=3)
  reference = optax.rmsprop(lambda step: jnp.where(step >= 2, 0.5 * lr, lr), decay=decay)
  params, state = w0, optimizer.init(w0)
  expected, reference_state = w0, reference.init(w0)
  for grad in grads:
    updates, state = optimizer.update(grad, state, params)
    params = params + updates
    reference_updates, reference_state = reference.update(grad + wd * expected, reference_state)
    expected = expected + reference_updates
    np.testing.assert_allclose(params, expected, rtol=1e-6)
  # The default decay is 0.9: one step from zero state scales by 1 / sqrt(0.1 g^2 + eps).
  (default,) = _two_updates({"name": "rmsprop", "lr": lr}, w0, grads[:1])
  np.testing.assert_allclose(default, w0 - lr * grads[0] / (np.sqrt(0.1) * np.abs(grads[0])),
                             rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# The step, the scanned epoch and exact evaluation.
# ----------------------------------------------------------------------------------------------


def _linear_apply(params, inputs):
  return inputs @ params["w"] + params["b"][None, :]


def _problem(num_examples=96, dim=5, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  inputs = rng.normal(size=(num_examples, dim)).astype(np.float32)
  labels = np.argmax(inputs @ rng.normal(size=(dim, classes)), axis=-1).astype(np.int32)
  params = {"w": jnp.asarray(0.1 * rng.normal(size=(dim, classes)), jnp.float32),
            "b": jnp.zeros(classes)}
  return inputs, labels, params


def _softmax_regression_grads(params, inputs, labels):
  """The gradient of the mean cross-entropy of a linear model, in closed form (float64)."""
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  logits = inputs.astype(np.float64) @ w + b
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  residual = (probs - np.eye(w.shape[1])[labels]) / len(labels)
  return {"w": inputs.T @ residual, "b": residual.sum(0)}


def test_train_step_is_a_gradient_step_on_the_mean_cross_entropy():
  inputs, labels, params = _problem(num_examples=16)
  optimizer = train.make_optimizer(config_lib.optimizer_config(lr=0.5), steps_per_epoch=1,
                                   num_epochs=1)
  state = train.init_state(params, optimizer, key=jax.random.key(0))
  step = jax.jit(train.make_train_step(train.classification(_linear_apply), optimizer))
  new_state, metrics = step(state, {"image": inputs, "label": labels})
  grads = _softmax_regression_grads(params, inputs, labels)
  for name in ("w", "b"):
    np.testing.assert_allclose(new_state.params[name], params[name] - 0.5 * grads[name], atol=1e-6)
  assert int(new_state.step) == 1
  predictions = np.argmax(inputs @ np.asarray(params["w"]) + np.asarray(params["b"]), -1)
  assert float(metrics["accuracy"]) == pytest.approx(np.mean(predictions == labels))


def test_scanned_epoch_equals_a_python_loop_of_steps():
  inputs, labels, params = _problem()
  optimizer = train.make_optimizer(config_lib.optimizer_config(lr=0.3, momentum=0.9),
                                   steps_per_epoch=6, num_epochs=1)
  objective = train.classification(_linear_apply)
  state = train.init_state(params, optimizer, key=jax.random.key(0))
  batches = {"image": inputs.reshape(6, 16, 5), "label": labels.reshape(6, 16)}
  scanned_state, scanned_metrics = train.make_train_epoch(objective, optimizer)(state, batches)
  step = jax.jit(train.make_train_step(objective, optimizer))
  looped_losses = []
  for i in range(6):
    state, metrics = step(state, jax.tree.map(lambda a, i=i: a[i], batches))
    looped_losses.append(float(metrics["loss"]))
  assert scanned_metrics["loss"].shape == (6,)
  np.testing.assert_allclose(scanned_metrics["loss"], looped_losses, rtol=1e-5)
  np.testing.assert_allclose(scanned_state.params["w"], state.params["w"], rtol=1e-5, atol=1e-6)
  assert int(scanned_state.step) == 6


@pytest.mark.parametrize("num_examples, batch_size", [(103, 25), (100, 25), (7, 50)])
def test_evaluation_is_the_exact_mean_over_the_split(num_examples, batch_size):
  inputs, labels, params = _problem(num_examples=num_examples)
  eval_set = train.make_eval_set({"image": inputs, "label": labels}, batch_size=batch_size)
  assert float(jnp.sum(eval_set.weights)) == num_examples
  means = train.make_evaluator(train.classification(_linear_apply))(params, {}, eval_set)
  logits = inputs.astype(np.float64) @ np.asarray(params["w"], np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected_loss = -np.mean(log_probs[np.arange(num_examples), labels])
  assert float(means["loss"]) == pytest.approx(expected_loss, rel=1e-5)
  assert float(means["accuracy"]) == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-6)


def test_eval_set_rejects_ragged_or_empty_splits():
  with pytest.raises(ValueError, match="same leading"):
    train.make_eval_set({"image": np.zeros((5, 2)), "label": np.zeros(4)}, batch_size=2)
  with pytest.raises(ValueError, match="empty"):
    train.make_eval_set({"image": np.zeros((0, 2)), "label": np.zeros(0)}, batch_size=2)


def test_init_state_needs_a_typed_key():
  with pytest.raises(TypeError, match="typed PRNG key"):
    train.init_state({"w": jnp.zeros(2)}, train.make_optimizer(
        config_lib.optimizer_config(), steps_per_epoch=1, num_epochs=1), key=jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------------------------
# fit: records, hooks, NaN stop, resumption, sharded batches.
# ----------------------------------------------------------------------------------------------


def _fit_setup(lr=0.5, steps=6, batch=16, num_epochs=4, dim=5):
  inputs, labels, params = _problem(num_examples=steps * batch, dim=dim)
  optimizer = train.make_optimizer(config_lib.optimizer_config(lr=lr, momentum=0.5),
                                   steps_per_epoch=steps, num_epochs=num_epochs)
  state = train.init_state(params, optimizer, key=jax.random.key(0))

  def train_data(epoch):
    order = np.random.default_rng(epoch).permutation(steps * batch)
    return {"image": inputs[order].reshape(steps, batch, -1),
            "label": labels[order].reshape(steps, batch)}

  return train.classification(_linear_apply), optimizer, state, train_data, (inputs, labels)


def test_fit_records_every_epoch_and_calls_hooks(tmp_path):
  objective, optimizer, state, train_data, (inputs, labels) = _fit_setup()
  calls = []

  def hook(epoch, state):
    calls.append((epoch, int(state.step)))
    return {"weight_norm": jnp.linalg.norm(state.params["w"])}

  result = train.fit(objective, optimizer, state, train_data=train_data, num_epochs=4,
                     eval_data={"test": {"image": inputs, "label": labels}}, hooks=[hook],
                     workdir=str(tmp_path), checkpoint_every=2)
  assert calls == [(0, 0), (1, 6), (2, 12), (3, 18), (4, 24)]
  assert [r["epoch"] for r in result.history] == [0, 1, 2, 3, 4]
  assert "train_loss" not in result.history[0]
  for record in result.history[1:]:
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy",
            "weight_norm"} <= set(record)
  assert result.history[-1]["test_loss"] < result.history[0]["test_loss"]
  assert result.history[-1]["weight_norm"] == pytest.approx(
      float(jnp.linalg.norm(result.state.params["w"])))
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line) for line in f] == result.history
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]


def test_fit_rejects_clashing_names_and_bad_arguments():
  objective, optimizer, state, train_data, (inputs, labels) = _fit_setup()
  with pytest.raises(ValueError, match="already in the record"):
    train.fit(objective, optimizer, state, train_data=train_data, num_epochs=1,
              eval_data={"test": {"image": inputs, "label": labels}},
              hooks=[lambda epoch, state: {"test_loss": 0.0}])
  with pytest.raises(ValueError, match="may not be named 'train'"):
    train.fit(objective, optimizer, state, train_data=train_data, num_epochs=1,
              eval_data={"train": {"image": inputs, "label": labels}})
  with pytest.raises(ValueError, match="num_epochs"):
    train.fit(objective, optimizer, state, train_data=train_data, num_epochs=0)
  with pytest.raises(TypeError, match="TrainState"):
    train.fit(objective, optimizer, tuple(state), train_data=train_data, num_epochs=1)


def test_a_nan_stops_the_run_naming_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
  objective, optimizer, state, train_data, _ = _fit_setup()

  def poisoned(epoch):
    batches = train_data(epoch)
    if epoch == 3:
      batches["image"][4, 7, 0] = np.nan
    return batches

  with pytest.raises(train.NonFiniteLossError,
                     match=r"epoch 3, step 16 \(step 4 of the epoch") as info:
    train.fit(objective, optimizer, state, train_data=poisoned, num_epochs=5,
              workdir=str(tmp_path), checkpoint_every=1)
  assert isinstance(info.value, FloatingPointError)
  assert (info.value.epoch, info.value.step, info.value.step_in_epoch) == (3, 16, 4)
  assert info.value.last_checkpoint == 2 and "epoch 2" in str(info.value)
  with train.Checkpointer(str(tmp_path / "checkpoints")) as checkpointer:
    assert checkpointer.latest_epoch() == 2
  with open(tmp_path / "metrics.jsonl") as f:
    assert [json.loads(line)["epoch"] for line in f] == [0, 1, 2]


def test_divergence_from_a_huge_learning_rate_is_caught():
  objective, optimizer, state, train_data, _ = _fit_setup(lr=1e38)
  with pytest.raises(train.NonFiniteLossError, match="non-finite training loss") as info:
    train.fit(objective, optimizer, state, train_data=train_data, num_epochs=3, log_initial=False)
  assert info.value.epoch >= 1 and not math.isfinite(info.value.value)
  assert info.value.last_checkpoint is None


def test_an_interrupted_fit_resumes_to_the_same_records(tmp_path):
  objective, optimizer, state, train_data, (inputs, labels) = _fit_setup()
  kwargs = dict(train_data=train_data, num_epochs=5, checkpoint_every=2,
                eval_data={"test": {"image": inputs[:40], "label": labels[:40]}})
  reference = train.fit(objective, optimizer, state, workdir=str(tmp_path / "a"), **kwargs)

  class Crash(Exception):
    pass

  def crash_at_epoch_3(epoch, state):
    if epoch == 3:
      raise Crash()
    return {}

  with pytest.raises(Crash):
    train.fit(objective, optimizer, state, workdir=str(tmp_path / "b"), hooks=[crash_at_epoch_3],
              **kwargs)
  resumed = train.fit(objective, optimizer, state, workdir=str(tmp_path / "b"), **kwargs)
  assert resumed.history == reference.history
  np.testing.assert_array_equal(resumed.state.params["w"], reference.state.params["w"])
  # A finished run restarted does no more work and reports the same history.
  again = train.fit(objective, optimizer, state, workdir=str(tmp_path / "b"), **kwargs)
  assert again.history == reference.history
  with pytest.raises(ValueError, match="beyond num_epochs"):
    train.fit(objective, optimizer, state, workdir=str(tmp_path / "b"),
              **{**kwargs, "num_epochs": 3})


def test_tensorboard_events_of_an_interrupted_fit_equal_the_records(tmp_path):
  pytest.importorskip("tensorboardX")
  from infojax.io import tensorboard
  objective, optimizer, state, train_data, _ = _fit_setup()
  kwargs = dict(train_data=train_data, num_epochs=4, checkpoint_every=2, tensorboard=True,
                workdir=str(tmp_path))

  def crash_at_epoch_3(epoch, state):
    if epoch == 3:
      raise KeyboardInterrupt
    return {}

  with pytest.raises(KeyboardInterrupt):   # epoch 3 trains, then the hook stops the run
    train.fit(objective, optimizer, state, hooks=[crash_at_epoch_3], **kwargs)
  history = train.fit(objective, optimizer, state, **kwargs).history
  expected = sorted((name, r["epoch"], pytest.approx(r[name], rel=1e-6)) for r in history
                    for name in r if name not in ("epoch", "step"))
  assert sorted(tensorboard.read_scalars(str(tmp_path / "tensorboard"))) == expected


def test_batches_sharded_over_a_data_axis_give_the_same_run():
  objective, optimizer, state, train_data, (inputs, labels) = _fit_setup(batch=16)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

  def shard_batch_axis(tree):
    return jax.tree.map(
        lambda a: jax.device_put(a, NamedSharding(mesh, PartitionSpec(None, "data"))), tree)

  kwargs = dict(train_data=train_data, num_epochs=2, eval_batch_size=32,
                eval_data={"test": {"image": inputs, "label": labels}})
  single = train.fit(objective, optimizer, state, **kwargs)
  sharded = train.fit(objective, optimizer, state, put_on_device=shard_batch_axis, **kwargs)
  for a, b in zip(single.history, sharded.history):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)


@pytest.mark.parametrize("shard_params", [False, True])
def test_fit_on_a_mesh_gives_the_single_device_run_and_checkpoints(tmp_path, shard_params):
  """fit(mesh=...): replicated (or sharded) state, sharded batches and odd-sized eval sets."""
  objective, optimizer, state, train_data, (inputs, labels) = _fit_setup(batch=16, dim=16)
  mesh = parallel.data_mesh()
  # 93 test examples: the evaluation batch is padded up to a multiple of the 8 devices.
  kwargs = dict(train_data=train_data, num_epochs=2, eval_batch_size=30,
                eval_data={"test": {"image": inputs[:93], "label": labels[:93]}})
  single = train.fit(objective, optimizer, state, **kwargs)
  if shard_params:
    state = state._replace(params=parallel.shard_params(state.params, mesh, min_size=1))
  sharded = train.fit(objective, optimizer, state, mesh=mesh, workdir=str(tmp_path), **kwargs)
  leaves = jax.tree.leaves(sharded.state.params)
  assert all(leaf.sharding.mesh == mesh for leaf in leaves)
  assert any(not leaf.sharding.is_fully_replicated for leaf in leaves) == shard_params
  for a, b in zip(single.history, sharded.history):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)
  # A rerun restores the mesh-placed checkpoint and has nothing left to do.
  again = train.fit(objective, optimizer, state, mesh=mesh, workdir=str(tmp_path), **kwargs)
  assert again.history == sharded.history
  for restored, leaf in zip(jax.tree.leaves(again.state.params), leaves):
    assert restored.sharding.is_equivalent_to(leaf.sharding, leaf.ndim)


def test_fit_with_data_per_process_on_one_process_is_the_mesh_run():
  """One process holds every share: the per-process data path gives the mesh run exactly."""
  objective, optimizer, state, _, (inputs, labels) = _fit_setup(batch=16)
  mesh = parallel.data_mesh()
  test = {"image": inputs[:93], "label": labels[:93]}
  kwargs = dict(train_data={"image": inputs, "label": labels}, batch_size=16, num_epochs=2,
                eval_batch_size=30, eval_data={"test": test}, mesh=mesh)
  shared = train.fit(objective, optimizer, state, **kwargs)
  per_process = train.fit(objective, optimizer, state, data_per_process=True, **kwargs)
  assert per_process.history == shared.history
  with pytest.raises(ValueError, match="data_per_process=True needs a mesh"):
    train.fit(objective, optimizer, state, data_per_process=True,
              **{**kwargs, "mesh": None})


def test_fit_on_a_mesh_rejects_a_batch_that_does_not_split():
  objective, optimizer, state, _, (inputs, labels) = _fit_setup(batch=16)
  with pytest.raises(ValueError, match=r"global batch size \(12\) must be a positive multiple"):
    train.fit(objective, optimizer, state, train_data={"image": inputs, "label": labels},
              batch_size=12, num_epochs=1, mesh=parallel.data_mesh())


def _run_worker(workdir, kill=None):
  command = [sys.executable, _WORKER, str(workdir)] + ([f"--kill={kill}"] if kill else [])
  return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_killed_process_resumes_to_exactly_the_uninterrupted_metrics(tmp_path):
  """SIGKILL between a record and its checkpoint, and just after a checkpoint.

  (A crash before a record is written is covered in-process by the test above.)
  """
  phases = ["save:4", "saved:4"]
  first = {name: _run_worker(tmp_path / name.replace(":", "_"), kill=name) for name in phases}
  first["uninterrupted"] = _run_worker(tmp_path / "uninterrupted")
  outcomes = {name: (process.wait(timeout=300), process.stderr.read().decode())
              for name, process in first.items()}
  code, stderr = outcomes.pop("uninterrupted")
  assert code == 0, stderr[-3000:]
  for name, (code, stderr) in outcomes.items():
    assert code == -9, f"{name} was not killed (exit {code}): {stderr[-2000:]}"
  second = {name: _run_worker(tmp_path / name.replace(":", "_")) for name in phases}
  for name, process in second.items():
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
  expected = (tmp_path / "uninterrupted" / "metrics.jsonl").read_text()
  assert [json.loads(line)["epoch"] for line in expected.splitlines()] == list(range(7))
  for name in phases:
    assert (tmp_path / name.replace(":", "_") / "metrics.jsonl").read_text() == expected, name


class _BatchNormMLP(nn.Module):
  """Dense -> BatchNorm -> ReLU -> Dense, with the ``train`` switch of the library's models."""

  @nn.compact
  def __call__(self, inputs, train: bool = False):
    hidden = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(8)(inputs))
    return nn.Dense(3)(nn.relu(hidden))


def test_flax_classification_trains_batch_norm_statistics_and_evaluates_with_them():
  model = _BatchNormMLP()
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(64, 5)).astype(np.float32) + 2.0
  labels = np.argmax(inputs @ rng.normal(size=(5, 3)), axis=-1).astype(np.int32)
  variables = jax.jit(model.init)(jax.random.key(0), inputs[:1])
  optimizer = train.make_optimizer(config_lib.optimizer_config(lr=0.05, momentum=0.9),
                                   steps_per_epoch=4, num_epochs=2)
  state = train.init_state(variables["params"], optimizer, key=jax.random.key(1),
                           model_state={"batch_stats": variables["batch_stats"]})
  result = train.fit(train.flax_classification(model), optimizer, state, num_epochs=2,
                     train_data=lambda epoch: {"image": inputs.reshape(4, 16, 5),
                                               "label": labels.reshape(4, 16)},
                     eval_data={"test": {"image": inputs, "label": labels}}, eval_batch_size=64)
  # The running mean moved from its initial zeros to near the batch means of the hidden layer.
  dense = result.state.params["Dense_0"]
  hidden = inputs @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])[None, :]
  running_mean = np.asarray(result.state.model_state["batch_stats"]["BatchNorm_0"]["mean"])
  assert np.max(np.abs(running_mean)) > 0.1
  assert np.max(np.abs(running_mean - hidden.mean(0))) < 0.5 * np.max(np.abs(hidden.mean(0)))
  # Evaluation uses the running statistics (eval mode).
  logits = jax.jit(model.apply)({"params": result.state.params, **result.state.model_state}, inputs)
  expected = -float(jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(64), labels]))
  assert result.history[-1]["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_decreases_on_digits():
  from infojax import data, models  # pylint: disable=import-outside-toplevel
  splits = {split: data.load("digits", split) for split in ("train", "test")}
  splits = {split: {"image": s["image"], "label": s["label"]} for split, s in splits.items()}
  apply_fn, params = models.init(models.get_model("mlp", num_classes=10, hidden_sizes=(32,)),
                                 jax.random.key(0), (1, 8, 8, 1))
  optimizer = train.make_optimizer(config_lib.optimizer_config(lr=0.1, momentum=0.9),
                                   steps_per_epoch=len(splits["train"]["label"]) // 64,
                                   num_epochs=3)
  state = train.init_state(params, optimizer, key=jax.random.key(1))
  history = train.fit(train.classification(apply_fn), optimizer, state, train_data=splits["train"],
                      batch_size=64, seed=0, num_epochs=3,
                      eval_data={"test": splits["test"]}).history
  assert [r["epoch"] for r in history] == [0, 1, 2, 3]
  assert history[0]["test_accuracy"] < 0.3  # chance is 0.1
  assert history[3]["train_loss"] < history[2]["train_loss"] < history[1]["train_loss"]
  assert history[3]["test_loss"] < 0.3 * history[0]["test_loss"]
  assert history[3]["test_accuracy"] > 0.85
