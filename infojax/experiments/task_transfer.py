"""Does a task distance predict the cost of fine-tuning one task's weights on another?

Achille, Paolini, Mbeng & Soatto, "The information complexity of learning tasks, their structure
and their distance" (arXiv 1904.03292, Sec. 6; science.md §3.4) define the asymmetric distance
``d(D1 -> D2) = I(D1 D2; w) - I(D1; w)``, the information the second task adds to the first, and
argue that it measures how hard it is to fine-tune from D1 to D2; Task2Vec (Achille et al., ICCV
2019, arXiv 1902.03545; science.md §6.4) offers the Fisher-embedding distances. Protocol, on tasks
of the offline suite (`infojax.tasks.suite`, all ``16x16x1`` inputs):

1. One initialisation ``w0`` of an MLP (`network`; the head ``Dense_L`` re-made for each class
   count, the trunk shared). Each task's **expert** is trained from ``w0`` (`make_trainer`: Adam,
   ``num_steps`` minibatch steps).
2. **Fine-tuning cost** of each ordered pair (source S, target T): from S's trained trunk with
   ``w0``'s head for T, fine-tune everything on ``fine_tune_num_train`` examples of T
   (`infojax.tasks.experts.make_fine_tune`), scoring T's test set every ``eval_every`` steps; the
   cost is the number of steps to reach ``accuracy_fraction`` times the final test accuracy of a
   run from scratch (``w0``) with the same budget (`infojax.tasks.experts.steps_to_accuracy`;
   censored at the budget, and recorded so), and, uncensored, the mean test error along the run.
3. **Information distance** (`information_distance`): the tagged network (one trunk, one head per
   task: the inputs are tagged by their task) is trained on S alone (the expert; T's head stays at
   ``w0``) and on S and T jointly (the mean of the two tasks' losses: the same minimiser as the
   summed joint loss, every task having ``num_train`` examples); the curvatures are the exact
   true-Fisher diagonals of the summed losses, the joint one the sum of the tasks' at the joint
   minimum (`infojax.tasks.distance.joint_curvature`); then
   `infojax.tasks.distance.task_distance` with ``P = N(w0, prior_variance I)`` and ``beta``.
4. **Task2Vec distances**: a probe (the MLP trained on ``probe_task``), its head re-fitted on each
   task's features (`infojax.tasks.task2vec.fit_head`), the exact Fisher embedding of its trunk
   (`infojax.tasks.task2vec.embedding`); the symmetric cosine distance and the asymmetric one
   ``d_sym(S, T) - alpha d_sym(S, trivial)``.
5. Spearman's rank correlation of each cost with each distance across the pairs, with a bootstrap
   spread over pairs and a permutation p-value (`infojax.tasks.experts.rank_correlation`), and
   within each target, over its sources (`within_target_correlations`): the pooled one mixes
   targets of different difficulty.

This module also holds what `expert_selection` shares (the network, training, probe embeddings).

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (``"task"`` records: each expert's test
accuracy and embedding norm; per target a ``"scratch"`` record and one ``"pair"`` record per
source), ``task_transfer.png`` (cost against each distance; open markers: censored) and
``summary.txt``. A rerun in the same workdir resumes: the pairs already in ``metrics.jsonl`` are
kept and not recomputed (training the experts and the probe is deterministic, so it is redone).
"""

import functools
import json
import math
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from infojax import activations
from infojax import config as config_lib
from infojax import io
from infojax import likelihoods
from infojax import models
from infojax import train
from infojax.experiments import common
from infojax.tasks import distance
from infojax.tasks import experts
from infojax.tasks import suite
from infojax.tasks import task2vec

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
PLOT_FILE = "task_transfer.png"
DISTANCES = ("task2vec_distance", "task2vec_asymmetric", "information_distance")
COSTS = ("steps_to_accuracy", "mean_error")


