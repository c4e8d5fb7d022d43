"""Choosing an expert for a new task by the Task2Vec asymmetric distance.

Achille et al. (2019), "Task2Vec: Task Embedding for Meta-Learning", ICCV (arXiv 1902.03545),
Sec. 5 (science.md §6.4-6.5): with a bank of experts, one network trained per source task, choose
for a target task the expert whose source embedding minimises
``d(t_a -> t_b) = d_sym(t_a, t_b) - alpha d_sym(t_a, t_0)`` (``t_0`` the trivial embedding); the
paper reports that the chosen expert's error after fine-tuning is close to the best expert's in the
bank, at a fraction of the cost of trying them all, the gain largest with few samples, and
``alpha = 0.15`` best. (The paper adds MODEL2VEC, a learned per-model bias; not here.) Protocol, on
tasks of the offline suite (`infojax.tasks.suite`):

1. The bank: an MLP per source task trained from one initialisation ``w0`` (shared with
   `task_transfer`: `task_transfer.setup`), and a probe (the MLP trained on ``probe_task``) whose
   exact Task2Vec embeddings (head re-fitted per task) place every task.
2. For each target task and each few-shot size ``n`` in ``target_num_train``: the target's
   embedding from its ``n`` examples; every expert (the trunk, with ``w0``'s head for the target)
   fine-tuned on them (`infojax.tasks.experts.make_fine_tune`, ``fine_tune_steps`` steps, all
   experts at once); its test error at the end. The expert trained on the target task itself is
   left out of the bank (``exclude_target``).
3. The choice for each ``alpha`` in ``alphas`` (``0``: the symmetric distance) by
   `infojax.tasks.experts.select_expert`; its gap to the best expert and its rank
   (`infojax.tasks.experts.selection_gap`), against an expert chosen at random
   (`infojax.tasks.experts.random_selection_gap`, the expectation) and against training from
   scratch.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"task"`` records; one ``"target"``
record per target and few-shot size with every expert's error and distances, the choices, gaps and
ranks), ``expert_selection.png`` (per target, the experts' errors against their distance, the
choices marked) and ``summary.txt``. A rerun in the same workdir resumes: the (target, size) points
already in ``metrics.jsonl`` are kept and not recomputed (the bank and the probe are retrained:
deterministic).
"""

import os

import jax
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import io
from infojax.experiments import common
from infojax.experiments import task_transfer
from infojax.tasks import experts
from infojax.tasks import suite

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "expert_selection.png"


def _alpha_name(alpha: float) -> str:
  return f"alpha{alpha:g}"


