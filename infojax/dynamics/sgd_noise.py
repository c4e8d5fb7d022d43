"""The noise of SGD: the spectrum of the per-example gradient covariance and its geometry.

A minibatch of ``B`` examples drawn with replacement has gradient covariance ``D(w) / B``, with
``D = (1/N) sum_n (g_n - g)(g_n - g)^T`` the covariance of the per-example gradients; SGD with
learning rate ``eta`` then behaves like the diffusion ``dw = -grad f dt + sqrt(2 T D) dW`` at
temperature ``T = eta / (2B)`` (Chaudhari & Soatto 2018, "Stochastic gradient descent performs
variational inference, converges to limit cycles for deep networks", ICLR; science.md §12). Its
stationary law is ``exp(-f / T)`` only if ``D`` is isotropic; Chaudhari & Soatto report that it is
far from it, of rank "as small as 1% of its dimension". This module measures that:

* `noise_spectrum`: ``tr D`` (exact) and the top-k eigenpairs of ``D`` by Lanczos on matrix-free
  products (`infojax.fisher.gradient_covariance_product_fn`);
* `stable_rank` (``tr D / lambda_1``), `captured_fraction` (the share of ``tr D`` in the top
  directions), `anisotropy` (``lambda_1`` over the isotropic ``tr D / P``);
* `subspace_overlap`: the alignment of the noise's top directions with the Hessian's;
* `noise_statistics`: all of the above and the Hessian's top eigenpairs in one call.
"""

from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp

from infojax import fisher
from infojax.dynamics import _checks


def sgd_temperature(learning_rate, batch_size):
  """``T = eta / (2B)``, the temperature of SGD's diffusion (science.md §12); a traced
  ``learning_rate`` is allowed."""
  _checks.check_real("learning_rate", learning_rate)
  batch_size = _checks.check_positive_int("batch_size", batch_size)
  return learning_rate / (2.0 * batch_size)


class NoiseSpectrum(NamedTuple):
  """The trace and top eigenpairs of a positive semi-definite operator over the parameters.

  Attributes:
    trace: ``tr D``, a scalar (exact, not from the Lanczos run).
    eigenvalues: ``(k,)`` the top eigenvalues, descending.
    eigenvectors: a pytree like ``params`` with a leading axis k, orthonormal over all leaves.
    num_parameters: P, the dimension (a Python int).
  """
  trace: jax.Array
  eigenvalues: jax.Array
  eigenvectors: Any
  num_parameters: int


class NoiseStatistics(NamedTuple):
  """What `noise_statistics` measures at one point in weight space.

  Attributes:
    noise: the `NoiseSpectrum` of the gradient covariance ``D``.
    hessian: the top-k eigenpairs of the Hessian of the mean loss, an
      `infojax.fisher.Eigenpairs`.
    fisher_trace: the trace of the true Fisher (the Gauss-Newton part of the Hessian), exact.
    stable_rank: ``tr D / lambda_1(D)``.
    captured_fraction: ``(k,)``, the share of ``tr D`` in the top 1, 2, ..., k directions of ``D``.
    anisotropy: ``lambda_1(D) P / tr D`` (1 for isotropic noise, P for rank one).
    overlap: `subspace_overlap` of the top-k directions of ``D`` and of the Hessian (k / P for
      random subspaces).
  """
  noise: NoiseSpectrum
  hessian: fisher.Eigenpairs
  fisher_trace: jax.Array
  stable_rank: jax.Array
  captured_fraction: jax.Array
  anisotropy: jax.Array
  overlap: jax.Array


def _size(params) -> int:
  return int(sum(jnp.size(x) for x in jax.tree.leaves(params)))


