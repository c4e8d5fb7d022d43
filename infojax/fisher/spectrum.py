"""Spectra of matrix-free symmetric operators over parameter pytrees: Lanczos and SLQ.

``matvec(v) -> A v`` for ``v`` a pytree like ``params`` (a Fisher-vector product
``ij.fisher.vector_product``, a Hessian-vector product ``ij.fisher.hessian_vector_product``, a
gradient covariance product, ...). Both functions run the Lanczos iteration with full
reorthogonalisation (Golub & Van Loan, "Matrix Computations", 4th ed., §10.1) on the flattened
parameters (``jax.flatten_util.ravel_pytree``), as one ``lax.fori_loop``, so that they jit:

* ``eigenvalues``: the top-k Ritz pairs of one Lanczos run (extreme eigenvalues converge first;
  with ``num_iterations`` equal to the number of parameters they are exact up to rounding);
* ``spectral_density``: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, "Fast estimation
  of tr(f(A)) via stochastic Lanczos quadrature", SIAM J. Matrix Anal. Appl. 38(4)), as used for
  neural-network Hessians by Ghorbani, Krishnan & Xiao (2019), "An investigation into neural net
  optimization via Hessian eigenvalue density", ICML.

When the iteration finds an invariant subspace early (``beta_j ~ 0``, e.g. a low-rank Fisher), it
restarts with a random vector orthogonal to the basis and a zero coupling, so that the tridiagonal
matrix stays block diagonal, every Ritz value stays an eigenvalue estimate, and nothing is NaN.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

# A coupling beta_j below this many machine epsilons times the largest ||A q|| seen so far is a
# breakdown (after two Gram-Schmidt passes, an invariant subspace leaves a residual of a few eps).
_BREAKDOWN_EPS = 100.0

# Points of the default grid of ``spectral_density`` and its default width, as a fraction of the
# range of the nodes.
_GRID_POINTS = 1024
_SIGMA_FRACTION = 0.01


class Eigenpairs(NamedTuple):
  """Top-k Ritz pairs.

  Attributes:
    eigenvalues: ``(k,)``, descending.
    eigenvectors: a pytree like ``params`` whose leaves have a leading axis k; vector i (leaf
      slices ``[i]``) has unit norm over all leaves.
  """
  eigenvalues: jax.Array
  eigenvectors: Any


class SpectralDensity(NamedTuple):
  """A stochastic Lanczos quadrature of the spectral density.

  Attributes:
    nodes: ``(num_probes, m)`` Ritz values of each probe's Lanczos run, ascending.
    weights: ``(num_probes, m)`` quadrature weights (each row sums to 1).
    grid: ``(G,)`` points at which ``density`` is evaluated.
    density: ``(G,)`` the quadrature smoothed with a Gaussian of width ``sigma``, averaged over
      probes; it integrates to about 1 over a grid that covers the nodes.
  """
  nodes: jax.Array
  weights: jax.Array
  grid: jax.Array
  density: jax.Array


def _check_positive_int(name, value) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def _flat_operator(matvec, params):
  """``(flat_params, unravel, flat_matvec)``, after checking that ``matvec`` maps params-like
  pytrees to params-like pytrees."""
  if not callable(matvec):
    raise TypeError(f"matvec must be callable as matvec(v) -> A v; got {matvec!r}.")
  leaves = jax.tree.leaves(params)
  if not leaves:
    raise ValueError("params: the parameter pytree has no leaves.")
  for leaf in leaves:
    if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      raise TypeError(f"params: every leaf must be floating point; got {jnp.result_type(leaf)}.")
  result = jax.eval_shape(matvec, params)
  if (jax.tree.structure(result) != jax.tree.structure(params)
      or any(np.shape(r) != np.shape(p) for r, p in zip(jax.tree.leaves(result), leaves))):
    raise ValueError("matvec(v) must return a pytree with the structure and shapes of params; "
                     f"got {result}.")
  flat, unravel = jax.flatten_util.ravel_pytree(params)

  def flat_matvec(x):
    return jax.flatten_util.ravel_pytree(matvec(unravel(x)))[0].astype(x.dtype)

  return flat, unravel, flat_matvec


def _orthogonalise(vector, basis):
  """``vector`` minus its projection on the rows of ``basis`` (two passes: "twice is enough")."""
  for _ in range(2):
    vector = vector - basis.T @ (basis @ vector)
  return vector


def _lanczos(flat_matvec, start, num_iterations: int, restart_key):
  """Lanczos with full reorthogonalisation: ``(alphas (m,), betas (m - 1,), basis (m, P))``.

  A restart at step j starts from ``roll(r, j)`` orthogonalised against the basis, for one random
  vector ``r`` drawn from ``restart_key`` (the P shifts of a random vector span the space almost
  surely; drawing inside the loop instead would triple the compile time).
  """
  size, dtype = start.shape[0], start.dtype
  tolerance = _BREAKDOWN_EPS * jnp.finfo(dtype).eps
  restart_base = jax.random.normal(restart_key, (size,), dtype)

  def normalise(x):
    norm = jnp.linalg.norm(x)
    return x / jnp.where(norm > 0, norm, 1.0)

  def body(j, carry):
    basis, alphas, betas, q, scale = carry
    basis = basis.at[j].set(q)
    w = flat_matvec(q)
    alphas = alphas.at[j].set(jnp.vdot(q, w))
    scale = jnp.maximum(scale, jnp.linalg.norm(w))
    w = _orthogonalise(w, basis)
    beta = jnp.linalg.norm(w)
    broken = beta <= tolerance * scale

    def restart(_):
      fresh = jnp.roll(restart_base, j)
      return normalise(_orthogonalise(fresh, basis)), jnp.zeros((), dtype)

    def proceed(_):
      return w / jnp.where(broken, 1.0, beta), beta

    q, beta = jax.lax.cond(broken, restart, proceed, None)
    return basis, alphas, betas.at[j].set(beta), q, scale

  init = (jnp.zeros((num_iterations, size), dtype), jnp.zeros((num_iterations,), dtype),
          jnp.zeros((num_iterations,), dtype), normalise(start), jnp.zeros((), dtype))
  basis, alphas, betas, _, _ = jax.lax.fori_loop(0, num_iterations, body, init)
  return alphas, betas[:-1], basis


def _tridiagonal(alphas, betas):
  return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def _check_iterations(num_iterations, size) -> None:
  _check_positive_int("num_iterations", num_iterations)
  if num_iterations > size:
    raise ValueError(f"num_iterations must be at most the number of parameters P = {size} (a "
                     f"Krylov basis has at most P vectors); got {num_iterations}.")


def eigenvalues(matvec, params, *, k, num_iterations, key):
  """The k largest eigenvalues (and eigenvectors) of a symmetric operator, by Lanczos.

  Args:
    matvec: ``matvec(v) -> A v`` for ``v`` a pytree like ``params``; ``A`` must be symmetric
      (a Fisher, Gauss-Newton or Hessian product).
    params: a pytree fixing the structure, shapes and dtype of the vectors (floating leaves).
    k: eigenpairs to return, ``1 <= k <= num_iterations``.
    num_iterations: Lanczos steps m (matrix-vector products), ``m <= P``. With ``m = P`` the
      eigenvalues are exact up to rounding; with ``m < P`` the extreme ones converge first.
    key: a PRNG key for the starting vector (and restarts after a breakdown).

  Returns:
    ``Eigenpairs(eigenvalues (k,) descending, eigenvectors)``, the eigenvectors a pytree like
    ``params`` with a leading axis k, each of unit norm (the sign is arbitrary).

  Cost: m products with ``A`` plus ``O(m^2 P)`` for the reorthogonalisation and ``O(m^3)`` for the
  tridiagonal eigenproblem. Memory: the Krylov basis, ``m P`` values. Jits with ``k`` and
  ``num_iterations`` static; vmaps over ``key``.
  """
  if key is None:
    raise ValueError("eigenvalues draws a random starting vector and needs a PRNG key: pass key=.")
  _check_positive_int("k", k)
  flat, unravel, flat_matvec = _flat_operator(matvec, params)
  _check_iterations(num_iterations, flat.size)
  if k > num_iterations:
    raise ValueError(f"k must be at most num_iterations = {num_iterations} (the number of Ritz "
                     f"values); got k = {k}.")
  start_key, restart_key = jax.random.split(key)
  start = jax.random.normal(start_key, flat.shape, flat.dtype)
  alphas, betas, basis = _lanczos(flat_matvec, start, num_iterations, restart_key)
  values, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
  values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
  ritz_vectors = vectors.T @ basis                                      # (k, P)
  return Eigenpairs(values, jax.vmap(unravel)(ritz_vectors))


def _default_sigma(nodes):
  width = jnp.max(nodes) - jnp.min(nodes)
  magnitude = jnp.max(jnp.abs(nodes))
  scale = jnp.where(width > 0, width, jnp.where(magnitude > 0, magnitude, 1.0))
  return _SIGMA_FRACTION * scale


def spectral_density(matvec, params, *, num_iterations, num_probes, key, grid=None, sigma=None):
  """The spectral density of a symmetric operator by stochastic Lanczos quadrature.

  For a probe ``z``, m Lanczos steps started at ``z / ||z||`` give Ritz values ``theta_l`` (the
  nodes) and weights ``tau_l`` (the squared first components of the tridiagonal's eigenvectors)
  with ``sum_l tau_l f(theta_l) = z^T f(A) z / ||z||^2`` exactly for polynomials ``f`` of degree
  below 2m. With Rademacher probes ``||z||^2 = P`` and ``E[z^T f(A) z] = tr f(A)``, so the average
  over probes of ``sum_l tau_l theta_l`` estimates ``tr(A) / P``.

  Args:
    matvec: ``matvec(v) -> A v`` for ``v`` a pytree like ``params``; ``A`` symmetric.
    params: a pytree fixing the structure, shapes and dtype of the vectors (floating leaves).
    num_iterations: Lanczos steps m per probe, ``1 <= m <= P``.
    num_probes: Rademacher probes; probe i is
      ``jax.random.rademacher(jax.random.split(key, num_probes)[i], (P,))`` over the flattened
      parameters (``jax.flatten_util.ravel_pytree`` order).
    key: a PRNG key.
    grid: points ``(G,)`` at which to evaluate the density; ``None``: 1024 points from
      ``min(nodes) - 5 sigma`` to ``max(nodes) + 5 sigma``.
    sigma: the standard deviation of the Gaussian smoothing; ``None``: 1% of the range of the
      nodes (or of their magnitude if they all coincide).

  Returns:
    ``SpectralDensity(nodes (num_probes, m), weights (num_probes, m), grid (G,), density (G,))``;
    ``density(t) = (1/num_probes) sum_i sum_l tau_il N(t; theta_il, sigma^2)``.

  Cost: ``num_probes`` Lanczos runs, each m products with ``A`` plus ``O(m^2 P)``; the probes run
  one after another (``lax.map``). Memory: one Krylov basis, ``m P`` values, and
  ``G num_probes m`` for the density. Jits with the integer options static.
  """
  if key is None:
    raise ValueError("spectral_density draws random probes and needs a PRNG key: pass key=.")
  _check_positive_int("num_probes", num_probes)
  flat, _, flat_matvec = _flat_operator(matvec, params)
  _check_iterations(num_iterations, flat.size)
  if sigma is not None and isinstance(sigma, (int, float, np.number)) and not sigma > 0:
    raise ValueError(f"sigma must be positive; got {sigma!r}.")
  if grid is not None and np.ndim(grid) != 1:
    raise ValueError(f"grid must be a 1-D array of points; got shape {np.shape(grid)}.")

  def probe_quadrature(probe_key):
    start = jax.random.rademacher(probe_key, flat.shape, flat.dtype)
    alphas, betas, _ = _lanczos(flat_matvec, start, num_iterations,
                                jax.random.fold_in(probe_key, 1))
    nodes, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
    return nodes, vectors[0] ** 2

  nodes, weights = jax.lax.map(probe_quadrature, jax.random.split(key, num_probes))
  sigma = _default_sigma(nodes) if sigma is None else jnp.asarray(sigma, flat.dtype)
  if grid is None:
    grid = jnp.linspace(jnp.min(nodes) - 5 * sigma, jnp.max(nodes) + 5 * sigma, _GRID_POINTS,
                        dtype=flat.dtype)
  grid = jnp.asarray(grid, flat.dtype)
  standardised = (grid[:, None, None] - nodes[None]) / sigma                 # (G, probes, m)
  kernel = jnp.exp(-0.5 * standardised ** 2) / (sigma * math.sqrt(2.0 * math.pi))
  density = jnp.sum(kernel * weights[None], axis=(1, 2)) / num_probes
  return SpectralDensity(nodes, weights, grid, density)
