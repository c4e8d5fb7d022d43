"""Multi-device and multi-process runs: the same numbers as one device."""

import importlib
import importlib.util
import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij

sys.path.insert(0, os.path.dirname(__file__))
import _configs  # noqa: E402
import _distributed_worker  # noqa: E402
import _multiprocess  # noqa: E402


def test_single_host_initialisation_is_a_no_op(monkeypatch):
  for name in ("JAX_COORDINATOR_ADDRESS", "INFOJAX_NUM_PROCESSES", "INFOJAX_PROCESS_ID",
               "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(name, raising=False)
  info = ij.parallel.maybe_initialize()
  assert info.process_index == 0 and info.process_count == 1
  assert info.device_count == jax.device_count()


@pytest.mark.parametrize("settings, message", [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, "missing"),
    ({"INFOJAX_NUM_PROCESSES": "2", "INFOJAX_PROCESS_ID": "0"}, "coordinator_address"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "INFOJAX_NUM_PROCESSES": "2",
      "INFOJAX_PROCESS_ID": "2"}, "process_id < num_processes"),
    ({"JAX_COORDINATOR_ADDRESS": "localhost", "INFOJAX_NUM_PROCESSES": "2",
      "INFOJAX_PROCESS_ID": "0"}, "host:port"),
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "INFOJAX_NUM_PROCESSES": "two",
      "INFOJAX_PROCESS_ID": "0"}, "integers"),
])
def test_partial_or_inconsistent_settings_are_errors(monkeypatch, settings, message):
  for name in ("JAX_COORDINATOR_ADDRESS", "INFOJAX_NUM_PROCESSES", "INFOJAX_PROCESS_ID"):
    monkeypatch.delenv(name, raising=False)
  for name, value in settings.items():
    monkeypatch.setenv(name, value)
  with pytest.raises(ValueError, match=message):
    ij.parallel.maybe_initialize()


def test_shard_batch_builds_global_arrays_over_the_data_axis():
  mesh = ij.parallel.data_mesh()
  inputs = np.arange(16 * 3, dtype=np.float32).reshape(16, 3)
  labels = np.arange(16, dtype=np.int32)
  sharded_inputs, sharded_labels = ij.parallel.shard_batch((inputs, labels), mesh)
  np.testing.assert_array_equal(sharded_inputs, inputs)
  np.testing.assert_array_equal(sharded_labels, labels)
  assert sharded_inputs.sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(sharded_inputs.addressable_shards) == jax.device_count()
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    ij.parallel.shard_batch((inputs[:12], labels[:12]), mesh)
  with pytest.raises(ValueError, match="same example axis 0"):
    ij.parallel.shard_batch((inputs, labels[:8]), mesh)
  with pytest.raises(ValueError, match="axis_type"):
    ij.parallel.data_mesh(axis_type="manual")


@pytest.mark.parametrize("axis_type", ["auto", "explicit"])
def test_fisher_on_a_sharded_global_batch_equals_one_device(axis_type):
  apply_fn, params, inputs, targets = _distributed_worker.problem()
  lik = ij.likelihoods.categorical()
  expected = ij.fisher.diagonal(apply_fn, params, (jnp.asarray(inputs), jnp.asarray(targets)),
                                likelihood=lik, kind="true")
  mesh = ij.parallel.data_mesh(axis_type=axis_type)
  batch = ij.parallel.shard_batch((inputs, targets), mesh)
  with jax.set_mesh(mesh):
    actual = jax.jit(lambda p, b: ij.fisher.diagonal(apply_fn, p, b, likelihood=lik,
                                                     kind="true"))(
                                                         ij.parallel.replicate(params, mesh), batch)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=2e-5, atol=1e-7)


