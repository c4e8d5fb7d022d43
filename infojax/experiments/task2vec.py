"""Task2Vec on a suite of small tasks: the exact Fisher against the official estimator, and probes.

Task2Vec (Achille, Lam, Tewari, Ravichandran, Maji, Fowlkes, Soatto & Perona, "Task2Vec: Task
Embedding for Meta-Learning", ICCV 2019, arXiv 1902.03545; science.md §6) embeds a task by the
per-filter Fisher of a probe network's feature extractor, with the probe's head re-fitted on the
task. Here, at a size that runs on a laptop CPU:

1. **Tasks** (`infojax.tasks.suite`): class subsets, binary one-vs-rest and even/odd labellings,
   label-permuted copies, factor prediction on sprites and inverted images, made from digits,
   mnist1d (drawn as line plots) and sprites, all on 16x16x1 images so that one probe embeds every
   task.
2. **Probes**: a small `infojax.models.ConvNet` (i) trained on the union of the families' base
   tasks (digits 0-9, mnist1d 0-9 and sprite shapes as 23 classes: the analogue of the paper's
   ImageNet probe) and (ii) the same network at its random initialisation, before that training
   (untrained; the question the official code's users ask).
3. **Per task and probe**: the probe's features (global-average-pooled last convolution) are cached
   and a new head fitted on them (`task2vec.fit_head`: Adam, coupled weight decay, as the official
   code); the test error of that head is the task's difficulty. The embedding is the per-filter
   mean of the Fisher diagonal of the convolution kernels (biases and head excluded, as the
   official code keeps only the modules' weights) on ``fisher_examples`` training images (the
   same number of each class, chosen independently of the labels' names, so a task and its
   permuted copy use the same images), with the methods of ``config.methods``: ``"exact"`` (the
   exact per-example true Fisher, `infojax.fisher`), ``"minibatch_squared"`` (the official code's
   square of each minibatch's mean gradient, class-balanced resampling, science.md §6.2; it
   estimates ``diag(F) / B`` with noise from the few minibatches) and optionally ``"mc"``.
4. **Matrices** (`task2vec.distance_matrix`, the paper's symmetric cosine distance, science.md
   §6.4) per probe and method, with the checks: tasks on the same images with different labels
   are far apart (a "domain embedding" of mean features puts them at distance 0), a task and its
   label-permuted copy are close (its distance and its rank among all pairs and among the task's
   neighbours), tasks of one family are closer than tasks of different families (the paper's
   "distances recover taxonomy"), the Spearman correlation of the embedding's norm with the test
   error (the paper's "norm correlates with difficulty"), how far the official estimator is from
   the exact one (the cosine distance between the two embeddings of each task, and the Spearman
   correlation of the two matrices' upper triangles) and the same for the random probe against
   the trained one.

Outputs in the workdir: ``config.json``; ``metrics.jsonl``: one ``"probe"`` record per probe (its
accuracy on the pre-training task), one ``"embedding"`` record per (probe, task, method) with the
embedding, its norm and the head's train and test errors, then the statistics (``"matrix"`` per
probe and method with the distance matrix, ``"estimator"`` per probe, ``"probes"`` per method);
``task2vec_distances.png`` (the matrices), ``task2vec_dendrogram.png`` (average-linkage
clustering, scipy, of the trained probe's exact matrix), ``probes.msgpack`` (the two probes'
parameters) and ``summary.txt``. A rerun in the same workdir resumes: the probes are read back
and the (probe, task, method) points already in ``metrics.jsonl`` are not recomputed; the
statistics are recomputed from the records. Every process computes everything; process 0 writes.
"""

import functools
import os
import zlib

import flax.linen as nn
from flax import serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import scipy.cluster.hierarchy
import scipy.spatial.distance
import scipy.stats

