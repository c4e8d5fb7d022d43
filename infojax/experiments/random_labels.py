"""Information in the weights against label noise, and the phase transition on random labels.

The lecture's "networks can overfit, but they have to pay a price" (Achille & Soatto, "Emergence of
invariance and disentanglement in deep representations", JMLR 2018; science.md §4.4), on a small
dataset and a fully connected network, in three measurements, each repeated over ``config.seeds``
(every seed its own initialisation ``w0``, label corruption, SGD batch order and sweep keys):

1. **Memorisation by SGD** (Zhang et al. 2017, "Understanding deep learning requires rethinking
   generalization"): for each fraction ``f`` of training labels replaced by uniformly random ones,
   train the MLP by SGD to zero training error on those labels, and record its accuracy on them and
   on the clean test labels, epoch by epoch. At ``f = 1`` the network fits pure noise while its test
   accuracy stays at chance. The information in the weights of each SGD solution is then estimated
   in closed form from the exact true-Fisher diagonal (`fisher_information`, science.md §2.6), split
   into its distance term ``||w* - w0||^2 / (2 lambda^2)`` and its curvature term.
2. **The information Lagrangian across beta**: for each ``f``, minimise
   ``C_beta(Q) = N E_{w~Q} L_D(w) + beta KL(Q || P)`` over Gaussian ``Q = N(mean, diag var)`` for a
   decreasing sweep of ``beta`` (warm-started from ``Q = P``; `common.lagrangian_sweep`), with
   ``P = N(w0, lambda^2 I)`` centred at the initialisation. ``beta`` multiplies the **summed** loss
   ``N L_D`` in nats (``beta_mean = beta/N``, science.md §0.2). Each ``beta`` is fitted until the
   relative change of the objective's mean over ``sweep.check_every`` steps, between consecutive
   chunks, is at most ``sweep.tolerance`` (``sweep.num_steps`` at most); the steps run and the
   criterion's last value are recorded. ``KL(Q* || P)`` (its distance term
   ``||mean - w0||^2 / (2 lambda^2)`` and its variance term) at each ``beta`` against ``f`` is the
   slide's "information vs corrupted labels".
3. **The phase transition**: the expected training loss of ``Q*`` against ``beta`` falls from about
   ``log |Y|`` (not fitting) towards 0 (fitting). `transition_beta` defines where: the geometric
   midpoint of the two consecutive grid betas across which the fitted ``E_Q L_D`` drops most, per
   seed, reported with a 95% Student-t interval over seeds in ``log beta``. The summary compares the
   random-label interval with the lecture's ``beta = 1``.

The data splits, the MLP, its SGD training, the two information estimators, the sweep and the
JSON-lines records come from `infojax.experiments.common`.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (records tagged by ``"kind"``, each with
its ``seed`` and ``fraction``: ``"sgd"`` per epoch, ``"memorisation"`` per unit, ``"sweep"`` per
unit and ``beta``), ``random_labels_information.png``, ``random_labels_phase_transition.png``,
``random_labels_memorisation.png``, ``summary.txt`` and, per unit, ``units/seed_<s>/fraction_<f>/``
with the SGD run's ``metrics.jsonl`` and ``checkpoints/`` and the sweep's ``sweep/`` (orbax
checkpoints of the newest SGD epoch and swept ``beta``). A rerun in the same workdir
resumes: the records of every completed unit (seed, fraction) come back from ``metrics.jsonl``
(written after each unit) and are not recomputed, and the interrupted unit continues from its newest
checkpoint, so the records equal those of an uninterrupted run.
"""

import math
import os

import jax
import ml_collections
import numpy as np

from infojax import config as config_lib
from infojax import data
from infojax import io
from infojax import train
from infojax.experiments import common

