"""Information in the weights during training: the trace of the Fisher, epoch by epoch.

The experiment of the lecture's "information plot" (Achille, Rovere & Soatto 2019, "Critical
learning periods in deep networks", ICLR; science.md §1.3): train a CNN with SGD and, at every
epoch, measure the trace of the Fisher information of the weights, both the true Fisher (labels
from the model, an exact expectation) and the empirical Fisher (the data labels), on a fixed
class-balanced probe set from the training split. The trace rises quickly in the first epochs, as
the network memorises, then falls as it consolidates. Part of the fall is the saturation of the
softmax on fitted examples (science.md §1.3, "Confound to report").

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one record per epoch, epoch 0 being the
initialisation; with ``fisher.per_layer``, the default, each layer's trace too), ``info_plot.png``
(the Fisher traces, the true Fisher's per-layer traces and accuracy against epoch), ``summary.txt``
and ``checkpoints/``.
"""

import os
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import fisher
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import parallel
from infojax import train
from infojax.experiments import common

PLOT_FILE = "info_plot.png"
SUMMARY_FILE = "summary.txt"


def balanced_probe_indices(labels: np.ndarray, *, per_class: int, num_classes: int,
                           seed: int) -> np.ndarray:
  """``per_class`` example indices of each class, drawn without replacement with ``seed``.

  Args:
    labels: int ``(N,)`` labels in ``[0, num_classes)``.
    per_class: examples per class (positive).
    num_classes: the number of classes; each must have at least ``per_class`` examples.
    seed: fixes the draw.

  Returns:
    int ``(num_classes * per_class,)`` indices, grouped by class.
  """
  labels = np.asarray(labels)
  if per_class < 1:
    raise ValueError(f"balanced_probe_indices: per_class must be positive; got {per_class}.")
  rng = np.random.default_rng(seed)
  indices = []
  for label in range(num_classes):
    members = np.flatnonzero(labels == label)
    if members.size < per_class:
      raise ValueError(
          f"balanced_probe_indices: class {label} has {members.size} examples, fewer than "
          f"per_class={per_class}.")
    indices.append(np.sort(rng.choice(members, size=per_class, replace=False)))
  return np.concatenate(indices)


def layer_traces(per_leaf_trace) -> dict:
  """Per-layer traces ``{layer: scalar}`` from `infojax.fisher.trace`'s ``per_leaf=True`` output.

  A layer is a top-level entry of the parameter pytree (a flax module such as ``Conv_0``: its
  kernel and bias together); a params pytree that is a single array is one layer, ``"params"``.
  """
  if not isinstance(per_leaf_trace, dict):
    return {"params": sum(jax.tree.leaves(per_leaf_trace))}
  return {str(name): sum(jax.tree.leaves(subtree)) for name, subtree in per_leaf_trace.items()}


def fisher_trace_hook(apply_fn: Callable, probe: tuple, *,
                      kinds: Sequence[str] = ("empirical", "true"), likelihood=None,
                      method: str = "auto", chunk_size=None, mesh=None,
                      per_layer: bool = False) -> train.loop.Hook:
  """A `fit` hook measuring the trace of the Fisher on a fixed probe set, exactly.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    probe: ``(inputs, labels)``, the probe set (e.g. from `balanced_probe_indices`).
    kinds: Fisher kinds to measure, ``"empirical"`` and/or ``"true"`` (see `infojax.fisher.trace`).
    likelihood: default `infojax.likelihoods.categorical()`.
    method, chunk_size: as in `infojax.fisher.trace`.
    mesh: a data mesh to spread the probe set over (sharded over its devices when they divide the
      probe size, else replicated); the same full probe on every process.
    per_layer: also record each layer's trace (`layer_traces`) as
      ``"fisher_trace_<kind>/<layer>"``; they sum to the total. No extra cost: the total is the
      sum of the per-leaf traces either way.

  Returns:
    ``hook(epoch, state) -> {"fisher_trace_<kind>": scalar, ...}``, one jitted program for all
    kinds.

  Cost per call: for P probe examples and C classes, about P (empirical) plus P*C (true)
  per-example gradient norms.
  """
  likelihood = likelihoods.categorical() if likelihood is None else likelihood
  if not kinds or any(kind not in ("empirical", "true") for kind in kinds):
    raise ValueError(f"fisher_trace_hook: kinds must be 'empirical' and/or 'true'; got {kinds}.")
  probe = tuple(probe)
  if mesh is None:
    probe = jax.device_put(probe)
  elif len(probe[0]) % mesh.shape[parallel.DATA_AXIS] == 0:
    probe = parallel.put_sharded(probe, mesh)
  else:
    probe = parallel.replicate(probe, mesh)

  @jax.jit
  def traces(params, probe):
    measured = {}
    for kind in kinds:
      layers = layer_traces(fisher.trace(apply_fn, params, probe, likelihood=likelihood,
                                         kind=kind, method=method, chunk_size=chunk_size,
                                         per_leaf=True))
      measured[f"fisher_trace_{kind}"] = sum(layers.values())
      if per_layer:
        measured.update({f"fisher_trace_{kind}/{name}": value for name, value in layers.items()})
    return measured

  def hook(epoch, state):
    del epoch
    return traces(state.params, probe)

  return hook


def _probe_set(arrays, *, per_class, num_classes, seed, per_process):
  """The class-balanced probe set ``(inputs, labels)``, the same on every process.

  With ``per_process`` (each process holds its share of the split), each process draws
  ``per_class / process_count`` examples per class from its share and the draws are pooled.
  """
  processes = jax.process_count() if per_process else 1
  if per_class % processes:
    raise ValueError(f"info_plot: fisher.probe_per_class ({per_class}) must be a multiple of the "
                     f"number of processes ({processes}) with process_local_data.")
  index = balanced_probe_indices(arrays["label"], per_class=per_class // processes,
                                 num_classes=num_classes, seed=seed)
  probe = (arrays["image"][index], arrays["label"][index])
  return parallel.process_concatenate(probe) if per_process else probe