from infojax import activations
from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import train
from infojax.experiments import common
from infojax.tasks import suite
from infojax.tasks import task2vec

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
MATRIX_PLOT = "task2vec_distances.png"
DENDROGRAM_PLOT = "task2vec_dendrogram.png"
PROBES_FILE = "probes.msgpack"
PROBES = ("trained", "random")


# ----------------------------------------------------------------------------------------------
# The probe.
# ----------------------------------------------------------------------------------------------


def probe_model(config, num_classes: int) -> models.ConvNet:
  """The probe ConvNet of the config with ``num_classes`` logits."""
  return models.ConvNet(channels=tuple(config.channels), strides=tuple(config.strides),
                        num_classes=num_classes)


def is_feature_kernel(path: str) -> bool:
  """The embedded leaves: the convolution kernels (``Conv_<k>/kernel``), as the official code."""
  return path.startswith("Conv_") and path.endswith("/kernel")


def _architecture(config) -> tuple:
  return tuple(int(c) for c in config.channels), tuple(int(s) for s in config.strides)


@functools.lru_cache(maxsize=None)
def _apply_fn(channels: tuple, strides: tuple, num_classes: int):
  """One apply function per architecture, so that jitted programs are compiled once."""
  return models.make_apply_fn(models.ConvNet(channels=channels, strides=strides,
                                             num_classes=num_classes))


@functools.lru_cache(maxsize=None)
def _features_program(channels: tuple, strides: tuple, num_classes: int):
  apply_fn = _apply_fn(channels, strides, num_classes)
  pre_activations = activations.activations_fn(apply_fn, f"Conv_{len(channels) - 1}")

  def features(params, images):
    z = pre_activations(params, images).reshape(images.shape[0], -1, channels[-1])
    return jnp.mean(nn.relu(z), axis=1)

  return jax.jit(features)


def probe_features(config, params, images: np.ndarray, *, chunk: int = 512) -> jax.Array:
  """The probe's pooled features (the head's inputs), ``(N, channels[-1])``.

  Computed in chunks of ``chunk`` images (the last one padded), so one program serves every task.
  """
  program = _features_program(*_architecture(config), int(params["Dense_0"]["bias"].shape[0]))
  size = images.shape[0]
  padded = np.concatenate([images, np.zeros((-size % chunk,) + images.shape[1:], images.dtype)])
  return jnp.concatenate([program(params, jnp.asarray(padded[start:start + chunk]))
                          for start in range(0, padded.shape[0], chunk)])[:size]


@functools.lru_cache(maxsize=None)
def _embedding_program(channels: tuple, strides: tuple, num_classes: int, method: str,
                       batch_size, mc_samples: int):
  """The jitted embedding of a class-balanced Fisher set (equal class counts: plain mean)."""
  apply_fn = _apply_fn(channels, strides, num_classes)

  def hessian(params, inputs, labels, key):
    return task2vec.embedding(apply_fn, params, (inputs, labels),
                              likelihood=likelihoods.categorical(), method=method,
                              trainable=is_feature_kernel, key=key, batch_size=batch_size,
                              mc_samples=mc_samples, class_balanced=False).hessian

  return jax.jit(hessian)


def pretraining_data(tasks) -> tuple:
  """The union of some tasks as one task, labels offset task by task.

  Returns:
    ``(train, test, num_classes)``, ``{"image", "label"}`` arrays.
  """
  splits, offset = {"train": [], "test": []}, 0
  for task in tasks:
    for split in splits:
      arrays = task._asdict()[split]
      splits[split].append((arrays["image"], arrays["label"] + offset))
    offset += task.num_classes
  train, test = ({"image": np.concatenate([x for x, _ in parts]),
                  "label": np.concatenate([y for _, y in parts]).astype(np.int32)}
                 for parts in (splits["train"], splits["test"]))
  return train, test, offset


