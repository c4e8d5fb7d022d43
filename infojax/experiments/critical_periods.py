"""Critical learning periods: deficit-removal and sensitivity sweeps, with per-layer Fisher traces.

Achille, Rovere & Soatto (2019), "Critical Learning Periods in Deep Networks", ICLR (arXiv
1711.08856; science.md §1, §15 C.24-C.26). A deficit early in training (blurred images) is claimed
to impair the network for good, while the same deficit late does no harm, and deficits that keep
the low-level statistics (a vertical flip, permuted labels) to leave no lasting mark.

Protocol (every deficit of ``config.deficits``, every seed):

* removal sweep: the deficit for the first ``T`` epochs (``T`` in ``removal_epochs``; ``T = 0``
  is the clean run), then ``clean_epochs`` clean epochs;
* sensitivity sweep: a window of ``window_length`` deficit epochs starting at ``t0`` (in
  ``window_onsets``), then ``clean_epochs`` clean epochs;
* the learning rate decays by ``decay_factor`` per epoch from the start and is not reset when the
  deficit ends (the reconstructions' reading of the paper); the sweep's program runs
  ``num_epochs`` epochs and a run of ``stop + clean_epochs <= num_epochs`` epochs stops updating
  there, so every run of a deficit advances in lockstep and the whole sweep (runs x seeds) is one
  vmapped program (`infojax.dynamics.deficits`);
* every epoch: the clean test accuracy and the exact true-Fisher trace per layer on a fixed
  class-balanced probe set of clean training images.

Outputs in the workdir: ``config.json``; ``metrics.jsonl`` with one ``"epoch"`` record per run and
epoch (the run's ``deficit``, ``sweep``, ``start``, ``stop``, ``end``, ``seed``; ``test_accuracy``,
``fisher_trace_true`` and ``fisher_trace_true/<layer>``) and one ``"final"`` record per run;
``critical_periods.png`` (final accuracy against the removal epoch and against the window onset,
mean and standard deviation over seeds, and the per-layer Fisher of the blur runs over the clean
run's); ``summary.txt``; ``checkpoints/<deficit>/`` (orbax, every ``checkpoint_every`` epochs). A
rerun resumes at the deficit and epoch it was in, with the same metrics as an uninterrupted run.
"""

import os
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from infojax import config as config_lib
from infojax import fisher
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import parallel
from infojax import train
from infojax.dynamics import deficits
from infojax.experiments import info_plot
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "critical_periods.png"
SUMMARY_FILE = "summary.txt"


class Runs(NamedTuple):
  """The runs of one deficit's sweep, one entry per run (numpy arrays of length R)."""
  sweep: np.ndarray      # "removal" or "window"
  start: np.ndarray      # first deficit epoch
  stop: np.ndarray       # first clean epoch after the deficit
  end: np.ndarray        # the run's length in epochs: stop + clean_epochs
  seed: np.ndarray


def sweep_runs(config) -> Runs:
  """Every (sweep point, seed) run of one deficit, removal sweep first, validated.

  A run's deficit must end by ``num_epochs - clean_epochs``, so that its ``clean_epochs`` clean
  epochs fit in the ``num_epochs`` that the sweep's program runs.
  """
  _check_config(config)
  horizon = config.num_epochs - config.clean_epochs
  removal = deficits.removal(list(config.removal_epochs), num_epochs=horizon)
  rows = [("removal", int(s), int(e)) for s, e in zip(removal.start, removal.stop)]
  if len(config.window_onsets):
    window = deficits.window(list(config.window_onsets), config.window_length,
                             num_epochs=horizon)
    rows += [("window", int(s), int(e)) for s, e in zip(window.start, window.stop)]
  runs = [(sweep, start, stop, stop + config.clean_epochs, seed)
          for sweep, start, stop in rows for seed in config.seeds]
  return Runs(*(np.array(column) for column in zip(*runs)))