INFORMATION_PLOT = "random_labels_information.png"
TRANSITION_PLOT = "random_labels_phase_transition.png"
MEMORISATION_PLOT = "random_labels_memorisation.png"
UNITS_DIR = "units"
LECTURE_BETA = 1.0  # the lecture's random-label transition, summed-loss convention


def _largest_drop(betas, expected_losses):
  """``(betas, losses, k)`` in increasing ``beta``, ``k`` the grid step of the largest drop of the
  loss from ``betas[k + 1]`` down to ``betas[k]`` (the first on ties), ``None`` if none is > 0."""
  betas = np.asarray(betas, np.float64)
  losses = np.asarray(expected_losses, np.float64)
  if betas.ndim != 1 or betas.shape != losses.shape:
    raise ValueError(f"transition_beta: betas and expected_losses must be 1-D of one length; got "
                     f"shapes {betas.shape} and {losses.shape}.")
  if not np.all(betas > 0):
    raise ValueError(f"transition_beta: betas must be > 0; got {betas.tolist()}.")
  order = np.argsort(betas)
  betas, losses = betas[order], losses[order]
  if betas.size < 2:
    return betas, losses, None
  drops = losses[1:] - losses[:-1]
  k = int(np.argmax(drops))
  return betas, losses, (k if drops[k] > 0 else None)


def transition_beta(betas, expected_losses) -> float:
  """The fitting transition: where the fitted ``E_Q L_D`` drops most between two grid betas.

  With the grid sorted, ``beta_1 < ... < beta_K``, the drop across step ``k`` is
  ``E_Q L_D(beta_{k+1}) - E_Q L_D(beta_k)`` (lowering ``beta`` from ``beta_{k+1}`` to ``beta_k``);
  the transition is the geometric midpoint ``sqrt(beta_k beta_{k+1})`` of the step with the largest
  drop (the first, in increasing ``beta``, on ties). A property of the grid: it can only resolve the
  transition to one grid step.

  Args:
    betas: ``(K,)`` trade-offs (> 0), any order.
    expected_losses: ``(K,)`` the fitted ``E_Q L_D`` at each.

  Returns:
    The transition ``beta`` (a float); ``nan`` with fewer than two betas or if the loss never
    drops.
  """
  betas, _, k = _largest_drop(betas, expected_losses)
  return math.nan if k is None else float(math.sqrt(betas[k] * betas[k + 1]))


# ----------------------------------------------------------------------------------------------
# Spread over seeds.
# ----------------------------------------------------------------------------------------------


def _mean_std(values):
  """``(mean, std)`` over seeds (sample std, ``ddof=1``; 0 for one seed)."""
  values = np.asarray(values, np.float64)
  return float(np.mean(values)), float(np.std(values, ddof=1)) if values.size > 1 else 0.0


def _pm(values, digits=".3g"):
  mean, std = _mean_std(values)
  return f"{mean:{digits}} +- {std:{digits}}"


def _log_interval(betas):
  """``(geometric mean, low, high)`` of finite positive ``betas``: `common.mean_interval` in
  ``log beta``; ``nan`` for none."""
  logs = np.log([b for b in betas if math.isfinite(b)])
  if logs.size == 0:
    return math.nan, math.nan, math.nan
  return tuple(float(np.exp(v)) for v in common.mean_interval(logs))


# ----------------------------------------------------------------------------------------------
# One unit: a seed and a fraction.
# ----------------------------------------------------------------------------------------------


def _unit_dir(workdir, seed, fraction):
  return os.path.join(workdir, UNITS_DIR, f"seed_{seed}", f"fraction_{fraction:g}")


