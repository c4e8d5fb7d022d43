"""Tests for the pac_bayes_bound experiment (infojax.experiments.pac_bayes_bound,
configs/pac_bayes_bound.py)."""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats

from infojax import train
from infojax.experiments import common
from infojax.experiments import pac_bayes_bound

import _configs


def _binary_kl(q, p):
  def term(a, b):
    return 0.0 if a == 0 else a * math.log(a / b)
  return term(q, p) + term(1 - q, 1 - p)


def _kl_inverse(q, c):
  """sup {p in [q, 1]: kl(q || p) <= c}, by scipy's root finder in float64."""
  if _binary_kl(q, 1 - 1e-15) <= c:
    return 1.0
  return scipy.optimize.brentq(lambda p: _binary_kl(q, p) - c, q, 1 - 1e-15, xtol=1e-14)


# ----------------------------------------------------------------------------------------------


def test_binary_labels_and_initial_posterior():
  np.testing.assert_array_equal(pac_bayes_bound.binary_labels([0, 4, 5, 9], threshold=5),
                                [0, 0, 1, 1])
  params = {"w": jnp.array([0.0, -0.5, 2.0]), "b": jnp.zeros(2)}
  posterior = pac_bayes_bound.initial_posterior(params, std_scale=2.0, min_variance=1e-6)
  np.testing.assert_allclose(np.exp(posterior.log_variance["w"]), [1e-6, 1.0, 16.0], rtol=1e-5)
  np.testing.assert_allclose(np.exp(posterior.log_variance["b"]), [1e-6, 1e-6], rtol=1e-5)


def test_bounded_cross_entropy_clips_the_bits_and_bounds_the_error():
  logits = jnp.array([[2.0, 0.0], [0.0, 0.3], [0.0, 20.0], [0.1, 0.0]])
  labels = jnp.array([0, 1, 0, 1])
  apply_fn = lambda params, inputs: inputs  # noqa: E731
  nll = -np.asarray(jax.nn.log_softmax(logits))[np.arange(4), np.asarray(labels)]
  for p_min in (0.5, 1e-5):
    loss = pac_bayes_bound.bounded_cross_entropy_fn(apply_fn, min_probability=p_min)
    expected = np.mean(np.minimum(nll, -math.log(p_min))) / -math.log(p_min)
    assert float(loss(None, (logits, labels))) == pytest.approx(expected, rel=1e-6)
  # At p_min = 1/2: min(bits, 1) per example, which is >= the 0-1 error of each prediction.
  half = pac_bayes_bound.bounded_cross_entropy_fn(apply_fn, min_probability=0.5)
  per_example = [float(half(None, (logits[i:i + 1], labels[i:i + 1]))) for i in range(4)]
  errors = np.argmax(np.asarray(logits), axis=1) != np.asarray(labels)
  assert np.all(np.asarray(per_example) >= errors) and per_example[2] == 1.0
  with pytest.raises(ValueError, match="min_probability"):
    pac_bayes_bound.bounded_cross_entropy_fn(apply_fn, min_probability=1.0)


def test_every_objective_trains_its_bound_with_the_union_charge():
  config = _configs.get_config("pac_bayes_bound", "smoke")
  settings = config.pac_bayes
  apply_fn, w0 = common.init_mlp((3,), 2, (4,), jax.random.key(0))
  inputs = jax.random.normal(jax.random.key(1), (100, 4))
  batch = (inputs, (inputs[:, 0] > 0).astype(jnp.int32))
  delta = settings.delta
  start = pac_bayes_bound.initial_posterior(w0, std_scale=0.5, min_variance=1e-4)
  prior_mean = jax.tree.map(lambda w: w + 0.1, w0)
  # A data-dependent prior's fit charges the bound's m (250), not the examples it trains on (500).
  cases = [(objective, None) for objective in pac_bayes_bound.OBJECTIVES] + [("f_quad", 250)]
  for objective, bound_examples in cases:
    fit = pac_bayes_bound.make_posterior_fit(objective, apply_fn, num_train=500,
                                             settings=settings, num_bound_examples=bound_examples)
    state = fit.init(start, prior_mean, jax.random.key(2))
    for _ in range(3):
      state, metrics = jax.jit(fit.update)(state, batch)
    m = bound_examples or 500
    values = {name: float(value) for name, value in metrics.items()}
    loss, kl, variance, trade_off = (values[name] for name in (
        "expected_loss", "kl", "prior_variance", "trade_off"))
    j = 100 * math.log(0.1 / variance)
    # Maurer's budget with the union bound over j (6 delta / (pi^2 j^2) on grid point j).
    budget = (kl + math.log(2 * math.sqrt(m) / (6 * delta / (math.pi ** 2 * j ** 2)))) / m
    expected = {
        "dziugaite_roy": loss + math.sqrt(
            (kl + 2 * math.log(j) + math.log(math.pi ** 2 * m / (6 * delta))) / (2 * (m - 1))),
        "f_quad": (math.sqrt(loss + budget / 2) + math.sqrt(budget / 2)) ** 2,
        "f_lambda": (loss + budget / trade_off) / (1 - trade_off / 2)}[objective]
    assert values["objective"] == pytest.approx(expected, rel=1e-4), objective
    assert 0 <= loss <= (1 if objective != "dziugaite_roy" else np.inf)
    # Only f_lambda trains its trade-off l; the prior mean stays where it was put.
    assert (trade_off != settings.trade_off_init) == (objective == "f_lambda"), objective
    assert float(jnp.exp(state.log_prior_variance)) <= 0.1 * math.exp(-1 / 100) * (1 + 1e-6)
    for leaf, expected_leaf in zip(jax.tree.leaves(state.prior_mean), jax.tree.leaves(prior_mean)):
      np.testing.assert_array_equal(leaf, expected_leaf)
  with pytest.raises(ValueError, match="objective"):
    pac_bayes_bound.make_posterior_fit("catoni", apply_fn, num_train=500, settings=settings)
  assert pac_bayes_bound.objective_prior("f_lambda_data_dependent") == ("f_lambda", True)
  assert pac_bayes_bound.objective_prior("f_quad") == ("f_quad", False)


