"""Tests of infojax.experiments.common: the shared experiment toolkit."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from infojax import train
from infojax.experiments import common
from infojax.io import tensorboard


class _Killed(Exception):
  pass


def _problem():
  apply_fn, w0 = common.init_mlp((8,), 3, (5,), jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = (rng.normal(size=(48, 5)).astype(np.float32), rng.integers(0, 3, 48).astype(np.int32))
  return common.mean_nll_fn(apply_fn), w0, batch


def test_lagrangian_sweep_converges_per_beta_and_resumes_exactly(tmp_path, monkeypatch):
  loss_fn, w0, batch = _problem()
  options = dict(prior_variance=0.01, optimizer=optax.adam(1e-2), num_steps=120,
                 key=jax.random.key(1), eval_samples=4, tolerance=5e-3, check_every=20)
  betas = [0.1, 10.0, 1.0]
  points = common.lagrangian_sweep(loss_fn, w0, batch, betas, **options)
  assert [p["beta"] for p in points] == [10.0, 1.0, 0.1]
  for point in points:
    assert point["steps"] % 20 == 0 and 20 <= point["steps"] <= 120
    assert point["steps"] == 120 or point["relative_change"] <= 5e-3
    np.testing.assert_allclose(point["information_distance"] + point["information_variance"],
                               point["information"], rtol=1e-6)
    assert point["code_length"] == pytest.approx(48 * point["expected_loss"] + point["information"])
  # Killed while saving the second point, then rerun: the same points, the first one not refitted.
  save = train.Checkpointer.save
  calls = []

  def killing_save(self, epoch, state):
    calls.append(epoch)
    if len(calls) == 2:
      raise _Killed
    save(self, epoch, state)

  monkeypatch.setattr(train.Checkpointer, "save", killing_save)
  with pytest.raises(_Killed):
    common.lagrangian_sweep(loss_fn, w0, batch, betas, workdir=str(tmp_path), **options)
  monkeypatch.setattr(train.Checkpointer, "save", save)
  fitted = []
  original = common.weights.trace_structure_function

  def counting(*args, **kwargs):
    fitted.append(float(args[3][0]))
    return original(*args, **kwargs)

  monkeypatch.setattr(common.weights, "trace_structure_function", counting)
  assert common.lagrangian_sweep(loss_fn, w0, batch, betas, workdir=str(tmp_path),
                                 **options) == points
  assert fitted == [1.0, 0.1]


def test_mean_interval_matches_scipy_and_covers_the_mean():
  values = [1.0, 2.5, 3.0, 4.5]
  mean, low, high = common.mean_interval(values, confidence=0.9)
  expected = scipy.stats.t.interval(0.9, 3, loc=np.mean(values),
                                    scale=scipy.stats.sem(values))
  np.testing.assert_allclose((low, high), expected, rtol=1e-12)
  assert mean == pytest.approx(2.75)
  assert common.mean_interval([2.0]) == (2.0, 2.0, 2.0)
  # Coverage over repeated draws of 3 normal values: about 95%.
  rng = np.random.default_rng(0)
  covered = [low <= 0.0 <= high for _, low, high in
             (common.mean_interval(rng.normal(size=3)) for _ in range(2000))]
  assert abs(np.mean(covered) - 0.95) < 0.02
  for bad, match in (([], "non-empty"), ([1.0, math.nan], "finite"), ([[1.0]], "1-D")):
    with pytest.raises(ValueError, match=match):
      common.mean_interval(bad)
  with pytest.raises(ValueError, match="confidence"):
    common.mean_interval([1.0, 2.0], confidence=1.0)


def test_write_records_mirrors_to_tensorboard_and_a_rerun_replaces_the_events(tmp_path):
  pytest.importorskip("tensorboardX")
  path = str(tmp_path / common.METRICS_FILE)
  records = [{"kind": "point", "beta": 1.0, "loss": 0.5, "name": "a"},
             {"kind": "point", "beta": 0.1, "loss": 0.25, "flag": True}]
  common.write_records(path, records[:1], tensorboard=True)
  common.write_records(path, records, tensorboard=True)
  assert common.saved_records(path) == records
  assert common.saved_records(str(tmp_path / "absent.jsonl")) == []
  logdir = str(tmp_path / tensorboard.TENSORBOARD_DIR)
  assert sorted(tensorboard.read_scalars(logdir)) == sorted(  # TensorBoard stores float32
      [("point/beta", 0, 1.0), ("point/loss", 0, 0.5), ("point/beta", 1, float(np.float32(0.1))),
       ("point/loss", 1, 0.25)])
  # Another process (here: a fresh mirror) rewriting the records replaces the events.
  common._MIRRORED.clear()  # pylint: disable=protected-access
  common.write_records(path, [{"kind": "point", "loss": 2.0}], tensorboard=True)
  assert tensorboard.read_scalars(logdir) == [("point/loss", 0, 2.0)]


def test_beta_grid():
  grid = common.beta_grid(10.0, 1e-3, 13)
  np.testing.assert_allclose(grid, 10.0 ** np.linspace(1, -3, 13), rtol=1e-12)
  with pytest.raises(ValueError, match="beta_min"):
    common.beta_grid(1.0, 2.0, 3)


def test_load_splits_subsets_and_standardises():
  splits = common.load_splits("digits", num_train=300, seed=1)
  assert splits["train"]["image"].shape == (300, 8, 8, 1)
  assert splits["test"]["label"].shape == (360,)
  assert abs(float(splits["train"]["image"].mean())) < 1e-5
  assert float(splits["train"]["image"].std()) == pytest.approx(1.0, rel=1e-4)
  other = common.load_splits("digits", num_train=300, seed=2)
  assert not np.array_equal(splits["train"]["label"], other["train"]["label"])
  with pytest.raises(ValueError, match="num_train"):
    common.load_splits("digits", num_train=10 ** 6)
  # Per process: on one process its share is the whole split, standardised the same way.
  whole, local = common.load_splits("digits"), common.load_splits("digits", process_local=True)
  for split in ("train", "test"):
    for name in ("image", "label"):
      np.testing.assert_array_equal(local[split][name], whole[split][name])
  with pytest.raises(ValueError, match="process_local"):
    common.load_splits("digits", num_train=300, process_local=True)


def test_fisher_information_matches_the_closed_form_of_softmax_regression():
  """For logits x W + b the true Fisher diagonal is mean_n x_nj^2 p_nk (1 - p_nk) (and
  p_nk (1 - p_nk) for b); the information is sum (w - w0)^2/(2 lambda^2)
  + 1/2 sum g(lambda^2 h N / beta) in float64, with beta for the summed loss."""
  rng = np.random.default_rng(0)
  num_examples, features, classes = 40, 5, 3
  inputs = rng.normal(size=(num_examples, features)).astype(np.float32)
  labels = rng.integers(0, classes, size=num_examples).astype(np.int32)
  params = {"w": jnp.asarray(rng.normal(size=(features, classes)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=classes), jnp.float32)}
  prior_mean = {"w": jnp.asarray(rng.normal(size=(features, classes)), jnp.float32),
                "b": jnp.zeros(classes, jnp.float32)}
  beta, prior_variance = 0.5, 0.3

  def apply_fn(p, x):
    return x @ p["w"] + p["b"][None, :]

  result = common.fisher_information(apply_fn, params, (inputs, labels), beta=beta,
                                     prior_variance=prior_variance, prior_mean=prior_mean)
  x = inputs.astype(np.float64)
  logits = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  variance = probs * (1 - probs)
  curvature = {"w": (x ** 2).T @ variance / num_examples, "b": variance.mean(0)}

  def g(s):
    return np.log1p(s) - s / (1 + s)

  mean_term = sum(((np.asarray(params[k], np.float64) - np.asarray(prior_mean[k], np.float64))
                   ** 2).sum() for k in params) / (2 * prior_variance)
  curvature_term = sum(0.5 * g(prior_variance * curvature[k] * num_examples / beta).sum()
                       for k in params)
  assert result["information"] == pytest.approx(mean_term + curvature_term, rel=1e-4)
  assert result["information_mean_term"] == pytest.approx(mean_term, rel=1e-5)
  assert result["information_curvature_term"] == pytest.approx(curvature_term, rel=1e-3)
