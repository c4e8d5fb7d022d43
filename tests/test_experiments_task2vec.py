"""Tests for the task2vec experiment (infojax.experiments.task2vec, configs/task2vec.py)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from infojax import models
from infojax.experiments import task2vec as experiment
from infojax.tasks import suite
from infojax.tasks import task2vec

import _configs

pytestmark = pytest.mark.filterwarnings(
    r"ignore:the load_module\(\) method is deprecated:DeprecationWarning")  # ml_collections


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _task(name, family, images, labels):
  arrays = {"image": np.asarray(images, np.float32), "label": np.asarray(labels, np.int32)}
  return suite.Task(name=name, family=family, train=arrays, test=arrays,
                    num_classes=int(np.max(labels)) + 1)


def test_fisher_subset_is_balanced_and_blind_to_class_names():
  labels = np.random.default_rng(0).integers(3, size=200)
  index = experiment.fisher_subset(labels, 3, 90, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[index]), [30, 30, 30])
  assert np.all(np.diff(index) > 0)
  relabelled = np.array([2, 0, 1])[labels]
  np.testing.assert_array_equal(experiment.fisher_subset(relabelled, 3, 90, seed=1), index)
  # Capped by the smallest class.
  labels[labels == 2] = 1
  labels[:5] = 2
  capped = experiment.fisher_subset(labels, 3, 90, seed=1)
  np.testing.assert_array_equal(np.bincount(labels[capped]), [5, 5, 5])
  with pytest.raises(ValueError, match="fisher_examples = 2"):
    experiment.fisher_subset(labels, 3, 2, seed=1)


def test_task_relations_from_the_data():
  images = np.random.default_rng(0).normal(size=(6, 2, 2, 1))
  other = images + 1.0
  tasks = [_task("a/base", "a", images, [0, 1, 2, 0, 1, 2]),
           _task("a/permuted", "a", images, [2, 0, 1, 2, 0, 1]),
           _task("a/coarse", "a", images, [0, 1, 1, 0, 1, 1]),
           _task("b/base", "b", other, [0, 1, 2, 0, 1, 2])]
  relations = experiment.task_relations(tasks)
  assert relations["relabelled"] == [(0, 1)]
  assert relations["same_inputs"] == [(0, 2), (1, 2)]
  assert relations["same_family"] == [(0, 1), (0, 2), (1, 2)]
  assert relations["other_family"] == [(0, 3), (1, 3), (2, 3)]


def test_matrix_statistics_ranks_against_a_brute_force_count():
  rng = np.random.default_rng(3)
  points = rng.normal(size=(5, 2))
  matrix = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))
  relations = {"relabelled": [(0, 3), (1, 2)], "same_inputs": [(0, 1)],
               "same_family": [(0, 1), (0, 3), (1, 2)],
               "other_family": [(0, 2), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]}
  stats = experiment.matrix_statistics(matrix, relations, [1, 2, 3, 4, 5],
                                       [0.1, 0.3, 0.2, 0.5, 0.4])
  pairs = [matrix[i, j] for i in range(5) for j in range(i + 1, 5)]
  for entry in stats["relabelled"]:
    i, j = entry["pair"]
    assert entry["pair_rank"] == sum(value <= matrix[i, j] for value in pairs)
    assert entry["neighbour_rank"] == sum(matrix[i, k] <= matrix[i, j] for k in range(5) if k != i)
    assert entry["distance"] == pytest.approx(matrix[i, j])
  assert stats["relabelled_max"] == pytest.approx(max(matrix[0, 3], matrix[1, 2]))
  assert stats["same_inputs_median"] == pytest.approx(matrix[0, 1])
  assert stats["other_family_min"] == pytest.approx(min(matrix[i, j] for i, j in
                                                        relations["other_family"]))
  assert stats["norm_vs_error_spearman"] == pytest.approx(0.8)


def test_smoke_run_records_plots_summary_and_resume(tmp_path, monkeypatch):
  config = _configs.get_config("task2vec", "smoke")
  summary = experiment.run(config, str(tmp_path))
  records = _records(tmp_path)
  kinds = [r["kind"] for r in records]
  assert kinds[0] == "probe" and 0.0 <= records[0]["test_accuracy"] <= 1.0
  embeddings = [r for r in records if r["kind"] == "embedding"]
  assert [(r["probe"], r["task"], r["method"]) for r in embeddings] == [
      (p, t, m) for p in config.probes for t in config.tasks for m in config.methods]
  for record in embeddings:
    vector = np.asarray(record["embedding"])
    assert vector.shape == (sum(config.channels),) and np.all(vector >= 0)
    assert record["norm"] == pytest.approx(np.linalg.norm(vector), rel=1e-5)
    assert 0.0 <= record["test_error"] <= 1.0 and 0.0 <= record["train_error"] <= 1.0
  for matrix in (r for r in records if r["kind"] == "matrix"):
    stacked = np.stack([r["embedding"] for r in embeddings
                        if (r["probe"], r["method"]) == (matrix["probe"], matrix["method"])])
    np.testing.assert_allclose(matrix["distances"], task2vec.distance_matrix(stacked), atol=1e-6)
    # digits/permuted is a relabelled copy of digits/all (found from the data).
    assert [r["pair"] for r in matrix["relabelled"]] == [[0, 1]]
  estimator = [r for r in records if r["kind"] == "estimator"]
  assert [r["probe"] for r in estimator] == list(config.probes)
  assert all(len(r["embedding_distance"]) == len(config.tasks) for r in estimator)
  assert {r["method"] for r in records if r["kind"] == "probes"} == set(config.methods)
  for name in (experiment.MATRIX_PLOT, experiment.DENDROGRAM_PLOT):
    with open(tmp_path / name, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # The saved probes; the pooled features are the head's inputs (logits = features @ W + b).
  probes = experiment.load_probes(str(tmp_path / experiment.PROBES_FILE))
  assert set(probes) == set(experiment.PROBES)
  params = probes["trained"]
  num_classes = params["Dense_0"]["bias"].shape[0]
  images = np.random.default_rng(0).normal(size=(5,) + suite.INPUT_SHAPE).astype(np.float32)
  features = experiment.probe_features(config, params, images, chunk=2)
  assert features.shape == (5, config.channels[-1])
  logits = features @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"][None]
  apply_fn = models.make_apply_fn(experiment.probe_model(config, num_classes))
  np.testing.assert_allclose(logits, apply_fn(params, jnp.asarray(images)), rtol=1e-5, atol=1e-5)
  text = (tmp_path / "summary.txt").read_text()
  assert "Achille et al. 2019" in text and "digits/permuted" in text
  assert "minibatch_squared against exact" in text

  # Resume: drop the last embedding point (and the statistics); only it is computed again.
  last = kinds.index("matrix") - 1
  with open(tmp_path / "metrics.jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in records[:last])
  calls = []
  original = experiment.embed

  def counting(*args, **kwargs):
    calls.append(args[2].name)
    return original(*args, **kwargs)

  monkeypatch.setattr(experiment, "embed", counting)
  again = experiment.run(config, str(tmp_path))
  assert calls == [config.tasks[-1]]
  resumed = _records(tmp_path)
  assert [r["kind"] for r in resumed] == kinds
  np.testing.assert_allclose(resumed[last]["embedding"], records[last]["embedding"], rtol=1e-5)
  assert resumed[last]["test_error"] == records[last]["test_error"]
  assert again == pytest.approx(summary, nan_ok=True)


def test_bad_config_is_rejected(tmp_path):
  config = _configs.get_config("task2vec", "smoke")
  config.methods = ("minibatch_squared",)
  with pytest.raises(ValueError, match="must include 'exact'"):
    experiment.run(config, str(tmp_path))
  with pytest.raises(ValueError, match="unknown config argument"):
    _configs.get_config("task2vec", "huge")