# ----------------------------------------------------------------------------------------------
# Pieces shared with expert_selection.
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def network(hidden_sizes: tuple, num_classes: int) -> Callable:
  """``apply_fn(params, inputs) -> logits`` of `infojax.models.MLP` of these sizes."""
  return models.make_apply_fn(models.MLP(tuple(hidden_sizes), int(num_classes)))


def head_name(hidden_sizes: Sequence[int]) -> str:
  """The head (logit layer) of the MLP: ``Dense_<number of hidden layers>``."""
  return f"Dense_{len(hidden_sizes)}"


class Initial:
  """``w0`` of the MLP for each class count, from one key: the trunk is the same for every count.

  ``Initial(hidden_sizes, key)(num_classes)`` is `infojax.models.MLP`'s initialisation (flax names
  ``Dense_0`` ... ``Dense_L``), computed once per class count (the init is jitted).
  """

  def __init__(self, hidden_sizes: Sequence[int], key):
    self.hidden_sizes, self.key, self._cache = tuple(hidden_sizes), key, {}

  def __call__(self, num_classes: int) -> dict:
    if num_classes not in self._cache:
      inputs = jnp.zeros((1,) + suite.INPUT_SHAPE, jnp.float32)
      self._cache[num_classes] = _jitted_init(self.hidden_sizes, int(num_classes))(
          self.key, inputs)["params"]
    return self._cache[num_classes]


@functools.lru_cache(maxsize=None)
def _jitted_init(hidden_sizes: tuple, num_classes: int) -> Callable:
  return jax.jit(models.MLP(hidden_sizes, num_classes).init)


def split_head(params, hidden_sizes):
  """``(trunk, head)`` of MLP parameters (``trunk`` a dict of the hidden layers)."""
  name = head_name(hidden_sizes)
  return {k: v for k, v in params.items() if k != name}, params[name]


def join_head(trunk, head, hidden_sizes) -> dict:
  """MLP parameters from a trunk and a head (inverse of `split_head`)."""
  return {**trunk, head_name(hidden_sizes): head}


def _num_classes(head) -> int:
  return int(head["bias"].shape[-1])


def make_trainer(hidden_sizes, optimizer, *, num_steps: int, batch_size: int) -> Callable:
  """A jitted trainer of the tagged network: one trunk, one head per task.

  Minimises the mean over the tasks of each task's mean cross-entropy (with equal example counts,
  the summed joint loss up to a constant factor), ``num_steps`` steps of ``optimizer``, each on
  ``batch_size`` examples of every task (`infojax.tasks.experts.sample_batch`). One task: the
  ordinary training of that task.

  Returns:
    ``fn(trunk, heads, datasets, key) -> (trunk, heads)``; ``heads`` and ``datasets`` tuples of
    one entry per task. Compiled once per combination of class counts.
  """
  likelihood = likelihoods.categorical()

  def loss(params, model_state, batches, key):
    del key
    trunk, heads = params
    total = 0.0
    for head, batch in zip(heads, batches):
      apply_fn = network(tuple(hidden_sizes), _num_classes(head))
      logits = apply_fn(join_head(trunk, head, hidden_sizes), batch["image"])
      total = total + jnp.mean(likelihood.nll(logits, batch["label"]))
    return total / len(heads), (model_state, {})

  train_step = train.make_train_step(train.Objective(loss=loss, evaluate=None), optimizer)

  @jax.jit
  def fit(trunk, heads, datasets, key):
    state = train.init_state((trunk, tuple(heads)), optimizer, key=key)

    def step(state, _):
      step_key = jax.random.fold_in(key, state.step)
      batches = tuple(experts.sample_batch(data, jax.random.fold_in(step_key, t), batch_size)
                      for t, data in enumerate(datasets))
      return train_step(state, batches)[0], None

    state, _ = jax.lax.scan(step, state, None, length=num_steps)
    return state.params

  return fit