def noise_spectrum(apply_fn, params, batch, *, likelihood, k: int, num_iterations: int, key,
                   method="auto", chunk_size=None) -> NoiseSpectrum:
  """The trace and top-k eigenpairs of the per-example gradient covariance ``D``.

  Args:
    apply_fn, params, batch, likelihood: as in `infojax.fisher.gradient_covariance` (``batch`` is
      ``(inputs, targets)``; the data labels define the gradients).
    k: eigenpairs to return, ``1 <= k <= num_iterations``.
    num_iterations: Lanczos steps, ``<= P``; exact when equal to P, otherwise the top eigenvalues
      converge first (`infojax.fisher.eigenvalues`).
    key: the PRNG key of the Lanczos start.
    method, chunk_size: as in `infojax.fisher.vector_product`.

  Returns:
    A `NoiseSpectrum`.

  Cost: ``num_iterations`` empirical Fisher-vector products (each about two passes over the batch)
  plus one gradient and one empirical Fisher trace. Memory: the Krylov basis, ``num_iterations P``.
  Jits with ``k``, ``num_iterations`` static; vmaps over ``key`` and ``params``.
  """
  product = fisher.gradient_covariance_product_fn(apply_fn, params, batch, likelihood=likelihood,
                                                  method=method, chunk_size=chunk_size)
  pairs = fisher.eigenvalues(product, params, k=k, num_iterations=num_iterations, key=key)
  trace = fisher.gradient_covariance(apply_fn, params, batch, likelihood=likelihood,
                                     output="trace", method=method, chunk_size=chunk_size)
  return NoiseSpectrum(trace, pairs.eigenvalues, pairs.eigenvectors, _size(params))


def stable_rank(noise: NoiseSpectrum):
  """``tr D / lambda_1``: at most the rank of ``D``, and P only for isotropic noise."""
  return noise.trace / noise.eigenvalues[0]


def captured_fraction(noise: NoiseSpectrum):
  """``(k,)``: ``sum_{i <= j} lambda_i / tr D`` for j = 1..k, the share of the noise's variance in
  its top directions. With Ritz values from fewer Lanczos steps than P this is a lower bound
  (Cauchy interlacing: the i-th Ritz value is at most the i-th eigenvalue)."""
  return jnp.cumsum(noise.eigenvalues) / noise.trace


def anisotropy(noise: NoiseSpectrum):
  """``lambda_1 / (tr D / P)``: how much more variance the top direction carries than the average
  direction (1 for ``D`` proportional to the identity)."""
  return noise.eigenvalues[0] * noise.num_parameters / noise.trace


def subspace_overlap(vectors_a, vectors_b):
  """``||A^T B||_F^2 / min(k_a, k_b)`` for orthonormal sets of vectors, in [0, 1].

  Args:
    vectors_a, vectors_b: pytrees like ``params`` with leading axes ``k_a`` and ``k_b`` (as in
      `NoiseSpectrum.eigenvectors`), each set orthonormal.

  Returns:
    A scalar: 1 when one span contains the other, 0 when they are orthogonal; for a random
    ``k_b``-dimensional subspace its expectation is ``max(k_a, k_b) / P``.
  """
  flat_a = jax.vmap(lambda v: jax.flatten_util.ravel_pytree(v)[0])(vectors_a)
  flat_b = jax.vmap(lambda v: jax.flatten_util.ravel_pytree(v)[0])(vectors_b)
  return jnp.sum((flat_a @ flat_b.T) ** 2) / min(flat_a.shape[0], flat_b.shape[0])


def noise_statistics(apply_fn, params, batch, *, likelihood, k: int, num_iterations: int, key,
                     method="auto", chunk_size=None) -> NoiseStatistics:
  """The gradient-noise spectrum, the Hessian's top eigenpairs and their alignment at ``params``.

  Args: as in `noise_spectrum`; the Hessian is that of the mean nll over ``batch``
  (`infojax.fisher.hessian_vector_product`), with the same ``k`` and ``num_iterations``.

  Returns:
    A `NoiseStatistics`.

  Cost: `noise_spectrum` plus ``num_iterations`` Hessian-vector products (about two gradients
  each) and a true-Fisher trace.
  """
  noise_key, hessian_key = jax.random.split(key)
  noise = noise_spectrum(apply_fn, params, batch, likelihood=likelihood, k=k,
                         num_iterations=num_iterations, key=noise_key, method=method,
                         chunk_size=chunk_size)
  hessian = fisher.eigenvalues(
      lambda v: fisher.hessian_vector_product(apply_fn, params, batch, v, likelihood=likelihood),
      params, k=k, num_iterations=num_iterations, key=hessian_key)
  fisher_trace = fisher.trace(apply_fn, params, batch, likelihood=likelihood, kind="true",
                              method=method, chunk_size=chunk_size)
  return NoiseStatistics(noise=noise, hessian=hessian, fisher_trace=fisher_trace,
                         stable_rank=stable_rank(noise),
                         captured_fraction=captured_fraction(noise),
                         anisotropy=anisotropy(noise),
                         overlap=subspace_overlap(noise.eigenvectors, hessian.eigenvectors))