def _check_certificate(c, m):
  for name in ("train_error", "monte_carlo_error_bound", "kl", "kl_distance", "kl_variance",
               "prior_variance", "prior_variance_index", "b_re", "bound", "pinsker_bound", "delta",
               "delta_monte_carlo", "total_delta", "num_examples", "num_mc_samples",
               "union_bound_term", "snn_test_error", "sgd_test_error", "snn_test_set_bound",
               "mean_test_set_bound", "sgd_test_set_bound", "objective_change", "vacuous"):
    assert name in c, name
  assert 0 <= c["train_error"] <= c["monte_carlo_error_bound"] <= c["bound"] <= 1
  assert c["bound"] <= c["pinsker_bound"] + 1e-6
  assert c["num_examples"] == m and c["total_delta"] == pytest.approx(0.035)
  assert c["kl_distance"] >= 0 and c["kl_distance"] + c["kl_variance"] == pytest.approx(c["kl"])
  # Every term recomputed in float64 from the reported ingredients.
  j = c["prior_variance_index"]
  assert j == int(j) and j >= 1
  assert c["prior_variance"] == pytest.approx(0.1 * math.exp(-j / 100), rel=1e-5)
  assert c["union_bound_term"] == pytest.approx(2 * math.log(j), abs=1e-4)
  b_re = (c["kl"] + 2 * math.log(j) + math.log(math.pi ** 2 * m / (6 * 0.025))) / (m - 1)
  assert c["b_re"] == pytest.approx(b_re, rel=1e-5)
  chernoff = _kl_inverse(c["train_error"], math.log(2 / 0.01) / c["num_mc_samples"])
  assert c["monte_carlo_error_bound"] == pytest.approx(chernoff, abs=1e-5)
  assert c["bound"] == pytest.approx(_kl_inverse(chernoff, b_re), abs=1e-4)
  assert c["vacuous"] == (c["bound"] >= 0.5)
  # The test-set bounds: the one-sided Clopper-Pearson limit at the same confidence.
  for name in ("snn", "mean", "sgd"):
    errors = round(c[f"{name}_test_error"] * 360)
    limit = 1.0 if errors == 360 else scipy.stats.beta.ppf(1 - 0.035, errors + 1, 360 - errors)
    assert c[f"{name}_test_set_bound"] == pytest.approx(limit, abs=2e-4), name