def training_optimizer(optimizer_config, num_steps: int):
  """The optimiser of ``optimizer_config`` over ``num_steps`` steps (one "epoch")."""
  return train.make_optimizer(optimizer_config, steps_per_epoch=num_steps, num_epochs=1)


def accuracy(hidden_sizes, params, data) -> float:
  """Test accuracy of MLP parameters on ``{"image", "label"}``."""
  apply_fn = network(tuple(hidden_sizes), _num_classes(params[head_name(hidden_sizes)]))
  return 1.0 - float(common.error_rate_fn(apply_fn)(
      params, (jnp.asarray(data["image"]), jnp.asarray(data["label"]))))


def train_experts(tasks, initial, trainer, hidden_sizes, *, key) -> dict:
  """Each task's expert, trained from ``w0`` (``initial``, an `Initial`).

  Returns:
    ``{name: params}``.
  """
  out = {}
  for index, task in enumerate(tasks):
    trunk, head = split_head(initial(task.num_classes), hidden_sizes)
    trunk, (head,) = trainer(trunk, (head,), (_arrays(task.train),), jax.random.fold_in(key, index))
    out[task.name] = join_head(trunk, head, hidden_sizes)
  return out


def _arrays(split: dict) -> dict:
  return {"image": jnp.asarray(split["image"]), "label": jnp.asarray(split["label"])}


def probe_embeddings(probe_params, tasks, initial, hidden_sizes, *, head_epochs: int,
                     key) -> dict:
  """The Task2Vec embedding of each task with one probe network (science.md §6.1).

  The probe's head is re-fitted on the task's cached trunk features (`task2vec.fit_head`, from
  ``w0``'s head for the task's class count, ``initial`` an `Initial`; shuffled with ``key``), the
  trunk frozen; the embedding is the exact true-Fisher one of the trunk (`task2vec.embedding`), the
  plain mean over the examples: the suite's subsets hold every class in about equal numbers, and
  the class-balanced path compiles one program per distinct class size.

  Returns:
    ``{name: (D,) numpy hessian}``.
  """
  trunk, _ = split_head(probe_params, hidden_sizes)
  last = f"Dense_{len(hidden_sizes) - 1}"
  out = {}
  for index, task in enumerate(tasks):
    apply_fn = network(tuple(hidden_sizes), task.num_classes)
    _, head = split_head(initial(task.num_classes), hidden_sizes)
    params = join_head(trunk, head, hidden_sizes)
    images = jnp.asarray(task.train["image"])
    features = jax.nn.relu(activations.activations_fn(apply_fn, last)(params, images))
    fitted = task2vec.fit_head(
        common.dense_head(task.num_classes), head, features, task.train["label"],
        key=jax.random.fold_in(key, index), num_epochs=head_epochs,
        batch_size=min(64, features.shape[0]))
    embedding = task2vec.embedding(
        apply_fn, join_head(trunk, fitted, hidden_sizes),
        (images, jnp.asarray(task.train["label"])), likelihood=likelihoods.categorical(),
        trainable=sorted(trunk), class_balanced=False)
    out[task.name] = np.asarray(embedding.hessian)
  return out


def summed_fisher(hidden_sizes, params, data):
  """The exact true-Fisher diagonal of the **summed** loss of ``data`` at MLP ``params``."""
  apply_fn = network(tuple(hidden_sizes), _num_classes(params[head_name(hidden_sizes)]))
  batch = (jnp.asarray(data["image"]), jnp.asarray(data["label"]))
  mean = common.true_fisher_diagonal(apply_fn, params, batch)
  return jax.tree.map(lambda f: f * batch[1].shape[0], mean)