def _run_unit(config, *, seed, index, fraction, splits, num_classes, apply_fn, initial,
              sweep_key, loss_fn, sweep_optimizer, betas, workdir):
  """SGD, the closed-form information and the Lagrangian sweep of one (seed, fraction); records."""
  corruption_seed = int(np.random.SeedSequence((seed, index)).generate_state(1)[0])
  labels, _ = data.transforms.corrupt_labels(splits["train"]["label"], fraction=fraction,
                                             num_classes=num_classes, seed=corruption_seed)
  train_arrays = {"image": splits["train"]["image"], "label": labels}
  unit = {"seed": seed, "fraction": fraction}
  trained, history = common.train_classifier(
      apply_fn, initial, train_arrays, splits["test"], optimizer_config=config.optimizer,
      num_epochs=config.num_epochs, batch_size=config.batch_size, seed=seed,
      workdir=workdir)
  information = common.fisher_information(
      apply_fn, trained, common.as_batch(train_arrays), beta=config.fisher_beta,
      prior_variance=config.prior_variance, prior_mean=initial,
      chunk_size=config.fisher_chunk_size)
  last = history[-1]
  points = common.lagrangian_sweep(
      loss_fn, initial, common.as_batch(train_arrays), betas,
      prior_variance=config.prior_variance, optimizer=sweep_optimizer,
      num_steps=config.sweep.num_steps, key=jax.random.fold_in(sweep_key, index),
      eval_samples=config.sweep.eval_samples, tolerance=config.sweep.tolerance,
      check_every=config.sweep.check_every, workdir=workdir)
  records = [{"kind": "sgd", **unit, **r} for r in history]
  records.append({
      "kind": "memorisation", **unit,
      "train_accuracy": last["train_eval_accuracy"], "train_loss": last["train_eval_loss"],
      "test_accuracy": last["test_accuracy"], "test_loss": last["test_loss"],
      "estimator": "closed form, exact true Fisher diagonal",
      "beta": config.fisher_beta, "prior_variance": config.prior_variance, **information})
  records.extend({"kind": "sweep", **unit,
                  "estimator": "variational Gaussian fit of the information Lagrangian", **p}
                 for p in points)
  return records


# ----------------------------------------------------------------------------------------------
# The summary, from the records alone (so a resumed run summarises exactly like a whole one).
# ----------------------------------------------------------------------------------------------


def _select(records, kind, fraction, seed=None):
  return [r for r in records if r["kind"] == kind and r["fraction"] == fraction
          and (seed is None or r["seed"] == seed)]


def _at_beta(points, beta, name):
  return next(p[name] for p in points if math.isclose(p["beta"], beta))


def _exchange(points, num_examples):
  """Across the largest drop of one sweep's ``E_Q L_D``: the nats of ``KL(Q||P)`` paid per nat of
  summed loss saved, and the share of that KL increase in the distance term (``nan`` if none)."""
  by_beta = sorted(points, key=lambda p: p["beta"])
  _, losses, k = _largest_drop([p["beta"] for p in by_beta], [p["expected_loss"] for p in by_beta])
  if k is None:
    return math.nan, math.nan
  low, high = by_beta[k], by_beta[k + 1]
  gained = low["information"] - high["information"]
  share = (low["information_distance"] - high["information_distance"]) / gained if gained else (
      math.nan)
  return gained / (num_examples * (losses[k + 1] - losses[k])), share


def _at_grid_edge(points):
  """Whether a sweep's largest drop is across the grid's first or last step (a bound only)."""
  _, _, k = _largest_drop([p["beta"] for p in points], [p["expected_loss"] for p in points])
  return k is not None and k in (0, len(points) - 2)