@pytest.mark.slow
def test_two_processes_on_localhost_give_the_single_process_fisher(tmp_path):
  """A real 2-process run (jax.distributed over 127.0.0.1), 4 CPU devices per process; the same
  processes compute the Task2Vec embedding too."""
  out_file = tmp_path / "fisher.npz"
  worker = os.path.join(os.path.dirname(__file__), "_distributed_worker.py")
  _multiprocess.run_processes([sys.executable, worker, str(out_file)], num_processes=2,
                              devices_per_process=4, settings="env", timeout=240)
  result = np.load(out_file)
  assert int(result["process_count"]) == 2 and int(result["device_count"]) == 8
  apply_fn, params, inputs, targets = _distributed_worker.problem()
  lik = ij.likelihoods.categorical()
  for kind in ("empirical", "true"):
    expected = ij.fisher.diagonal(apply_fn, params, (jnp.asarray(inputs), jnp.asarray(targets)),
                                  likelihood=lik, kind=kind)
    for path, leaf in jax.tree_util.tree_leaves_with_path(expected):
      np.testing.assert_allclose(result[f"{kind}{jax.tree_util.keystr(path)}"], leaf, rtol=2e-5,
                                 atol=1e-7)
  expected = ij.tasks.task2vec.embedding(apply_fn, params, (inputs, targets), likelihood=lik,
                                         class_balanced=False)
  np.testing.assert_allclose(result["task2vec"], expected.hessian, rtol=2e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Placement helpers: full host arrays -> global arrays; sharded parameters.
# ------------------------------------------------------------------------------------------------


def test_shard_batch_takes_an_example_axis_and_process_helpers_on_one_process():
  mesh = ij.parallel.data_mesh()
  stacked = {"x": np.arange(3 * 16, dtype=np.float32).reshape(3, 16)}
  placed = ij.parallel.shard_batch(stacked, mesh, batch_axis=1)
  assert placed["x"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
  np.testing.assert_array_equal(placed["x"], stacked["x"])
  with pytest.raises(ValueError, match="same example axis 1"):
    ij.parallel.shard_batch({"x": np.zeros((3, 16)), "y": np.zeros((3, 8))}, mesh, batch_axis=1)
  values = (np.float64(0.1) + 1e-12, np.arange(3))
  summed = ij.parallel.process_sum(values)
  assert summed[0].dtype == np.float64 and summed[0] == values[0]
  np.testing.assert_array_equal(ij.parallel.process_concatenate(values)[1], values[1])


def test_put_sharded_shards_the_chosen_axis_and_checks_divisibility():
  mesh = ij.parallel.data_mesh()
  stacked = {"x": np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2)}
  placed = ij.parallel.put_sharded(stacked, mesh, batch_axis=1)
  assert placed["x"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
  assert {s.data.shape for s in placed["x"].addressable_shards} == {(3, 2, 2)}
  np.testing.assert_array_equal(placed["x"], stacked["x"])
  with pytest.raises(ValueError, match=r"axis 1 .* multiple of the 8 devices.*\(3, 12, 2\)"):
    ij.parallel.put_sharded({"x": np.zeros((3, 12, 2))}, mesh, batch_axis=1)


def test_replicate_and_to_mesh_handle_keys_and_keep_laid_out_leaves():
  mesh = ij.parallel.data_mesh()
  tree = {"key": jax.random.key(3), "big": np.ones((16, 64), np.float32), "small": np.ones(3)}
  sharded = ij.parallel.shard_params(tree, mesh, min_size=64)
  assert sharded["big"].sharding.spec == jax.sharding.PartitionSpec(None, "data")
  assert sharded["small"].sharding.is_fully_replicated
  assert jax.random.key_impl(sharded["key"]) == jax.random.key_impl(tree["key"])
  np.testing.assert_array_equal(jax.random.key_data(sharded["key"]),
                                jax.random.key_data(tree["key"]))
  placed = ij.parallel.to_mesh({"big": sharded["big"], "other": np.zeros(5)}, mesh)
  assert placed["big"] is sharded["big"]
  assert placed["other"].sharding.is_fully_replicated


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_fisher_with_sharded_parameters_equals_replicated(kind):
  mesh = ij.parallel.data_mesh()
  model = ij.models.MLP(hidden_sizes=(32,), num_classes=4)
  apply_fn, params = ij.models.init(model, jax.random.key(0), (1, 24))
  rng = np.random.default_rng(1)
  batch = (rng.normal(size=(16, 24)).astype(np.float32), rng.integers(0, 4, 16).astype(np.int32))
  lik = ij.likelihoods.categorical()
  expected = ij.fisher.diagonal(apply_fn, params, batch, likelihood=lik, kind=kind)
  sharded = ij.parallel.shard_params(params, mesh, min_size=256)
  assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded))
  got = jax.jit(lambda p, b: ij.fisher.diagonal(apply_fn, p, b, likelihood=lik, kind=kind))(
      sharded, ij.parallel.put_sharded(batch, mesh))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# The main job as two processes: same metrics as one process; a multi-process run resumes.
