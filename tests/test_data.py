"""Tests of infojax.data: TFDS sources, the offline builders, the seeded batcher.

Offline datasets are built into a session-scoped temporary data directory; real datasets are
exercised with ``tfds.testing.mock_data``. Nothing touches the network.
"""

import os
import subprocess
import sys
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np
import pytest
from sklearn import datasets as sklearn_datasets
import tensorflow_datasets as tfds

from infojax import data
from infojax.data import sources
from infojax.data.builders import mnist1d
from infojax.data.builders import sprites

TINY_STRIDES = {"scale_stride": 3, "orientation_stride": 10, "position_stride": 8}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _rows(arrays):
  """Each example (image bytes and label) as one hashable row."""
  images = np.ascontiguousarray(arrays["image"])
  return [image.tobytes() + int(label).to_bytes(2, "little")
          for image, label in zip(images, arrays["label"])]


def test_import_does_not_need_tensorflow_datasets():
  code = ("import sys; sys.modules['tensorflow_datasets'] = None; import infojax.data as d; "
          "import numpy as np; x = d.batches({'a': np.arange(10)}, 5, seed=0, epoch=0); "
          "assert x['a'].shape == (2, 5)")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=False)
  assert result.returncode == 0, result.stderr


# --- digits ---------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_sizes(data_dir):
  train = data.load("digits", "train", data_dir=data_dir)
  test = data.load("digits", "test", data_dir=data_dir)
  assert set(train) == {"image", "label"}
  assert train["image"].shape == (1437, 8, 8, 1) and test["image"].shape == (360, 8, 8, 1)
  assert train["image"].dtype == np.float32 and train["label"].dtype == np.int32
  assert train["image"].min() == 0.0 and train["image"].max() == 1.0
  assert set(np.unique(train["label"])) == set(range(10))
  spec = data.dataset_info("digits", data_dir=data_dir)
  assert spec.num_classes == 10 and spec.input_shape == (8, 8, 1)
  assert dict(spec.num_examples) == {"train": 1437, "test": 360}


def test_digits_split_is_a_partition_of_sklearn_digits(data_dir):
  train = data.load("digits", "train", data_dir=data_dir)
  test = data.load("digits", "test", data_dir=data_dir)
  bunch = sklearn_datasets.load_digits()
  reference = {"image": (np.round(bunch.images * 255 / 16) / 255).astype(np.float32)[..., None],
               "label": bunch.target}
  train_rows, test_rows = _rows(train), _rows(test)
  assert not set(train_rows) & set(test_rows)
  assert sorted(train_rows + test_rows) == sorted(_rows(reference))


def test_digits_rebuild_is_identical(data_dir, tmp_path):
  first = data.load("digits", "test", data_dir=data_dir)
  second = data.load("digits", "test", data_dir=tmp_path)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])


def test_source_gives_raw_random_access_examples(data_dir):
  source = data.source("digits", "test", data_dir=data_dir)
  assert len(source) == 360
  example = source[7]
  assert example["image"].shape == (8, 8, 1) and example["image"].dtype == np.uint8
  assert 0 <= int(example["label"]) < 10
  loaded = data.load("digits", "test", data_dir=data_dir)
  np.testing.assert_array_equal(loaded["image"][7], example["image"] / np.float32(255))


def test_process_local_splits_are_disjoint_and_equal(data_dir, monkeypatch):
  whole = _rows(data.load("digits", "train", data_dir=data_dir, process_local=False))
  barriers = []
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(multihost_utils, "sync_global_devices", barriers.append)
  parts = []
  for index in range(2):
    monkeypatch.setattr(jax, "process_index", lambda index=index: index)
    parts.append(_rows(data.load("digits", "train", data_dir=data_dir)))
  assert len(barriers) == 2  # every process passes the preparation barrier
  assert len(parts[0]) == len(parts[1]) == 1437 // 2
  assert not set(parts[0]) & set(parts[1])
  assert set(parts[0]) | set(parts[1]) <= set(whole)


def test_split_slicing(data_dir):
  head = data.load("digits", "train[:100]", data_dir=data_dir)
  assert head["image"].shape == (100, 8, 8, 1)