def _summarise(records, config, fractions, seeds, *, num_train, num_parameters, chance_loss):
  """The summary dict and the summary's lines."""
  tolerance, num_steps = config.sweep.tolerance, config.sweep.num_steps
  memorised = {f: _select(records, "memorisation", f) for f in fractions}
  sweeps = {(s, f): _select(records, "sweep", f, s) for f in fractions for s in seeds}
  summary = {"num_train": num_train, "num_parameters": num_parameters, "fractions": fractions,
             "seeds": seeds}
  for name, key in (("train_accuracy", "train_accuracy"), ("test_accuracy", "test_accuracy"),
                    ("fisher_information", "information"),
                    ("fisher_distance", "information_mean_term"),
                    ("fisher_curvature", "information_curvature_term")):
    spread = [_mean_std([m[key] for m in memorised[f]]) for f in fractions]
    summary[name] = [mean for mean, _ in spread]
    summary[f"{name}_std"] = [std for _, std in spread]
  for beta in config.sweep.report_betas:
    for name, key in (("information", "information"), ("distance", "information_distance"),
                      ("variance", "information_variance")):
      spread = [_mean_std([_at_beta(sweeps[s, f], beta, key) for s in seeds]) for f in fractions]
      summary[f"{name}_beta_{beta:g}"] = [mean for mean, _ in spread]
      summary[f"{name}_beta_{beta:g}_std"] = [std for _, std in spread]
  thresholds = {f: [transition_beta([p["beta"] for p in sweeps[s, f]],
                                    [p["expected_loss"] for p in sweeps[s, f]]) for s in seeds]
                for f in fractions}
  intervals = {f: _log_interval(thresholds[f]) for f in fractions}
  edges = {f: "" if not any(_at_grid_edge(sweeps[s, f]) for s in seeds) else
           ", at the grid's edge for some: a bound only" for f in fractions}
  betas = np.sort([p["beta"] for p in sweeps[seeds[0], fractions[0]]])[::-1]
  step = float(betas[0] / betas[1]) if len(betas) > 1 else 1.0  # the grid's ratio
  summary["threshold_beta"] = [intervals[f][0] for f in fractions]
  summary["threshold_beta_low"] = [intervals[f][1] for f in fractions]
  summary["threshold_beta_high"] = [intervals[f][2] for f in fractions]
  fits = [p for points in sweeps.values() for p in points]
  changes = np.array([p["relative_change"] for p in fits], np.float64)
  capped = [p for p in fits if p["steps"] >= num_steps]
  unconverged = [p for p in capped if not p["relative_change"] <= tolerance]
  worst = fits[int(np.nanargmax(changes))] if np.isfinite(changes).any() else None
  summary.update({"num_fits": len(fits), "capped_fits": len(capped),
                  "unconverged_fits": len(unconverged),
                  "worst_relative_change": math.nan if worst is None else worst["relative_change"]})

  lines = [
      f"random_labels: MLP {tuple(config.hidden_sizes)} ({num_parameters} parameters) on "
      f"{num_train} {config.dataset} training examples; prior N(w0, {config.prior_variance:g} I) "
      f"at each seed's initialisation; beta for the summed loss (nats); {len(seeds)} seeds "
      f"{tuple(seeds)}, figures are mean +- std (ddof=1) over seeds.",
      f"Convergence: each beta fitted by full-batch steps in chunks of {config.sweep.check_every}, "
      f"stopped once the relative change of the chunk-mean objective between consecutive chunks "
      f"is <= {tolerance:g} (at most {num_steps} steps); "
      + ("worst final relative change: none measured (one chunk per fit)" if worst is None else
         f"worst final relative change {worst['relative_change']:.3g} (seed {worst['seed']}, "
         f"fraction {worst['fraction']:g}, beta {worst['beta']:.3g})")
      + f"; {len(capped)} of {len(fits)} fits hit the step cap, {len(unconverged)} of them with "
      f"the criterion still above the tolerance."]
  for f in fractions:
    m = memorised[f]
    lines.append(
        f"fraction {f:.2f}: SGD train accuracy {_pm([r['train_accuracy'] for r in m], '.4f')}, "
        f"test accuracy {_pm([r['test_accuracy'] for r in m], '.4f')}; closed-form information "
        f"at beta={config.fisher_beta:g}: {_pm([r['information'] for r in m])} nats = distance "
        f"||w*-w0||^2/(2 lambda^2) {_pm([r['information_mean_term'] for r in m])} + curvature "
        f"{_pm([r['information_curvature_term'] for r in m])}.")
  for beta in config.sweep.report_betas:
    values = "; ".join(
        f"fraction {f:g}: {_pm([_at_beta(sweeps[s, f], beta, 'information') for s in seeds])} "
        f"= distance {_pm([_at_beta(sweeps[s, f], beta, 'information_distance') for s in seeds])}"
        f" + variance "
        f"{_pm([_at_beta(sweeps[s, f], beta, 'information_variance') for s in seeds])}"
        for f in fractions)
    lines.append(f"variational KL(Q*||P) at beta={beta:g} [nats]: {values}.")
  lines.append(
      "Transition beta* (per seed: the geometric midpoint of the two consecutive grid betas "
      "across which the fitted E_Q L_D drops most; geometric mean and 95% Student-t interval of "
      "log beta* over seeds): " + "; ".join(
          f"fraction {f:g}: {intervals[f][0]:.3g} [{intervals[f][1]:.3g}, {intervals[f][2]:.3g}]"
          f" ({sum(map(math.isfinite, thresholds[f]))} seeds"
          f"{edges[f]})" for f in fractions)
      + (f"; the grid resolves beta* to a factor of {step:.3g}" if len(betas) > 1 else "") + ".")
  lines.extend(_lecture_lines(config, fractions, seeds, sweeps, intervals, summary, step=step,
                              num_train=num_train, chance_loss=chance_loss))
  return summary, lines, sweeps, thresholds, intervals


