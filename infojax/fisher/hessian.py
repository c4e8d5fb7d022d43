"""The diagonal of the Hessian of the mean negative log-likelihood: exact, or by Hutchinson probes.

``H = F_true + (1/N) sum_n sum_j (d nll / d z_nj) d^2 z_nj / dw^2`` (science.md §2.5): the Fisher
diagonal of ``infojax.fisher.diagonal`` is the Gauss-Newton part of it. Both methods use only
Hessian-vector products (forward-over-reverse through one linearisation; Pearlmutter 1994, "Fast
exact multiplication by the Hessian", Neural Computation 6(1)):

* ``"exact"``: ``H_ii = e_i^T H e_i`` for every basis vector, P products (small models);
* ``"hutchinson"``: ``diag(H) = E_z[z o Hz]`` for Rademacher ``z`` (Bekas, Kokiopoulou & Saad
  2007, "An estimator for the diagonal of a matrix", Applied Numerical Mathematics 57; Hutchinson
  1990), unbiased with per-entry variance ``sum_{j != i} H_ij**2`` per probe.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from infojax.fisher import _checks
from infojax.fisher import _chunks
from infojax.fisher import _sharding

METHODS = ("exact", "hutchinson")

# Default bound on the values alive at once across the columns (or probes) of one chunk
# (2**27 float32 values = 512 MiB).
_COLUMN_BUDGET = 2 ** 27


class Estimate(NamedTuple):
  """A Monte Carlo estimate with its standard error, both pytrees like ``params``."""
  mean: Any
  standard_error: Any


def _check_options(method, key, num_samples) -> None:
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}; got {method!r}.")
  if (isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer))
      or num_samples < 2):
    raise ValueError("num_samples must be an integer >= 2 (the standard error needs two probes); "
                     f"got {num_samples!r}.")
  if method == "hutchinson" and key is None:
    raise ValueError('method="hutchinson" draws Rademacher probes and needs a PRNG key: pass key=.')


def _values_per_column(linear_fn, tangent) -> int:
  """The entries of all intermediate values of one application of ``linear_fn`` (an upper
  bound on the memory one more column in a ``vmap`` adds)."""
  jaxpr = jax.make_jaxpr(linear_fn)(tangent)
  return sum(math.prod(v.aval.shape) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars
             if hasattr(v.aval, "shape"))


def _hessian_vector_fn(apply_fn, params, inputs, targets, likelihood, num_examples):
  """``(flat_params, unravel, hvp)`` with ``hvp(flat_v) = flat(H v)`` for the mean nll."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)

  def mean_nll(flat_params):
    values = likelihood.nll(apply_fn(unravel(flat_params), inputs), targets)
    return jnp.sum(values) / num_examples

  _, hvp = jax.linearize(jax.grad(mean_nll), flat)
  return flat, unravel, hvp


def _default_chunk(hvp, flat, chunk_size, limit):
  if chunk_size is not None:
    return chunk_size
  per_column = flat.size + _values_per_column(hvp, flat)
  return max(1, min(limit, _COLUMN_BUDGET // max(1, per_column)))


def _exact(hvp, flat, chunk_size):
  size = flat.size
  eye_dtype = flat.dtype

  def entries(indices):
    def one(i):
      return hvp(jax.nn.one_hot(i, size, dtype=eye_dtype))[i]
    return jax.vmap(one)(indices)

  chunk = _default_chunk(hvp, flat, chunk_size, size)
  return _chunks.chunked_map(entries, jnp.arange(size), chunk)


def _hutchinson(hvp, flat, key, num_samples, chunk_size):
  """Mean and standard error of ``z o Hz`` over ``num_samples`` Rademacher probes.

  The sums run on the samples shifted by the first one (the shifted-data algorithm), so that the
  variance does not lose its digits to cancellation when it is small next to the mean squared.
  """
  keys = jax.random.split(key, num_samples)

  def sample(probe_key):
    probe = jax.random.rademacher(probe_key, flat.shape, flat.dtype)
    return probe * hvp(probe)

  shift = sample(keys[0])

  def sums(chunk_keys):
    deviations = jax.vmap(sample)(chunk_keys) - shift[None]
    return jnp.sum(deviations, axis=0), jnp.sum(deviations * deviations, axis=0)

  chunk = _default_chunk(hvp, flat, chunk_size, num_samples - 1)
  total, total_squares = _chunks.chunked_sum(sums, keys[1:], chunk)
  mean = shift + total / num_samples
  variance = (total_squares - total * total / num_samples) / (num_samples - 1)
  standard_error = jnp.sqrt(jnp.maximum(variance, 0.0) / num_samples)
  return mean, standard_error


def hessian_diagonal(apply_fn, params, batch, *, likelihood, method="exact", key=None,
                     num_samples=100, chunk_size=None):
  """The diagonal of the Hessian of the mean negative log-likelihood over ``batch``.

  The loss is ``sum(likelihood.nll(apply_fn(w, inputs), targets)) / N``, as in
  ``infojax.fisher.hessian_vector_product``. Unlike the Fisher, the Hessian diagonal can be
  negative (away from a minimum, or where the model is not linear in its outputs).

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` with a leading example axis N.
    params: the parameter pytree (floating leaves).
    batch: ``(inputs, targets)`` with a leading example axis N.
    likelihood: an ``infojax.likelihoods.Likelihood``, e.g. ``ij.likelihoods.categorical()``.
    method: ``"exact"`` (a Hessian-vector product with every basis vector; P products, for small
      models) or ``"hutchinson"`` (``num_samples`` Rademacher probes, an unbiased estimate).
    key: a PRNG key, required by ``"hutchinson"``; probe s is
      ``jax.random.rademacher(jax.random.split(key, num_samples)[s], (P,))`` over the flattened
      parameters (``jax.flatten_util.ravel_pytree`` order).
    num_samples: probes for ``"hutchinson"`` (at least 2, for the standard error).
    chunk_size: basis vectors (``"exact"``) or probes (``"hutchinson"``) per ``vmap`` chunk.
      ``None``: as many as keep about 2**27 values (512 MiB in float32) alive, counting P plus
      every intermediate value of one Hessian-vector product per column.

  Returns:
    ``"exact"``: a pytree like ``params``. ``"hutchinson"``: an ``Estimate(mean,
    standard_error)`` of two pytrees like ``params``, the standard error being the sample standard
    deviation (ddof = 1) over the probes divided by ``sqrt(num_samples)``.

  Cost: one linearisation of the gradient (about a forward and a backward pass over the batch),
  then one Hessian-vector product (about two gradients' worth of work) per basis vector (P of them,
  ``"exact"``) or per probe (``"hutchinson"``). Memory: the linearisation's residuals plus, per
  chunk column, P values and the tangents of one product.
  """
  inputs, targets, num_examples, _ = _checks.check_call(apply_fn, params, batch, likelihood,
                                                        chunk_size=chunk_size, per_example=False)
  _check_options(method, key, num_samples)
  # Batching the products over basis vectors or probes (vmap) merges that axis into the example
  # axis of convolutions, which explicit sharding cannot express: each device then takes the
  # whole (replicated) batch; under Auto axes XLA chooses.
  inputs, targets = _sharding.replicated((inputs, targets))
  flat, unravel, hvp = _hessian_vector_fn(apply_fn, params, inputs, targets, likelihood,
                                          num_examples)
  if method == "exact":
    return unravel(_exact(hvp, flat, chunk_size))
  mean, standard_error = _hutchinson(hvp, flat, key, num_samples, chunk_size)
  return Estimate(unravel(mean), unravel(standard_error))