def _check_config(config) -> None:
  unknown = sorted(set(config.deficits) - set(deficits.DEFICITS))
  if unknown or not config.deficits:
    raise ValueError(f"critical_periods: deficits must be a non-empty subset of "
                     f"{deficits.DEFICITS}; got {tuple(config.deficits)}.")
  if not config.seeds:
    raise ValueError("critical_periods: seeds must name at least one seed.")
  if isinstance(config.clean_epochs, bool) or not 1 <= config.clean_epochs < config.num_epochs:
    raise ValueError(f"critical_periods: clean_epochs must be a positive integer below "
                     f"num_epochs ({config.num_epochs}); got {config.clean_epochs!r}.")


def _deficit_objective(apply_fn, deficit):
  """The classification objective on batches that carry the step's ``active`` and ``train``."""
  base = train.classification(apply_fn)

  def loss(params, model_state, batch, key):
    images, labels = deficits.apply(deficit, batch["image"], batch["label"], batch["active"],
                                    key=key)
    return base.loss(params, model_state, {"image": images, "label": labels}, key)

  return train.loop.Objective(loss=loss, evaluate=base.evaluate)


def _make_train_epoch(apply_fn, deficit, optimizer, num_train, batch_size):
  """``train_epoch(states, epoch, starts, stops, ends, seeds, images, labels)``: one epoch of every
  run (leading axis R of ``states`` and of the run arrays), vmapped; ``images``, ``labels`` the
  whole training split."""
  step = train.make_train_step(_deficit_objective(apply_fn, deficit), optimizer)
  steps = num_train // batch_size

  def one_run(state, epoch, start, stop, end, seed, train_images, train_labels):
    order = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), epoch), num_train)
    index = order[:steps * batch_size].reshape(steps, batch_size)
    active = deficits.is_active(deficits.Window(start, stop), epoch)
    batches = {"image": train_images[index], "label": train_labels[index],
               "active": jnp.broadcast_to(active, (steps,))}

    def scanned(state, batch):
      new_state, metrics = step(state, batch)
      running = epoch < end
      state = jax.tree.map(lambda new, old: jnp.where(running, new, old), new_state, state)
      return state, metrics["loss"]

    return jax.lax.scan(scanned, state, batches)

  return jax.jit(jax.vmap(one_run, in_axes=(0, None, 0, 0, 0, 0, None, None)))


def _make_measure(apply_fn):
  """``measure(params, probe, test_images, test_labels) -> {test_accuracy, fisher_trace_true,
  fisher_trace_true/<layer>}``, vmapped over the runs of ``params``; the Fisher is exact (the
  true Fisher) on the clean probe set ``(inputs, labels)``."""
  likelihood = likelihoods.categorical()

  def one_run(params, probe, test_images, test_labels):
    logits = apply_fn(params, test_images)
    accuracy = jnp.mean((jnp.argmax(logits, -1) == test_labels).astype(jnp.float32))
    layers = info_plot.layer_traces(fisher.trace(apply_fn, params, probe, likelihood=likelihood,
                                                 kind="true", per_leaf=True))
    measured = {"test_accuracy": accuracy, "fisher_trace_true": sum(layers.values())}
    measured.update({f"fisher_trace_true/{name}": value for name, value in layers.items()})
    return measured

  return jax.jit(jax.vmap(one_run, in_axes=(0, None, None, None)))


def _records(deficit_kind, runs, epoch, measured, losses=None):
  measured = jax.device_get(measured)
  records = []
  for r in range(len(runs.seed)):
    if epoch > runs.end[r]:
      continue
    record = {"kind": "epoch", "deficit": deficit_kind, "sweep": str(runs.sweep[r]),
              "start": int(runs.start[r]), "stop": int(runs.stop[r]), "end": int(runs.end[r]),
              "seed": int(runs.seed[r]), "epoch": int(epoch)}
    record.update({name: float(value[r]) for name, value in measured.items()})
    if losses is not None:
      record["train_loss"] = float(np.mean(losses[r]))
    records.append(record)
  return records