def _lecture_lines(config, fractions, seeds, sweeps, intervals, summary, *, step, num_train,
                   chance_loss):
  """What the lecture claims about the random-label transition, and whether the numbers agree.

  The random-label interval is compared with ``beta = 1`` after widening it by half a grid step
  (a factor ``sqrt(step)``) on each side: each seed's ``beta*`` stands for the grid step it lies in.
  """
  lines = [f"The lecture (Achille & Soatto 2018; science.md §4.4) claims a phase transition at "
           f"beta = {LECTURE_BETA:g} for random labels under the summed-loss convention (fitting "
           f"for beta < 1, not for beta > 1: memorising one random label costs about log|Y| = "
           f"{chance_loss:.3g} nats of information and saves as much loss), and a transition at "
           f"a larger beta for real labels."]
  if 1.0 not in fractions:
    return lines + ["Not tested here: no fully random labels (fraction 1) in config.fractions."]
  mean, low, high = intervals[1.0]
  summary.update({"threshold_beta_random": mean, "threshold_beta_random_low": low,
                  "threshold_beta_random_high": high})
  if not math.isfinite(mean):
    return lines + ["With random labels the fitted loss never drops on this grid: no transition "
                    "measured."]
  if len(seeds) < 2:
    verdict = f"beta* = {mean:.3g} from one seed, no interval to compare with beta = 1"
    reproduced = None
  else:
    wide = (low / math.sqrt(step), high * math.sqrt(step))
    reproduced = wide[0] <= LECTURE_BETA <= wide[1]
    verdict = (f"beta* = {mean:.3g}, 95% interval [{low:.3g}, {high:.3g}], widened by half a grid "
               f"step to [{wide[0]:.3g}, {wide[1]:.3g}], which "
               + ("contains 1: the diagonal-Gaussian code reproduces the transition at beta = 1"
                  if reproduced else
                  f"excludes 1 (it lies {'below' if wide[1] < LECTURE_BETA else 'above'} it): the "
                  "diagonal-Gaussian code does not reproduce the transition at beta = 1"))
  summary["lecture_transition_reproduced"] = reproduced
  lines.append(f"Measured with random labels: {verdict}.")
  if reproduced is not True:
    rates, shares = zip(*(_exchange(sweeps[s, 1.0], num_train) for s in seeds))
    rate = _mean_std(rates)[0]
    summary["random_information_per_loss"] = rate
    line = (f"{'Why' if reproduced is False else 'The price'}: across its largest drop the fit "
            f"paid {_pm(rates)} nats of KL(Q||P) per nat of summed training loss saved "
            f"({_pm([100 * s for s in shares])}% of that KL in the distance term "
            f"||mean - w0||^2/(2 lambda^2)), where the lecture's account has 1 nat per nat; "
            f"switching between those two fitted Q pays off for beta below about {1 / rate:.3g}.")
    if reproduced is False:
      line += (f" The price of memorising is set by the variational family and the prior (a "
               f"diagonal Gaussian Q, P = N(w0, lambda^2 I) with lambda^2 = "
               f"{config.prior_variance:g} around the initialisation), not by the labels' "
               f"log|Y|.")
    lines.append(line)
  if 0.0 in fractions and math.isfinite(intervals[0.0][0]):
    real = intervals[0.0]
    summary.update({"threshold_beta_real": real[0], "threshold_beta_real_low": real[1],
                    "threshold_beta_real_high": real[2]})
    larger = real[0] > mean
    lines.append(f"Real labels: beta* = {real[0]:.3g} [{real[1]:.3g}, {real[2]:.3g}], "
                 f"{'larger' if larger else 'not larger'} than with random labels"
                 f"{', as the lecture says' if larger else ', unlike the lecture'}.")
  return lines