# --- mnist1d --------------------------------------------------------------------------------


def test_mnist1d_shapes_and_balance(data_dir):
  train = data.load("mnist1d", "train", data_dir=data_dir)
  test = data.load("mnist1d", "test", data_dir=data_dir)
  assert train["image"].shape == (4000, 40, 1) and test["image"].shape == (1000, 40, 1)
  assert train["image"].dtype == np.float32 and train["label"].dtype == np.int32
  assert np.all(np.isfinite(train["image"]))
  counts = np.bincount(np.concatenate([train["label"], test["label"]]), minlength=10)
  np.testing.assert_array_equal(counts, np.full(10, 500))
  spec = data.dataset_info("mnist1d", data_dir=data_dir)
  assert spec.num_classes == 10 and spec.input_shape == (40, 1)


def test_mnist1d_rebuild_is_identical(data_dir, tmp_path):
  first = data.load("mnist1d", "test", data_dir=data_dir)
  second = data.load("mnist1d", "test", data_dir=tmp_path)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])


def test_mnist1d_generator_is_seeded():
  first, labels = mnist1d.generate(50, seed=3)
  again, labels_again = mnist1d.generate(50, seed=3)
  other, _ = mnist1d.generate(50, seed=4)
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(labels, labels_again)
  assert not np.allclose(first, other)


def test_mnist1d_without_perturbations_is_the_resampled_template():
  recipe = mnist1d.Mnist1dRecipe(padding=(0, 0), amplitude_scale=0.0, max_translation=1,
                                 correlated_noise_scale=0.0, iid_noise_scale=0.0, shear_scale=0.0)
  signals, labels = mnist1d.generate(20, seed=0, recipe=recipe)
  templates = mnist1d.templates()
  assert templates.shape == (10, 12)
  np.testing.assert_allclose(templates[:, [0, -1]], 0.0, atol=1e-12)
  np.testing.assert_allclose(templates.std(), 1.0)
  for signal, label in zip(signals, labels):
    expected = np.interp(np.linspace(0, 11, 40), np.arange(12), templates[label])
    np.testing.assert_allclose(signal, expected, atol=1e-6)


def test_mnist1d_is_learnable_but_not_linearly(data_dir):
  # The benchmark's point: a linear classifier (least squares on one-hot targets) is well above
  # chance (10%) yet far from solving it.
  train = data.load("mnist1d", "train", data_dir=data_dir)
  test = data.load("mnist1d", "test", data_dir=data_dir)

  def features(arrays):
    return np.concatenate([arrays["image"][:, :, 0], np.ones((len(arrays["label"]), 1))], axis=1)

  weights = np.linalg.lstsq(features(train), np.eye(10)[train["label"]], rcond=None)[0]
  accuracy = np.mean(np.argmax(features(test) @ weights, axis=1) == test["label"])
  assert 0.15 < accuracy < 0.5


def test_mnist1d_recipe_is_validated():
  with pytest.raises(ValueError, match="padding"):
    mnist1d.generate(10, seed=0, recipe=mnist1d.Mnist1dRecipe(padding=(5, 2)))
  with pytest.raises(ValueError, match="num_examples"):
    mnist1d.generate(0, seed=0)


# --- sprites --------------------------------------------------------------------------------


def test_sprites_tiny_is_the_factor_grid(data_dir):
  arrays = data.load("sprites/tiny", "train", data_dir=data_dir)
  assert set(arrays) == {"image", "label", "factors", "values"}
  assert arrays["image"].shape == (384, 32, 32, 1) and arrays["image"].dtype == np.float32
  assert set(np.unique(arrays["image"])) == {0.0, 1.0}
  assert arrays["factors"].dtype == np.int32 and arrays["values"].dtype == np.float32
  np.testing.assert_array_equal(arrays["label"], arrays["factors"][:, 0])
  expected = {tuple(row) for row in sprites.factor_grid(**TINY_STRIDES)}
  assert len(expected) == 384
  assert {tuple(row) for row in arrays["factors"]} == expected
  np.testing.assert_allclose(arrays["values"], sprites.factor_values(arrays["factors"]))
  images = sprites.render(arrays["values"], image_size=32)
  np.testing.assert_array_equal(arrays["image"][..., 0], images / 255.0)
  spec = data.dataset_info("sprites/tiny", data_dir=data_dir)
  assert spec.num_classes == 3 and spec.input_shape == (32, 32, 1)
  assert dict(spec.num_examples) == {"train": 384}


