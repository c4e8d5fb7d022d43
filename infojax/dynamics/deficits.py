"""Deficits for critical learning periods, as pure functions of the training epoch.

Achille, Rovere & Soatto (2019), "Critical Learning Periods in Deep Networks", ICLR (arXiv
1711.08856; science.md §1): a deficit early in training (blurred images) permanently impairs the
network, while the same deficit late does no harm, and deficits that keep the low-level
statistics (a vertical flip, a permutation of the labels) leave no lasting mark.

Two pieces, both pure and static in shape, so a whole sweep (runs differing in the deficit's
onset or removal epoch, and in the seed) can be one compiled program under ``vmap``:

* a `Window` ``[start, stop)`` of epochs in which the deficit is on: `removal` (the first ``T``
  epochs: the removal sweep) and `window` (``length`` epochs from ``onset``: the sensitivity
  sweep); `is_active` evaluates one at an epoch;
* a `Deficit` (`make`), applied to a batch by `apply` when active:

  - ``"blur"``: down-sample to ``low_size`` and up-sample back, bilinear with an antialiasing
    (triangle) filter on the way down, as torchvision's ``Resize(antialias=True)`` twice
    (32 -> 8 -> 32 for CIFAR-10 in the paper's reconstructions, 8 -> 4 -> 8 for digits);
  - ``"vertical_flip"``: every image upside down;
  - ``"label_permutation"``: every class ``c`` relabelled ``permutation[c]``, one fixed random
    permutation of the classes (the task is as hard as before);
  - ``"noise"``: the inputs replaced by i.i.d. Gaussian noise of a given per-channel mean and
    standard deviation (sensory deprivation: no information about the labels).

The host-side (numpy) versions of these transforms, for building datasets, are in
`infojax.data.transforms`; these are their ``jit``-able, step-dependent counterparts.
"""

from typing import NamedTuple, Optional, Sequence, Union

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from infojax import parallel
from infojax._validation import is_concrete

DEFICITS = ("blur", "vertical_flip", "label_permutation", "noise")


class Window(NamedTuple):
  """The epochs ``start <= epoch < stop`` in which a deficit is on (empty when ``start == stop``).

  Attributes:
    start: integer scalar (or ``(R,)`` for a sweep of ``R`` runs), the first deficit epoch.
    stop: the first epoch after the deficit, same shape.
  """
  start: jax.Array
  stop: jax.Array


def _check_epoch_count(name: str, value, *, minimum: int) -> np.ndarray:
  """Concrete integer epoch counts ``>= minimum``, as an int32 array."""
  values = np.asarray(value)
  if values.dtype == bool or not np.issubdtype(values.dtype, np.integer):
    raise TypeError(f"{name} must be integer epochs; got {value!r}.")
  if values.ndim > 1:
    raise ValueError(f"{name} must be a scalar or a 1-D sweep of epochs; got shape {values.shape}.")
  if np.any(values < minimum):
    raise ValueError(f"{name} must be >= {minimum}; got {value!r}.")
  return values.astype(np.int32)


def _checked_window(start, stop, num_epochs, what: str) -> Window:
  num_epochs = int(_check_epoch_count("num_epochs", num_epochs, minimum=1))
  if np.any(stop > num_epochs):
    raise ValueError(f"{what} ends at epoch {stop.tolist()}, outside the run's {num_epochs} "
                     f"epochs (num_epochs={num_epochs}); a deficit window must lie in "
                     f"[0, {num_epochs}].")
  return Window(jnp.asarray(start), jnp.asarray(stop))


def removal(num_deficit_epochs, *, num_epochs: int) -> Window:
  """The removal sweep's window: the deficit for the first ``num_deficit_epochs`` epochs.

  Args:
    num_deficit_epochs: integer ``T`` in ``[0, num_epochs]`` (0: the clean baseline), or a 1-D
      sequence of them (one run each).
    num_epochs: the run's length in epochs.

  Returns:
    ``Window(0, T)``, with leading axis ``R`` for a sequence.
  """
  stop = _check_epoch_count("num_deficit_epochs", num_deficit_epochs, minimum=0)
  return _checked_window(np.zeros_like(stop), stop, num_epochs, "num_deficit_epochs")