def _plot(path, points, alphas, title):
  from matplotlib.figure import Figure

  targets = list(dict.fromkeys(p["target"] for p in points))
  sizes = sorted({p["num_train"] for p in points})
  figure = Figure(figsize=(4.0 * len(sizes), 3.2 * len(targets)), layout="constrained")
  grid = np.array(figure.subplots(len(targets), len(sizes), squeeze=False))
  for point in points:
    axis = grid[targets.index(point["target"]), sizes.index(point["num_train"])]
    for index, alpha in enumerate(alphas):
      name = _alpha_name(alpha)
      distances = np.array(point[f"{name}_distances"])
      axis.scatter(distances, point["errors"], s=14, color=f"C{index}", label=f"alpha={alpha:g}")
      chosen = point[f"{name}_chosen"]
      axis.scatter([distances[chosen]], [point["errors"][chosen]], s=90, marker="*",
                   color=f"C{index}")
    axis.axhline(point["scratch_error"], color="gray", linestyle=":", label="from scratch")
    axis.set_title(f"{point['target']} (n={point['num_train']})", fontsize="small")
    axis.set_xlabel("asymmetric distance expert -> target")
    axis.set_ylabel("test error after fine-tuning")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="xx-small")
  figure.suptitle(title)
  figure.savefig(path, dpi=100)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Selects an expert for every target and few-shot size, and scores the choice.

  Args:
    config: see ``configs/expert_selection.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): for each
    few-shot size ``n`` and ``alpha``: ``n<n>_alpha<alpha>_gap`` and ``..._rank`` (means over the
    targets), ``..._best_fraction`` (targets where a best expert was chosen); ``n<n>_random_gap``
    and ``n<n>_random_rank`` (choosing at random, expected), ``n<n>_best_error`` (the best expert's
    mean error), ``n<n>_scratch_error`` and ``n<n>_mean_error`` (the bank's mean).
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  done = {(r["target"], r["num_train"]): r for r in task_transfer.saved_records(metrics_path)
          if r.get("kind") == "target"}
  hidden = tuple(config.hidden_sizes)
  alphas = [float(a) for a in config.alphas]
  sources = suite.make_suite(config.source_tasks, seed=config.data_seed,
                             num_train=config.num_train, num_test=config.num_test)
  initial, _, expert_params, source_embeddings, probe_params = task_transfer.setup(config, sources)
  records = [{"kind": "task", "task": t.name, "num_classes": t.num_classes,
              "test_accuracy": task_transfer.accuracy(hidden, expert_params[t.name], t.test)}
             for t in sources]
  points = []
  for target_index, target_name in enumerate(config.target_tasks):
    for size in config.target_num_train:
      if (target_name, size) in done:
        points.append(done[(target_name, size)])
        records.append(points[-1])
        continue
      points.append(_target_point(config, target_index, target_name, int(size), sources,
                                  initial, expert_params, source_embeddings, probe_params,
                                  alphas))
      records.append(points[-1])
      # Atomic: a resume point.
      common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  summary = {}
  for size in config.target_num_train:
    group = [p for p in points if p["num_train"] == size]
    prefix = f"n{size}_"
    for alpha in alphas:
      name = _alpha_name(alpha)
      summary[prefix + name + "_gap"] = float(np.mean([p[f"{name}_gap"] for p in group]))
      summary[prefix + name + "_rank"] = float(np.mean([p[f"{name}_rank"] for p in group]))
      summary[prefix + name + "_best_fraction"] = float(np.mean([p[f"{name}_rank"] == 0
                                                                 for p in group]))
    for quantity in ("random_gap", "random_rank", "best_error", "scratch_error", "mean_error"):
      summary[prefix + quantity] = float(np.mean([p[quantity] for p in group]))
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), points, alphas,
        f"Expert selection by the asymmetric Task2Vec distance (stars: the choices; bank of "
        f"{len(sources)} experts)")
  lines = [
      f"expert_selection: MLP {hidden}; bank of {len(sources)} experts "
      f"({', '.join(config.source_tasks)}), "
      f"each trained from one w0 by {config.num_steps} Adam steps on {config.num_train} examples; "
      f"probe trained on {config.probe_task}; exact Task2Vec embeddings (head re-fitted per task).",
      f"targets: {', '.join(config.target_tasks)} with n in {tuple(config.target_num_train)} "
      f"training examples; every expert fine-tuned {config.fine_tune_steps} steps (batch "
      f"{config.fine_tune_batch_size}), test error at the end (a fixed budget: the convergence "
      f"criterion); the expert of the target's own task left out: {config.exclude_target}.",
      "expert test accuracy: " + ", ".join(f"{r['task']} {r['test_accuracy']:.3f}"
                                           for r in records if r["kind"] == "task")]
  for size in config.target_num_train:
    prefix = f"n{size}_"
    lines.append(
        f"n={size}: best expert's error {summary[prefix + 'best_error']:.3f} (mean over targets), "
        f"bank mean {summary[prefix + 'mean_error']:.3f}, from scratch "
        f"{summary[prefix + 'scratch_error']:.3f}; at random: gap "
        f"{summary[prefix + 'random_gap']:.3f}, rank {summary[prefix + 'random_rank']:.2f}.")
    for alpha in alphas:
      name = prefix + _alpha_name(alpha)
      lines.append(f"  alpha={alpha:g}: gap to the best {summary[name + '_gap']:.3f}, rank "
                   f"{summary[name + '_rank']:.2f} (0 = best), best chosen for "
                   f"{summary[name + '_best_fraction']:.0%} of targets.")
    best = summary[prefix + "best_error"]
    lines.append(f"  (noise: one test error near {best:.2f} on {config.num_test} test examples has "
                 f"a standard error of {np.sqrt(best * (1 - best) / config.num_test):.3f})")
    gaps = {alpha: summary[f"{prefix}{_alpha_name(alpha)}_gap"] for alpha in alphas}
    best_alpha = min(gaps, key=gaps.get)
    beats = gaps[best_alpha] < summary[prefix + "random_gap"]
    lines.append(
        f"  verdict: the distance's choice {'beats' if beats else 'does not beat'} a random choice "
        f"(smallest gap at alpha={best_alpha:g})"
        + ("; alpha=0.15 does better than the symmetric distance (alpha=0)."
           if 0.0 in gaps and 0.15 in gaps and gaps[0.15] < gaps[0.0] else
           "; alpha=0.15 does not improve on the symmetric distance (alpha=0)."
           if 0.0 in gaps and 0.15 in gaps else "."))
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary


def _target_point(config, target_index, target_name, size, sources, initial, expert_params,
                  source_embeddings, probe_params, alphas) -> dict:
  """Fine-tunes the bank on one target with ``size`` examples; the choices and their scores."""
  hidden = tuple(config.hidden_sizes)
  target = suite.make_task(target_name, seed=config.data_seed, num_train=size,
                           num_test=config.num_test)
  key = jax.random.fold_in(jax.random.key(config.seed), 1000 + 100 * target_index + size)
  embedding = task_transfer.probe_embeddings(probe_params, [target], initial, hidden,
                                             head_epochs=config.head_epochs,
                                             key=jax.random.fold_in(key, 0))[target_name]
  bank = [s.name for s in sources if not (config.exclude_target and s.name == target_name)]
  trunk0, head0 = task_transfer.split_head(initial(target.num_classes), hidden)
  starts = [task_transfer.join_head(trunk0, head0, hidden)] + [
      task_transfer.start_from(expert_params[name], head0, hidden) for name in bank]
  fine_tune = task_transfer.fine_tune_function(config, target.num_classes)
  curves = task_transfer.fine_tune_bank(starts, target, target.train, fine_tune,
                                        key=jax.random.fold_in(key, 1))
  errors = 1.0 - curves.accuracy[1:, -1]
  random_gap, random_rank = experts.random_selection_gap(errors)
  point = {"kind": "target", "target": target_name, "num_train": size, "bank": bank,
           "errors": errors.tolist(), "scratch_error": float(1.0 - curves.accuracy[0, -1]),
           "best_error": float(errors.min()), "mean_error": float(errors.mean()),
           "best_expert": bank[int(np.argmin(errors))], "random_gap": float(random_gap),
           "random_rank": float(random_rank)}
  stacked = np.stack([source_embeddings[name] for name in bank])
  trivial = np.ones_like(embedding)
  for alpha in alphas:
    chosen, distances = experts.select_expert(embedding, stacked, trivial, alpha=alpha)
    gap, rank = experts.selection_gap(errors, chosen)
    name = _alpha_name(alpha)
    point.update({f"{name}_distances": np.asarray(distances).tolist(),
                  f"{name}_chosen": int(chosen), f"{name}_expert": bank[int(chosen)],
                  f"{name}_gap": float(gap), f"{name}_rank": int(rank)})
  return io.to_json_value(point)
