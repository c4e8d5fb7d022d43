"""Multi-device and multi-process runs: the same numbers as one device."""

import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infojax as ij

sys.path.insert(0, os.path.dirname(__file__))
import _distributed_worker  # noqa: E402


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
  with pytest.raises(ValueError, match="same leading"):
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


def _free_port():
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost_give_the_single_process_fisher(tmp_path):
  """A real 2-process run (jax.distributed over 127.0.0.1), 4 CPU devices per process."""
  port = _free_port()
  out_file = tmp_path / "fisher.npz"
  worker = os.path.join(os.path.dirname(__file__), "_distributed_worker.py")
  processes = []
  for process_id in range(2):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               INFOJAX_NUM_PROCESSES="2", INFOJAX_PROCESS_ID=str(process_id),
               JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    processes.append(subprocess.Popen([sys.executable, worker, str(out_file)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=240)[0].decode())
  finally:
    for process in processes:
      process.kill()
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
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