def information_distance(source, target, expert, initial, trainer, hidden_sizes, *, beta: float,
                         prior_variance: float, key) -> dict:
  """``d(S -> T) = I(S T; w) - I(S; w)`` on the tagged network (science.md §3.4).

  Args:
    source, target: `infojax.tasks.suite.Task` (the same ``num_train``).
    expert: S's trained MLP parameters (from ``w0``).
    initial: ``w0`` per class count, an `Initial`.
    trainer: `make_trainer`'s function (the experts' training).
    hidden_sizes: the MLP's hidden widths.
    beta, prior_variance: the summed-loss trade-off and ``lambda^2`` of ``P = N(w0, lambda^2 I)``.
    key: the joint training's key.

  Returns:
    ``{"information_distance", "information_source", "information_joint"}`` (nats).
  """
  trunk0, head_s0 = split_head(initial(source.num_classes),
                               hidden_sizes)
  _, head_t0 = split_head(initial(target.num_classes), hidden_sizes)
  prior_mean = (trunk0, (head_s0, head_t0))
  trunk_s, head_s = split_head(expert, hidden_sizes)
  params_source = (trunk_s, (head_s, head_t0))
  fisher_s = split_head(summed_fisher(hidden_sizes, expert, source.train), hidden_sizes)
  curvature_source = (fisher_s[0], (fisher_s[1], jax.tree.map(jnp.zeros_like, head_t0)))
  trunk_j, (head_js, head_jt) = trainer(trunk0, (head_s0, head_t0),
                                        (_arrays(source.train), _arrays(target.train)), key)
  joint_s = split_head(summed_fisher(hidden_sizes, join_head(trunk_j, head_js, hidden_sizes),
                                     source.train), hidden_sizes)
  joint_t = split_head(summed_fisher(hidden_sizes, join_head(trunk_j, head_jt, hidden_sizes),
                                     target.train), hidden_sizes)
  curvature_joint = distance.joint_curvature(
      (joint_s[0], (joint_s[1], jax.tree.map(jnp.zeros_like, head_jt))),
      (joint_t[0], (jax.tree.map(jnp.zeros_like, head_js), joint_t[1])))
  params_joint = (trunk_j, (head_js, head_jt))
  options = dict(beta=beta, prior_variance=prior_variance, prior_mean=prior_mean)
  # `distance.task_distance` is joint - source of these two terms; each is computed once.
  joint = distance.task_information(curvature_joint, params_joint, **options)
  source_information = distance.task_information(curvature_source, params_source, **options)
  return {"information_distance": float(joint - source_information),
          "information_source": float(source_information), "information_joint": float(joint)}


def fine_tune_bank(starts, target, fine_tune_data, fine_tune, *, key):
  """Fine-tunes a bank of starting weights on a target at once (`jax.vmap` over the bank).

  Args:
    starts: a list of MLP parameters (one per starting point) with the target's head.
    target: the target `infojax.tasks.suite.Task` (its ``test`` split is the evaluation set).
    fine_tune_data: ``{"image", "label"}`` training examples of the target.
    fine_tune: `infojax.tasks.experts.make_fine_tune`'s function for the target's class count.
    key: the fine-tuning key, shared by every start (the same minibatches).

  Returns:
    A `infojax.tasks.experts.FineTuneCurve` with a leading bank axis, as numpy arrays.
  """
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *starts)
  curves = _over_bank(fine_tune)(stacked, _arrays(fine_tune_data), _arrays(target.test), key)
  return jax.tree.map(np.asarray, curves)


@functools.lru_cache(maxsize=None)
def _over_bank(fine_tune: Callable) -> Callable:
  """``fine_tune`` vmapped over stacked starting weights, jitted once (compiled per bank size)."""
  return jax.jit(jax.vmap(fine_tune, in_axes=(0, None, None, None)))


def saved_records(path: str) -> list:
  """The records of a previous run's ``metrics.jsonl`` (``[]`` if none)."""
  return io.read_metrics(path) if os.path.exists(path) else []