def _summary(history, kinds):
  last = history[-1]
  summary = {"epochs": last["epoch"]}
  summary.update({k: last[k] for k in ("train_loss", "train_accuracy", "test_loss",
                                       "test_accuracy") if k in last})
  for kind in kinds:
    name = f"fisher_trace_{kind}"
    epochs = [r["epoch"] for r in history]
    values = [r[name] for r in history]
    peak = int(np.argmax(values))
    summary.update({f"{name}_initial": values[0], f"{name}_peak": values[peak],
                    f"{name}_peak_epoch": epochs[peak], f"{name}_final": values[-1]})
  return summary


def _summary_lines(config, summary, kinds):
  lines = [f"info_plot: {config.model} on {config.dataset}, {summary['epochs']} epochs, "
           f"seed {config.seed}.",
           f"final: train loss {summary['train_loss']:.4g}, train accuracy "
           f"{summary['train_accuracy']:.4f}, test loss {summary['test_loss']:.4g}, "
           f"test accuracy {summary['test_accuracy']:.4f}."]
  for kind in kinds:
    name = f"fisher_trace_{kind}"
    lines.append(
        f"{kind} Fisher trace on the probe set: {summary[name + '_initial']:.4g} at "
        f"initialisation, peak {summary[name + '_peak']:.4g} at epoch "
        f"{summary[name + '_peak_epoch']}, {summary[name + '_final']:.4g} at the end.")
  return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, measuring the Fisher trace every epoch; resumes if ``workdir`` holds the same run.

  Args:
    config: see ``configs/info_plot.py``.
    workdir: the output directory.

  Returns:
    The summary (on process 0; ``{}`` on the others, which write nothing): final ``train_loss``,
    ``train_accuracy``, ``test_loss``, ``test_accuracy``, and for each Fisher kind its trace at
    initialisation, its peak (and the epoch) and its final value.
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  info = data.dataset_info(config.dataset, data_dir=config.data_dir)
  # By default every process holds the whole splits and places only its devices' rows of each
  # batch, so statistics, probe set and batches, hence the results, do not depend on the number
  # of processes or devices. With process_local_data, each process reads only its share
  # (tfds.split_for_jax_process); statistics and the probe set are then pooled over processes.
  per_process = config.process_local_data
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, process_local=per_process)

  model = models.get_model(config.model, num_classes=info.num_classes, **config.model_kwargs)
  init_key, run_key = jax.random.split(jax.random.key(config.seed))
  variables = jax.jit(model.init)(init_key, splits["train"]["image"][:1])
  if set(variables) != {"params"}:
    raise ValueError(
        f"info_plot: model {config.model!r} has non-trainable collections "
        f"{sorted(set(variables) - {'params'})} (e.g. BatchNorm statistics); the per-example "
        "Fisher needs a model that treats examples independently. Choose a variant without them.")
  apply_fn = models.make_apply_fn(model)

  num_train = int(parallel.process_sum(len(splits["train"]["label"])) if per_process
                  else len(splits["train"]["label"]))
  if config.batch_size > num_train:
    raise ValueError(f"info_plot: batch_size {config.batch_size} exceeds the {num_train} training "
                     "examples.")
  optimizer = train.make_optimizer(config.optimizer, steps_per_epoch=num_train // config.batch_size,
                                   num_epochs=config.num_epochs)
  state = train.init_state(variables["params"], optimizer, key=run_key)
  probe = _probe_set(splits["train"], per_class=config.fisher.probe_per_class,
                     num_classes=info.num_classes, seed=config.seed, per_process=per_process)
  kinds = tuple(config.fisher.kinds)
  mesh = parallel.data_mesh()
  hook = fisher_trace_hook(apply_fn, probe, kinds=kinds, method=config.fisher.method,
                           chunk_size=config.fisher.chunk_size, mesh=mesh,
                           per_layer=config.fisher.per_layer)

  result = train.fit(
      train.classification(apply_fn), optimizer, state, train_data=splits["train"],
      batch_size=config.batch_size, seed=config.seed, num_epochs=config.num_epochs,
      eval_data={"test": splits["test"]}, eval_batch_size=config.eval_batch_size, hooks=[hook],
      workdir=workdir, checkpoint_every=config.checkpoint_every, mesh=mesh,
      data_per_process=per_process, tensorboard=config.tensorboard)

  if not io.is_primary_process():
    return {}
  history = result.history
  summary = _summary(history, kinds)
  panels = {"Fisher trace (probe set)": [f"fisher_trace_{kind}" for kind in kinds]}
  labels = {"fisher_trace_empirical": "empirical Fisher", "fisher_trace_true": "true Fisher",
            "train_accuracy": "train (epoch mean)", "test_accuracy": "test"}
  if config.fisher.per_layer:
    # The second panel: per-layer traces of the true Fisher (else of the one kind measured).
    kind = "true" if "true" in kinds else kinds[0]
    layers = sorted(name for name in history[0] if name.startswith(f"fisher_trace_{kind}/"))
    panels[f"{kind} Fisher trace per layer"] = layers
    labels.update({name: name.split("/", 1)[1] for name in layers})
  panels["accuracy"] = ["train_accuracy", "test_accuracy"]
  io.plot_metrics(
      history, os.path.join(workdir, PLOT_FILE), panels=panels,
      log_scale=[name for name in panels if name != "accuracy"], labels=labels,
      title=f"Information in the weights: {config.model} on {config.dataset}")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), _summary_lines(config, summary, kinds))
  return summary