def window(onset, length: int, *, num_epochs: int) -> Window:
  """The sensitivity sweep's window: ``length`` deficit epochs starting at ``onset``.

  Args:
    onset: integer ``t0 >= 0``, or a 1-D sequence of them (one run each).
    length: the window's length ``L >= 1`` in epochs (40 in the paper's reconstructions).
    num_epochs: the run's length; ``t0 + L <= num_epochs`` is required.

  Returns:
    ``Window(t0, t0 + L)``, with leading axis ``R`` for a sequence.
  """
  start = _check_epoch_count("onset", onset, minimum=0)
  if np.ndim(length) != 0:
    raise ValueError(f"length must be one integer; got {length!r}.")
  size = int(_check_epoch_count("length", length, minimum=1))
  return _checked_window(start, start + size, num_epochs, f"the window onset + length {size}")


def is_active(deficit_window: Window, epoch) -> jax.Array:
  """Whether the deficit is on at ``epoch``: ``start <= epoch < stop`` (a bool array).

  Pure and traceable: ``epoch`` may be a traced step counter inside a scanned training loop, and
  ``deficit_window`` a traced (``vmap``-ped) window of a sweep.
  """
  return jnp.logical_and(deficit_window.start <= epoch, epoch < deficit_window.stop)


@flax.struct.dataclass
class Deficit:
  """A deficit applied to training batches (see `make`); a pytree with static ``kind``.

  Attributes:
    kind: one of `DEFICITS`.
    low_size: ``(h, w)``, the blur's intermediate size (``None`` unless ``"blur"``).
    permutation: ``(C,)`` the class permutation of ``"label_permutation"`` (else ``None``).
    noise_mean, noise_std: ``(channels,)`` the noise's per-channel moments for ``"noise"``.
  """
  kind: str = flax.struct.field(pytree_node=False)
  low_size: Optional[tuple] = flax.struct.field(pytree_node=False, default=None)
  permutation: Optional[jax.Array] = None
  noise_mean: Optional[jax.Array] = None
  noise_std: Optional[jax.Array] = None


def make(kind: str, *, image_shape: Sequence[int], num_classes: Optional[int] = None,
         low_size: Union[int, Sequence[int], None] = None, key=None, noise_mean=0.0,
         noise_std=1.0) -> Deficit:
  """A validated `Deficit`.

  Args:
    kind: one of `DEFICITS`.
    image_shape: ``(H, W, C)``, the shape of one training image.
    num_classes: the number of classes (``"label_permutation"``).
    low_size: the blur's intermediate size (one int or ``(h, w)``); it must divide
      ``(H, W)`` (8 for 32x32 images, 4 for 8x8 digits).
    key: a PRNG key for the class permutation (``"label_permutation"``).
    noise_mean, noise_std: the noise's mean and standard deviation, scalars or per channel
      (``"noise"``; the defaults suit standardised inputs).

  Returns:
    The `Deficit`.
  """
  if kind not in DEFICITS:
    raise ValueError(f"kind must be one of {DEFICITS}; got {kind!r}.")
  image_shape = tuple(image_shape)
  if len(image_shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0
                                      for d in image_shape):
    raise ValueError(f"image_shape must be (height, width, channels); got {image_shape!r}.")
  if kind == "blur":
    if low_size is None:
      raise ValueError('kind="blur" needs low_size, the intermediate size (e.g. 8 for 32x32).')
    low = (low_size, low_size) if np.ndim(low_size) == 0 else tuple(low_size)
    if len(low) != 2 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in low):
      raise ValueError(f"low_size must be a positive int or a pair of them; got {low_size!r}.")
    if any(size % d for size, d in zip(image_shape[:2], low)) or low == image_shape[:2]:
      raise ValueError(f"low_size {low} must divide the image size {image_shape[:2]} and be "
                       "smaller than it (a blur by an integer factor).")
    return Deficit(kind, low_size=tuple(int(d) for d in low))
  if kind == "label_permutation":
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
        or num_classes < 2:
      raise ValueError(f'kind="label_permutation" needs num_classes >= 2; got {num_classes!r}.')
    if key is None:
      raise ValueError('kind="label_permutation" draws its permutation: pass key=.')
    return Deficit(kind, permutation=jax.random.permutation(key, int(num_classes)))
  if kind == "noise":
    channels = image_shape[-1]
    mean, std = (jnp.broadcast_to(jnp.asarray(v, jnp.float32), (channels,))
                 if np.ndim(v) in (0, 1) and np.size(v) in (1, channels) else None
                 for v in (noise_mean, noise_std))
    if mean is None or std is None:
      raise ValueError(f"noise_mean and noise_std must be scalars or ({channels},) per channel; "
                       f"got shapes {np.shape(noise_mean)} and {np.shape(noise_std)}.")
    if is_concrete(std) and not bool(jnp.all(std > 0)):
      raise ValueError(f"noise_std must be positive; got {noise_std!r}.")
    return Deficit(kind, noise_mean=mean, noise_std=std)
  return Deficit(kind)


