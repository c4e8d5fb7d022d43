"""Seeded numpy transforms of images and labels: normalisation, resizing, deficits, label noise.

These are the input and label manipulations of the experiments: the blur, vertical-flip,
label-permutation and noise deficits of critical learning periods (Achille, Rovere & Soatto 2019;
science.md section 1.2), partially random labels (Zhang et al. 2017; science.md section 4.4) and
tasks made of class subsets (Task2Vec, Achille et al. 2019; science.md section 6).

Images are ``(N, H, W, C)`` arrays (as returned by `infojax.data.load`), labels ``(N,)`` integer
arrays. Every function is pure: randomness comes from an integer ``seed`` through
``np.random.default_rng(seed)``, so the same call gives the same result.
"""

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

_RESIZE_METHODS = ("nearest", "bilinear", "bicubic", "lanczos3", "lanczos5")


def _images(caller: str, images, *, ndim: int = 4) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != ndim:
    raise ValueError(f"{caller}: images must have shape (N, H, W, C); got shape {images.shape}.")
  return images


def _labels(caller: str, labels, *, num_classes: Optional[int] = None) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{caller}: labels must be a 1-d integer array; got shape {labels.shape} and "
                     f"dtype {labels.dtype}.")
  if num_classes is not None:
    if int(num_classes) != num_classes or num_classes < 1:
      raise ValueError(f"{caller}: num_classes must be a positive integer; got {num_classes!r}.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
      raise ValueError(f"{caller}: labels must lie in [0, {num_classes}); got values in "
                       f"[{labels.min()}, {labels.max()}].")
  return labels


def channel_stats(images, *, across_processes: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and standard deviation over every axis but the last.

  Compute them on the training split and normalise every split with them.

  Args:
    images: (N, ..., C) array.
    across_processes: ``images`` is this process's share of a split read per process
      (``infojax.data.load(..., process_local=True)``): return the statistics of the union of all
      processes' shares (the same on every process).

  Returns:
    ``(mean, std)``, each (C,) float32 (accumulated in float64).
  """
  images = np.asarray(images)
  if images.ndim < 2:
    raise ValueError(f"channel_stats: images must have shape (N, ..., C); got {images.shape}.")
  axes = tuple(range(images.ndim - 1))
  moments = (np.asarray(float(np.prod(images.shape[:-1]))),
             images.sum(axis=axes, dtype=np.float64),
             np.square(images, dtype=np.float64).sum(axis=axes))
  if across_processes:
    from infojax import parallel  # pylint: disable=import-outside-toplevel
    moments = parallel.process_sum(moments)
  count, total, total_sq = moments
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  return mean.astype(np.float32), std.astype(np.float32)


def normalize(images, *, mean, std) -> np.ndarray:
  """``(images - mean) / std`` per channel (the last axis).

  Args:
    images: (N, ..., C) array.
    mean: (C,) per-channel means, e.g. from `channel_stats` of the training split.
    std: (C,) positive per-channel standard deviations.

  Returns:
    float32 array of the shape of ``images``.
  """
  images = np.asarray(images, np.float32)
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  channels = images.shape[-1:] if images.ndim >= 2 else None
  if channels is None or mean.shape != channels or std.shape != channels:
    raise ValueError(f"normalize: mean and std must have shape (C,) = {channels} for images of "
                     f"shape {images.shape}; got {mean.shape} and {std.shape}.")
  if np.any(std <= 0):
    raise ValueError(f"normalize: std must be positive; got {std}.")
  return (images - mean) / std


def standardize(train_images, *others, across_processes: bool = False) -> tuple:
  """Standardises every image array with the training images' channel mean and std.

  Channels of zero spread keep their scale (std 1). `channel_stats` then `normalize`.

  Args:
    train_images: (N, ..., C), the training split's images (the statistics' source).
    *others: more (M, ..., C) arrays to standardise with the same statistics (e.g. the test split).
    across_processes: see `channel_stats`.

  Returns:
    The float32 standardised arrays, ``train_images`` first, in the order given.
  """
  mean, std = channel_stats(train_images, across_processes=across_processes)
  std = np.where(std > 0, std, 1.0).astype(np.float32)
  return tuple(normalize(images, mean=mean, std=std) for images in (train_images, *others))


def resize(images, size: Union[int, Sequence[int]], *, method: str = "bilinear",
           antialias: bool = True) -> np.ndarray:
  """Resizes the spatial axes of (N, H, W, C) images with ``jax.image.resize``.

  With ``antialias`` (the default) downsampling low-pass filters first, like
  ``torchvision.transforms.Resize(antialias=True)``.

  Cost: O(N * H * W * C * (h + w)) time; the whole array is processed at once.

  Args:
    images: (N, H, W, C) array.
    size: the new ``(h, w)``, or one int for a square ``(size, size)``.
    method: one of "nearest", "bilinear", "bicubic", "lanczos3", "lanczos5".
    antialias: filter when downsampling.

  Returns:
    (N, h, w, C) float32 array.
  """
  images = _images("resize", images)
  height, width = (size, size) if np.ndim(size) == 0 else tuple(size)
  for value in (height, width):
    if int(value) != value or value < 1:
      raise ValueError(f"resize: size must be a positive int or a pair of them; got {size!r}.")
  if method not in _RESIZE_METHODS:
    raise ValueError(f"resize: method must be one of {_RESIZE_METHODS}; got {method!r}.")
  shape = (images.shape[0], int(height), int(width), images.shape[3])
  resized = jax.image.resize(jnp.asarray(images, jnp.float32), shape, method=method,
                             antialias=antialias)
  return np.asarray(resized)


def blur(images, *, low_size: Union[int, Sequence[int]] = 8, method: str = "bilinear",
         antialias: bool = True) -> np.ndarray:
  """The blur ("cataract") deficit: downsample to ``low_size``, then upsample to the original size.

  Critical learning periods (Achille et al. 2019) blur CIFAR-10 by 32 -> 8 -> 32 (bilinear,
  antialiased downsampling; science.md section 1.2).

  Args:
    images: (N, H, W, C) array.
    low_size: the intermediate ``(h, w)`` (or one int).
    method: the interpolation of both resizes, see `resize`.
    antialias: see `resize`.

  Returns:
    (N, H, W, C) float32 array.
  """
  images = _images("blur", images)
  low = resize(images, low_size, method=method, antialias=antialias)
  return resize(low, images.shape[1:3], method=method, antialias=antialias)


def vertical_flip(images) -> np.ndarray:
  """Turns (N, H, W, C) images upside down (reverses the height axis).

  A deficit that keeps the low-level statistics of the images; it has no lasting effect on
  learning (Achille et al. 2019).
  """
  return _images("vertical_flip", images)[:, ::-1]


def gaussian_noise_like(images, *, seed: int) -> np.ndarray:
  """Gaussian noise with the per-channel mean and standard deviation of ``images``.

  The sensory-deprivation deficit: the inputs are replaced by noise that carries no information
  about the labels but keeps first- and second-order channel statistics.

  Args:
    images: (N, ..., C) array.
    seed: the noise seed.

  Returns:
    float32 array of the shape of ``images``, independent of the pixel values beyond their
    channel statistics.
  """
  mean, std = channel_stats(images)
  noise = np.random.default_rng(seed).standard_normal(np.shape(images), dtype=np.float32)
  return noise * std + mean


def permute_labels(labels, *, num_classes: int, seed: int) -> np.ndarray:
  """Relabels every class by one fixed random permutation of the classes.

  The permutation is ``np.random.default_rng(seed).permutation(num_classes)``; class ``c``
  becomes ``permutation[c]`` (a class may map to itself). The task is exactly as hard as before
  (a "high-level" deficit).

  Args:
    labels: (N,) integers in [0, num_classes).
    num_classes: the number of classes.
    seed: the permutation seed.

  Returns:
    (N,) labels of the input dtype.
  """
  labels = _labels("permute_labels", labels, num_classes=num_classes)
  permutation = np.random.default_rng(seed).permutation(int(num_classes))
  return permutation[labels].astype(labels.dtype)


def shuffle_labels(labels, *, seed: int) -> np.ndarray:
  """Shuffles the labels across examples: the class counts stay, the input-label link is gone.

  Args:
    labels: (N,) integers.
    seed: the shuffling seed.

  Returns:
    (N,) labels, a permutation of the input.
  """
  labels = _labels("shuffle_labels", labels)
  return np.random.default_rng(seed).permutation(labels)


def corrupt_labels(labels, *, fraction: float, num_classes: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Replaces the labels of a random fraction of the examples by uniformly random labels.

  Exactly ``round(fraction * N)`` examples (Python's ``round``) are chosen uniformly without
  replacement; each gets a label drawn uniformly from all ``num_classes`` classes (so about
  ``1 / num_classes`` of them keep their label by chance, as in Zhang et al. 2017).

  Args:
    labels: (N,) integers in [0, num_classes).
    fraction: in [0, 1].
    num_classes: the number of classes.
    seed: the seed of the choice and of the new labels.

  Returns:
    ``(new_labels, corrupted)``: (N,) labels of the input dtype, and the (N,) bool mask of the
    chosen examples (the others keep their labels).
  """
  labels = _labels("corrupt_labels", labels, num_classes=num_classes)
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"corrupt_labels: fraction must be in [0, 1]; got {fraction!r}.")
  rng = np.random.default_rng(seed)
  chosen = rng.choice(labels.shape[0], size=round(fraction * labels.shape[0]), replace=False)
  corrupted = np.zeros(labels.shape, bool)
  corrupted[chosen] = True
  new_labels = labels.copy()
  new_labels[chosen] = rng.integers(int(num_classes), size=chosen.shape[0])
  return new_labels, corrupted