# ----------------------------------------------------------------------------------------------
# Plots.
# ----------------------------------------------------------------------------------------------


def _label(fraction):
  return {0.0: "real labels", 1.0: "random labels"}.get(fraction, f"{fraction:.0%} corrupted")


def _errorbar(axis, x, values, **kwargs):
  spread = [_mean_std(v) for v in values]
  axis.errorbar(x, [m for m, _ in spread], yerr=[s for _, s in spread], marker="o", capsize=3,
                **kwargs)


def _plot_information(path, config, fractions, seeds, sweeps, memorised):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.0), layout="constrained")
  axes = figure.subplots(1, 3)
  for index, beta in enumerate(config.sweep.report_betas):
    _errorbar(axes[0], fractions, [[_at_beta(sweeps[s, f], beta, "information") for s in seeds]
                                   for f in fractions], color=f"C{index}",
              label=f"KL, beta = {beta:.3g}")
    _errorbar(axes[0], fractions,
              [[_at_beta(sweeps[s, f], beta, "information_distance") for s in seeds]
               for f in fractions], color=f"C{index}", linestyle="--",
              label=f"distance term, beta = {beta:.3g}")
  axes[0].set_yscale("log")
  axes[0].set_title("variational: KL(Q*_beta || P) from the Lagrangian")
  for key, label, style in (("information", "total", "-"),
                            ("information_mean_term", "distance ||w* - w0||^2 / (2 lambda^2)",
                             "--"),
                            ("information_curvature_term", "curvature term", ":")):
    _errorbar(axes[1], fractions, [[m[key] for m in memorised[f]] for f in fractions],
              linestyle=style, label=label)
  axes[1].set_yscale("log")
  axes[1].set_title("closed form at the SGD solution (true Fisher)")
  _errorbar(axes[2], fractions, [[m["train_accuracy"] for m in memorised[f]] for f in fractions],
            label="train (corrupted labels)")
  _errorbar(axes[2], fractions, [[m["test_accuracy"] for m in memorised[f]] for f in fractions],
            label="test (clean labels)")
  axes[2].set_ylabel("accuracy of the SGD solution")
  axes[2].set_title("memorisation by SGD")
  for axis in axes[:2]:
    axis.set_ylabel("information in the weights [nats]")
  for axis in axes:
    axis.set_xlabel(f"fraction of corrupted training labels (mean +- std, {len(seeds)} seeds)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.savefig(path, dpi=120)


def _plot_transition(path, fractions, seeds, sweeps, thresholds, intervals, chance_loss):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(11.0, 4.5), layout="constrained")
  axes = figure.subplots(1, 2)
  for index, fraction in enumerate(fractions):
    color = f"C{index}"
    for n, seed in enumerate(seeds):
      points = sweeps[seed, fraction]
      betas = [p["beta"] for p in points]
      label = _label(fraction) if n == 0 else None
      axes[0].plot(betas, [p["expected_loss"] for p in points], marker="o", markersize=3,
                   color=color, alpha=0.7, label=label)
      axes[1].plot(betas, [p["information"] for p in points], marker="o", markersize=3,
                   color=color, alpha=0.7, label=label)
      if math.isfinite(thresholds[fraction][n]):
        axes[0].axvline(thresholds[fraction][n], color=color, linestyle=":", alpha=0.7)
    mean, low, high = intervals[fraction]
    if math.isfinite(mean):
      axes[0].axvspan(low, high, color=color, alpha=0.12)
  grid = [p["beta"] for points in sweeps.values() for p in points]
  axes[0].set_xlim(min(grid) / 1.5, max(grid) * 1.5)  # wide intervals do not stretch the axis
  axes[0].axvline(LECTURE_BETA, color="black", linestyle="--", label="beta = 1 (lecture)")
  axes[0].axhline(chance_loss, color="gray", linestyle=":", label="log |Y| (chance)")
  axes[0].set_ylabel("expected training loss E_Q L_D [nats]")
  axes[0].set_title("dotted: beta* per seed; band: 95% t interval")
  axes[1].set_ylabel("information KL(Q || P) [nats]")
  axes[1].set_yscale("log")
  for axis in axes:
    axis.set_xscale("log")
    axis.set_xlabel("beta (summed-loss convention)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
  figure.suptitle(f"Minimisers of N E_Q L_D + beta KL(Q || P) along a beta sweep, one line per "
                  f"seed ({len(seeds)} seeds)")
  figure.savefig(path, dpi=120)


def _plot_memorisation(path, records, shown, seeds):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(6.0, 4.0), layout="constrained")
  axis = figure.subplots()
  for fraction in shown:
    histories = [_select(records, "sgd", fraction, seed) for seed in seeds]
    epochs = [r["epoch"] for r in histories[0]]
    train_accuracy = np.mean([[r["train_eval_accuracy"] for r in h] for h in histories], axis=0)
    test_accuracy = np.mean([[r["test_accuracy"] for r in h] for h in histories], axis=0)
    (line,) = axis.plot(epochs, train_accuracy, label=f"{_label(fraction)}: train")
    axis.plot(epochs, test_accuracy, linestyle="--", color=line.get_color(),
              label=f"{_label(fraction)}: test")
  axis.set_xlabel("epoch")
  axis.set_ylabel(f"accuracy (mean over {len(seeds)} seeds)")
  axis.set_ylim(0, 1.02)
  axis.grid(alpha=0.3)
  axis.legend(fontsize="small")
  axis.set_title("SGD fits random labels; test accuracy stays at chance")
  figure.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------