class _Setup(NamedTuple):
  """What every deficit's sweep shares: built once in `run`, the measuring program compiled once.

  The arrays live replicated on the global mesh: every process computes every run (small runs),
  and orbax saves global arrays in multi-process jobs.
  """
  apply_fn: object
  params0: dict          # seed -> initial parameters (host arrays)
  optimizer: object
  measure: object        # `_make_measure`'s jitted program
  mesh: object
  train_split: tuple     # (images, labels), replicated
  test_split: tuple
  probe: tuple


def _run_deficit(config, kind, runs, setup, workdir, records):
  """Trains every run of one deficit, resuming from its last checkpoint; returns its records."""
  apply_fn, params0, optimizer, measure, mesh, train_split, test_split, probe = setup
  num_epochs = config.num_epochs
  deficit = deficits.make(kind, image_shape=train_split[0].shape[1:],
                          num_classes=config.num_classes, low_size=config.blur_low_size,
                          key=jax.random.key(config.deficit_seed))
  train_epoch = _make_train_epoch(apply_fn, deficit, optimizer, train_split[1].shape[0],
                                  config.batch_size)
  params = jax.tree.map(lambda *leaves: np.stack(leaves), *[params0[int(s)] for s in runs.seed])
  keys = jax.vmap(jax.random.key)(jnp.asarray(runs.seed))
  state = parallel.replicate(
      jax.vmap(lambda p, k: train.init_state(p, optimizer, key=k))(params, keys), mesh)
  directory = os.path.join(workdir, "checkpoints", kind)
  with train.checkpoint.Checkpointer(directory, max_to_keep=1) as checkpointer:
    saved = checkpointer.latest_epoch()
    done = [r for r in records if r["deficit"] == kind and r["kind"] == "epoch"]
    if saved is not None:
      state = checkpointer.restore(saved, state)
      first = saved + 1
      done = [r for r in done if r["epoch"] <= saved]
    else:
      first = 1
      done = _records(kind, runs, 0, measure(state.params, probe, *test_split))
    arrays = parallel.replicate(tuple(np.asarray(a, np.int32) for a in (
        runs.start, runs.stop, runs.end, runs.seed)), mesh)
    # Progress on stderr (process 0; tqdm hides it when stderr is not a terminal).
    for epoch in tqdm.trange(first, num_epochs + 1, desc=f"{kind} sweep", file=sys.stderr,
                             leave=False, disable=None if io.is_primary_process() else True):
      state, losses = train_epoch(state, np.int32(epoch - 1), *arrays, *train_split)
      losses = np.asarray(losses)
      running = runs.end >= epoch
      if not np.all(np.isfinite(losses[running])):
        raise FloatingPointError(
            f"critical_periods: a non-finite training loss in epoch {epoch} of the {kind} "
            f"sweep (runs {np.flatnonzero(running & ~np.isfinite(losses).all(1)).tolist()}); "
            f"the last good checkpoint (epoch {checkpointer.latest_epoch()}) is kept.")
      done += _records(kind, runs, epoch, measure(state.params, probe, *test_split), losses)
      if epoch % config.checkpoint_every == 0 or epoch == num_epochs:
        # Metrics first: a run killed in between resumes from the older checkpoint and redoes
        # the epochs after it, so no metric is lost or doubled.
        others = [r for r in records if r["deficit"] != kind]
        common.write_records(os.path.join(workdir, METRICS_FILE), others + done,
                             tensorboard=config.tensorboard)
        checkpointer.save(epoch, state)
  finals = [dict(r, kind="final") for r in done if r["epoch"] == r["end"]]
  return done + finals