def class_subset(arrays, classes: Sequence[int], *, relabel: bool = True,
                 label_key: str = "label") -> dict:
  """Keeps the examples of some classes: a task made from a dataset.

  Args:
    arrays: dict of arrays with a common leading axis, holding ``arrays[label_key]`` (N,).
    classes: the distinct classes to keep.
    relabel: map ``classes[i]`` to ``i`` (labels 0..k-1, in the order given); if False, the
      original labels are kept.
    label_key: the key of the labels.

  Returns:
    A dict with the same keys, holding only the examples whose label is in ``classes``, in their
    original order.
  """
  if label_key not in arrays:
    raise ValueError(f"class_subset: arrays has no {label_key!r} entry; keys {sorted(arrays)}.")
  labels = _labels("class_subset", arrays[label_key])
  classes = np.asarray(classes)
  if (classes.ndim != 1 or classes.size == 0 or not np.issubdtype(classes.dtype, np.integer)
      or np.unique(classes).size != classes.size):
    raise ValueError(f"class_subset: classes must be a non-empty sequence of distinct integers; "
                     f"got {classes.tolist()!r}.")
  keep = np.isin(labels, classes)
  subset = {key: np.asarray(values)[keep] for key, values in arrays.items()}
  if relabel:
    # Position of each kept label in `classes`.
    order = np.argsort(classes)
    subset[label_key] = order[np.searchsorted(classes, labels[keep], sorter=order)].astype(
        labels.dtype)
  return subset
