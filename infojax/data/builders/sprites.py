"""`sprites`: procedural dSprites-like binary images with known generative factors.

dSprites (Matthey, Higgins, Hassabis & Lerchner 2017; science.md section 9.4) holds every
combination of five factors: shape (3: square, ellipse, heart), scale (6 values evenly in
[0.5, 1]), orientation (40), position x (32 evenly in [0, 1]) and position y (32), 737,280 white
sprites on black 64x64 images. We render the same factor grid ourselves (no download), so the
images are close to, not identical with, the original ones; they serve the same purpose (β-VAE,
capacity annealing and disentanglement experiments, science.md section 9).

Geometry (unit-square image coordinates, pixel centres at ``(j + 1/2) / size``): a sprite of
scale ``s`` has half-size ``0.15 s`` (the square's half side, the ellipse's semi-major axis; the
ellipse's semi-minor axis is half of that); it is rotated counter-clockwise by the orientation
``2 pi k / 40`` (dSprites lists 40 values in [0, 2 pi]; ours are the 40 distinct rotations) and
centred at ``0.22 + 0.56 * position`` along each axis, so that every sprite stays inside the image.
Position x runs left to right, position y top to bottom. Pixels inside the shape are 255, others 0.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPE_NAMES = ("square", "ellipse", "heart")

_HALF_SIZE = 0.15
_MARGIN = 0.22
_RENDER_CHUNK = 1024

_CITATION = """\
@misc{dsprites17,
  author = {Loic Matthey and Irina Higgins and Demis Hassabis and Alexander Lerchner},
  title = {dSprites: Disentanglement testing Sprites dataset},
  howpublished = {https://github.com/deepmind/dsprites-dataset/},
  year = {2017}
}"""


def factor_values(factors: np.ndarray) -> np.ndarray:
  """Maps factor indices to factor values.

  Args:
    factors: (N, 5) integer indices ``(shape, scale, orientation, position_x, position_y)`` into
      the full grid of sizes `FACTOR_SIZES`.

  Returns:
    (N, 5) float32: the shape index itself (the shape is categorical), the scale in
    ``linspace(0.5, 1, 6)``, the orientation ``2 pi k / 40`` in radians, and the two positions in
    ``linspace(0, 1, 32)``.
  """
  factors = np.asarray(factors)
  if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
    raise ValueError(f"factor_values: factors must have shape (N, 5); got {factors.shape}.")
  if np.any(factors < 0) or np.any(factors >= np.asarray(FACTOR_SIZES)):
    raise ValueError(f"factor_values: factors must index the grid {FACTOR_SIZES}.")
  return np.stack([
      factors[:, 0].astype(np.float64),
      np.linspace(0.5, 1.0, FACTOR_SIZES[1])[factors[:, 1]],
      2.0 * np.pi * factors[:, 2] / FACTOR_SIZES[2],
      np.linspace(0.0, 1.0, FACTOR_SIZES[3])[factors[:, 3]],
      np.linspace(0.0, 1.0, FACTOR_SIZES[4])[factors[:, 4]],
  ], axis=1).astype(np.float32)


def _square(u, v):
  return np.maximum(np.abs(u), np.abs(v)) <= 1.0


def _ellipse(u, v):
  return u * u + 4.0 * v * v <= 1.0


def _heart(u, v):
  # The heart curve (x^2 + y^2 - 1)^3 = x^2 y^3 spans x in [-1.14, 1.14], y in [-1, 1.24].
  x, y = 1.15 * u, 1.15 * v + 0.12
  x2, y2 = x * x, y * y
  ring = x2 + y2 - 1.0
  return ring * ring * ring - x2 * y2 * y <= 0.0


# Membership tests in canonical coordinates (u right, v up; the sprite's half-size is 1), in the
# order of SHAPE_NAMES.
_SHAPES = (_square, _ellipse, _heart)


def _draw(inside, values, image_size):
  """(N, size, size) bool: pixels inside sprites of one shape with the given factor values."""
  scale, angle, position_x, position_y = (values[:, i, None, None] for i in range(1, 5))
  pixel = ((np.arange(image_size) + 0.5) / image_size).astype(np.float32)
  dx = pixel[None, None, :] - (_MARGIN + (1.0 - 2.0 * _MARGIN) * position_x)
  dy_up = (_MARGIN + (1.0 - 2.0 * _MARGIN) * position_y) - pixel[None, :, None]
  cos, sin, half_size = np.cos(angle), np.sin(angle), _HALF_SIZE * scale
  return inside((cos * dx + sin * dy_up) / half_size, (cos * dy_up - sin * dx) / half_size)


def render(values: np.ndarray, *, image_size: int = 64) -> np.ndarray:
  """Draws binary sprites from factor values.

  Cost: O(N * image_size**2) time and memory (about 0.3 ms per 64x64 image on one CPU core).

  Args:
    values: (N, 5) ``(shape index, scale, orientation in radians, position x, position y)``, as
      returned by `factor_values` (any real scale, angle and position are accepted).
    image_size: the side of the square images, in pixels.

  Returns:
    (N, image_size, image_size) uint8 images, 255 inside the sprite and 0 outside.
  """
  values = np.asarray(values, np.float32)
  if values.ndim != 2 or values.shape[1] != len(FACTOR_SIZES):
    raise ValueError(f"render: values must have shape (N, 5); got {values.shape}.")
  if int(image_size) != image_size or image_size < 8:
    raise ValueError(f"render: image_size must be an integer >= 8; got {image_size!r}.")
  shapes = np.rint(values[:, 0])
  if not np.all(np.isin(shapes, np.arange(len(_SHAPES)))):
    raise ValueError(f"render: the shape value (column 0) must be 0, 1 or 2; got "
                     f"{np.unique(shapes)}.")
  images = np.zeros((values.shape[0], image_size, image_size), np.uint8)
  for index, inside in enumerate(_SHAPES):
    rows = np.flatnonzero(shapes == index)
    images[rows] = np.where(_draw(inside, values[rows], image_size), 255, 0)
  return images


def factor_grid(*, scale_stride: int = 1, orientation_stride: int = 1,
                position_stride: int = 1) -> np.ndarray:
  """Indices of a regular sub-grid of the factors, in dSprites order (position y fastest).

  Args:
    scale_stride: keep scale indices ``0, stride, 2 stride, ...``.
    orientation_stride: likewise for orientation.
    position_stride: likewise for both positions. All three shapes are always kept.

  Returns:
    (M, 5) int64 factor indices, M the product of the kept counts.
  """
  strides = (1, scale_stride, orientation_stride, position_stride, position_stride)
  for name, stride in zip(("scale_stride", "orientation_stride", "position_stride"), strides[1:4]):
    if int(stride) != stride or stride < 1:
      raise ValueError(f"factor_grid: {name} must be a positive integer; got {stride!r}.")
  axes = [np.arange(0, size, stride) for size, stride in zip(FACTOR_SIZES, strides)]
  mesh = np.meshgrid(*axes, indexing="ij")
  return np.stack([axis.reshape(-1) for axis in mesh], axis=1).astype(np.int64)


@dataclasses.dataclass(eq=False)
class SpritesConfig(tfds.core.BuilderConfig):
  """A sprites variant: image size and the sub-grid of factors (see `factor_grid`)."""
  image_size: int = 64
  scale_stride: int = 1
  orientation_stride: int = 1
  position_stride: int = 1

  def grid(self) -> np.ndarray:
    return factor_grid(scale_stride=self.scale_stride,
                       orientation_stride=self.orientation_stride,
                       position_stride=self.position_stride)


class Sprites(tfds.core.GeneratorBasedBuilder):
  """dSprites-like sprites (Matthey et al. 2017), rendered locally; one split, ``train``.

  Configs (``sprites/<config>``; ``sprites`` alone is ``small``):

  - ``small``: 64x64, scales 0, 2, 4, orientations every 4th, positions every 2nd: 23,040 images.
  - ``small_32``: the same grid at 32x32.
  - ``full``: 64x64, the whole dSprites grid: 737,280 images (about 3 GB as uint8; read it through
    `infojax.data.source` rather than loading it into memory).
  - ``full_32``: the whole grid at 32x32.
  - ``tiny``: 32x32, scales 0 and 3, orientations every 10th, positions every 8th: 384 images
    (tests).

  Features: ``image`` (size, size, 1) uint8 in {0, 255}; ``label`` the shape index (0 square,
  1 ellipse, 2 heart); ``factors`` (5,) int64 indices into the full grid ``(3, 6, 40, 32, 32)`` of
  ``(shape, scale, orientation, position_x, position_y)``; ``values`` (5,) float32 from
  `factor_values`. Hold out examples by slicing, e.g. ``train[:90%]`` and ``train[90%:]``.
  """
  name = "sprites"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SpritesConfig(name="small", image_size=64, scale_stride=2, orientation_stride=4,
                    position_stride=2),
      SpritesConfig(name="small_32", image_size=32, scale_stride=2, orientation_stride=4,
                    position_stride=2),
      SpritesConfig(name="full", image_size=64),
      SpritesConfig(name="full_32", image_size=32),
      SpritesConfig(name="tiny", image_size=32, scale_stride=3, orientation_stride=10,
                    position_stride=8),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=SHAPE_NAMES),
            "factors": tfds.features.Tensor(shape=(len(FACTOR_SIZES),), dtype=np.int64),
            "values": tfds.features.Tensor(shape=(len(FACTOR_SIZES),), dtype=np.float32),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/deepmind/dsprites-dataset",
        citation=_CITATION,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Rendered locally.
    return {"train": self._generate_examples(self.builder_config.grid())}

  def _generate_examples(self, factors):
    size = self.builder_config.image_size
    for start in range(0, len(factors), _RENDER_CHUNK):
      chunk = factors[start:start + _RENDER_CHUNK]
      values = factor_values(chunk)
      images = render(values, image_size=size)
      keys = np.ravel_multi_index(tuple(chunk.T), FACTOR_SIZES)
      for key, image, chunk_factors, chunk_values in zip(keys, images, chunk, values):
        yield int(key), {"image": image[..., None], "label": int(chunk_factors[0]),
                         "factors": chunk_factors, "values": chunk_values}