def test_smoke_certifies_real_labels_below_random_labels_and_resumes(tmp_path, monkeypatch):
  config = _configs.get_config("pac_bayes_bound", "smoke")
  assert config.objectives == ("dziugaite_roy", "f_lambda_data_dependent")
  assert len(config.seeds) == 1
  summary = pac_bayes_bound.run(config, str(tmp_path / "whole"))
  records = _configs.read_records(tmp_path / "whole")
  kinds = [r["kind"] for r in records]
  units = [(labels, o) for labels in config.labels for o in config.objectives]
  assert kinds.count("sgd") == 2 * (config.num_epochs + 1)
  assert kinds.count("pac_bayes") == len(units) * math.ceil(
      config.pac_bayes.num_epochs / config.pac_bayes.log_every)
  assert {r["seed"] for r in records} == set(config.seeds)
  certificates = {(r["labels"], r["objective"]): r for r in records if r["kind"] == "certificate"}
  assert list(certificates) == units
  assert sorted({(r["labels"], r["objective"]) for r in records if r["kind"] == "pac_bayes"}) == (
      sorted(units))
  num_train = summary["num_train"]
  num_prior = summary["num_prior_examples"]
  assert num_prior == round(config.pac_bayes.prior_fraction * num_train)
  for (labels, objective), c in certificates.items():
    data_dependent = objective.endswith("_data_dependent")
    # The data-dependent prior's certificate counts only the examples its prior did not see.
    _check_certificate(c, num_train - num_prior if data_dependent else num_train)
    assert c["num_prior_examples"] == (num_prior if data_dependent else 0)
    # Its prior mean is the SGD on the prior's part, away from w0; the other prior is w0.
    assert (c["prior_mean_shift"] > 0.1) if data_dependent else c["prior_mean_shift"] == 0
    name = f"{labels}_{objective}_bound"
    # One seed: the interval is the value itself.
    assert summary[name] == summary[name + "_low"] == summary[name + "_high"] == c["bound"]
  # The property the experiment is about: random labels cannot be certified (the smoke run's
  # short fits stay near the prior on real labels too; the default run's do not).
  for objective in config.objectives:
    assert certificates["random", objective]["vacuous"]
  assert summary["random_dziugaite_roy_bound"] > summary["real_dziugaite_roy_bound"]
  assert summary["real_best_bound"] == min(summary[f"real_{o}_bound"] for o in config.objectives)
  assert summary["real_dziugaite_roy_train_error"] < 0.2
  assert summary["random_dziugaite_roy_train_error"] > 0.3
  with open(tmp_path / "whole" / "pac_bayes_bound.png", "rb") as f:
    assert f.read(8) == _configs.PNG_SIGNATURE
  text = (tmp_path / "whole" / "summary.txt").read_text()
  assert "PAC-Bayes-kl bound" in text and "0.161" in text and "test-set bound" in text
  assert "real labels: the data-dependent prior (f_lambda_data_dependent" in text

  # Kill the run at the first posterior checkpoint of the second unit (real,
  # f_lambda_data_dependent; epoch 100 of 200); the rerun keeps the first unit, restores the
  # data-dependent prior's SGD, resumes that fit at epoch 100 and ends with the records of the
  # uninterrupted run.
  saves, kill_at = [], [3]
  original_save = train.Checkpointer.save

  def killing_save(self, epoch, state):
    original_save(self, epoch, state)
    if "pac_bayes_" in os.path.basename(self.directory):
      saves.append((os.path.relpath(self.directory, tmp_path / "killed" / "checkpoints"), epoch))
      if len(saves) == kill_at[0]:
        raise KeyboardInterrupt

  monkeypatch.setattr(train.Checkpointer, "save", killing_save)
  with pytest.raises(KeyboardInterrupt):
    pac_bayes_bound.run(config, str(tmp_path / "killed"))
  assert saves[-1] == ("seed0_real/pac_bayes_f_lambda_data_dependent", 100)
  saves.clear()
  kill_at[0] = None
  assert pac_bayes_bound.run(config, str(tmp_path / "killed")) == summary
  assert saves[0] == ("seed0_real/pac_bayes_f_lambda_data_dependent", 200)
  assert len(saves) == 1 + 2 * 2
  assert _configs.read_records(tmp_path / "killed") == records


def test_bad_configs():
  for field, value, match in [("objectives", ("f_quad", "catoni"), "objectives must be"),
                              ("objectives", ("f_quad_data_dependent",) * 2, "objectives must be"),
                              ("labels", (), "labels must be"), ("seeds", (0, 0), "seeds must"),
                              ("seeds", (), "seeds must"), ("seeds", (-1,), "seeds must")]:
    config = _configs.get_config("pac_bayes_bound", "smoke")
    setattr(config, field, value)
    with pytest.raises(ValueError, match=match):
      pac_bayes_bound.run(config, "/nonexistent/never/written")
  config = _configs.get_config("pac_bayes_bound", "smoke")
  config.pac_bayes.checkpoint_every = 75
  with pytest.raises(ValueError, match="multiple of pac_bayes.log_every"):
    pac_bayes_bound.run(config, "/nonexistent/never/written")
  config = _configs.get_config("pac_bayes_bound", "smoke")
  config.pac_bayes.prior_fraction = 1.0
  with pytest.raises(ValueError, match="prior_fraction"):
    pac_bayes_bound.run(config, "/nonexistent/never/written")