def setup(config, tasks):
  """The common part of both experiments: ``w0``'s key, the trainer, the experts, the probe.

  Returns:
    ``(initial, trainer, expert_params, embeddings, probe_params)``: ``w0`` (an `Initial`), the
    trainer (`make_trainer`), the experts of ``tasks`` and their probe embeddings (both dicts by
    name), and the probe's weights.
  """
  hidden = tuple(config.hidden_sizes)
  key = jax.random.key(config.seed)
  initial = Initial(hidden, jax.random.fold_in(key, 0))
  trainer = _cached_trainer(hidden, _frozen(config.optimizer), config.num_steps,
                            config.batch_size)
  expert_params = train_experts(tasks, initial, trainer, hidden, key=jax.random.fold_in(key, 1))
  probe = suite.make_task(config.probe_task, seed=config.data_seed, num_train=config.num_train,
                          num_test=config.num_test)
  probe_params = train_experts([probe], initial, trainer, hidden,
                               key=jax.random.fold_in(key, 2))[probe.name]
  embeddings = probe_embeddings(probe_params, tasks, initial, hidden,
                                head_epochs=config.head_epochs, key=jax.random.fold_in(key, 3))
  return initial, trainer, expert_params, embeddings, probe_params


def _frozen(optimizer_config) -> str:
  """A hashable form of an optimiser config (for the compiled-function caches)."""
  return json.dumps(config_lib.config_to_dict(optimizer_config), sort_keys=True)


@functools.lru_cache(maxsize=None)
def _cached_trainer(hidden_sizes: tuple, optimizer: str, num_steps: int, batch_size: int):
  """`make_trainer`, built (and compiled) once per process for one setting: a resumed run in the
  same process reuses the compiled programs."""
  optimizer_config = ml_collections.ConfigDict(json.loads(optimizer))
  return make_trainer(hidden_sizes, training_optimizer(optimizer_config, num_steps),
                      num_steps=num_steps, batch_size=batch_size)


@functools.lru_cache(maxsize=None)
def _cached_fine_tune(hidden_sizes: tuple, num_classes: int, optimizer: str, num_steps: int,
                      batch_size: int, eval_every: int):
  optimizer_config = ml_collections.ConfigDict(json.loads(optimizer))
  return experts.make_fine_tune(network(hidden_sizes, num_classes),
                                training_optimizer(optimizer_config, num_steps),
                                num_steps=num_steps, batch_size=batch_size, eval_every=eval_every)


def fine_tune_function(config, num_classes: int) -> Callable:
  """`infojax.tasks.experts.make_fine_tune` for a class count with the config's fine-tuning
  options (built once per process and setting)."""
  return _cached_fine_tune(tuple(config.hidden_sizes), int(num_classes),
                           _frozen(config.fine_tune_optimizer), config.fine_tune_steps,
                           config.fine_tune_batch_size, config.eval_every)


def start_from(expert, target_head, hidden_sizes) -> dict:
  """An expert's trunk with a fresh head for the target."""
  return join_head(split_head(expert, hidden_sizes)[0], target_head, hidden_sizes)


# ----------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------


def _plot(path, pairs, correlations, *, cost_name, title):
  from matplotlib.figure import Figure

  labels = {"task2vec_distance": "Task2Vec d_sym(S, T)",
            "task2vec_asymmetric": "Task2Vec d_sym(S, T) - alpha d_sym(S, trivial)",
            "information_distance": "information distance d(S -> T) [nats]"}
  figure = Figure(figsize=(4.6 * len(DISTANCES), 4.0), layout="constrained")
  axes = figure.subplots(1, len(DISTANCES))
  cost = np.array([p[cost_name] for p in pairs], float)
  censored = np.array([p["censored"] for p in pairs], bool)
  for axis, name in zip(axes, DISTANCES):
    x = np.array([p[name] for p in pairs], float)
    axis.scatter(x[~censored], cost[~censored], s=16, label="reached")
    if censored.any():
      axis.scatter(x[censored], cost[censored], s=16, facecolors="none", edgecolors="C3",
                   label="censored (budget)")
    rho = correlations[(cost_name, name)]
    axis.set_title(f"Spearman {rho.correlation:+.2f} +- {rho.bootstrap_std:.2f} "
                   f"(p={rho.p_value:.3f})", fontsize="small")
    axis.set_xlabel(labels[name])
    axis.set_ylabel(cost_name.replace("_", " "))
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle(title)
  figure.savefig(path, dpi=110)