def pretrain(apply_fn, params, train_arrays: dict, *, optimizer_config, num_epochs: int,
             batch_size: int, seed: int):
  """Minibatch training on the mean cross-entropy: one jitted `infojax.train` step per batch.

  A Python loop over jitted steps rather than `infojax.train.fit`'s scanned epochs: on XLA:CPU
  (jax 0.10) a convolution's gradient inside a ``lax.scan`` runs about 40 times slower than the
  same step jitted alone (measured on this probe: 8 steps of 128 images, 5.3 s scanned, 0.13 s
  looped). Epoch ``e`` is ``infojax.data.batches(..., seed=seed, epoch=e)`` (drop remainder).

  Args:
    apply_fn: ``apply_fn(params, images) -> logits``.
    params: the initial parameters.
    train_arrays: ``{"image", "label"}``.
    optimizer_config, num_epochs, batch_size, seed: as in `infojax.train.fit`.

  Returns:
    The trained parameters.
  """
  steps = train_arrays["label"].shape[0] // batch_size
  optimizer = train.make_optimizer(optimizer_config, steps_per_epoch=steps, num_epochs=num_epochs)
  step = jax.jit(train.make_train_step(train.classification(apply_fn), optimizer))
  state = train.init_state(params, optimizer, key=jax.random.key(seed))
  for epoch in range(num_epochs):
    epoch_batches = data.batches(train_arrays, batch_size, seed=seed, epoch=epoch)
    for index in range(steps):
      state, _ = step(state, jax.tree.map(lambda x: x[index], epoch_batches))
  return state.params


def accuracy(apply_fn, params, arrays: dict, *, chunk: int = 1000) -> float:
  """The fraction of ``arrays`` classified correctly, in chunks of ``chunk`` examples."""
  logits = jnp.concatenate([jax.jit(apply_fn)(params, jnp.asarray(arrays["image"][i:i + chunk]))
                            for i in range(0, arrays["label"].shape[0], chunk)])
  return float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(arrays["label"])))


def make_probes(config) -> tuple:
  """The trained probe, the random probe (its initialisation) and the pre-training record."""
  train_arrays, test_arrays, num_classes = pretraining_data(
      suite.make_suite(config.pretrain_tasks, seed=config.seed, data_dir=config.data_dir))
  apply_fn = _apply_fn(*_architecture(config), num_classes)
  _, initial = models.init(probe_model(config, num_classes), jax.random.key(config.seed),
                           (1,) + suite.INPUT_SHAPE)
  trained = pretrain(apply_fn, initial, train_arrays, optimizer_config=config.optimizer,
                     num_epochs=config.num_epochs, batch_size=config.batch_size, seed=config.seed)
  record = {"kind": "probe", "probe": "trained", "pretrain_tasks": list(config.pretrain_tasks),
            "num_classes": num_classes,
            "test_accuracy": accuracy(apply_fn, trained, test_arrays),
            "train_accuracy": accuracy(apply_fn, trained, train_arrays)}
  return {"trained": trained, "random": initial}, record


def save_probes(path: str, probes: dict) -> None:
  """Writes the probes' parameters (flax msgpack; process 0 only), replacing the file."""
  if not io.is_primary_process():
    return
  temporary = path + ".tmp"
  with open(temporary, "wb") as f:
    f.write(serialization.msgpack_serialize(jax.tree.map(np.asarray, probes)))
  os.replace(temporary, path)


def load_probes(path: str) -> dict:
  """The probes written by `save_probes`: ``{"trained": params, "random": params}``."""
  with open(path, "rb") as f:
    return serialization.msgpack_restore(f.read())


# ----------------------------------------------------------------------------------------------
# One task.
# ----------------------------------------------------------------------------------------------


