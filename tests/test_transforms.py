"""Tests of infojax.data.transforms against direct numpy references."""

import numpy as np
import pytest

from infojax.data import transforms


def _images(shape=(6, 16, 16, 3), seed=0):
  return np.random.default_rng(seed).random(shape, dtype=np.float32)


def test_channel_stats_and_normalize():
  images = (_images() * np.array([1.0, 2.0, 3.0], np.float32)
            + np.array([0.5, -1.0, 4.0], np.float32))
  mean, std = transforms.channel_stats(images)
  flat = images.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-6)
  normalized = transforms.normalize(images, mean=mean, std=std)
  assert normalized.dtype == np.float32 and normalized.shape == images.shape
  np.testing.assert_allclose(normalized.reshape(-1, 3).mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(normalized.reshape(-1, 3).std(axis=0), 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match="shape"):
    transforms.normalize(images, mean=mean[:2], std=std[:2])
  with pytest.raises(ValueError, match="positive"):
    transforms.normalize(images, mean=mean, std=np.zeros(3))


def test_resize_halving_without_antialias_is_the_block_mean():
  images = _images((2, 8, 12, 3))
  halved = transforms.resize(images, (4, 6), antialias=False)
  block_mean = images.reshape(2, 4, 2, 6, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(halved, block_mean, atol=1e-6)


def test_resize_keeps_constants_and_validates():
  constant = np.full((3, 10, 10, 2), 0.25, np.float32)
  for method in ("nearest", "bilinear", "bicubic", "lanczos3"):
    resized = transforms.resize(constant, 7, method=method)
    assert resized.shape == (3, 7, 7, 2) and resized.dtype == np.float32
    np.testing.assert_allclose(resized, 0.25, atol=1e-5)
  with pytest.raises(ValueError, match="method"):
    transforms.resize(constant, 7, method="area")
  with pytest.raises(ValueError, match="size"):
    transforms.resize(constant, 0)
  with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
    transforms.resize(constant[0], 7)


def test_blur_is_upsampled_downsample_and_removes_fine_detail():
  images = _images((4, 32, 32, 3))
  blurred = transforms.blur(images, low_size=8)
  assert blurred.shape == images.shape and blurred.dtype == np.float32
  expected = transforms.resize(transforms.resize(images, 8), (32, 32))
  np.testing.assert_allclose(blurred, expected, atol=1e-6)
  # A pixel-level checkerboard is averaged away; a constant image is unchanged.
  rows, cols = np.indices((32, 32))
  checkerboard = ((rows + cols) % 2).astype(np.float32)[None, :, :, None]
  # Contrast 0.5 -> below 0.005 (the residue sits at the borders).
  np.testing.assert_allclose(transforms.blur(checkerboard), 0.5, atol=0.005)
  constant = np.full((1, 32, 32, 1), 0.7, np.float32)
  np.testing.assert_allclose(transforms.blur(constant), 0.7, atol=1e-5)


def test_vertical_flip():
  images = _images()
  flipped = transforms.vertical_flip(images)
  np.testing.assert_array_equal(flipped[:, 0], images[:, -1])
  np.testing.assert_array_equal(flipped[:, :, 3], images[:, ::-1, 3])
  np.testing.assert_array_equal(transforms.vertical_flip(flipped), images)
  with pytest.raises(ValueError, match="images"):
    transforms.vertical_flip(images[0])


def test_gaussian_noise_like_matches_channel_statistics():
  images = _images((40, 16, 16, 3)) * np.array([1.0, 0.2, 3.0], np.float32)
  noise = transforms.gaussian_noise_like(images, seed=5)
  assert noise.shape == images.shape and noise.dtype == np.float32
  mean, std = transforms.channel_stats(images)
  noise_mean, noise_std = transforms.channel_stats(noise)
  np.testing.assert_allclose(noise_mean, mean, atol=0.02 * std.max())
  np.testing.assert_allclose(noise_std, std, rtol=0.02)
  for channel in range(3):  # 10240 values each: a correlation of 0.03 is 3 standard errors
    correlation = np.corrcoef(noise[..., channel].ravel(), images[..., channel].ravel())[0, 1]
    assert abs(correlation) < 0.03
  np.testing.assert_array_equal(noise, transforms.gaussian_noise_like(images, seed=5))
  assert not np.array_equal(noise, transforms.gaussian_noise_like(images, seed=6))


def test_permute_labels_is_a_fixed_bijection_of_classes():
  permutation = transforms.permute_labels(np.arange(10), num_classes=10, seed=3)
  assert sorted(permutation) == list(range(10))
  labels = np.random.default_rng(0).integers(10, size=200)
  permuted = transforms.permute_labels(labels, num_classes=10, seed=3)
  np.testing.assert_array_equal(permuted, permutation[labels])
  assert permuted.dtype == labels.dtype
  with pytest.raises(ValueError, match=r"\[0, 10\)"):
    transforms.permute_labels(np.array([0, 10]), num_classes=10, seed=0)
  with pytest.raises(ValueError, match="1-d integer"):
    transforms.permute_labels(np.array([0.0, 1.0]), num_classes=10, seed=0)


def test_shuffle_labels_keeps_the_class_counts():
  labels = np.random.default_rng(1).integers(5, size=300)
  shuffled = transforms.shuffle_labels(labels, seed=2)
  np.testing.assert_array_equal(np.sort(shuffled), np.sort(labels))
  assert np.mean(shuffled == labels) < 0.5


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_corrupt_labels_fraction_is_exact_and_mask_is_right(fraction):
  labels = np.random.default_rng(0).integers(10, size=1001)
  new_labels, corrupted = transforms.corrupt_labels(labels, fraction=fraction, num_classes=10,
                                                    seed=4)
  assert corrupted.dtype == bool and corrupted.sum() == round(fraction * 1001)
  np.testing.assert_array_equal(new_labels[~corrupted], labels[~corrupted])
  assert new_labels.dtype == labels.dtype
  assert new_labels.min() >= 0 and new_labels.max() < 10
  again = transforms.corrupt_labels(labels, fraction=fraction, num_classes=10, seed=4)
  np.testing.assert_array_equal(again[0], new_labels)
  np.testing.assert_array_equal(again[1], corrupted)


def test_corrupt_labels_draws_uniform_labels():
  labels = np.zeros(20000, np.int64)
  new_labels, corrupted = transforms.corrupt_labels(labels, fraction=1.0, num_classes=10, seed=0)
  assert corrupted.all()
  frequencies = np.bincount(new_labels, minlength=10) / labels.size
  # Binomial standard deviation sqrt(0.1 * 0.9 / 20000) = 0.0021.
  np.testing.assert_allclose(frequencies, 0.1, atol=0.01)
  with pytest.raises(ValueError, match="fraction"):
    transforms.corrupt_labels(labels, fraction=1.5, num_classes=10, seed=0)


def test_class_subset():
  labels = np.tile(np.arange(10), 7)
  arrays = {"image": np.arange(70, dtype=np.float32)[:, None], "label": labels}
  subset = transforms.class_subset(arrays, [7, 2, 5])
  kept = np.isin(labels, [7, 2, 5])
  np.testing.assert_array_equal(subset["image"], arrays["image"][kept])
  mapping = {7: 0, 2: 1, 5: 2}
  np.testing.assert_array_equal(subset["label"], [mapping[c] for c in labels[kept]])
  original = transforms.class_subset(arrays, [7, 2, 5], relabel=False)
  assert set(original["label"]) == {2, 5, 7} and original["label"].size == 21
  with pytest.raises(ValueError, match="distinct"):
    transforms.class_subset(arrays, [1, 1])
  with pytest.raises(ValueError, match="no 'target'"):
    transforms.class_subset(arrays, [1], label_key="target")


def test_standardize_uses_the_training_statistics_for_every_split():
  rng = np.random.default_rng(3)
  train = rng.normal(2.0, 3.0, size=(50, 4, 4, 2)).astype(np.float32)
  train[..., 1] = 5.0   # a constant channel keeps its scale
  test = rng.normal(size=(7, 4, 4, 2)).astype(np.float32)
  got_train, got_test = transforms.standardize(train, test)
  x = train.astype(np.float64).reshape(-1, 2)
  mean, std = x.mean(0), x.std(0)
  std[1] = 1.0
  np.testing.assert_allclose(got_train, (train - mean) / std, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_test, (test - mean) / std, rtol=1e-5, atol=1e-5)
  assert got_test.dtype == np.float32
  (alone,) = transforms.standardize(train)
  np.testing.assert_array_equal(alone, got_train)