# ------------------------------------------------------------------------------------------------


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _assert_same_records(got, expected, rtol):
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    assert set(a) == set(b)
    for name in a:
      if isinstance(a[name], str) or a[name] is None:
        assert a[name] == b[name], name
      else:
        np.testing.assert_allclose(np.asarray(a[name], float), np.asarray(b[name], float),
                                   rtol=rtol, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_main_job_on_two_processes_equals_one_process_and_resumes(tmp_path):
  """info_plot's smoke run as 2 processes x 2 CPU devices (4 global devices) vs in-process."""
  from infojax.experiments import info_plot  # pylint: disable=import-outside-toplevel
  config = _smoke_config("info_plot")
  expected = info_plot.run(config, str(tmp_path / "single"))  # this process: 8 devices
  assert expected
  expected_records = _records(tmp_path / "single")

  workdir = tmp_path / "two"
  command = [sys.executable, os.path.join(_multiprocess.ROOT, "scripts", "info_plot.py"),
             "--config=configs/info_plot.py:smoke", f"--workdir={workdir}"]
  outputs = _multiprocess.run_processes(command, num_processes=2, devices_per_process=2)
  assert "process 0 of 2, 2 local of 4 cpu devices" in outputs[0]
  assert "process 1 of 2, 2 local of 4 cpu devices" in outputs[1]
  assert "info_plot:" in outputs[0] and "info_plot:" not in outputs[1]  # process 0 reports
  records = _records(workdir)
  # Sharded reductions sum in another order than one device: float32 rounding only.
  _assert_same_records(records, expected_records, rtol=1e-4)
  assert os.path.exists(workdir / "info_plot.png")

  # Lose the last epoch's checkpoint, as if the run had been killed before saving it: the
  # multi-process rerun restores the previous one, redoes the last epoch and logs the same records.
  last = max(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit())
  shutil.rmtree(workdir / "checkpoints" / str(last))
  _multiprocess.run_processes(command, num_processes=2, devices_per_process=2)
  assert _records(workdir) == records

  # Each process reading only its half of each split (tfds.split_for_jax_process): other batches,
  # but the initial evaluation covers the same 360 test examples (normalised with statistics
  # pooled over both halves of the training split, which lacks one example: 1,437 is odd).
  local = tmp_path / "per_process"
  _multiprocess.run_processes(
      command[:-1] + [f"--workdir={local}", "--config.process_local_data=True"], num_processes=2,
      devices_per_process=2)
  records = _records(local)
  assert [r["epoch"] for r in records] == [r["epoch"] for r in expected_records]
  for name in ("test_loss", "test_accuracy"):
    np.testing.assert_allclose(records[0][name], expected_records[0][name], rtol=1e-3)
  assert records[-1]["test_accuracy"] > records[0]["test_accuracy"] + 0.3


def _smoke_config(name):
  return _configs.get_config(name, "smoke")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pac_bayes_bound", "random_labels", "structure_function",
                                  "bias_variance", "fisher_vs_batch", "sgd_noise",
                                  "critical_periods", "effective_information", "ib_curve",
                                  "vib"])
def test_small_experiments_on_two_processes_equal_one_process(tmp_path, name):
  """Each process runs the small full-batch experiment whole; process 0 writes the same records."""
  experiment = importlib.import_module(f"infojax.experiments.{name}")
  assert experiment.run(_smoke_config(name), str(tmp_path / "single"))
  workdir = tmp_path / "two"
  command = [sys.executable, os.path.join(_multiprocess.ROOT, "scripts", f"{name}.py"),
             f"--config=configs/{name}.py:smoke", f"--workdir={workdir}"]
  outputs = _multiprocess.run_processes(command, num_processes=2, devices_per_process=1)
  assert f"{name}:" in outputs[0] and f"{name}:" not in outputs[1]
  _assert_same_records(_records(workdir), _records(tmp_path / "single"), rtol=1e-4)


@pytest.mark.parametrize("kind", ["empirical", "true", "mc"])
def test_sharded_fisher_never_gathers_the_batch(kind):
  """Each device works on its own examples: the compiled program has no all-gather.

  Regression: batching a convolution's pull-back over the true Fisher's columns merged them into
  the sharded example axis, and XLA gathered every example's output gradients on every device
  (2.6x slower on 8 devices than on one).
  """
  mesh = ij.parallel.data_mesh()
  apply_fn, params, inputs, targets = _distributed_worker.problem()
  batch = ij.parallel.put_sharded((inputs, targets), mesh)
  lik = ij.likelihoods.categorical()
  compiled = jax.jit(lambda p, b: ij.fisher.diagonal(
      apply_fn, p, b, likelihood=lik, kind=kind, key=jax.random.key(0))).lower(
          ij.parallel.replicate(params, mesh), batch).compile()
  assert "all-gather" not in compiled.as_text()
