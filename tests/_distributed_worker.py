"""One process of a multi-process run on localhost (used by tests/test_parallel.py).

Usage: python _distributed_worker.py OUT_FILE  (with JAX_COORDINATOR_ADDRESS, INFOJAX_NUM_PROCESSES,
INFOJAX_PROCESS_ID and XLA_FLAGS set by the caller). Computes the Fisher diagonal of a fixed model
on a global batch whose halves live in different processes, and its Task2Vec embedding, and writes
them (process 0 only) as .npz.
"""

import sys

import jax
import numpy as np

import infojax as ij


def problem():
  """The fixed model and global batch shared with the single-process check."""
  model = ij.models.ConvNet(channels=(3, 4, 4), strides=(1, 2, 2), num_classes=5)
  apply_fn, params = ij.models.init(model, jax.random.key(0), (1, 8, 8, 2))
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(16, 8, 8, 2)).astype(np.float32)
  targets = rng.integers(0, 5, size=16).astype(np.int32)
  return apply_fn, params, inputs, targets


def main(out_file):
  info = ij.parallel.maybe_initialize()
  apply_fn, params, inputs, targets = problem()
  share = len(inputs) // info.process_count
  local = slice(info.process_index * share, (info.process_index + 1) * share)
  mesh = ij.parallel.data_mesh()
  batch = ij.parallel.shard_batch((inputs[local], targets[local]), mesh)
  params = ij.parallel.replicate(params, mesh)
  likelihood = ij.likelihoods.categorical()
  results = {}
  for kind in ("empirical", "true"):
    diagonal = jax.jit(lambda p, b, kind=kind: ij.fisher.diagonal(
        apply_fn, p, b, likelihood=likelihood, kind=kind))(params, batch)
    # Replicated outputs are fully addressable on every process.
    for path, leaf in jax.tree_util.tree_leaves_with_path(diagonal):
      results[f"{kind}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
  # The Task2Vec embedding (exact Fisher; class_balanced=False, as the labels are traced).
  results["task2vec"] = np.asarray(jax.jit(lambda p, b: ij.tasks.task2vec.embedding(
      apply_fn, p, b, likelihood=likelihood, class_balanced=False).hessian)(params, batch))
  if ij.parallel.is_main_process():
    np.savez(out_file, process_count=info.process_count, device_count=info.device_count,
             **results)


if __name__ == "__main__":
  main(sys.argv[1])