def blur(images: jax.Array, low_size: Sequence[int]) -> jax.Array:
  """Down-samples ``(N, H, W, C)`` images to ``low_size`` and back (bilinear, antialiased).

  Cost: ``O(N H W C (h + w))``, two separable resizes (``jax.image.resize``).
  """
  low = jax.image.resize(images, images.shape[:1] + tuple(low_size) + images.shape[3:],
                         method="bilinear", antialias=True)
  return jax.image.resize(low, images.shape, method="bilinear", antialias=True)


def _deficient(deficit: Deficit, images, labels, key):
  if deficit.kind == "blur":
    return blur(images, deficit.low_size).astype(images.dtype), labels
  if deficit.kind == "vertical_flip":
    return images[:, ::-1], labels
  if deficit.kind == "label_permutation":
    # The output keeps the labels' sharding (an Explicit-sharded batch needs it stated).
    relabelled = deficit.permutation.at[labels].get(out_sharding=jax.typeof(labels).sharding)
    return images, relabelled.astype(labels.dtype)
  noise = jax.random.normal(key, images.shape, images.dtype)
  channel = (1,) * (images.ndim - 1) + (-1,)
  noise = noise * deficit.noise_std.reshape(channel) + deficit.noise_mean.reshape(channel)
  return noise.astype(images.dtype), labels


def apply(deficit: Deficit, images: jax.Array, labels: jax.Array, active, *,
          key=None) -> tuple[jax.Array, jax.Array]:
  """The batch with the deficit applied where ``active`` (a bool scalar, e.g. `is_active`).

  Pure; under ``vmap`` over runs of a sweep (a batched ``active``) both branches are computed
  and selected, otherwise only the taken one (``lax.cond``). A batch sharded over devices (Auto
  or Explicit mesh) keeps its sharding.

  Args:
    deficit: a `Deficit` from `make`.
    images: ``(N, H, W, C)`` images of the shape `make` was given.
    labels: ``(N,)`` integer labels in ``[0, C)``.
    active: a bool scalar.
    key: a PRNG key, required for ``"noise"`` (fold in the step for fresh noise every step).

  Returns:
    ``(images, labels)`` of the input shapes and dtypes.
  """
  if not isinstance(deficit, Deficit):
    raise TypeError(f"deficit must be a Deficit from make(); got {type(deficit).__name__}.")
  if jnp.ndim(images) != 4:
    raise ValueError(f"images must be (N, H, W, C); got shape {jnp.shape(images)}.")
  if jnp.shape(labels) != jnp.shape(images)[:1]:
    raise ValueError(f"labels must have shape ({jnp.shape(images)[0]},), one per image; got "
                     f"{jnp.shape(labels)}.")
  if jnp.ndim(active) != 0:
    raise ValueError(f"active must be a bool scalar; got shape {jnp.shape(active)}.")
  if deficit.kind == "label_permutation" and is_concrete(labels):
    values = np.asarray(labels)
    if values.size and (values.min() < 0 or values.max() >= deficit.permutation.shape[0]):
      raise ValueError(f"labels must lie in [0, {deficit.permutation.shape[0] - 1}] (the deficit's "
                       f"classes); got values in [{values.min()}, {values.max()}].")
  if deficit.kind == "noise" and key is None:
    raise ValueError('the "noise" deficit draws its inputs: pass key=.')
  if deficit.kind == "noise" and deficit.noise_mean.shape != jnp.shape(images)[-1:]:
    raise ValueError(f"images have {jnp.shape(images)[-1]} channels; the deficit was made for "
                     f"{deficit.noise_mean.shape[0]}.")

  def deficient(i, y):
    out_images, out_labels = _deficient(deficit, i, y, key)
    return parallel.with_sharding_of(out_images, i), parallel.with_sharding_of(out_labels, y)

  return jax.lax.cond(active, deficient, lambda i, y: (i, y), images, labels)