def _final_table(records, kind, sweep):
  """``{x: (mean, std, n)}`` of the final test accuracy over seeds; x the removal epoch (stop)
  for the removal sweep, the onset (start) for the window sweep."""
  table = {}
  for r in records:
    if r["kind"] == "final" and r["deficit"] == kind and r["sweep"] == sweep:
      table.setdefault(r["stop"] if sweep == "removal" else r["start"], []).append(
          r["test_accuracy"])
  return {x: (float(np.mean(v)), float(np.std(v)), len(v)) for x, v in sorted(table.items())}


def _summarise(config, records):
  summary, lines = {}, [
      f"critical_periods: {config.model} on {config.dataset}, deficits {list(config.deficits)}, "
      f"seeds {list(config.seeds)}; {config.clean_epochs} clean epochs after every deficit; lr "
      f"x{config.optimizer.decay_factor} per epoch, not reset. Final clean test accuracy, mean "
      "(std) over seeds."]
  baseline = None
  for kind in config.deficits:
    removal = _final_table(records, kind, "removal")
    window = _final_table(records, kind, "window")
    if 0 in removal:
      baseline = removal[0] if baseline is None else baseline
    lines.append(f"{kind}, removal sweep (deficit epochs -> accuracy): " + ", ".join(
        f"{x}: {m:.4f} ({s:.4f})" for x, (m, s, _) in removal.items()))
    if window:
      lines.append(f"{kind}, {config.window_length}-epoch window (onset -> accuracy): " + ", ".join(
          f"{x}: {m:.4f} ({s:.4f})" for x, (m, s, _) in window.items()))
    if baseline is not None:
      last = max(removal)
      drop = baseline[0] - removal[last][0]
      spread = np.hypot(baseline[1], removal[last][1])
      lasting = bool(drop > max(2.0 * spread, config.lasting_deficit_threshold))
      summary[f"{kind}_removal_drop"] = drop
      summary[f"{kind}_lasting"] = float(lasting)
      verdict = "a lasting deficit" if lasting else "no lasting deficit"
      lines.append(
          f"  {kind}: {last} deficit epochs cost {drop:+.4f} accuracy against the clean run "
          f"({baseline[0]:.4f}): {verdict} (criterion: a drop above both twice the combined "
          f"seed spread, {2 * spread:.4f}, and {config.lasting_deficit_threshold}).")
      if window:
        drops = {x: baseline[0] - m for x, (m, _, _) in window.items()}
        summary[f"{kind}_window_drop_earliest"] = drops[min(drops)]
        summary[f"{kind}_window_drop_latest"] = drops[max(drops)]
        lines.append(f"  {kind}: the window costs {drops[min(drops)]:+.4f} at onset "
                     f"{min(drops)} and {drops[max(drops)]:+.4f} at onset {max(drops)}.")
  if baseline is not None:
    summary["clean_accuracy"] = baseline[0]
  lines.append(
      "The paper's claims (science.md §1.1): blur has a critical period (late removal leaves a "
      "permanent loss; early windows hurt, late ones do not); vertical flip and label "
      "permutation leave no lasting deficit. Read each deficit's verdict above against them; "
      "the lecture's sizes are CIFAR-10 All-CNN runs of 200+ epochs (configs/critical_periods.py"
      ":cifar10), this is the CPU-size run.")
  return summary, lines