def fisher_subset(labels: np.ndarray, num_classes: int, num_examples: int, seed: int) -> np.ndarray:
  """Sorted indices of the same number of examples of each class, chosen blind to class names.

  ``per_class = min(num_examples // num_classes, smallest class count)``; the examples are those
  of each class that come first in one seeded permutation of the split (the permutation depends
  on the seed and the split size only), so relabelling the classes selects the same images.
  """
  counts = np.bincount(labels, minlength=num_classes)
  per_class = min(num_examples // num_classes, int(counts.min()))
  if per_class < 1:
    raise ValueError(f"fisher_examples = {num_examples} is fewer than the {num_classes} classes "
                     "of a task, or a class has no training example.")
  order = np.random.default_rng([seed, labels.shape[0]]).permutation(labels.shape[0])
  rank = np.empty_like(order)
  for c in range(num_classes):
    members = order[labels[order] == c]
    rank[members] = np.arange(members.shape[0])
  return np.flatnonzero(rank < per_class)


def fit_task_head(config, params, task, key) -> tuple:
  """Fits a new head on the probe's cached features (`task2vec.fit_head`).

  Args:
    config: the experiment config (head_* fields).
    params: the probe's parameters.
    task: a `suite.Task`.
    key: the PRNG key of the head's initialisation and shuffling.

  Returns:
    ``(head_params, (train_error, test_error))``, the errors of the argmax of the fitted head.
  """
  head = nn.Dense(task.num_classes)
  train_features, test_features = (probe_features(config, params, split["image"])
                                   for split in (task.train, task.test))
  initial = head.init(jax.random.fold_in(key, 0), train_features[:1])["params"]
  fitted = task2vec.fit_head(
      common.dense_head(task.num_classes), initial, train_features, task.train["label"],
      key=jax.random.fold_in(key, 1), learning_rate=config.head_learning_rate,
      weight_decay=config.head_weight_decay, num_epochs=config.head_epochs,
      batch_size=min(config.head_batch_size, task.train["label"].shape[0]))
  head_fn = common.dense_head(task.num_classes)
  errors = [float(jnp.mean(jnp.argmax(head_fn(fitted, f), -1) != labels))
            for f, labels in ((train_features, task.train["label"]),
                              (test_features, task.test["label"]))]
  return fitted, errors


def embed(config, params, task, method: str, key) -> np.ndarray:
  """The Task2Vec embedding (hessian) of ``task`` with the probe ``params`` (head fitted).

  On the `fisher_subset` of the training split, which has equal class counts, so the plain mean
  over its examples is the class-balanced Fisher of the official code.

  Args:
    config: the experiment config.
    params: the probe's parameters with the task's fitted head as ``Dense_0``.
    task: a `suite.Task`.
    method: ``"exact"``, ``"mc"`` or ``"minibatch_squared"``.
    key: the PRNG key of the sampled labels (``"mc"``, ``"minibatch_squared"``).

  Returns:
    ``(sum(channels),)`` float32: the per-filter Fisher of the convolution kernels.
  """
  index = fisher_subset(task.train["label"], task.num_classes, config.fisher_examples, config.seed)
  batch_size = (min(config.minibatch_size, index.shape[0]) if method == "minibatch_squared"
                else None)
  program = _embedding_program(*_architecture(config), task.num_classes, method, batch_size,
                               int(config.mc_samples))
  return np.asarray(program(params, jnp.asarray(task.train["image"][index]),
                            jnp.asarray(task.train["label"][index]), key))


def _task_key(config, probe: str, name: str):
  return jax.random.fold_in(jax.random.key(config.seed),
                            zlib.crc32(f"{probe}/{name}".encode()) % (2 ** 31))


# ----------------------------------------------------------------------------------------------
# Statistics of the matrices.
# ----------------------------------------------------------------------------------------------


def _spearman(x, y) -> float:
  return float(scipy.stats.spearmanr(x, y).statistic)


def _upper(matrix: np.ndarray) -> np.ndarray:
  return matrix[np.triu_indices(matrix.shape[0], k=1)]


def task_relations(tasks) -> dict:
  """Pairs ``(i, j)``, ``i < j``, of the tasks by how their training sets relate.

  Returns:
    ``{"relabelled": pairs on the same images whose labels are a bijection of each other (a task
    and its permuted copy), "same_inputs": pairs on the same images with labels that are not,
    "same_family": pairs of one family, "other_family": pairs of different families}``.
  """
  relations = {"relabelled": [], "same_inputs": [], "same_family": [], "other_family": []}
  for i, first in enumerate(tasks):
    for j in range(i + 1, len(tasks)):
      second = tasks[j]
      relations["same_family" if first.family == second.family else "other_family"].append((i, j))
      if (first.train["image"].shape == second.train["image"].shape
          and np.array_equal(first.train["image"], second.train["image"])):
        pairs = set(zip(first.train["label"].tolist(), second.train["label"].tolist()))
        bijective = len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
        relations["relabelled" if bijective else "same_inputs"].append((i, j))
  return relations


def matrix_statistics(matrix: np.ndarray, relations: dict, norms, errors) -> dict:
  """The checks on one distance matrix (see the module docstring).

  Ranks are 1-based: ``pair_rank`` among all ``T (T - 1) / 2`` pairs (1 = the closest pair),
  ``neighbour_rank`` of the copy among the first task's ``T - 1`` neighbours (1 = nearest).
  """
  upper = np.sort(_upper(matrix))
  statistics = {"num_pairs": int(upper.shape[0])}
  relabelled = []
  for i, j in relations["relabelled"]:
    neighbours = np.delete(matrix[i], i)
    relabelled.append({"pair": [i, j], "distance": float(matrix[i, j]),
                       "pair_rank": int(np.searchsorted(upper, matrix[i, j], side="right")),
                       "neighbour_rank": int(1 + np.sum(neighbours < matrix[i, j]))})
  statistics["relabelled"] = relabelled
  for name in ("same_inputs", "same_family", "other_family"):
    values = [float(matrix[i, j]) for i, j in relations[name]]
    statistics[f"{name}_median"] = float(np.median(values)) if values else float("nan")
    statistics[f"{name}_min"] = float(np.min(values)) if values else float("nan")
  statistics["relabelled_max"] = (max(r["distance"] for r in relabelled) if relabelled
                                  else float("nan"))
  rank = scipy.stats.spearmanr(norms, errors)
  statistics["norm_vs_error_spearman"] = float(rank.statistic)
  statistics["norm_vs_error_pvalue"] = float(rank.pvalue)
  return statistics


# ----------------------------------------------------------------------------------------------
# Plots.
# ----------------------------------------------------------------------------------------------


def _plot_matrices(path, matrices: dict, names) -> None:
  from matplotlib.figure import Figure

  keys = list(matrices)  # probe by probe, method by method
  figure = Figure(figsize=(6.5 * len(keys), 6.0), layout="constrained")
  axes = np.atleast_1d(figure.subplots(1, len(keys)))
  for ax, key in zip(axes, keys):
    image = ax.imshow(matrices[key], cmap="viridis", vmin=0.0)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.set_title(f"cosine distance: {key[0]} probe, {key[1]}")
    figure.colorbar(image, ax=ax, shrink=0.7)
  figure.savefig(path, dpi=100)


def _plot_dendrogram(path, matrix: np.ndarray, names, title: str) -> None:
  from matplotlib.figure import Figure

  figure = Figure(figsize=(7.0, 0.28 * len(names) + 1.5), layout="constrained")
  ax = figure.subplots()
  linkage = scipy.cluster.hierarchy.linkage(
      scipy.spatial.distance.squareform(np.asarray(matrix, np.float64), checks=False),
      method="average")
  scipy.cluster.hierarchy.dendrogram(linkage, labels=list(names), orientation="right", ax=ax,
                                     leaf_font_size=7)
  ax.set_xlabel("cosine distance (average linkage)")
  ax.set_title(title)
  figure.savefig(path, dpi=100)


# ----------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------


def _check_config(config) -> None:
  for probe in config.probes:
    if probe not in PROBES:
      raise ValueError(f"task2vec: config.probes must hold names from {PROBES}; got {probe!r}.")
  for method in config.methods:
    if method not in ("exact", "mc", "minibatch_squared"):
      raise ValueError("task2vec: config.methods must hold 'exact', 'mc' or 'minibatch_squared'; "
                       f"got {method!r}.")
  if "exact" not in config.methods:
    raise ValueError("task2vec: config.methods must include 'exact' (the reference).")


def _saved(path) -> list:
  return io.read_metrics(path) if os.path.exists(path) else []


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Embeds every task with every probe and method; writes metrics, plots and the summary.

  Args:
    config: see ``configs/task2vec.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing), per probe and
    method (``<probe>_<method>_...``): ``norm_vs_error_spearman``, ``relabelled_max`` (the largest
    distance between a task and its relabelled copy), ``same_inputs_median``,
    ``same_family_median``, ``other_family_median``; per probe and non-exact method
    ``<probe>_<method>_vs_exact_matrix_spearman`` and ``..._embedding_distance_mean``; per method
    ``<method>_random_vs_trained_matrix_spearman``; and ``trained_probe_test_accuracy``.
  """
  _check_config(config)
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  probes_path = os.path.join(workdir, PROBES_FILE)
  saved = _saved(metrics_path)
  done = {(r["probe"], r["task"], r["method"]): r for r in saved if r.get("kind") == "embedding"}
  tasks = suite.make_suite(config.tasks, seed=config.seed, num_train=config.num_train,
                           num_test=config.num_test, data_dir=config.data_dir)
  names = [task.name for task in tasks]
  probe_record = next((r for r in saved if r.get("kind") == "probe"), None)
  if probe_record is not None and os.path.exists(probes_path):
    probes = load_probes(probes_path)
  else:  # (A process whose workdir lacks the file trains the same probe again.)
    probes, probe_record = make_probes(config)
    save_probes(probes_path, probes)
  records = []
  for probe in config.probes:
    for task in tasks:
      missing = [m for m in config.methods if (probe, task.name, m) not in done]
      if not missing:
        records += [done[(probe, task.name, m)] for m in config.methods]
        continue
      key = _task_key(config, probe, task.name)
      head, (train_error, test_error) = fit_task_head(config, probes[probe], task, key)
      params = {**{k: v for k, v in probes[probe].items() if k != "Dense_0"}, "Dense_0": head}
      for index, method in enumerate(config.methods):
        if method not in missing:
          records.append(done[(probe, task.name, method)])
          continue
        hessian = embed(config, params, task, method, jax.random.fold_in(key, 2 + index))
        records.append(io.to_json_value({
            "kind": "embedding", "probe": probe, "task": task.name, "family": task.family,
            "method": method, "num_classes": task.num_classes, "embedding": hessian,
            "norm": float(np.linalg.norm(hessian)), "train_error": train_error,
            "test_error": test_error}))
        # A resume point.
        common.write_records(metrics_path, [probe_record] + records, tensorboard=config.tensorboard)
  statistics, summary, matrices = _statistics(config, tasks, records)
  summary["trained_probe_test_accuracy"] = probe_record["test_accuracy"]
  common.write_records(metrics_path, [probe_record] + records + statistics,
                       tensorboard=config.tensorboard)
  if not io.is_primary_process():
    return {}
  _plot_matrices(os.path.join(workdir, MATRIX_PLOT), matrices, names)
  reference = (config.probes[0], "exact")
  _plot_dendrogram(os.path.join(workdir, DENDROGRAM_PLOT), matrices[reference], names,
                   f"Task2Vec, {reference[0]} probe, exact Fisher")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE),
                       _summary_lines(config, tasks, probe_record, statistics, summary))
  return summary


def _statistics(config, tasks, records) -> tuple:
  """The ``matrix``, ``estimator`` and ``probes`` records, the flat summary and the matrices."""
  names = [task.name for task in tasks]
  relations = task_relations(tasks)
  by_point = {(r["probe"], r["task"], r["method"]): r for r in records}
  embeddings, matrices, statistics, summary = {}, {}, [], {}
  for probe in config.probes:
    for method in config.methods:
      points = [by_point[(probe, name, method)] for name in names]
      stacked = np.stack([np.asarray(r["embedding"], np.float32) for r in points])
      matrix = np.asarray(task2vec.distance_matrix(stacked, kind="cosine"), np.float64)
      embeddings[(probe, method)], matrices[(probe, method)] = stacked, matrix
      values = matrix_statistics(matrix, relations, [r["norm"] for r in points],
                                 [r["test_error"] for r in points])
      statistics.append(io.to_json_value({"kind": "matrix", "probe": probe, "method": method,
                                          "tasks": names, "distances": matrix, **values}))
      for name in ("norm_vs_error_spearman", "relabelled_max", "same_inputs_median",
                   "same_family_median", "other_family_median"):
        summary[f"{probe}_{method}_{name}"] = values[name]
    for method in config.methods:
      if method == "exact":
        continue
      per_task = [float(task2vec.cosine_distance(a, b)) for a, b in
                  zip(embeddings[(probe, "exact")], embeddings[(probe, method)])]
      spearman = _spearman(_upper(matrices[(probe, "exact")]), _upper(matrices[(probe, method)]))
      statistics.append({"kind": "estimator", "probe": probe, "method": method, "tasks": names,
                         "embedding_distance": per_task, "matrix_spearman": spearman})
      summary[f"{probe}_{method}_vs_exact_matrix_spearman"] = spearman
      summary[f"{probe}_{method}_vs_exact_embedding_distance_mean"] = float(np.mean(per_task))
      summary[f"{probe}_{method}_vs_exact_embedding_distance_max"] = float(np.max(per_task))
  if set(PROBES) <= set(config.probes):
    for method in config.methods:
      spearman = _spearman(_upper(matrices[("trained", method)]),
                           _upper(matrices[("random", method)]))
      statistics.append({"kind": "probes", "method": method, "matrix_spearman": spearman})
      summary[f"{method}_random_vs_trained_matrix_spearman"] = spearman
  return statistics, summary, matrices


def _verdict(holds, measured: bool = True) -> str:
  if not measured:
    return "not measured (no such pairs)"
  return "REPRODUCES" if holds else "does NOT reproduce"


def _summary_lines(config, tasks, probe_record, statistics, summary) -> list:
  names = [task.name for task in tasks]
  relations = task_relations(tasks)
  lines = [
      f"task2vec: {len(tasks)} tasks ({', '.join(names)}), 16x16x1 inputs; probe ConvNet "
      f"channels {tuple(config.channels)}, strides {tuple(config.strides)}; the trained probe "
      f"learnt {probe_record['num_classes']} classes ({', '.join(config.pretrain_tasks)}) for "
      f"{config.num_epochs} epochs: test accuracy {probe_record['test_accuracy']:.3f}; the random "
      "probe is its architecture at initialisation.",
      f"Per task: new head fitted on cached features ({config.head_epochs} epochs of Adam, lr "
      f"{config.head_learning_rate:g}, weight decay {config.head_weight_decay:g}; test error = "
      f"task difficulty), Fisher of the convolution kernels on at most {config.fisher_examples} "
      f"class-balanced training images; methods {', '.join(config.methods)} (minibatch_squared: "
      f"B = {config.minibatch_size}, the official estimator of diag(F)/B). Distance: the paper's "
      "symmetric cosine distance (science.md §6.4). Convergence: the exact Fisher is a closed-form "
      "expectation; the head (an L2-regularised softmax on fixed features: strictly convex) is "
      "fitted for a fixed number of epochs, and at its unique optimum a task and its relabelled "
      "copy have the same exact embedding, so their exact distance below measures how far from "
      "converged the heads are.",
      "Task pairs from the data: relabelled copies (same images, bijective labels): "
      + (", ".join(f"{names[i]} ~ {names[j]}" for i, j in relations["relabelled"]) or "none")
      + f"; {len(relations['same_inputs'])} pairs on the same images with different labels.",
      ""]
  matrices = [s for s in statistics if s["kind"] == "matrix"]
  for stats in matrices:
    probe, method = stats["probe"], stats["method"]
    lines.append(f"[{probe} probe, {method}] among {stats['num_pairs']} pairs:")
    for relabelled in stats["relabelled"]:
      i, j = relabelled["pair"]
      lines.append(f"  {names[i]} vs its relabelled copy {names[j]}: distance "
                   f"{relabelled['distance']:.4f}, rank {relabelled['pair_rank']} of "
                   f"{stats['num_pairs']} pairs, neighbour rank {relabelled['neighbour_rank']} "
                   f"of {len(names) - 1}")
    lines.append(f"  same images, different labels: median {stats['same_inputs_median']:.4f}, "
                 f"min {stats['same_inputs_min']:.4f} (a domain embedding of mean features gives "
                 f"0); same family: median {stats['same_family_median']:.4f}; different "
                 f"families: median {stats['other_family_median']:.4f}")
    lines.append(f"  Spearman(embedding norm, test error) = "
                 f"{stats['norm_vs_error_spearman']:+.3f} (p = {stats['norm_vs_error_pvalue']:.3f},"
                 f" {len(names)} tasks)")
  for stats in statistics:
    if stats["kind"] == "estimator":
      lines.append(f"[{stats['probe']} probe] {stats['method']} against exact: cosine distance "
                   f"between the two embeddings of a task: mean "
                   f"{np.mean(stats['embedding_distance']):.4f}, max "
                   f"{np.max(stats['embedding_distance']):.4f}; Spearman of the matrices' upper "
                   f"triangles {stats['matrix_spearman']:+.3f}")
    if stats["kind"] == "probes":
      lines.append(f"[{stats['method']}] random probe against trained probe: Spearman of the "
                   f"matrices' upper triangles {stats['matrix_spearman']:+.3f}")
  lines += ["", "Claims (Task2Vec, Achille et al. 2019) at this size:"]
  for stats in matrices:
    probe, method = stats["probe"], stats["method"]
    copies_nearest = bool(stats["relabelled"]) and all(
        r["neighbour_rank"] == 1 for r in stats["relabelled"])
    far = stats["same_inputs_min"] > stats["relabelled_max"]
    taxonomy = stats["same_family_median"] < stats["other_family_median"]
    norm = stats["norm_vs_error_spearman"] > 0 and stats["norm_vs_error_pvalue"] < 0.05
    lines.append(
        f"  [{probe}, {method}] a relabelled copy is its task's nearest neighbour: "
        f"{_verdict(copies_nearest, bool(stats['relabelled']))}; every same-image pair with "
        f"different labels is farther than every relabelled copy: "
        f"{_verdict(far, not np.isnan(stats['same_inputs_min'] + stats['relabelled_max']))}; "
        f"one family closer than across families (taxonomy): "
        f"{_verdict(taxonomy, not np.isnan(stats['other_family_median']))}; norm correlates "
        f"positively with difficulty "
        f"(p < 0.05): {_verdict(norm)}.")
  for stats in statistics:
    if stats["kind"] == "estimator":
      same = stats["matrix_spearman"] >= 0.9
      lines.append(f"  [{stats['probe']}] the official {stats['method']} estimator "
                   f"{'gives' if same else 'does NOT give'} the exact Fisher's matrix (Spearman "
                   f"{stats['matrix_spearman']:+.3f}; >= 0.9 counted as the same ranking; it "
                   "estimates diag(F)/B, and the cosine distance is blind to that scale).")
    if stats["kind"] == "probes":
      lines.append(f"  [{stats['method']}] the random probe's matrix against the trained one's: "
                   f"Spearman {stats['matrix_spearman']:+.3f}; compare the random probe's checks "
                   "above with the trained probe's.")
  return lines
