"""Tests for infojax.tasks.suite: names, shapes, labels against the raw data, determinism."""

import numpy as np
import pytest

from infojax import data
from infojax.tasks import suite


def _bijection(first, second) -> dict:
  """The map first label -> second label, asserting that it is one-to-one."""
  pairs = set(zip(first.tolist(), second.tolist()))
  mapping = dict(pairs)
  assert len(mapping) == len(pairs) == len(set(mapping.values()))
  return mapping


def test_task_names_cover_every_family_once():
  names = suite.task_names()
  assert len(names) == len(set(names))
  assert {name.split("/")[0] for name in names} == set(suite.FAMILIES)
  assert suite.task_names(("sprites",)) == tuple(n for n in names if n.startswith("sprites/"))
  for name in ("digits/classes_0-4", "digits/permuted", "sprites/shape", "mnist1d/inverted"):
    assert name in names
  with pytest.raises(ValueError, match="unknown family"):
    suite.task_names(("cifar10",))
  with pytest.raises(TypeError, match="not one string"):
    suite.task_names("digits")


@pytest.mark.parametrize("name", ["digits/classes_5-9", "mnist1d/even_odd", "sprites/position_x",
                                  "digits/one_vs_rest_3"])
def test_shapes_dtypes_label_ranges_and_standardisation(name):
  task = suite.make_task(name, num_train=200, num_test=50)
  assert (task.name, task.family) == (name, name.split("/")[0])
  for split, size in (("train", 200), ("test", 50)):
    arrays = task._asdict()[split]
    assert arrays["image"].shape == (size,) + suite.INPUT_SHAPE
    assert arrays["image"].dtype == np.float32 and arrays["label"].dtype == np.int32
    assert arrays["label"].min() >= 0 and arrays["label"].max() < task.num_classes
  np.testing.assert_array_equal(np.unique(task.train["label"]), np.arange(task.num_classes))
  np.testing.assert_allclose(task.train["image"].mean(), 0.0, atol=1e-5)
  np.testing.assert_allclose(task.train["image"].std(), 1.0, rtol=1e-4)


def test_digit_labels_match_the_raw_labels():
  raw = data.load("digits", "test", process_local=False)["label"]
  expected = {
      "digits/all": (raw, raw >= 0, 10),
      "digits/classes_5-9": (raw[raw >= 5] - 5, raw >= 5, 5),
      "digits/classes_0-4": (raw[raw < 5], raw < 5, 5),
      "digits/even_odd": (raw % 2, raw >= 0, 2),
      "digits/one_vs_rest_7": ((raw == 7).astype(int), raw >= 0, 2),
  }
  full = suite.make_task("digits/all")
  for name, (labels, keep, num_classes) in expected.items():
    task = suite.make_task(name)
    assert task.num_classes == num_classes
    np.testing.assert_array_equal(task.test["label"], labels)
    # The same images as the 10-way task, up to the (positive) affine standardisation.
    ratio = np.corrcoef(task.test["image"].reshape(-1), full.test["image"][keep].reshape(-1))
    np.testing.assert_allclose(ratio[0, 1], 1.0, atol=1e-5)


def test_digit_images_are_the_upsampled_digits():
  raw = data.load("digits", "train", process_local=False)["image"][..., 0]
  images = suite.make_task("digits/all").train["image"][..., 0]
  nearest = np.kron(raw, np.ones((1, 2, 2)))  # (N, 16, 16) nearest-neighbour upsampling
  for image, reference in zip(images[:50], nearest[:50]):
    assert np.corrcoef(image.reshape(-1), reference.reshape(-1))[0, 1] > 0.9


def test_permuted_and_inverted_copies():
  for family, base in (("digits", "all"), ("sprites", "shape")):
    task = suite.make_task(f"{family}/{base}", num_train=300, num_test=100)
    permuted = suite.make_task(f"{family}/permuted", num_train=300, num_test=100)
    inverted = suite.make_task(f"{family}/inverted", num_train=300, num_test=100)
    for split in ("train", "test"):
      ours, theirs = task._asdict()[split], permuted._asdict()[split]
      np.testing.assert_array_equal(ours["image"], theirs["image"])
      mapping = _bijection(ours["label"], theirs["label"])
      assert any(key != value for key, value in mapping.items())
      # Standardising 1 - x gives minus the standardised x.
      np.testing.assert_allclose(inverted._asdict()[split]["image"], -ours["image"], atol=1e-4)
      np.testing.assert_array_equal(inverted._asdict()[split]["label"], ours["label"])
    # One permutation for both splits.
    assert _bijection(task.train["label"], permuted.train["label"]) == _bijection(
        task.test["label"], permuted.test["label"])


