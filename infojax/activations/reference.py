"""Float64 brute-force references for the effective information of the activations.

Explicit Python loops over examples and over activations, one ``jax.grad`` per activation and
argument, the Jacobians assembled in numpy, and the linear algebra in numpy (``numpy.linalg``). They
share no code path with `infojax.activations.effective`: the activations are given as a function
``activations(params, inputs) -> (N, k)`` (no flax module paths), the weight Fisher as a flat
vector or a dense matrix in the order of ``jax.tree.leaves(params)``, and the pseudo-inverse is
``numpy.linalg.pinv``.

Requires ``jax.config.update("jax_enable_x64", True)``.
"""

import jax
import jax.numpy as jnp
import numpy as np


def _require_x64():
  if not jax.config.jax_enable_x64:
    raise RuntimeError('infojax.activations.reference computes in float64: call '
                       'jax.config.update("jax_enable_x64", True) first.')


def _flat(tree) -> np.ndarray:
  return np.concatenate([np.asarray(leaf, np.float64).reshape(-1)
                         for leaf in jax.tree.leaves(tree)])


def _jacobians(activations, params, example):
  """``(G, J)``: the activations' Jacobians in the input ``(k, d)`` and the weights ``(k, P)``."""
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
  example = jnp.asarray(example, jnp.float64)
  num_activations = np.asarray(activations(params, example[None])).reshape(-1).size
  rows_input, rows_weights = [], []
  for i in range(num_activations):
    def coordinate(p, x, i=i):
      return activations(p, x[None]).reshape(-1)[i]
    grad_params, grad_input = jax.grad(coordinate, argnums=(0, 1))(params, example)
    rows_weights.append(_flat(grad_params))
    rows_input.append(np.asarray(grad_input, np.float64).reshape(-1))
  return np.stack(rows_input), np.stack(rows_weights)


def _fisher_matrix(weight_fisher, params) -> np.ndarray:
  num_weights = sum(np.size(p) for p in jax.tree.leaves(params))
  if jax.tree.structure(weight_fisher) == jax.tree.structure(params):
    return np.diag(_flat(weight_fisher))
  matrix = np.asarray(weight_fisher, np.float64)
  assert matrix.shape == (num_weights, num_weights)
  return matrix


def noise_covariance(activations, params, inputs, *, weight_fisher, beta):
  """``beta J F^{-1} J^T`` of each example, ``(N, k, k)``, by brute force."""
  _require_x64()
  inverse = np.linalg.inv(_fisher_matrix(weight_fisher, params))
  out = []
  for example in np.asarray(inputs):
    _, weight_jacobian = _jacobians(activations, params, example)
    out.append(beta * weight_jacobian @ inverse @ weight_jacobian.T)
  return np.stack(out)


def activation_fisher(activations, params, inputs, *, weight_fisher, beta,
                      paper_convention=False, activation_noise=0.0):
  """``F_{z|x}`` of each example, ``(N, d, d)``, by brute force (science.md §2.9).

  Corrected: ``G^T (beta J F^{-1} J^T + activation_noise I)^+ G`` (``numpy.linalg.pinv``; returns
  ``inf`` entries where ``G`` leaves the range of the covariance). Printed:
  ``(1/beta) G^T J F J^T G``.
  """
  _require_x64()
  fisher = _fisher_matrix(weight_fisher, params)
  out = []
  for example in np.asarray(inputs):
    input_jacobian, weight_jacobian = _jacobians(activations, params, example)
    if paper_convention:
      out.append(input_jacobian.T @ weight_jacobian @ fisher @ weight_jacobian.T @ input_jacobian
                 / beta)
      continue
    covariance = beta * weight_jacobian @ np.linalg.inv(fisher) @ weight_jacobian.T
    covariance = covariance + activation_noise * np.eye(covariance.shape[0])
    pinv = np.linalg.pinv(covariance, hermitian=True)
    outside = input_jacobian - covariance @ pinv @ input_jacobian
    if np.linalg.norm(outside) > 1e-6 * np.linalg.norm(input_jacobian):
      out.append(np.full((input_jacobian.shape[1],) * 2, np.inf))
      continue
    out.append(input_jacobian.T @ pinv @ input_jacobian)
  return np.stack(out)


def effective_information(fisher, *, input_entropy=0.0):
  """``H(x) - mean_n 1/2 log((2 pi e)^d / |F_n|)`` from Fishers ``(N, d, d)`` (``numpy.linalg``)."""
  fisher = np.asarray(fisher, np.float64)
  dim = fisher.shape[-1]
  terms = [0.5 * np.linalg.slogdet(f)[1] - 0.5 * dim * np.log(2 * np.pi * np.e) for f in fisher]
  return input_entropy + float(np.mean(terms)), np.asarray(terms)
