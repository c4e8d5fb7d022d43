"""A suite of small classification tasks made offline, all on one input shape (Task2Vec's setting).

Task2Vec (Achille et al., ICCV 2019; science.md section 6) embeds many tasks with one probe
network, so every task here has the same inputs: ``(16, 16, 1)`` float32 images (`INPUT_SHAPE`),
standardised with the task's training-split channel mean and standard deviation. Tasks are made
from the three offline datasets of `infojax.data` by class subsets, binary one-vs-rest and
even/odd labellings, label permutations, factor prediction (sprites) and image inversion:

- ``digits`` (scikit-learn's 8x8 digits, 1437 train / 360 test): upsampled to 16x16 (bilinear).
- ``mnist1d`` (4000 / 1000 signals of length 40): each signal is drawn as a picture, a line plot
  of 16 rows by 40 columns (pixel ``(r, t)`` is ``exp(-(r - y_t)^2 / (2 * 0.6^2))`` with ``y_t``
  the signal's height at time ``t`` mapped linearly from [-0.6, 3.8] onto rows 15..0), then
  resized to 16x16 (antialiased). A ConvNet reads the plot as it reads a digit, and a translation
  of the signal in time is a horizontal translation of the picture, so the one probe network embeds
  all three families and distances across families can be compared; kept as raw (40, 1) signals,
  mnist1d would need its own probe and its embeddings would live in another space.
- ``sprites`` (dSprites-like, `infojax.data.builders.sprites`): ``num_train + num_test`` factor
  combinations drawn without replacement from the full grid (seeded), only those rendered at 32x32
  and downsampled to 16x16 (antialiased, so grey edges keep sub-pixel position and scale). Every
  sprites task of one seed has the same images; the tasks differ by their labels only.

Task names (`task_names`):

- ``<family>/all`` for digits and mnist1d: the 10-way task; ``<family>/classes_0-4`` and
  ``<family>/classes_5-9``: 5-way class subsets (relabelled 0..4); ``<family>/even_odd``: binary
  parity; ``<family>/one_vs_rest_<k>``: binary, digit k against the rest (unbalanced, 1:9);
- ``sprites/shape`` (3 classes), ``sprites/scale`` (the 6 scales in 3 bins of 2),
  ``sprites/position_x`` and ``sprites/position_y`` (the 32 positions in 4 bins of 8);
- ``<family>/permuted``: the family's base task (``all``; ``shape`` for sprites) with its classes
  relabelled by a seeded permutation that moves at least one class (the same images; exactly as
  hard; a probe with a re-fitted head gives it nearly the same Fisher);
- ``<family>/inverted``: the base task on inverted images (``1 - x`` before standardising).

``seed`` selects the training and test subsets (``num_train``, ``num_test``), the sprites drawn and
the label permutation; the same arguments give the same arrays. Cost: the first call of a family
loads it (about a second, TFDS import included) or renders its sprites (about 0.1 ms a sprite);
later calls reuse the cached arrays and cost O(N) copies.
"""

import functools
import itertools
import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from infojax import data
from infojax.data import transforms

FAMILIES = ("digits", "mnist1d", "sprites")
INPUT_SHAPE = (16, 16, 1)
SPRITES_RENDER_SIZE = 32
SPRITES_NUM_TRAIN = 2000
SPRITES_NUM_TEST = 1000
SCALE_BIN = 2
POSITION_BIN = 8
_SIGNAL_RANGE = (-0.6, 3.8)
_PLOT_WIDTH = 0.6
_NUM_DIGITS = 10
_ONE_VS_REST = re.compile(r"one_vs_rest_([0-9])")


class Task(NamedTuple):
  """One classification task of the suite.

  Attributes:
    name: e.g. ``"digits/classes_0-4"``, ``"digits/permuted"``, ``"sprites/shape"``.
    family: the source dataset, ``"digits"``, ``"mnist1d"`` or ``"sprites"``.
    train: ``{"image": float32 (N, 16, 16, 1), "label": int32 (N,)}``, standardised inputs.
    test: the same keys, held-out examples (standardised with the training statistics).
    num_classes: labels lie in ``[0, num_classes)``.
  """
  name: str
  family: str
  train: dict
  test: dict
  num_classes: int


def task_names(families: Sequence[str] = FAMILIES) -> tuple[str, ...]:
  """The known task names of some families, in a fixed order.

  Args:
    families: a sequence of family names among `FAMILIES`.

  Returns:
    The names, family by family in the order given.

  Raises:
    TypeError: ``families`` is one string rather than a sequence of names.
    ValueError: an unknown family.
  """
  if isinstance(families, str):
    raise TypeError(f"task_names: families must be a sequence of family names (e.g. "
                    f"('digits',)), not one string; got {families!r}.")
  names = []
  for family in families:
    if family not in FAMILIES:
      raise ValueError(f"task_names: unknown family {family!r}; expected one of {FAMILIES}.")
    if family == "sprites":
      kinds = ("shape", "scale", "position_x", "position_y")
    else:
      kinds = ("all", "classes_0-4", "classes_5-9", "even_odd") + tuple(
          f"one_vs_rest_{k}" for k in range(_NUM_DIGITS))
    names += [f"{family}/{kind}" for kind in kinds + ("permuted", "inverted")]
  return tuple(names)


def _parse(name) -> tuple[str, str]:
  if not isinstance(name, str) or name not in task_names():
    raise ValueError(f"make_task: unknown task name {name!r}; the known names are "
                     "infojax.tasks.suite.task_names().")
  family, kind = name.split("/")
  return family, kind


def _count(argument: str, value, default: Optional[int] = None) -> Optional[int]:
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"make_task: {argument} must be a positive integer or None; got {value!r}.")
  return int(value)


def _read_only(arrays: dict) -> dict:
  for values in arrays.values():
    values.setflags(write=False)
  return arrays


def _plot_signals(signals: np.ndarray) -> np.ndarray:
  """(N, T, 1) signals -> (N, 16, 16, 1) line plots in [0, 1] (see the module docstring)."""
  low, high = _SIGNAL_RANGE
  rows = INPUT_SHAPE[0]
  height = (high - signals[:, None, :, 0]) / (high - low) * (rows - 1)  # (N, 1, T)
  offset = np.arange(rows, dtype=np.float32)[None, :, None] - height  # (N, rows, T)
  plots = np.exp(-0.5 * (offset / _PLOT_WIDTH) ** 2).astype(np.float32)[..., None]
  return transforms.resize(plots, INPUT_SHAPE[:2])


@functools.lru_cache(maxsize=None)
def _loaded(family: str, data_dir: Optional[str]) -> dict:
  """Both splits of digits or mnist1d as (N, 16, 16, 1) images in [0, 1] and 0..9 labels."""
  splits = {}
  for split in ("train", "test"):
    arrays = data.load(family, split, data_dir=data_dir, process_local=False)
    images = arrays["image"]
    images = (transforms.resize(images, INPUT_SHAPE[:2]) if family == "digits"
              else _plot_signals(images))
    splits[split] = _read_only({"image": np.clip(images, 0.0, 1.0).astype(np.float32),
                                "label": arrays["label"].astype(np.int32)})
  return splits


@functools.lru_cache(maxsize=8)
def _rendered(seed: int, num_train: int, num_test: int) -> dict:
  """Sprites of a seeded sample of the full factor grid: test first, then train, disjoint."""
  # Imported here: the builders import tensorflow_datasets.
  from infojax.data.builders import sprites  # pylint: disable=import-outside-toplevel
  grid = sprites.FACTOR_SIZES
  order = np.random.default_rng([seed, 1]).permutation(int(np.prod(grid)))
  splits = {}
  for split, rows in (("test", order[:num_test]), ("train", order[num_test:num_test + num_train])):
    factors = np.stack(np.unravel_index(rows, grid), axis=1)
    images = sprites.render(sprites.factor_values(factors), image_size=SPRITES_RENDER_SIZE)
    images = transforms.resize(images[..., None].astype(np.float32) / 255.0, INPUT_SHAPE[:2])
    splits[split] = _read_only({"image": np.clip(images, 0.0, 1.0).astype(np.float32),
                                "factors": factors.astype(np.int32)})
  return splits


def _base_labels(family: str, kind: str, arrays: dict) -> tuple[np.ndarray, np.ndarray, int]:
  """(keep mask, labels of the kept examples, num_classes) of a task kind before permutation."""
  if family == "sprites":
    factors = arrays["factors"]
    column, size, divisor = {"shape": (0, 3, 1), "permuted": (0, 3, 1), "inverted": (0, 3, 1),
                             "scale": (1, 6, SCALE_BIN), "position_x": (3, 32, POSITION_BIN),
                             "position_y": (4, 32, POSITION_BIN)}[kind]
    keep = np.ones(factors.shape[0], bool)
    return keep, (factors[:, column] // divisor).astype(np.int32), size // divisor
  digits = arrays["label"]
  keep = np.ones(digits.shape[0], bool)
  if kind in ("all", "permuted", "inverted"):
    return keep, digits, _NUM_DIGITS
  if kind in ("classes_0-4", "classes_5-9"):
    classes = np.arange(5) if kind == "classes_0-4" else np.arange(5, 10)
    subset = transforms.class_subset({"label": digits}, classes)
    return np.isin(digits, classes), subset["label"].astype(np.int32), 5
  if kind == "even_odd":
    return keep, (digits % 2).astype(np.int32), 2
  digit = int(_ONE_VS_REST.fullmatch(kind).group(1))
  return keep, (digits == digit).astype(np.int32), 2


def _permuted(train_labels, test_labels, num_classes: int, seed: int):
  """Both splits relabelled by the first seeded permutation that changes some training label."""
  for offset in itertools.count():
    permutation_seed = [seed, 2, offset]
    train = transforms.permute_labels(train_labels, num_classes=num_classes, seed=permutation_seed)
    if np.any(train != train_labels):
      return train, transforms.permute_labels(test_labels, num_classes=num_classes,
                                              seed=permutation_seed)


def _subset(labels: np.ndarray, count: Optional[int], num_classes: int, seed: int,
            argument: str) -> np.ndarray:
  """Sorted indices of ``count`` examples: a seeded random subset holding every class present.

  The order is a seeded permutation with the first example of each class moved to the front, so
  any ``count >= num_classes`` keeps every class the split has.
  """
  size = labels.shape[0]
  if count is None:
    return np.arange(size)
  if count > size:
    raise ValueError(f"make_task: {argument} = {count} exceeds the {size} examples the task "
                     "has in that split.")
  if count < num_classes:
    raise ValueError(f"make_task: {argument} = {count} is fewer than the task's {num_classes} "
                     "classes (every class needs at least one example).")
  order = np.random.default_rng([seed, 3, int(argument == "num_test")]).permutation(size)
  _, first = np.unique(labels[order], return_index=True)
  front = np.zeros(size, bool)
  front[first] = True
  order = np.concatenate([order[front], order[~front]])
  return np.sort(order[:count])


def make_task(name: str, *, seed: int = 0, num_train: Optional[int] = None,
              num_test: Optional[int] = None, data_dir: Optional[str] = None) -> Task:
  """One task of the suite by name (see the module docstring for the names and inputs).

  Args:
    name: one of `task_names`, e.g. ``"digits/even_odd"``.
    seed: non-negative integer; selects the subsets, the sprites drawn and the label permutation.
    num_train: training examples kept (a seeded subset holding every class); ``None``: all of the
      source split (sprites: `SPRITES_NUM_TRAIN` drawn).
    num_test: likewise for the test split (sprites: `SPRITES_NUM_TEST`).
    data_dir: the TFDS data directory of digits and mnist1d (default:
      `infojax.data.default_data_dir`).

  Returns:
    A `Task` with ``image`` float32 ``(N, 16, 16, 1)`` and ``label`` int32 ``(N,)`` in each split.

  Raises:
    ValueError: an unknown name, a bad seed, or a ``num_train`` (``num_test``) that is not a
      positive integer, exceeds the split, or is fewer than the task's classes.
  """
  family, kind = _parse(name)
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"make_task: seed must be a non-negative integer; got {seed!r}.")
  seed = int(seed)
  num_train, num_test = _count("num_train", num_train), _count("num_test", num_test)
  if family == "sprites":
    num_train = num_train or SPRITES_NUM_TRAIN
    num_test = num_test or SPRITES_NUM_TEST
    source = _rendered(seed, num_train, num_test)
    counts = {"train": None, "test": None}
  else:
    source = _loaded(family, data_dir)
    counts = {"train": num_train, "test": num_test}
  splits, num_classes = {}, None
  for split in ("train", "test"):
    keep, labels, num_classes = _base_labels(family, kind, source[split])
    images = source[split]["image"][keep]
    if kind == "inverted":
      images = 1.0 - images
    splits[split] = {"image": images, "label": labels}
  if family == "sprites":
    present = np.unique(splits["train"]["label"]).size
    if present < num_classes:
      raise ValueError(f"make_task: num_train = {num_train} sprites hold only {present} of the "
                       f"{num_classes} classes of {name!r}; draw more.")
  for split, argument in (("train", "num_train"), ("test", "num_test")):
    index = _subset(splits[split]["label"], counts[split], num_classes, seed, argument)
    splits[split] = {key: values[index] for key, values in splits[split].items()}
  if kind == "permuted":
    splits["train"]["label"], splits["test"]["label"] = _permuted(
        splits["train"]["label"], splits["test"]["label"], num_classes, seed)
  train_images, test_images = transforms.standardize(splits["train"]["image"],
                                                     splits["test"]["image"])
  train = {"image": train_images, "label": splits["train"]["label"]}
  test = {"image": test_images, "label": splits["test"]["label"]}
  return Task(name=name, family=family, train=train, test=test, num_classes=num_classes)


def make_suite(names: Sequence[str], *, seed: int = 0, num_train: Optional[int] = None,
               num_test: Optional[int] = None, data_dir: Optional[str] = None) -> list:
  """Several tasks (`make_task` with the same arguments), in the order of ``names``.

  Args:
    names: a sequence of names from `task_names`.
    seed, num_train, num_test, data_dir: as in `make_task`, shared by every task.

  Returns:
    A list of `Task`.

  Raises:
    TypeError: ``names`` is one string rather than a sequence of names.
    ValueError: as `make_task`, or ``names`` is empty or repeats a name.
  """
  if isinstance(names, str):
    raise TypeError(f"make_suite: names must be a sequence of task names, not one string; got "
                    f"{names!r} (use make_task for one task).")
  names = list(names)
  if not names or len(set(names)) != len(names):
    raise ValueError(f"make_suite: names must be a non-empty sequence of distinct task names; "
                     f"got {names!r}.")
  return [make_task(name, seed=seed, num_train=num_train, num_test=num_test, data_dir=data_dir)
          for name in names]