def _check_config(config, betas):
  fractions = [float(f) for f in config.fractions]
  if not fractions or any(not 0.0 <= f <= 1.0 for f in fractions) or len(set(fractions)) < len(
      fractions):
    raise ValueError(f"random_labels: fractions must be a non-empty list of distinct values in "
                     f"[0, 1]; got {config.fractions}.")
  seeds = common.check_seeds("random_labels", config.seeds)
  for beta in config.sweep.report_betas:
    if not any(math.isclose(beta, b) for b in betas):
      raise ValueError(f"random_labels: sweep.report_betas must be points of the beta grid "
                       f"{betas.tolist()}; got {beta}.")
  return fractions, seeds


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Memorisation by SGD, information against label noise, and the random-label transition.

  Args:
    config: see ``configs/random_labels.py``.
    workdir: the output directory; a rerun there resumes (see the module docstring).

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing) the summary:
    ``fractions``, ``seeds``; per fraction the mean over seeds (and ``<name>_std``) of the SGD
    solution's ``train_accuracy``, ``test_accuracy`` and closed-form ``fisher_information`` with
    its ``fisher_distance`` and ``fisher_curvature`` terms; ``information_beta_<b>``,
    ``distance_beta_<b>`` and ``variance_beta_<b>`` (the variational ``KL(Q*_b || P)`` and its
    terms) for each reported ``beta``; ``threshold_beta`` (geometric mean over seeds of
    `transition_beta`) with ``threshold_beta_low`` and ``threshold_beta_high`` (95% t interval);
    ``threshold_beta_random`` and ``threshold_beta_real`` (with ``_low``, ``_high``) and
    ``lecture_transition_reproduced`` when those fractions are swept; the convergence figures
    ``num_fits``, ``capped_fits``, ``unconverged_fits``, ``worst_relative_change``; and
    ``num_parameters``, ``num_train``.
  """
  betas = common.beta_grid(config.sweep.beta_max, config.sweep.beta_min, config.sweep.num_betas)
  fractions, seeds = _check_config(config, betas)
  workdir = config_lib.prepare_workdir(config, workdir)
  splits = common.load_splits(config.dataset, data_dir=config.data_dir,
                              normalize=config.normalize, num_train=config.num_train, seed=0)
  num_classes = data.dataset_info(config.dataset, data_dir=config.data_dir).num_classes
  chance_loss = math.log(num_classes)
  input_shape = splits["train"]["image"].shape[1:]
  num_train = int(splits["train"]["label"].shape[0])
  metrics = os.path.join(workdir, common.METRICS_FILE)
  saved = common.saved_records(metrics)

  apply_fn = loss_fn = None  # one apply_fn, loss and optimiser for all: the sweeps compile once
  sweep_optimizer = train.make_optimizer(config.sweep.optimizer, steps_per_epoch=1,
                                         num_epochs=config.sweep.num_steps)
  records = []
  for seed in seeds:
    init_key, sweep_key = jax.random.split(jax.random.key(seed))
    model_apply_fn, initial = common.init_mlp(config.hidden_sizes, num_classes, input_shape,
                                              init_key)
    if apply_fn is None:  # the same MLP for every seed: only its weights differ
      apply_fn, loss_fn = model_apply_fn, common.mean_nll_fn(model_apply_fn)
    for index, fraction in enumerate(fractions):
      done = [r for r in saved if r["seed"] == seed and r["fraction"] == fraction]
      if done:
        records.extend(done)
        continue
      records.extend(_run_unit(
          config, seed=seed, index=index, fraction=fraction, splits=splits,
          num_classes=num_classes, apply_fn=apply_fn, initial=initial, sweep_key=sweep_key,
          loss_fn=loss_fn, sweep_optimizer=sweep_optimizer, betas=betas,
          workdir=_unit_dir(workdir, seed, fraction)))
      common.write_records(metrics, records, tensorboard=config.tensorboard)

  summary, lines, sweeps, thresholds, intervals = _summarise(
      records, config, fractions, seeds, num_train=num_train,
      num_parameters=common.num_parameters(initial), chance_loss=chance_loss)
  if io.is_primary_process():
    memorised = {f: _select(records, "memorisation", f) for f in fractions}
    _plot_information(os.path.join(workdir, INFORMATION_PLOT), config, fractions, seeds, sweeps,
                      memorised)
    _plot_transition(os.path.join(workdir, TRANSITION_PLOT), fractions, seeds, sweeps,
                     thresholds, intervals, chance_loss)
    shown = [f for f in (0.0, 1.0) if f in fractions] or [fractions[-1]]
    _plot_memorisation(os.path.join(workdir, MEMORISATION_PLOT), records, shown, seeds)
  common.write_summary(os.path.join(workdir, common.SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