def within_target_correlations(pairs, cost_name: str, distance_name: str) -> np.ndarray:
  """Spearman's rho of cost and distance over the sources of each target, one per target.

  The pooled correlation mixes targets of different difficulty (both the cost and
  ``d(S -> T) = I(S T) - I(S)`` grow with the target's own complexity); this one asks whether the
  distance ranks the sources of one target, which is what transfer and expert selection need.
  NaN for a target whose costs (or distances) are all equal.
  """
  values = []
  for target in dict.fromkeys(p["target"] for p in pairs):
    group = [p for p in pairs if p["target"] == target]
    x = np.array([p[distance_name] for p in group], float)
    y = np.array([p[cost_name] for p in group], float)
    values.append(float(experts.spearman(x, y)) if len(group) >= 2 else math.nan)
  return np.array(values)


def between_target_share(pairs, name: str) -> float:
  """The share of the variance of ``pairs``' ``name`` explained by the target alone:
  ``1 - sum (x - mean_of_its_target)^2 / sum (x - mean)^2`` (1: the value is a function of the
  target; NaN if it is constant)."""
  values = np.array([p[name] for p in pairs], float)
  means = {t: np.mean([p[name] for p in pairs if p["target"] == t]) for t in
           {p["target"] for p in pairs}}
  within = np.sum([(p[name] - means[p["target"]]) ** 2 for p in pairs])
  total = np.sum((values - values.mean()) ** 2)
  return float(1.0 - within / total) if total > 0 else math.nan