def _plot(config, records, path):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 3)
  for kind in config.deficits:
    for ax, sweep in zip(axes[:2], ("removal", "window")):
      table = _final_table(records, kind, sweep)
      if table:
        xs = list(table)
        ax.errorbar(xs, [table[x][0] for x in xs], yerr=[table[x][1] for x in xs], marker="o",
                    capsize=3, label=kind)
  axes[0].set(xlabel="deficit epochs before removal", ylabel="final clean test accuracy",
              title="removal sweep")
  axes[1].set(xlabel=f"onset of a {config.window_length}-epoch deficit",
              ylabel="final clean test accuracy", title="sensitivity sweep")
  kind = "blur" if "blur" in config.deficits else config.deficits[0]
  layers = sorted(k for k in records[0] if k.startswith("fisher_trace_true/"))
  seed = config.seeds[0]
  for r_stop, style in ((0, "-"), (max(config.removal_epochs), "--")):
    run = [r for r in records if r["kind"] == "epoch" and r["deficit"] == kind
           and r["sweep"] == "removal" and r["stop"] == r_stop and r["seed"] == seed]
    for i, layer in enumerate(layers):
      axes[2].plot([r["epoch"] for r in run], [r[layer] for r in run], style, color=f"C{i}",
                   label=layer.split("/", 1)[1] if r_stop == 0 else None)
  axes[2].set(xlabel="epoch", ylabel="true Fisher trace per layer", yscale="log",
              title=f"clean (solid) vs {max(config.removal_epochs)} {kind} epochs (dashed)")
  for ax in axes:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  figure.suptitle(f"Critical learning periods: {config.model} on {config.dataset}")
  figure.savefig(path, dpi=120)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every deficit's removal and sensitivity sweeps; resumes from ``workdir``.

  Args:
    config: see ``configs/critical_periods.py``.
    workdir: the output directory.

  Returns:
    The summary (process 0; ``{}`` elsewhere): ``clean_accuracy`` and, per deficit,
    ``<deficit>_removal_drop`` (clean minus the longest removal's final accuracy),
    ``<deficit>_lasting`` (1.0 when that drop passes the stated criterion) and the window's
    drops at the earliest and latest onsets.
  """
  runs = sweep_runs(config)
  workdir = config_lib.prepare_workdir(config, workdir)
  num_epochs = config.num_epochs
  splits = common.load_splits(config.dataset, data_dir=config.data_dir)
  if splits["train"]["image"].ndim != 4:
    raise ValueError(f"critical_periods: dataset {config.dataset!r} must hold images "
                     f"(N, H, W, C); got shape {splits['train']['image'].shape}.")
  if config.batch_size > len(splits["train"]["label"]):
    raise ValueError(f"critical_periods: batch_size {config.batch_size} exceeds the "
                     f"{len(splits['train']['label'])} training examples.")
  model = models.get_model(config.model, num_classes=config.num_classes, **config.model_kwargs)
  init = jax.jit(model.init)
  params0 = {int(seed): jax.device_get(
      init(jax.random.key(int(seed)), splits["train"]["image"][:1])["params"])
             for seed in config.seeds}
  apply_fn = models.make_apply_fn(model)
  steps = len(splits["train"]["label"]) // config.batch_size
  optimizer = train.make_optimizer(config.optimizer, steps_per_epoch=steps, num_epochs=num_epochs)
  index = info_plot.balanced_probe_indices(splits["train"]["label"],
                                           per_class=config.probe_per_class,
                                           num_classes=config.num_classes, seed=0)
  probe = (splits["train"]["image"][index], splits["train"]["label"][index])
  mesh = parallel.data_mesh()
  setup = _Setup(apply_fn, params0, optimizer, _make_measure(apply_fn), mesh,
                 *parallel.replicate(((splits["train"]["image"], splits["train"]["label"]),
                                      (splits["test"]["image"], splits["test"]["label"]), probe),
                                     mesh))

  path = os.path.join(workdir, METRICS_FILE)
  records = io.read_metrics(path) if os.path.exists(path) else []
  for kind in config.deficits:
    finished = {(r["sweep"], r["start"], r["stop"], r["seed"]) for r in records
                if r["kind"] == "final" and r["deficit"] == kind}
    if len(finished) == len(runs.seed):
      continue
    others = [r for r in records if r["deficit"] != kind]
    records = others + _run_deficit(config, kind, runs, setup, workdir, records)
    common.write_records(path, records, tensorboard=config.tensorboard)

  if not io.is_primary_process():
    return {}
  summary, lines = _summarise(config, records)
  _plot(config, records, os.path.join(workdir, PLOT_FILE))
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
