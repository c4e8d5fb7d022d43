"""Argument validation shared by `infojax.dynamics` (clear errors naming the argument)."""

import numbers

import jax
import numpy as np

from infojax._validation import is_concrete


def check_positive_int(name: str, value) -> int:
  """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an integer >= 1."""
  if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")
  return int(value)


def check_real(name: str, value, *, minimum: float = 0.0, strict: bool = True,
               maximum=None) -> None:
  """A real scalar ``> minimum`` (``>=`` unless ``strict``) and ``< maximum`` when given.

  Values are checked where they are concrete; under ``jit`` or ``vmap`` (a traced learning rate
  swept by ``vmap``) only the shape is checked, since the value is not known.
  """
  if jax.numpy.ndim(value) != 0:
    raise ValueError(f"{name} must be a scalar; got shape {jax.numpy.shape(value)}.")
  if not is_concrete(value):
    return
  x = float(np.asarray(value))
  low = x > minimum if strict else x >= minimum
  if not (np.isfinite(x) and low and (maximum is None or x < maximum)):
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    if maximum is not None:
      bound += f" and < {maximum:g}"
    raise ValueError(f"{name} must be a finite number {bound}; got {value!r}.")