def _target_key(config, target_index):
  return jax.random.fold_in(jax.random.key(config.seed), 1000 + target_index)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Measures the fine-tuning cost and the distances of every ordered pair of tasks.

  Args:
    config: see ``configs/task_transfer.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): for each cost
    (``steps_to_accuracy``, ``mean_error``) and distance (``task2vec_distance``,
    ``task2vec_asymmetric``, ``information_distance``) ``spearman_<cost>_vs_<distance>`` with
    ``..._std`` (bootstrap) and ``..._p`` (permutation), and ``within_target_<cost>_vs_<distance>``
    with ``..._std`` (`within_target_correlations`: mean and std over targets); ``num_pairs``,
    ``censored_fraction``, ``beats_scratch_fraction`` (pairs whose mean test error along the
    run is below that of training the target from scratch) and ``between_target_share_<name>``
    for each cost and distance (`between_target_share`).
  """
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  done = {(r["source"], r["target"]): r for r in saved_records(metrics_path)
          if r.get("kind") == "pair"}
  hidden = tuple(config.hidden_sizes)
  tasks = suite.make_suite(config.tasks, seed=config.data_seed, num_train=config.num_train,
                           num_test=config.num_test)
  initial, trainer, expert_params, embeddings, _ = setup(config, tasks)
  trivial = np.ones_like(next(iter(embeddings.values())))
  records = [{"kind": "task", "task": t.name, "num_classes": t.num_classes,
              "test_accuracy": accuracy(hidden, expert_params[t.name], t.test),
              "embedding_norm": float(np.linalg.norm(embeddings[t.name]))} for t in tasks]
  pairs = []
  for target_index, target in enumerate(tasks):
    few = suite.make_task(target.name, seed=config.data_seed,
                          num_train=config.fine_tune_num_train, num_test=config.num_test)
    key = _target_key(config, target_index)
    trunk0, head0 = split_head(initial(target.num_classes), hidden)
    sources = [s for s in tasks if s.name != target.name]
    missing = [s for s in sources if (s.name, target.name) not in done]
    starts = [join_head(trunk0, head0, hidden)] + [start_from(expert_params[s.name], head0, hidden)
                                                   for s in missing]
    # The few-shot task's own splits (standardised with its training examples).
    curves = fine_tune_bank(starts, few, few.train,
                            fine_tune_function(config, target.num_classes), key=key)
    scratch_accuracy = float(curves.accuracy[0, -1])
    threshold = config.accuracy_fraction * scratch_accuracy
    scratch_cost, scratch_censored = experts.steps_to_accuracy(curves.steps[0],
                                                               curves.accuracy[0], threshold)
    records.append({"kind": "scratch", "target": target.name, "final_accuracy": scratch_accuracy,
                    "threshold": threshold, "steps_to_accuracy": int(scratch_cost),
                    "censored": bool(scratch_censored),
                    "mean_error": float(1.0 - np.mean(curves.accuracy[0])),
                    "accuracy_curve": curves.accuracy[0].tolist()})
    computed = {}
    for row, source in enumerate(missing, start=1):
      cost, censored = experts.steps_to_accuracy(curves.steps[row], curves.accuracy[row],
                                                 threshold)
      record = {"kind": "pair", "source": source.name, "target": target.name,
                "steps_to_accuracy": int(cost), "censored": bool(censored),
                "mean_error": float(1.0 - np.mean(curves.accuracy[row])),
                "final_accuracy": float(curves.accuracy[row, -1]), "threshold": threshold,
                "task2vec_distance": float(task2vec.cosine_distance(
                    embeddings[source.name], embeddings[target.name])),
                "task2vec_asymmetric": float(task2vec.asymmetric_distance(
                    embeddings[source.name], embeddings[target.name], trivial,
                    alpha=config.alpha)),
                "accuracy_curve": curves.accuracy[row].tolist()}
      record.update(information_distance(
          source, target, expert_params[source.name], initial, trainer, hidden, beta=config.beta,
          prior_variance=config.prior_variance,
          key=jax.random.fold_in(key, config.tasks.index(source.name))))
      computed[source.name] = io.to_json_value(record)
    for source in sources:
      pair = done.get((source.name, target.name)) or computed[source.name]
      records.append(pair)
      pairs.append(pair)
    # Atomic: a resume point per target.
    common.write_records(metrics_path, records, tensorboard=config.tensorboard)
  rank_key = jax.random.fold_in(jax.random.key(config.seed), 2000)
  correlations, summary = {}, {"num_pairs": len(pairs)}
  for cost_index, cost_name in enumerate(COSTS):
    cost = np.array([p[cost_name] for p in pairs], float)
    for index, name in enumerate(DISTANCES):
      rho = experts.rank_correlation(
          np.array([p[name] for p in pairs], float), cost,
          key=jax.random.fold_in(rank_key, 10 * cost_index + index),
          num_resamples=config.num_resamples)
      rho = experts.RankCorrelation(*(float(v) for v in rho))
      correlations[(cost_name, name)] = rho
      summary[f"spearman_{cost_name}_vs_{name}"] = rho.correlation
      summary[f"spearman_{cost_name}_vs_{name}_std"] = rho.bootstrap_std
      summary[f"spearman_{cost_name}_vs_{name}_p"] = rho.p_value
      within = within_target_correlations(pairs, cost_name, name)
      summary[f"within_target_{cost_name}_vs_{name}"] = float(np.nanmean(within))
      summary[f"within_target_{cost_name}_vs_{name}_std"] = float(np.nanstd(within))
  for name in COSTS + DISTANCES:
    summary[f"between_target_share_{name}"] = between_target_share(pairs, name)
  summary["censored_fraction"] = float(np.mean([p["censored"] for p in pairs]))
  scratch = {r["target"]: r for r in records if r["kind"] == "scratch"}
  summary["beats_scratch_fraction"] = float(np.mean(
      [p["mean_error"] < scratch[p["target"]]["mean_error"] for p in pairs]))
  if not io.is_primary_process():
    return {}
  _plot(os.path.join(workdir, PLOT_FILE), pairs, correlations, cost_name="steps_to_accuracy",
        title=f"Fine-tuning cost against task distance ({len(pairs)} ordered pairs; steps to "
        f"{config.accuracy_fraction:g} x the scratch accuracy, budget {config.fine_tune_steps})")
  lines = [
      f"task_transfer: MLP {hidden} on {len(tasks)} suite tasks ({', '.join(config.tasks)}), "
      f"{config.num_train} training examples each, experts trained from one w0 by "
      f"{config.num_steps} Adam steps; probe trained on {config.probe_task}.",
      "expert test accuracy: " + ", ".join(f"{r['task']} {r['test_accuracy']:.3f}"
                                           for r in records if r["kind"] == "task"),
      f"fine-tuning: {config.fine_tune_num_train} target examples, {config.fine_tune_steps} steps "
      f"of batch {config.fine_tune_batch_size}; cost = steps until the test accuracy reaches "
      f"{config.accuracy_fraction:g} x that of training from scratch (w0) for the whole budget "
      f"(evaluated every {config.eval_every} steps; censored at the budget: "
      f"{summary['censored_fraction']:.0%} of pairs), and the mean test error along the run.",
      f"information distance: beta={config.beta:g} (summed loss), prior N(w0, "
      f"{config.prior_variance:g} I), exact true-Fisher diagonals (the convergence criterion of "
      f"the training: a fixed budget of {config.num_steps} steps).",
      f"transfer helps (mean error along the run below training from scratch) for "
      f"{summary['beats_scratch_fraction']:.0%} of the pairs.",
      "Spearman rank correlation across pairs (bootstrap std over pairs; permutation p):"]
  for cost_name in COSTS:
    for name in DISTANCES:
      rho = correlations[(cost_name, name)]
      lines.append(f"  {cost_name} vs {name}: {rho.correlation:+.3f} +- {rho.bootstrap_std:.3f} "
                   f"(p = {rho.p_value:.3f})")
  lines.append("share of the variance across pairs explained by the target alone: " + ", ".join(
      f"{name} {summary[f'between_target_share_{name}']:.2f}" for name in COSTS + DISTANCES)
      + " (a pooled correlation of two target-driven quantities reflects target difficulty).")
  lines.append("within each target (does the distance rank the sources of one target?), Spearman "
               "mean +- std over targets:")
  for cost_name in COSTS:
    lines.append(f"  {cost_name}: " + ", ".join(
        f"{name} {summary[f'within_target_{cost_name}_vs_{name}']:+.3f} +- "
        f"{summary[f'within_target_{cost_name}_vs_{name}_std']:.3f}" for name in DISTANCES))
  num_targets = len(tasks)
  for name in DISTANCES:
    verdicts = []
    for cost_name in COSTS:
      rho = correlations[(cost_name, name)]
      pooled = rho.correlation > 0 and rho.p_value < 0.05
      mean = summary[f"within_target_{cost_name}_vs_{name}"]
      error = summary[f"within_target_{cost_name}_vs_{name}_std"] / math.sqrt(num_targets)
      verdicts.append(f"{cost_name}: pooled " + ("positive, significant at 5%" if pooled else
                                                 "not positive and significant at 5%")
                      + ", within targets " + ("positive beyond 2 standard errors" if
                                               mean > 2 * error else "indistinguishable from 0"
                                               if abs(mean) <= 2 * error else "negative"))
    lines.append(f"verdict, {name} (the claim: a larger distance, a costlier fine-tuning): "
                 + "; ".join(verdicts) + ".")
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary
