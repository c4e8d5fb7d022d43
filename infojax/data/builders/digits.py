"""`digits`: scikit-learn's bundled 8x8 handwritten digits as a TFDS dataset (no network).

The 1,797 images of ``sklearn.datasets.load_digits`` (the UCI "Optical Recognition of Handwritten
Digits" test set; Alpaydin & Kaynak 1998) ship inside scikit-learn, so the dataset is built locally.
"""

import numpy as np
import tensorflow_datasets as tfds

NUM_TEST = 360
SPLIT_SEED = 0

_CITATION = """\
@misc{alpaydin1998optical,
  author = {Alpaydin, E. and Kaynak, C.},
  title = {Optical Recognition of Handwritten Digits},
  year = {1998},
  howpublished = {UCI Machine Learning Repository},
  doi = {10.24432/C50P49}
}"""


def split_indices(num_examples: int, *, num_test: int = NUM_TEST,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """The fixed train/test partition: a seeded permutation, its first ``num_test`` entries are test.

  Args:
    num_examples: the size of the whole set (1797 for the bundled digits).
    num_test: examples held out for the test split.
    seed: the permutation seed.

  Returns:
    ``(train_indices, test_indices)``, disjoint, together ``range(num_examples)``.
  """
  order = np.random.default_rng(seed).permutation(num_examples)
  return order[num_test:], order[:num_test]


def to_uint8(pixels: np.ndarray) -> np.ndarray:
  """Maps the digits' grey levels 0..16 onto 0..255: ``round(v * 255 / 16)`` as uint8."""
  return np.round(np.asarray(pixels, np.float64) * (255.0 / 16.0)).astype(np.uint8)


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 8x8 handwritten digits with a fixed seeded 1437/360 train/test split.

  Features: ``image`` (8, 8, 1) uint8, the grey levels 0..16 mapped to ``round(v * 255 / 16)``;
  ``label`` int64 in 0..9. The test split is the first 360 entries of
  ``np.random.default_rng(0).permutation(1797)`` (a plain seeded permutation, not stratified: each
  class has 29 to 42 test images); the train split is the other 1,437.
  """
  name = "digits"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ship with scikit-learn.
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
    bunch = datasets.load_digits()
    images = to_uint8(bunch.images)[..., None]
    train, test = split_indices(len(images))
    return {
        "train": self._generate_examples(images, bunch.target, train),
        "test": self._generate_examples(images, bunch.target, test),
    }

  def _generate_examples(self, images, labels, indices):
    for index in indices:
      yield int(index), {"image": images[index], "label": int(labels[index])}