def test_sprites_rebuild_is_identical(data_dir, tmp_path):
  first = data.load("sprites/tiny", "train", data_dir=data_dir)
  second = data.load("sprites/tiny", "train", data_dir=tmp_path)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])


def test_sprites_factor_values():
  values = sprites.factor_values(np.array([[0, 0, 0, 0, 0], [2, 5, 10, 31, 16]]))
  np.testing.assert_allclose(values[0], [0.0, 0.5, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(values[1], [2.0, 1.0, np.pi / 2, 1.0, 16 / 31], rtol=1e-6)
  with pytest.raises(ValueError, match="grid"):
    sprites.factor_values(np.array([[3, 0, 0, 0, 0]]))


def test_sprites_geometry():
  # Area grows as scale squared (a square at scale 1 has side 0.3 of the image).
  squares = sprites.render(np.array([[0, 0.5, 0, 0.5, 0.5], [0, 1.0, 0, 0.5, 0.5]]),
                           image_size=64)
  areas = (squares > 0).sum(axis=(1, 2))
  assert abs(areas[1] / (0.3 * 64) ** 2 - 1) < 0.1
  assert abs(areas[1] / areas[0] - 4) < 0.4
  # The centroid follows position x (columns) and position y (rows).
  positions = np.linspace(0, 1, 5)
  along_x = sprites.render(np.array([[1, 0.7, 0, p, 0.5] for p in positions]), image_size=64)
  along_y = sprites.render(np.array([[2, 0.7, 0, 0.5, p] for p in positions]), image_size=64)
  columns = [np.nonzero(image)[1].mean() for image in along_x]
  rows = [np.nonzero(image)[0].mean() for image in along_y]
  assert np.all(np.diff(columns) > 5) and np.all(np.diff(rows) > 5)
  # A centred ellipse turned by a quarter turn is its transpose; the heart is not up-down
  # symmetric.
  ellipses = sprites.render(np.array([[1, 1.0, 0, 0.5, 0.5], [1, 1.0, np.pi / 2, 0.5, 0.5]]),
                            image_size=64)
  assert ellipses[0].sum() > 0
  assert np.mean(ellipses[1] != ellipses[0].T) < 0.005
  heart = sprites.render(np.array([[2, 1.0, 0, 0.5, 0.5]]), image_size=64)[0]
  assert np.mean(heart != heart[::-1]) > 0.02
  assert set(np.unique(np.concatenate([squares, ellipses], axis=None))) == {0, 255}


# --- real datasets (mocked) and errors -------------------------------------------------------


@pytest.mark.parametrize("name,split,shape,num_classes", [
    ("mnist", "train", (28, 28, 1), 10),
    ("cifar10", "test", (32, 32, 3), 10),
    ("cifar100", "train", (32, 32, 3), 100),
])
def test_real_datasets_through_mock_data(name, split, shape, num_classes, tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    arrays = data.load(name, split, data_dir=tmp_path)
    spec = data.dataset_info(name, data_dir=tmp_path)
  assert arrays["image"].shape == (12, *shape) and arrays["image"].dtype == np.float32
  assert 0.0 <= arrays["image"].min() and arrays["image"].max() <= 1.0
  assert arrays["label"].shape == (12,) and arrays["label"].dtype == np.int32
  assert "id" not in arrays  # text features are dropped
  assert spec.num_classes == num_classes and spec.input_shape == shape


def test_download_path_prepares_then_reads(tmp_path):
  with tfds.testing.mock_data(num_examples=4):  # download_and_prepare is a no-op under the mock
    arrays = data.load("fashion_mnist", "test", data_dir=tmp_path, download=True)
  assert arrays["image"].shape == (4, 28, 28, 1)


def test_processes_sharing_a_data_directory_prepare_a_dataset_once(tmp_path):
  """Two preparers at once (threads here; processes behave alike: flock locks conflict between
  open files) build the dataset once; the second waits, then finds it prepared."""
  built = []

  class Builder:

    def is_prepared(self):
      return bool(built)

    def download_and_prepare(self, download_config):
      del download_config
      time.sleep(0.2)  # both preparers are past their first is_prepared check by now
      built.append(threading.current_thread().name)

  class FakeTfds:

    @staticmethod
    def builder(name, data_dir, file_format):
      assert (name, data_dir, file_format) == ("digits", str(tmp_path), "array_record")
      return Builder()

  threads = [threading.Thread(target=sources._prepare_locked, name=f"preparer {i}",
                              args=(FakeTfds, "digits", str(tmp_path)),
                              kwargs={"download_config": None}) for i in range(2)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert len(built) == 1
  assert os.path.exists(tmp_path / ".infojax-prepare-digits.lock")


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build mnist"):
    data.load("mnist", "train", data_dir=tmp_path)
  with pytest.raises(FileNotFoundError, match="download=True"):
    data.source("fashion_mnist", "test", data_dir=tmp_path)
  spec = data.dataset_info("svhn_cropped", data_dir=tmp_path)  # metadata only, no data needed
  assert spec.num_classes == 10 and spec.input_shape == (32, 32, 3) and not spec.num_examples


def test_dataset_info_needs_image_and_label(tmp_path):
  with pytest.raises(ValueError, match="ClassLabel 'label'"):
    data.dataset_info("ag_news_subset", data_dir=tmp_path)


# --- batches --------------------------------------------------------------------------------


def _toy(n=23):
  return {"image": np.arange(n, dtype=np.float32)[:, None] * 2, "label": np.arange(n)}


def test_batches_shapes_alignment_and_determinism():
  arrays = _toy()
  first = data.batches(arrays, 5, seed=1, epoch=3)
  assert first["image"].shape == (4, 5, 1) and first["label"].shape == (4, 5)
  np.testing.assert_array_equal(first["image"][..., 0], 2 * first["label"])
  assert len(np.unique(first["label"])) == 20
  again = data.batches(arrays, 5, seed=1, epoch=3)
  np.testing.assert_array_equal(first["label"], again["label"])
  other_epoch = data.batches(arrays, 5, seed=1, epoch=4)
  other_seed = data.batches(arrays, 5, seed=2, epoch=3)
  assert not np.array_equal(first["label"], other_epoch["label"])
  assert not np.array_equal(first["label"], other_seed["label"])
  expected = np.random.default_rng([1, 3]).permutation(23)[:20].reshape(4, 5)
  np.testing.assert_array_equal(first["label"], expected)


def test_batches_without_drop_remainder_use_every_example():
  result = data.batches(_toy(), 5, seed=0, epoch=0, drop_remainder=False)
  assert result["label"].shape == (5, 5)
  assert set(result["label"].ravel()) == set(range(23))
  assert data.batches(_toy(3), 5, seed=0, epoch=0, drop_remainder=False)["label"].shape == (1, 5)


def test_batches_accept_tuples():
  images, labels = data.batches((np.zeros((8, 2)), np.arange(8)), 4, seed=0, epoch=0)
  assert images.shape == (2, 4, 2) and labels.shape == (2, 4)


@pytest.mark.parametrize("arrays,batch_size,seed,match", [
    (_toy(), 0, 0, "batch_size"),
    (_toy(), 2.5, 0, "batch_size"),
    (_toy(), 24, 0, "exceeds"),
    (_toy(), 4, -1, "seed"),
    ({"a": np.zeros(4), "b": np.zeros(5)}, 2, 0, "leading"),
    ({}, 2, 0, "no arrays"),
])
def test_batches_validate_arguments(arrays, batch_size, seed, match):
  with pytest.raises(ValueError, match=match):
    data.batches(arrays, batch_size, seed=seed, epoch=0)