def test_sprites_tasks_share_images_and_their_labels_follow_the_pictures():
  tasks = suite.make_suite(("sprites/shape", "sprites/scale", "sprites/position_x",
                            "sprites/position_y"), seed=1)
  for task in tasks[1:]:
    np.testing.assert_array_equal(task.train["image"], tasks[0].train["image"])
  images = tasks[0].train["image"][..., 0]
  mass = images - images.min()
  rows, columns = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
  centre_x = (mass * columns).sum((1, 2)) / mass.sum((1, 2))
  centre_y = (mass * rows).sum((1, 2)) / mass.sum((1, 2))
  # Bins of position x (y) have increasing mean centre of mass in x (y); larger scales, more mass.
  for task, statistic in ((tasks[2], centre_x), (tasks[3], centre_y), (tasks[1], mass.sum((1, 2)))):
    means = [statistic[task.train["label"] == k].mean() for k in range(task.num_classes)]
    assert np.all(np.diff(means) > 0), (task.name, means)


def test_mnist1d_plots_follow_the_signal():
  raw = data.load("mnist1d", "test", process_local=False)["image"][:100, :, 0]
  images = suite.make_task("mnist1d/all").test["image"][:100, :, :, 0]
  # The brightest row of the plot, averaged over time, rises (row index falls) with the signal.
  brightest = images.argmax(axis=1).mean(axis=1)
  assert np.corrcoef(brightest, raw.mean(axis=1))[0, 1] < -0.8


def test_same_arguments_same_task_and_seeds_select_subsets():
  first = suite.make_task("digits/even_odd", seed=3, num_train=40)
  again = suite.make_task("digits/even_odd", seed=3, num_train=40)
  other = suite.make_task("digits/even_odd", seed=4, num_train=40)
  np.testing.assert_array_equal(first.train["image"], again.train["image"])
  np.testing.assert_array_equal(first.train["label"], again.train["label"])
  assert not np.array_equal(first.train["image"], other.train["image"])
  # As few examples as classes: one of each.
  one_each = suite.make_task("digits/all", num_train=10, num_test=10)
  np.testing.assert_array_equal(np.bincount(one_each.train["label"]), np.ones(10))
  # The sprites test split does not depend on num_train; a new seed draws new sprites.
  small = suite.make_task("sprites/scale", num_train=50, num_test=30)
  large = suite.make_task("sprites/scale", num_train=80, num_test=30)
  np.testing.assert_array_equal(small.test["label"], large.test["label"])
  np.testing.assert_allclose(np.corrcoef(small.test["image"].reshape(-1),
                                         large.test["image"].reshape(-1))[0, 1], 1.0, atol=1e-5)
  assert not np.array_equal(small.test["label"],
                            suite.make_task("sprites/scale", seed=5, num_train=50,
                                            num_test=30).test["label"])


def test_errors_name_the_argument():
  with pytest.raises(ValueError, match="unknown task name"):
    suite.make_task("digits/classes_0-3")
  with pytest.raises(ValueError, match="num_train = 4 is fewer than the task's 5 classes"):
    suite.make_task("digits/classes_0-4", num_train=4)
  with pytest.raises(ValueError, match="num_train = 2000 exceeds"):
    suite.make_task("digits/all", num_train=2000)
  with pytest.raises(ValueError, match="num_train"):
    suite.make_task("sprites/position_x", num_train=3)
  with pytest.raises(ValueError, match="num_test must be a positive integer"):
    suite.make_task("digits/all", num_test=0)
  with pytest.raises(ValueError, match="seed"):
    suite.make_task("digits/all", seed=-1)
  with pytest.raises(TypeError, match="not one string"):
    suite.make_suite("digits/all")
  with pytest.raises(ValueError, match="distinct"):
    suite.make_suite(["digits/all", "digits/all"])
