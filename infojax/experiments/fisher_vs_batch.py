"""Fisher and information against the SGD batch size: the zigzag toy, then an MLP on digits.

Achille, Paolini & Soatto, "Where is the information in a deep network?" (arXiv 1905.12213,
Sec. 4, Fig. 3 and 4; science.md §2.10, §15 B.16) claim that smaller SGD batches find minima of
lower Fisher and lower "Shannon information" in the weights. Two measurements:

**1. The Figure 3 toy, rebuilt** (the third-party rebuild of science.md §2.10 [3P-annot], whose
unstated choices are adopted and stated here). A dataset is ``N = 100`` points ``x_i ~ N(mu, 1)``,
``mu ~ U[-mu_range, mu_range]``; one parameter ``theta`` fits ``mu ~ phi(theta)`` by SGD on
``L_D(theta) = (1/N) sum_i (x_i - phi(theta))^2``. The zigzag ``phi`` (`zigzag`) is even, with
``num_pieces`` linear pieces on each side of 0 in ``[-half_width, half_width]`` whose widths grow
by ``growth`` outwards; ``phi(+-k_j) = (-1)^j`` at the kinks ``k_j``, so every piece sweeps
``[-1, 1]`` with slope ``s_j = 2 / width_j`` (about 93 down to 4.5 with the defaults) and holds
exactly one global minimiser ``phi(theta) = x-bar``: all minima have the same loss and differ only
in their Fisher ``F = N s_j^2`` (the Fisher of ``N`` points ``x ~ N(phi(theta), 1)``). Outside
``[-H, H]`` (``H = half_width``) ``phi`` is mirrored, ``phi(theta) = phi(fold(theta))``
(`fold`): SGD on the mirrored function is SGD with a reflecting boundary at ``+-H``.

* ``mu_range = 0.8`` by default (the rebuild's choice, so that ``x-bar`` stays inside ``[-1, 1]``
  and every minimiser lies inside a piece, not on a kink; science.md writes ``U[-1, 1]``, the
  paper's value).
* Every (dataset, run) starts at ``theta_0 ~ U[-init_range, init_range]``; the datasets and the
  starts are shared by every batch size (paired comparisons).
* All ``num_datasets x num_runs`` paths of one batch size are one compiled program: ``vmap`` over
  the datasets (``data`` is a traced argument of `infojax.dynamics.loops.sgd_path`) and, inside,
  over the runs (start and minibatch key). ``B < N`` uses the config's ``sampling``; ``B = N`` is
  full-batch gradient descent (`sgd_path` with ``sampling="shuffle"`` takes all the data at every
  step).
* Optionally, full-batch isotropic Langevin dynamics at ``temperatures``
  (`infojax.dynamics.loops.langevin_path`), the control of science.md §2.7: isotropic noise does
  not prefer flat minima among equal-loss ones.

At the end of a run, ``theta`` is snapped to the minimiser ``theta*`` of the piece it is in
(`piece_minimiser`) and given the post-distribution ``Q = N(theta*, 1/F)``. Measured:

* ``mean_log_fisher``: ``E log F`` over datasets and runs ("the log-determinant of the Fisher");
* ``piece_entropy``: ``H(piece)``, the plug-in entropy of the signed piece a run ends in;
* ``paper_estimator``: the paper's "Shannon information": one Gaussian per run, its KL to the
  pooled mixture ``Qbar`` of all of them, averaged: ``E_{D, run} KL(N(theta*, 1/F) || Qbar)``. It
  is ``I(theta; D, seed)``: it conditions on the seed (start and minibatches);
* ``information``: the true ``I(theta; D) = E_D KL(Q(theta|D) || E_D Q(theta|D))`` (science.md
  §2.4), with the seed averaged out first: ``Q(theta|D) = sum_b pi(b|D) N(theta*_b(x-bar), 1/F_b)``
  over all pieces ``b``. With ``R`` runs per dataset the empirical ``pi(b|D)`` is biased (about
  ``(K - 1) / (2R)`` nats for ``K`` pieces reached), so, as in the rebuild, ``pi(b|D)`` pools the
  runs of every dataset whose ``mu`` falls in the same of ``num_mu_bins`` equal bins;
* ``information_unpooled``: the same with each dataset's own runs, ``pi(b|D)`` the fraction of its
  ``R`` runs in ``b`` (biased upwards). Exactly, ``paper_estimator = information_unpooled +
  E_D (1/R) sum_r KL(N_r || Q_unpooled(theta|D))`` (the chain rule ``I(theta; D, seed) = I(theta; D)
  + I(theta; seed | D)``); the second term is about ``H(piece | D)``;
* ``within_piece_information``: the information one piece carries about the data, the same for
  every piece (`within_piece_information`; pushed through ``phi`` every ``Q`` is ``N(x-bar,
  1/N)``): for plain GD ``paper_estimator - piece_entropy`` should equal it;
* ``piece_data_information``: plug-in ``I(piece; mu-bin)``, whether the piece depends on the data.

The KL integrals are Riemann sums on a uniform grid of ``grid_points`` over ``[-H - pad, H +
pad]`` (the narrowest Gaussian, ``sd = 1 / (sqrt(N) s_0) ~ 1e-3``, spans several grid points).

Reference (science.md §2.10, 300 datasets x 12 runs, lr 1e-4, 20k steps): GD ``E log F`` 10.84,
``H(piece)`` 2.45, paper estimator 3.95, ``I(theta; D)`` 1.54; ``B = 1``: 10.36, 2.19, 3.42, 1.61.
The drop of the paper's estimator is seed entropy, not information about the data.

**2. Digits.** An MLP (`common.init_mlp`) trained on the bundled 8x8 digits by plain SGD
(`sgd_path`, shuffled epochs) at every batch size ``B`` and learning rate ``eta``, for several
seeds (initialisation and minibatch order), in two protocols: ``"epochs"`` (``num_epochs`` epochs
at every ``B``, as in the paper's Fig. 4) and ``"steps"`` (``fixed_steps`` steps at every ``B``).
One program per (protocol, ``B``), ``vmap`` over the learning rates and seeds. After training: the
exact true-Fisher trace (`infojax.fisher.trace`, ``kind="true"``, labels from the model;
science.md §0.3) on a fixed probe set (the first ``num_probe`` training examples), the training
loss and the test accuracy; mean and std over seeds. The SGD temperature is ``eta / (2B)``
(science.md §7.1, §12). At equal epochs ``eta / B`` also fixes the SDE time ``eta * steps = eta *
epochs * N / B``, so the two are confounded; at equal steps and a fixed ``eta`` the time is the
same and only the temperature changes with ``B``. For each protocol the summary fits ``log tr F =
a + b log eta + c log B`` (``b = -c`` if ``eta / B`` alone sets the Fisher) and reports the
ratio of ``tr F`` between the largest and the smallest batch at each learning rate.

Outputs in the workdir: ``config.json``, ``metrics.jsonl`` (one ``"digits"`` record per (protocol,
batch size, learning rate), then one ``"toy"`` record per batch size and one ``"toy_langevin"``
per temperature, each with means and stds across seeds or datasets), ``fisher_vs_batch_toy.png``,
``fisher_vs_batch_digits.png`` and ``summary.txt``. A rerun in the same workdir resumes: points
already in ``metrics.jsonl`` are kept and not recomputed.
"""

import functools
import math
import os
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy.special import erf
from jax import lax
from jax.scipy.special import xlogy

from infojax import config as config_lib
from infojax import fisher
from infojax import info
from infojax import io
from infojax import likelihoods
from infojax.dynamics import loops
from infojax.experiments import common

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.txt"
TOY_PLOT = "fisher_vs_batch_toy.png"
DIGITS_PLOT = "fisher_vs_batch_digits.png"
PARTS = ("toy", "digits")
PROTOCOLS = ("epochs", "steps")
TREND_TOLERANCE = 0.1  # nats, on the changes from B = N to B = 1 (science.md §15 B.16)

# The rebuild's table (300 datasets x 12 runs, lr 1e-4, 20k steps, theta0 ~ U[-0.5, 0.5]):
# {batch size: (E log F, H(piece), paper estimator, I(theta; D))}. B = 100 and 1 are in science.md
# §2.10; B = 16, 4 and the Langevin rows are from the same table of the third-party notes
# (msrepo/theory_inclined_papers_with_annotations, papers/2020-achille-information-in-weights/
# notes.md §4.1).
REFERENCE = {100: (10.84, 2.45, 3.95, 1.54), 16: (10.77, 2.39, 3.85, 1.56),
             4: (10.64, 2.32, 3.70, 1.59), 1: (10.36, 2.19, 3.42, 1.61)}
LANGEVIN_REFERENCE = {0.01: (10.82, 2.48, 3.95, 1.56), 0.16: (10.65, 2.57, 3.98, 1.56)}
REFERENCE_NAMES = ("mean_log_fisher", "piece_entropy", "paper_estimator", "information")


# ----------------------------------------------------------------------------------------------
# The zigzag.
# ----------------------------------------------------------------------------------------------


class Zigzag(NamedTuple):
  """The pieces of one side of the even zigzag ``phi`` (a pytree of arrays; see `zigzag`).

  Attributes:
    kinks: ``(K + 1,)`` the kinks ``0 = k_0 < k_1 < ... < k_K = H`` on ``theta >= 0``.
    slopes: ``(K,)`` ``|phi'|`` on each piece, ``2 / (k_{j+1} - k_j)``.
  """
  kinks: jax.Array
  slopes: jax.Array


def zigzag(*, num_pieces: int = 10, growth: float = 1.4, half_width: float = 1.5,
           dtype=jnp.float32) -> Zigzag:
  """The zigzag of the Figure 3 toy: ``num_pieces`` per side, widths growing by ``growth``.

  Piece ``j`` of ``theta >= 0`` is ``[k_j, k_{j+1}]`` with width ``w_0 growth^j`` (the widths sum
  to ``half_width``); ``phi(k_j) = (-1)^j``, linear in between, and ``phi(-theta) = phi(theta)``.
  With the defaults the slopes run from 93.1 down to 4.50 (science.md §2.10).

  Args:
    num_pieces: ``K >= 1`` pieces on each side of 0.
    growth: the width ratio of neighbouring pieces, ``> 0``.
    half_width: ``H > 0``; ``phi`` is mirrored outside ``[-H, H]`` (see `fold`).
    dtype: the arrays' dtype (float64 needs ``jax_enable_x64``).

  Returns:
    A `Zigzag`.
  """
  if isinstance(num_pieces, bool) or int(num_pieces) != num_pieces or num_pieces < 1:
    raise ValueError(f"zigzag: num_pieces must be a positive integer; got {num_pieces!r}.")
  if not (math.isfinite(growth) and growth > 0):
    raise ValueError(f"zigzag: growth must be a finite number > 0; got {growth!r}.")
  if not (math.isfinite(half_width) and half_width > 0):
    raise ValueError(f"zigzag: half_width must be a finite number > 0; got {half_width!r}.")
  widths = growth ** np.arange(int(num_pieces), dtype=np.float64)
  widths *= half_width / widths.sum()
  kinks = np.concatenate([[0.0], np.cumsum(widths)])
  kinks[-1] = half_width
  return Zigzag(jnp.asarray(kinks, dtype), jnp.asarray(2.0 / widths, dtype))


def _half_width(zig: Zigzag):
  return zig.kinks[-1]


@jax.jit
def fold(zig: Zigzag, theta):
  """``theta`` mirrored into ``[-H, H]`` at the walls ``+-H`` (a triangle wave of period 4H).

  ``phi(theta) = phi(fold(theta))``: gradient descent on the mirrored ``phi`` is gradient descent
  with a reflecting boundary. Elementwise; any shape.
  """
  half_width = _half_width(zig)
  shifted = jnp.mod(theta + half_width, 4.0 * half_width)
  return jnp.where(shifted > 2.0 * half_width, 4.0 * half_width - shifted, shifted) - half_width


def _side_piece(zig: Zigzag, distance):
  """The piece ``j in [0, K)`` holding ``|theta| = distance`` (in ``[0, H]``)."""
  num_pieces = zig.slopes.shape[0]
  return jnp.clip(jnp.searchsorted(zig.kinks[:-1], distance, side="right") - 1, 0,
                  num_pieces - 1)


def _start_value(piece):
  """``phi(k_j) = (-1)^j``; on piece ``j``, ``phi`` moves from it by ``-(-1)^j s_j`` per unit."""
  return jnp.where(piece % 2 == 0, 1.0, -1.0)


@jax.jit
def zigzag_value(zig: Zigzag, theta):
  """``phi(theta)``, elementwise (differentiable; ``phi'`` is ``+-s_j`` inside piece ``j``)."""
  distance = jnp.abs(fold(zig, theta))
  piece = _side_piece(zig, distance)
  start = _start_value(piece)
  return start - start * zig.slopes[piece] * (distance - zig.kinks[piece])


@jax.jit
def piece_index(zig: Zigzag, theta):
  """The signed piece of ``fold(theta)``: ``j`` for ``theta >= 0``, ``-j - 1`` for ``theta < 0``.

  Returns:
    int32 of ``theta``'s shape, in ``[-K, K)``; `piece_slope` gives its ``|phi'|``.
  """
  folded = fold(zig, theta)
  piece = _side_piece(zig, jnp.abs(folded))
  return jnp.where(folded >= 0, piece, -piece - 1).astype(jnp.int32)


def _unsigned(piece):
  return jnp.where(piece >= 0, piece, -piece - 1)


@jax.jit
def piece_slope(zig: Zigzag, piece):
  """``|phi'|`` on the signed ``piece`` (elementwise)."""
  return zig.slopes[_unsigned(piece)]


@jax.jit
def piece_minimiser(zig: Zigzag, piece, target):
  """The ``theta`` of the signed ``piece`` with ``phi(theta) = target`` (clipped to the piece).

  Args:
    zig: the zigzag.
    piece: signed piece indices (see `piece_index`).
    target: ``x-bar``, broadcastable against ``piece`` (explicitly: same shape or a scalar).

  Returns:
    The minimiser of ``(target - phi)^2`` inside the piece, shape of ``piece``.
  """
  side = _unsigned(piece)
  start = _start_value(side)
  width = zig.kinks[side + 1] - zig.kinks[side]
  distance = zig.kinks[side] + jnp.clip((start - target) / (start * zig.slopes[side]), 0.0, width)
  return jnp.where(piece >= 0, distance, -distance)


# ----------------------------------------------------------------------------------------------
# The toy's datasets and paths.
# ----------------------------------------------------------------------------------------------


def toy_datasets(key, *, num_datasets: int, num_points: int, mu_range: float):
  """``num_datasets`` datasets of ``num_points`` draws ``x ~ N(mu, 1)``, ``mu ~ U[-r, r]``.

  Returns:
    ``(mu, x)``: ``(M,)`` and ``(M, N)`` float32.
  """
  mu_key, noise_key = jax.random.split(key)
  mu = jax.random.uniform(mu_key, (num_datasets,), minval=-mu_range, maxval=mu_range)
  return mu, mu[:, None] + jax.random.normal(noise_key, (num_datasets, num_points))


def _point_loss(zig: Zigzag):
  def loss(theta, batch):  # batch: (B,) points
    return jnp.square(batch - zigzag_value(zig, theta))
  return loss


@functools.partial(jax.jit, static_argnames=("batch_size", "num_steps", "sampling"))
def toy_sgd(zig: Zigzag, x, theta0, keys, *, learning_rate, batch_size: int, num_steps: int,
            sampling: str = "shuffle"):
  """The final ``theta`` of SGD on every (dataset, run) of the toy, in one compiled program.

  `infojax.dynamics.loops.sgd_path` on ``L_D(theta) = (1/N) sum_i (x_i - phi(theta))^2``,
  ``vmap``-ed over the datasets and, inside, over the runs. ``batch_size == N`` is full-batch GD.

  Args:
    zig: the zigzag.
    x: ``(M, N)`` the datasets.
    theta0: ``(M, R)`` the starting points.
    keys: ``(M, R)`` PRNG keys of the minibatches.
    learning_rate: ``eta`` (may be traced).
    batch_size: ``B`` in ``[1, N]`` (static).
    num_steps: SGD steps (static).
    sampling: ``"shuffle"`` or ``"replacement"`` for ``B < N`` (static).

  Returns:
    ``(M, R)`` the final ``theta`` (not folded; see `fold`).

  Cost: ``M R num_steps`` minibatch gradients of a scalar model; ``B == N`` costs ``N`` per step
  and draws no permutation.
  """
  if batch_size == x.shape[1]:
    sampling = "shuffle"   # all the data at every step, no permutation drawn

  def one(data, start, key):
    return loops.sgd_path(_point_loss(zig), start, data, learning_rate=learning_rate,
                          batch_size=batch_size, num_steps=num_steps, key=key,
                          sampling=sampling, record_every=num_steps).params

  return jax.vmap(jax.vmap(one, in_axes=(None, 0, 0)))(x, theta0, keys)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def toy_langevin(zig: Zigzag, x, theta0, keys, *, learning_rate, temperature, num_steps: int):
  """The final ``theta`` of full-batch isotropic Langevin dynamics on every (dataset, run).

  `infojax.dynamics.loops.langevin_path` (``theta <- theta - eta L_D'(theta) + sqrt(2 T eta)
  xi``), vmapped like `toy_sgd`. Arguments as there; ``temperature`` is ``T > 0``.
  """
  def one(data, start, key):
    return loops.langevin_path(_point_loss(zig), start, data,
                               learning_rate=learning_rate, temperature=temperature,
                               num_steps=num_steps, key=key, record_every=num_steps).params
  return jax.vmap(jax.vmap(one, in_axes=(None, 0, 0)))(x, theta0, keys)


# ----------------------------------------------------------------------------------------------
# Information estimators on a grid.
# ----------------------------------------------------------------------------------------------


def toy_grid(zig: Zigzag, *, num_points: int, pad: float = 0.05):
  """A uniform grid over ``[-H - pad, H + pad]`` in the zigzag's dtype: ``(grid (G,), spacing)``."""
  half_width = _half_width(zig) + pad
  grid = jnp.linspace(-half_width, half_width, int(num_points), dtype=zig.kinks.dtype)
  return grid, 2.0 * half_width / (int(num_points) - 1)


def _gaussians(grid, means, variances):
  """``(n, G)`` densities ``N(grid; m_i, v_i)``."""
  deviation = grid[None, :] - means[:, None]
  return (jnp.exp(-0.5 * jnp.square(deviation) / variances[:, None])
          / jnp.sqrt(2.0 * jnp.pi * variances[:, None]))


def _pad_to(values, size, fill):
  return jnp.concatenate([values, jnp.full((size - values.shape[0],), fill, values.dtype)])


def mixture_density(grid, means, variances, weights=None, *, chunk_size: int = 256):
  """The mixture ``sum_i w_i N(theta; m_i, v_i) / sum_i w_i`` on ``grid``.

  Args:
    grid: ``(G,)`` points.
    means, variances: ``(n,)`` the components.
    weights: ``(n,)`` non-negative weights (``None``: equal).
    chunk_size: components evaluated at once (memory ``chunk_size x G``).

  Returns:
    ``(G,)`` the density.

  Cost: ``n G`` exponentials. Works under ``jit`` and ``vmap``.
  """
  count = means.shape[0]
  if weights is None:
    weights = jnp.ones((count,), means.dtype)
  chunk_size = max(1, min(int(chunk_size), count))
  size = -(-count // chunk_size) * chunk_size
  chunks = (_pad_to(means, size, 0.0).reshape(-1, chunk_size),
            _pad_to(variances, size, 1.0).reshape(-1, chunk_size),
            _pad_to(weights, size, 0.0).reshape(-1, chunk_size))

  def add(total, chunk):
    chunk_means, chunk_variances, chunk_weights = chunk
    return total + chunk_weights @ _gaussians(grid, chunk_means, chunk_variances), None

  dtype = jnp.result_type(grid, means, variances, weights)
  total, _ = lax.scan(add, jnp.zeros(grid.shape, dtype), chunks)
  return total / jnp.sum(weights)


def _safe_log(density):
  return jnp.log(jnp.maximum(density, jnp.finfo(density.dtype).tiny))


def gaussian_kl_to_density(grid, spacing, means, variances, density, *, chunk_size: int = 256):
  """``KL(N(m_i, v_i) || q)`` for each Gaussian against a density ``q`` tabulated on ``grid``.

  ``-1/2 log(2 pi e v_i) - sum_g N(g; m_i, v_i) log q(g) spacing``: the exact entropy and a
  Riemann sum of the cross-entropy (the Gaussians must lie well inside the grid).

  Args:
    grid: ``(G,)`` uniform points with step ``spacing``.
    spacing: the grid step.
    means, variances: ``(n,)``.
    density: ``(G,)`` ``q`` on the grid.
    chunk_size: Gaussians evaluated at once.

  Returns:
    ``(n,)`` the KLs in nats.

  Cost: ``n G`` exponentials.
  """
  log_density = _safe_log(density)

  def one_chunk(chunk):
    chunk_means, chunk_variances = chunk
    cross = _gaussians(grid, chunk_means, chunk_variances) @ log_density * spacing
    return -0.5 * jnp.log(2.0 * jnp.pi * jnp.e * chunk_variances) - cross

  return _chunked(one_chunk, (means, variances), max(1, min(int(chunk_size), means.shape[0])))


def _chunked(fn, arrays, chunk_size):
  """``fn`` over leading-axis chunks of ``arrays`` (each ``(n,)``), concatenated to ``(n,)``."""
  count = arrays[0].shape[0]
  size = -(-count // chunk_size) * chunk_size
  fills = (0.0, 1.0) + (0.0,) * (len(arrays) - 2)
  padded = tuple(_pad_to(a, size, f).reshape(-1, chunk_size) for a, f in zip(arrays, fills))
  return lax.map(fn, padded).reshape(-1)[:count]


def density_kl(spacing, p, q):
  """``KL(p || q) = sum_g p log(p / q) spacing`` of densities tabulated on one uniform grid.

  ``p`` may have leading axes (``(..., G)``); ``q`` is ``(G,)``. Returns ``p``'s leading shape.
  """
  return jnp.sum(xlogy(p, p) - p * jnp.broadcast_to(_safe_log(q), p.shape), axis=-1) * spacing


def pooled_piece_probabilities(pieces, groups, *, num_pieces: int, num_groups: int):
  """``pi(b | group)`` from the runs of every dataset in the group, for each dataset.

  Args:
    pieces: ``(M, R)`` signed pieces (in ``[-K, K)``).
    groups: ``(M,)`` the group (``mu`` bin) of each dataset, in ``[0, num_groups)``.
    num_pieces: ``K``.
    num_groups: the number of groups.

  Returns:
    ``(M, 2K)`` probabilities over the signed pieces ``-K .. K-1`` (column ``b + K``).
  """
  columns = (pieces + num_pieces).reshape(-1)
  rows = jnp.repeat(groups, pieces.shape[1])
  counts = jnp.zeros((num_groups, 2 * num_pieces)).at[rows, columns].add(1.0)
  table = counts / jnp.maximum(jnp.sum(counts, axis=1, keepdims=True), 1.0)
  return table[groups]


def _dataset_mixtures(zig: Zigzag, grid, probabilities, xbar, *, num_points: int):
  """``Q(theta | D)`` on the grid for each dataset: ``sum_b pi_b N(theta*_b(x-bar), 1/(N s_b^2))``.

  ``probabilities``: ``(M, 2K)`` over the signed pieces; ``xbar``: ``(M,)``. Returns ``(M, G)``.
  """
  num_pieces = zig.slopes.shape[0]
  signed = jnp.arange(-num_pieces, num_pieces)
  variances = 1.0 / (num_points * jnp.square(piece_slope(zig, signed)))

  def one(args):
    weights, target = args
    means = piece_minimiser(zig, signed, target)
    return mixture_density(grid, means, variances, weights, chunk_size=2 * num_pieces)

  return lax.map(one, (probabilities, xbar), batch_size=8)


def _run_mixtures(grid, means, variances):
  """``(M, G)``: for each dataset the equal mixture of its ``R`` runs' Gaussians (``(M, R)``)."""
  return lax.map(lambda mv: mixture_density(grid, mv[0], mv[1], chunk_size=mv[0].shape[0]),
                 (means, variances), batch_size=8)


def plug_in_entropy(counts) -> float:
  """The entropy (nats) of the distribution proportional to non-negative ``counts``
  (`infojax.info.entropy`)."""
  counts = np.asarray(counts, np.float64).reshape(-1)
  return float(info.entropy(jnp.asarray(counts / counts.sum())))


def plug_in_mutual_information(a, b) -> float:
  """Plug-in ``I(a; b)`` (nats) of two label arrays of equal size
  (`infojax.info.mutual_information` of their empirical joint table)."""
  _, a = np.unique(np.asarray(a).reshape(-1), return_inverse=True)
  _, b = np.unique(np.asarray(b).reshape(-1), return_inverse=True)
  joint = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(joint, (a, b), 1.0)
  return float(info.mutual_information(jnp.asarray(joint / joint.sum())))


def within_piece_information(*, num_points: int, mu_range: float,
                             num_grid: int = 20001) -> float:
  """``I(x-bar; u)`` for ``u = x-bar + N(0, 1/N)``, ``x-bar = mu + N(0, 1/N)``, ``mu ~ U[-r, r]``.

  The information about the data in the post-distribution ``N(theta*, 1/(N s^2))`` of any single
  piece: pushed through ``phi`` it is ``N(x-bar, 1/N)`` whatever the slope.
  ``h(mu + N(0, 2/N)) - 1/2 log(2 pi e / N)``, the first term by quadrature in float64 (1.51
  nats for ``N = 100``, ``r = 0.8``; science.md §2.10 [3P-annot]). Numpy; not traced.
  """
  scale = math.sqrt(2.0 / num_points)
  u = np.linspace(-mu_range - 10 * scale, mu_range + 10 * scale, int(num_grid))
  density = 0.5 * (erf((mu_range - u) / (scale * math.sqrt(2.0)))
                   - erf((-mu_range - u) / (scale * math.sqrt(2.0)))) / (2.0 * mu_range)
  positive = density > 0
  entropy = -float(np.sum(density[positive] * np.log(density[positive])) * (u[1] - u[0]))
  return entropy - 0.5 * math.log(2.0 * math.pi * math.e / num_points)


@functools.partial(jax.jit, static_argnames=("num_points", "num_mu_bins", "grid_points"))
def toy_estimators(zig: Zigzag, theta, xbar, bins, *, num_points: int, num_mu_bins: int,
                   grid_points: int) -> dict:
  """The toy's per-run and per-dataset Fisher and information values (one compiled program).

  Args:
    zig: the zigzag.
    theta: ``(M, R)`` final parameters.
    xbar: ``(M,)`` dataset means.
    bins: ``(M,)`` int, each dataset's ``mu`` bin in ``[0, num_mu_bins)`` (pools ``pi(b | D)``).
    num_points: ``N``.
    num_mu_bins: the number of bins.
    grid_points: grid size of the KL integrals.

  Returns:
    A dict of arrays: ``pieces``, ``minimisers``, ``log_fisher`` (``(M, R)``: the signed piece,
    ``theta*`` and ``log(N s^2)`` of each run); ``(M,)`` per dataset: ``paper_estimator`` (the mean
    over its runs of ``KL(N_r || Qbar)``), ``information`` (``KL(Q(theta|D) || E_D Q(theta|D))``,
    ``pi`` pooled over the bin), ``information_unpooled`` (``KL(Q_own(theta|D) || Qbar)``, ``pi``
    from its own runs) and ``seed_information`` (the mean over its runs of ``KL(N_r ||
    Q_own(theta|D))``).

  Cost: ``O((2 M R + 2 K M) G)`` exponentials; memory ``O(M G)``.
  """
  num_datasets, num_runs = theta.shape
  num_pieces = zig.slopes.shape[0]
  pieces = piece_index(zig, theta)
  minimisers = piece_minimiser(zig, pieces, jnp.broadcast_to(xbar[:, None], theta.shape))
  fisher_values = num_points * jnp.square(piece_slope(zig, pieces))
  variances = 1.0 / fisher_values
  grid, spacing = toy_grid(zig, num_points=grid_points)

  pooled = mixture_density(grid, minimisers.reshape(-1), variances.reshape(-1))
  per_run = gaussian_kl_to_density(grid, spacing, minimisers.reshape(-1), variances.reshape(-1),
                                   pooled).reshape(num_datasets, num_runs)
  own = _run_mixtures(grid, minimisers, variances)
  seed = jax.vmap(lambda m, v, q: gaussian_kl_to_density(grid, spacing, m, v, q))(
      minimisers, variances, own)
  probabilities = pooled_piece_probabilities(pieces, bins, num_pieces=num_pieces,
                                             num_groups=num_mu_bins)
  mixtures = _dataset_mixtures(zig, grid, probabilities, xbar, num_points=num_points)
  return {"pieces": pieces, "minimisers": minimisers, "log_fisher": jnp.log(fisher_values),
          "paper_estimator": jnp.mean(per_run, axis=1),
          "information": density_kl(spacing, mixtures, jnp.mean(mixtures, axis=0)),
          "information_unpooled": density_kl(spacing, own, pooled),
          "seed_information": jnp.mean(seed, axis=1)}


def mu_bins(mu, *, mu_range: float, num_mu_bins: int):
  """The index of each ``mu`` among ``num_mu_bins`` equal bins of ``[-r, r]`` (numpy ints)."""
  edges = np.linspace(-mu_range, mu_range, int(num_mu_bins) + 1)[1:-1]
  return np.digitize(np.asarray(mu, np.float64), edges)


def toy_information(zig: Zigzag, theta, xbar, mu, *, num_points: int, mu_range: float,
                    num_mu_bins: int, grid_points: int) -> dict:
  """The toy's Fisher and information measurements from the final ``theta`` of every run.

  Args:
    zig: the zigzag.
    theta: ``(M, R)`` final parameters.
    xbar: ``(M,)`` dataset means.
    mu: ``(M,)`` the datasets' ``mu`` (for the bins that pool the piece probabilities).
    num_points: ``N``.
    mu_range: ``r`` of ``mu ~ U[-r, r]``.
    num_mu_bins: equal ``mu`` bins pooling ``pi(b | D)``.
    grid_points: grid size of the KL integrals.

  Returns:
    A dict of floats (see the module docstring and `toy_estimators`): ``mean_log_fisher``,
    ``paper_estimator``, ``information``, ``information_unpooled``, ``seed_information``, each
    with ``_sem`` (the standard error over datasets, the reference densities held fixed),
    ``mean_log_fisher_std`` (the std over datasets of their mean), ``piece_entropy``,
    ``piece_entropy_given_bin``, ``piece_data_information`` (plug-in ``I(piece; mu-bin)``),
    ``within_piece_information``, ``distance_to_minimiser`` (mean ``|fold(theta) - theta*|``) and
    ``piece_shares`` (the share of runs per unsigned piece, steepest first).
  """
  num_pieces = int(zig.slopes.shape[0])
  bins = mu_bins(mu, mu_range=mu_range, num_mu_bins=num_mu_bins)
  values = toy_estimators(zig, theta, xbar, jnp.asarray(bins), num_points=int(num_points),
                          num_mu_bins=int(num_mu_bins), grid_points=int(grid_points))
  values = {name: np.asarray(value) for name, value in values.items()}
  pieces = values["pieces"].reshape(-1)
  entropy = plug_in_entropy(np.bincount(pieces + num_pieces))
  data_information = plug_in_mutual_information(pieces, np.repeat(bins, theta.shape[1]))
  shares = np.bincount(np.where(pieces >= 0, pieces, -pieces - 1), minlength=num_pieces)

  result = {}
  for name in ("log_fisher", "paper_estimator", "information", "information_unpooled",
               "seed_information"):
    per_dataset = np.asarray(values[name], np.float64)
    per_dataset = per_dataset.mean(axis=1) if per_dataset.ndim == 2 else per_dataset
    key = "mean_log_fisher" if name == "log_fisher" else name
    result[key] = float(per_dataset.mean())
    result[key + "_sem"] = (float(per_dataset.std(ddof=1) / math.sqrt(per_dataset.size))
                            if per_dataset.size > 1 else 0.0)
  result["mean_log_fisher_std"] = float(values["log_fisher"].mean(axis=1).std())
  result.update({
      "piece_entropy": entropy, "piece_entropy_given_bin": entropy - data_information,
      "piece_data_information": data_information,
      "within_piece_information": within_piece_information(num_points=num_points,
                                                           mu_range=mu_range),
      "distance_to_minimiser": float(np.mean(np.abs(np.asarray(fold(zig, theta))
                                                    - values["minimisers"]))),
      "piece_shares": (shares / shares.sum()).tolist()})
  return result


# ----------------------------------------------------------------------------------------------
# Digits.
# ----------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("apply_fn", "batch_size", "num_steps"))
def digits_sgd(apply_fn, initial, data, learning_rates, keys, *, batch_size: int, num_steps: int):
  """Plain SGD (shuffled epochs) from each seed's initialisation at each learning rate.

  One compiled program (cached per ``apply_fn``, batch size and number of steps): `sgd_path`
  ``vmap``-ed over the learning rates (outer) and the seeds (inner; initialisation and minibatch
  key).

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits`` (static: hashed by identity).
    initial: the initial parameters stacked over seeds (leading axis S).
    data: ``(inputs, labels)``, the training set.
    learning_rates: ``(L,)``.
    keys: ``(S,)`` minibatch keys.
    batch_size, num_steps: static.

  Returns:
    The final parameters, leading axes ``(L, S)``.

  Cost: ``L S num_steps`` minibatch gradients.
  """
  loss = loops.per_example_nll(apply_fn, likelihoods.categorical())

  def one(params, learning_rate, key):
    return loops.sgd_path(loss, params, data, learning_rate=learning_rate, batch_size=batch_size,
                          num_steps=num_steps, key=key, record_every=num_steps).params

  per_seed = jax.vmap(one, in_axes=(0, None, 0))
  return jax.vmap(per_seed, in_axes=(None, 0, None))(initial, learning_rates, keys)


def digits_measurement_fn(apply_fn, *, probe, train_batch, test_batch):
  """A compiled ``fn(params) -> {"fisher_trace", "train_loss", "test_accuracy"}``.

  ``params`` has leading axes ``(L, S)`` (learning rates, seeds), and so has each output: the exact
  true-Fisher trace (`infojax.fisher.trace`, ``kind="true"``, labels from the model) of the mean
  loss on ``probe``, the mean cross-entropy on ``train_batch`` and the accuracy on ``test_batch``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> logits``.
    probe, train_batch, test_batch: ``(inputs, labels)``.

  Returns:
    The jitted function. Cost per network: C backward passes per probe example (C classes) and
    two forward passes.
  """
  likelihood = likelihoods.categorical()
  loss = common.mean_nll_fn(apply_fn)
  error = common.error_rate_fn(apply_fn)

  def one(p):
    return {"fisher_trace": fisher.trace(apply_fn, p, probe, likelihood=likelihood, kind="true"),
            "train_loss": loss(p, train_batch), "test_accuracy": 1.0 - error(p, test_batch)}

  return jax.jit(jax.vmap(jax.vmap(one)))


def log_linear_fit(fisher_traces, learning_rates, batch_sizes) -> dict:
  """Least squares ``log tr F = a + b log eta + c log B`` and ``log tr F`` on ``log(eta / B)``.

  Args:
    fisher_traces, learning_rates, batch_sizes: ``(P,)`` one entry per point (seed means).

  Returns:
    ``{"lr_exponent": b, "batch_exponent": c, "r2": R^2 of the two-variable fit,
    "temperature_exponent", "temperature_r2": slope and R^2 on log(eta / B) alone}`` (``nan`` when
    there are too few distinct points).
  """
  y = np.log(np.asarray(fisher_traces, np.float64))
  log_lr = np.log(np.asarray(learning_rates, np.float64))
  log_b = np.log(np.asarray(batch_sizes, np.float64))
  nan = {"lr_exponent": math.nan, "batch_exponent": math.nan, "r2": math.nan,
         "temperature_exponent": math.nan, "temperature_r2": math.nan}
  total = float(np.sum(np.square(y - y.mean())))
  if y.size < 4 or total == 0:
    return nan
  design = np.stack([np.ones_like(y), log_lr, log_b], axis=1)
  if np.linalg.matrix_rank(design) < 3:
    return nan
  coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
  residual = float(np.sum(np.square(y - design @ coefficients)))
  temperature = np.stack([np.ones_like(y), log_lr - log_b], axis=1)
  slope, *_ = np.linalg.lstsq(temperature, y, rcond=None)
  temperature_residual = float(np.sum(np.square(y - temperature @ slope)))
  return {"lr_exponent": float(coefficients[1]), "batch_exponent": float(coefficients[2]),
          "r2": 1.0 - residual / total, "temperature_exponent": float(slope[1]),
          "temperature_r2": 1.0 - temperature_residual / total}


# ----------------------------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------------------------


def _check_config(config) -> None:
  unknown = set(config.parts) - set(PARTS)
  if unknown or not config.parts:
    raise ValueError(f"fisher_vs_batch: config.parts must be a non-empty subset of {PARTS}; got "
                     f"{tuple(config.parts)}.")
  toy = config.toy
  for batch_size in toy.batch_sizes:
    if not 1 <= batch_size <= toy.num_points:
      raise ValueError(f"fisher_vs_batch: config.toy.batch_sizes must lie in [1, num_points = "
                       f"{toy.num_points}]; got {batch_size}.")
  unknown = set(config.digits.protocols) - set(PROTOCOLS)
  if unknown or not config.digits.protocols:
    raise ValueError(f"fisher_vs_batch: config.digits.protocols must be a non-empty subset of "
                     f"{PROTOCOLS}; got {tuple(config.digits.protocols)}.")
  if config.num_steps < 1 or config.num_epochs < 1:
    raise ValueError("fisher_vs_batch: config.num_steps and config.num_epochs must be positive; "
                     f"got {config.num_steps} and {config.num_epochs}.")


@functools.partial(jax.jit, static_argnames=("num_datasets", "num_runs", "num_points"))
def toy_problem(key, *, num_datasets: int, num_runs: int, num_points: int, mu_range,
                init_range):
  """The toy's datasets and starts from one key, shared by every batch size and temperature.

  Returns:
    ``(mu (M,), x (M, N), theta0 (M, R))``: `toy_datasets` with ``fold_in(key, 0)`` and
    ``theta0 ~ U[-init_range, init_range]`` with ``fold_in(key, 1)``.
  """
  mu, x = toy_datasets(jax.random.fold_in(key, 0), num_datasets=num_datasets,
                       num_points=num_points, mu_range=mu_range)
  theta0 = jax.random.uniform(jax.random.fold_in(key, 1), (num_datasets, num_runs),
                              minval=-init_range, maxval=init_range)
  return mu, x, theta0


def _toy_setup(config):
  toy = config.toy
  zig = zigzag(num_pieces=toy.num_pieces, growth=toy.growth, half_width=toy.half_width)
  key = jax.random.key(config.seed)
  mu, x, theta0 = toy_problem(key, num_datasets=int(toy.num_datasets),
                              num_runs=int(toy.num_runs), num_points=int(toy.num_points),
                              mu_range=float(toy.mu_range), init_range=float(toy.init_range))
  return zig, key, mu, x, theta0


@functools.partial(jax.jit, static_argnames=("shape",))
def _path_keys(key, index, shape):
  return jax.random.split(jax.random.fold_in(key, index), shape)


def toy_point(config, *, batch_size: Optional[int] = None,
              temperature: Optional[float] = None) -> dict:
  """One point of the toy: SGD of ``batch_size`` (or Langevin at ``temperature``) and its record.

  Args:
    config: the experiment config (``config.toy``, ``config.num_steps``, ``config.seed``).
    batch_size: an SGD batch size (exactly one of ``batch_size`` and ``temperature``).
    temperature: a Langevin temperature.

  Returns:
    The record: ``kind`` (``"toy"`` or ``"toy_langevin"``), the setting and `toy_information`.
  """
  if (batch_size is None) == (temperature is None):
    raise ValueError("toy_point: give exactly one of batch_size and temperature.")
  toy = config.toy
  zig, key, mu, x, theta0 = _toy_setup(config)
  shape = theta0.shape
  if batch_size is not None:
    theta = toy_sgd(zig, x, theta0, _path_keys(key, 1000 + int(batch_size), shape),
                    learning_rate=toy.learning_rate, batch_size=int(batch_size),
                    num_steps=config.num_steps, sampling=toy.sampling)
    record = {"kind": "toy", "batch_size": int(batch_size),
              "sampling": "full_batch" if batch_size == toy.num_points else toy.sampling}
  else:
    index = list(toy.temperatures).index(temperature)
    theta = toy_langevin(zig, x, theta0, _path_keys(key, 2000 + index, shape),
                         learning_rate=toy.learning_rate, temperature=float(temperature),
                         num_steps=config.num_steps)
    record = {"kind": "toy_langevin", "temperature": float(temperature)}
  record.update({"learning_rate": float(toy.learning_rate), "num_steps": int(config.num_steps),
                 "num_datasets": int(toy.num_datasets), "num_runs": int(toy.num_runs)})
  record.update(toy_information(zig, theta, jnp.mean(x, axis=1), mu, num_points=toy.num_points,
                                mu_range=toy.mu_range, num_mu_bins=toy.num_mu_bins,
                                grid_points=toy.grid_points))
  return io.to_json_value(record)


class DigitsSetup(NamedTuple):
  """The data, initial weights and compiled measurements shared by the digits points."""
  apply_fn: object
  initial: object       # initial parameters stacked over seeds
  keys: jax.Array       # (S,) minibatch keys
  train_batch: tuple
  measure: object       # `digits_measurement_fn`
  num_probe: int


def digits_setup(config) -> DigitsSetup:
  """Loads the digits splits, initialises one MLP per seed and compiles the measurements.

  Seed ``s`` initialises with ``fold_in(key(s), 0)`` and draws its minibatch order with
  ``fold_in(key(s), 1)`` (the same order at every learning rate: paired comparisons).
  """
  digits = config.digits
  splits = common.load_splits(digits.dataset, data_dir=digits.data_dir,
                              normalize=digits.normalize, num_train=digits.num_train,
                              seed=config.seed)
  train_batch = tuple(jnp.asarray(a) for a in common.as_batch(splits["train"]))
  test_batch = tuple(jnp.asarray(a) for a in common.as_batch(splits["test"]))
  num_probe = int(digits.num_probe or train_batch[1].shape[0])
  probe = tuple(a[:num_probe] for a in train_batch)
  num_classes = int(max(splits["train"]["label"].max(), splits["test"]["label"].max())) + 1
  made = {}

  def init(key):  # one compiled initialisation for all seeds (init_mlp compiles per call)
    made["apply_fn"], params = common.init_mlp(digits.hidden_sizes, num_classes,
                                               train_batch[0].shape[1:], key)
    return params

  seeds = jnp.asarray(digits.seeds, jnp.uint32)
  initial = jax.jit(jax.vmap(lambda seed: init(jax.random.fold_in(jax.random.key(seed), 0))))(
      seeds)
  apply_fn = made["apply_fn"]  # a closure over the module only (an MLP has no model state)
  keys = jax.jit(jax.vmap(lambda seed: jax.random.fold_in(jax.random.key(seed), 1)))(seeds)
  measure = digits_measurement_fn(apply_fn, probe=probe, train_batch=train_batch,
                                  test_batch=test_batch)
  return DigitsSetup(apply_fn, initial, keys, train_batch, measure, num_probe)


def digits_num_steps(config, protocol: str, batch_size: int, num_train: int) -> int:
  """SGD steps of a digits point: ``num_epochs * (N // B)`` (``"epochs"``) or
  ``config.digits.fixed_steps`` (``"steps"``)."""
  if protocol == "epochs":
    return int(config.num_epochs) * (int(num_train) // int(batch_size))
  if protocol == "steps":
    return int(config.digits.fixed_steps)
  raise ValueError(f"digits protocol must be one of {PROTOCOLS}; got {protocol!r}.")


def digits_points(config, protocol: str, batch_size: int, learning_rates: Sequence[float],
                  setup: Optional[DigitsSetup] = None) -> list:
  """The digits records of one protocol and batch size at ``learning_rates`` (one program).

  Args:
    config: the experiment config (``config.digits``, ``config.num_epochs``).
    protocol: ``"epochs"`` (every batch size trains ``num_epochs`` epochs, as in the paper's
      Fig. 4: equal ``eta / B`` then also means equal SDE time ``eta * steps``) or ``"steps"``
      (every batch size takes ``fixed_steps`` steps: at a fixed learning rate the SDE time is the
      same and only the temperature ``eta / (2B)`` changes).
    batch_size: the SGD batch size.
    learning_rates: the learning rates to run.
    setup: a `digits_setup` (``None``: made here).

  Returns:
    One record per learning rate: the setting, ``num_steps``, ``eta_over_batch``, ``sde_time``
    (``eta * num_steps``), and for ``fisher_trace``, ``train_loss``, ``test_accuracy`` the mean,
    the ``_std`` over seeds and the ``_per_seed`` values.
  """
  setup = setup or digits_setup(config)
  num_steps = digits_num_steps(config, protocol, batch_size, int(setup.train_batch[1].shape[0]))
  params = digits_sgd(setup.apply_fn, setup.initial, setup.train_batch,
                      jnp.asarray(learning_rates, jnp.float32), setup.keys,
                      batch_size=int(batch_size), num_steps=num_steps)
  values = setup.measure(params)
  records = []
  for index, learning_rate in enumerate(learning_rates):
    record = {"kind": "digits", "protocol": protocol, "batch_size": int(batch_size),
              "learning_rate": float(learning_rate),
              "eta_over_batch": float(learning_rate) / int(batch_size),
              "num_epochs": int(config.num_epochs), "num_steps": num_steps,
              "sde_time": float(learning_rate) * num_steps,
              "num_seeds": len(config.digits.seeds), "num_probe": setup.num_probe}
    for name, array in values.items():
      per_seed = np.asarray(array[index], np.float64)
      record[name] = float(per_seed.mean())
      record[name + "_std"] = float(per_seed.std(ddof=1)) if per_seed.size > 1 else 0.0
      record[name + "_per_seed"] = per_seed.tolist()
    records.append(io.to_json_value(record))
  return records


def _saved(path) -> list:
  return io.read_metrics(path) if os.path.exists(path) else []


def _toy_key(record):
  return ("toy", record["batch_size"]) if record["kind"] == "toy" else (
      "toy_langevin", record["temperature"])


def _plot_toy(path, toy_records, langevin_records, num_points):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.2), layout="constrained")
  axes = figure.subplots(1, 3)
  records = sorted(toy_records, key=lambda r: r["batch_size"])
  sizes = [r["batch_size"] for r in records]

  def line(axis, name, label, marker="o"):
    axis.errorbar(sizes, [r[name] for r in records],
                  yerr=[r.get(name + "_sem", 0.0) for r in records], marker=marker, capsize=3,
                  label=label)

  line(axes[0], "mean_log_fisher", "SGD (B = N: GD)")
  for record in langevin_records:
    axes[0].axhline(record["mean_log_fisher"], linestyle=":", color="gray")
    axes[0].annotate(f"Langevin T={record['temperature']:g}", (sizes[0],
                     record["mean_log_fisher"]), fontsize="x-small")
  references = ([(size, REFERENCE[size]) for size in sizes if size in REFERENCE]
                if num_points == 100 else [])
  for column, indices in ((0, (0,)), (1, (1, 2, 3))):
    for k in indices:
      axes[column].plot([size for size, _ in references], [ref[k] for _, ref in references],
                        marker="*", markersize=10, color="k", linestyle="none",
                        label="the rebuild's table (science.md §2.10)" if k in (0, 1) else None)
  axes[0].set_ylabel("E log F")
  axes[0].set_title("mean log Fisher of the minimum reached", fontsize="small")
  line(axes[1], "paper_estimator", "paper's estimator I(theta; D, seed)")
  axes[1].plot(sizes, [r["piece_entropy"] for r in records], marker="s", label="H(piece)")
  line(axes[1], "information", "I(theta; D), seed averaged (pooled)")
  line(axes[1], "information_unpooled", "I(theta; D), own runs only", marker="^")
  axes[1].axhline(records[0]["within_piece_information"], linestyle="--", color="gray",
                  label="information inside one piece")
  axes[1].set_ylabel("nats")
  axes[1].set_title("information estimators", fontsize="small")
  for axis in axes[:2]:
    axis.set_xscale("log")
    axis.set_xlabel("batch size B")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  for record in records:
    axes[2].plot(record["piece_shares"], marker="o", markersize=3, label=f"B = "
                 f"{record['batch_size']}")
  for record in langevin_records:
    axes[2].plot(record["piece_shares"], linestyle=":", label=f"Langevin T = "
                 f"{record['temperature']:g}")
  axes[2].set_xlabel("piece, steepest (0) to shallowest")
  axes[2].set_ylabel("share of runs")
  axes[2].grid(alpha=0.3)
  axes[2].legend(fontsize="x-small")
  figure.suptitle("Figure 3 toy of 'Where is the information': SGD batch size against Fisher and "
                  "information")
  figure.savefig(path, dpi=110)


def _plot_digits(path, records):
  from matplotlib.figure import Figure

  figure = Figure(figsize=(15.0, 4.4), layout="constrained")
  axes = figure.subplots(1, 3)
  rates = sorted({r["learning_rate"] for r in records})
  sizes = sorted({r["batch_size"] for r in records})
  styles = {"epochs": ("-", "o"), "steps": ("--", "s")}
  for column, protocol in enumerate(PROTOCOLS):
    for rate in rates:
      points = sorted((r for r in records
                       if r["learning_rate"] == rate and r["protocol"] == protocol),
                      key=lambda r: r["batch_size"])
      if points:
        axes[column].errorbar([r["batch_size"] for r in points],
                              [r["fisher_trace"] for r in points],
                              yerr=[r["fisher_trace_std"] for r in points], marker="o",
                              capsize=3, label=f"lr = {rate:g}")
    axes[column].set_xlabel("batch size B")
  axes[0].set_title("equal epochs (the paper's Fig. 4)", fontsize="small")
  axes[1].set_title("equal steps (equal SDE time eta * steps at each lr)", fontsize="small")
  for protocol in PROTOCOLS:
    linestyle, marker = styles[protocol]
    for size in sizes:
      points = sorted((r for r in records
                       if r["batch_size"] == size and r["protocol"] == protocol),
                      key=lambda r: r["eta_over_batch"])
      if points:
        axes[2].errorbar([r["eta_over_batch"] for r in points],
                         [r["fisher_trace"] for r in points],
                         yerr=[r["fisher_trace_std"] for r in points], marker=marker, capsize=3,
                         linestyle=linestyle, label=f"B = {size}, equal {protocol}")
  axes[2].set_xlabel("eta / B (twice the SGD temperature)")
  axes[2].set_title("against the temperature", fontsize="small")
  for axis in axes:
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_ylabel("true-Fisher trace after training")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="x-small")
  figure.suptitle("MLP on digits: Fisher trace after training (mean +- std over seeds)")
  figure.savefig(path, dpi=110)


def _verdict(holds: bool) -> str:
  return "REPRODUCES" if holds else "DOES NOT REPRODUCE"


def _toy_lines(config, records, langevin_records, summary) -> list:
  toy = config.toy
  reference_run = (toy.num_datasets, toy.num_runs, config.num_steps) == (300, 12, 20000)
  lines = [
      f"Toy (Fig. 3 rebuild): zigzag with {toy.num_pieces} pieces per side, widths x{toy.growth},"
      f" N = {toy.num_points}, mu ~ U[-{toy.mu_range}, {toy.mu_range}], {toy.num_datasets} "
      f"datasets x {toy.num_runs} runs, theta0 ~ U[-{toy.init_range}, {toy.init_range}], lr "
      f"{toy.learning_rate:g}, {config.num_steps} steps, minibatches: {toy.sampling} (B = N: "
      "full-batch GD). Means over datasets and runs (+- standard error over datasets); 'ref': "
      "the rebuild's table (science.md §2.10" + ("" if reference_run else "; a larger run") + ").",
      "  run          E log F         H(piece)  paper estimator  I(theta;D)       own runs   "
      "I(piece;mu)  |theta-theta*|"]

  def row(label, r):
    return (f"  {label:<11}  {r['mean_log_fisher']:6.3f}+-{r['mean_log_fisher_sem']:.3f}  "
            f"{r['piece_entropy']:6.3f}    {r['paper_estimator']:6.3f}+-"
            f"{r['paper_estimator_sem']:.3f}     {r['information']:6.3f}+-"
            f"{r['information_sem']:.3f}     {r['information_unpooled']:6.3f}     "
            f"{r['piece_data_information']:6.3f}       {r['distance_to_minimiser']:.2e}")

  def reference_row(values):
    return (f"    ref        {values[0]:6.2f}          {values[1]:6.2f}    {values[2]:6.2f}"
            f"           {values[3]:6.2f}")

  for r in sorted(records, key=lambda r: -r["batch_size"]):
    lines.append(row(f"B = {r['batch_size']}", r))
    if r["batch_size"] in REFERENCE and toy.num_points == 100:
      lines.append(reference_row(REFERENCE[r["batch_size"]]))
  for r in langevin_records:
    lines.append(row(f"T = {r['temperature']:g}", r))
    if r["temperature"] in LANGEVIN_REFERENCE:
      lines.append(reference_row(LANGEVIN_REFERENCE[r["temperature"]]))
  inside = records[0]["within_piece_information"]
  lines.append(f"  Inside one piece (every piece alike): {inside:.3f} nats about the data "
               "(science.md: 1.51 for mu ~ U[-0.8, 0.8]).")
  by_size = {r["batch_size"]: r for r in records}
  large, small = max(by_size), min(by_size)
  if large == small:
    return lines
  hi, lo = by_size[large], by_size[small]
  drops = {name: hi[name] - lo[name] for name in REFERENCE_NAMES + ("seed_information",)}
  summary.update({f"toy_{name}_drop": value for name, value in drops.items()})
  lines.append(f"  From B = {large} to B = {small}: E log F falls by "
               f"{drops['mean_log_fisher']:.3f}, the paper's estimator by "
               f"{drops['paper_estimator']:.3f}, H(piece) by {drops['piece_entropy']:.3f}, "
               f"I(theta; D) by {drops['information']:+.3f} nats.")
  fisher_falls = drops["mean_log_fisher"] > 0
  paper_falls = drops["paper_estimator"] > 0
  information_flat = abs(drops["information"]) <= TREND_TOLERANCE
  lines.append(
      "  Verdict: a smaller batch lowers E log F: " + _verdict(fisher_falls)
      + "; lowers the paper's estimator: " + _verdict(paper_falls)
      + f"; leaves the seed-averaged I(theta; D) within {TREND_TOLERANCE} nats: "
      + _verdict(information_flat) + ".")
  summary.update({"toy_fisher_falls": float(fisher_falls), "toy_paper_falls": float(paper_falls),
                  "toy_information_flat": float(information_flat)})
  if large in REFERENCE and small in REFERENCE and toy.num_points == 100:
    expected = {name: REFERENCE[large][k] - REFERENCE[small][k]
                for k, name in enumerate(REFERENCE_NAMES)}
    matches = {name: abs(drops[name] - expected[name]) <= TREND_TOLERANCE
               for name in REFERENCE_NAMES}
    if reference_run:
      summary["toy_trends_match_reference"] = float(all(matches.values()))
      lines.append(f"  The changes against the reference's (within {TREND_TOLERANCE} nats, "
                   "science.md §15 B.16): " + ", ".join(
                       f"{name} {drops[name]:+.3f} vs {expected[name]:+.2f} {_verdict(match)}"
                       for name, match in matches.items()) + ".")
    else:
      lines.append("  The reference's changes (300 datasets x 12 runs, 20000 steps; not compared "
                   "with a run of another size): " + ", ".join(
                       f"{name} {expected[name]:+.2f}" for name in REFERENCE_NAMES) + ".")
  # The paper's estimator is I(theta; D, seed) = I(theta; D) + I(theta; seed | D); the excess
  # over the (pooled) I(theta; D) should be about H(piece | D), the seed entropy.
  excess = {size: r["paper_estimator"] - r["information"] for size, r in by_size.items()}
  excess_drop = excess[large] - excess[small]
  seed_entropy_drop = hi["piece_entropy_given_bin"] - lo["piece_entropy_given_bin"]
  seed_explains = (paper_falls and information_flat
                   and excess_drop >= drops["paper_estimator"] - TREND_TOLERANCE
                   and abs(excess_drop - seed_entropy_drop) <= TREND_TOLERANCE)
  summary["toy_drop_is_seed_entropy"] = float(seed_explains)
  summary["toy_excess_drop"] = excess_drop
  lines.append(
      f"  The paper's estimator minus I(theta; D) (its seed part, I(theta; seed | D)) is "
      f"{excess[large]:.3f} at B = {large} and {excess[small]:.3f} at B = {small}, against "
      f"H(piece | mu-bin) {hi['piece_entropy_given_bin']:.3f} and "
      f"{lo['piece_entropy_given_bin']:.3f}: it falls by {excess_drop:.3f} (H(piece | mu-bin) by "
      f"{seed_entropy_drop:.3f}) while the estimator falls by {drops['paper_estimator']:.3f}. The "
      "drop is seed entropy (which equivalent minimum), not information about the data: "
      + _verdict(seed_explains) + ". (With each dataset's own runs only, I(theta; D) is biased "
      f"up by the few runs: {hi['information_unpooled']:.3f} and "
      f"{lo['information_unpooled']:.3f}; the chain rule then holds exactly with seed terms "
      f"{hi['seed_information']:.3f} and {lo['seed_information']:.3f}.)")
  lines.append(f"  Paper estimator - H(piece) at B = {large}: "
               f"{hi['paper_estimator'] - hi['piece_entropy']:.3f}, against "
               f"{hi['within_piece_information']:.3f} nats inside one piece.")
  return lines


def _batch_effect(records) -> dict:
  """For each learning rate: ``(rises, ratio)``, whether tr F rises strictly with the batch size
  and its ratio between the largest and the smallest batch."""
  effects = {}
  for rate in sorted({r["learning_rate"] for r in records}):
    traces = [r["fisher_trace"] for r in sorted(
        (r for r in records if r["learning_rate"] == rate), key=lambda r: r["batch_size"])]
    if len(traces) > 1:
      effects[rate] = (all(a < b for a, b in zip(traces, traces[1:])), traces[-1] / traces[0])
  return effects


def temperature_sets_fisher(fit: dict, *, tolerance: float = 0.25) -> bool:
  """Whether a `log_linear_fit` says ``eta / B`` alone sets the Fisher: ``|b + c| <= tolerance
  max(|b|, |c|)`` (``b``, ``c`` the exponents of ``eta`` and ``B``)."""
  b, c = fit["lr_exponent"], fit["batch_exponent"]
  return math.isfinite(b) and abs(b + c) <= tolerance * max(abs(b), abs(c))


def _equal_temperature_spread(records) -> Optional[tuple]:
  """``(largest max/min ratio of tr F within a group of equal eta/B, max/min ratio over all)``."""
  groups = {}
  for r in records:
    groups.setdefault(round(math.log(r["eta_over_batch"]), 6), []).append(r["fisher_trace"])
  ratios = [max(g) / min(g) for g in groups.values() if len(g) > 1]
  if not ratios:
    return None
  traces = [r["fisher_trace"] for r in records]
  return max(ratios), max(traces) / min(traces)


def _digits_lines(config, records, summary) -> list:
  digits = config.digits
  lines = [f"Digits: MLP {tuple(digits.hidden_sizes)} on {records[0]['num_probe']}-example probe "
           f"set (training examples), plain SGD with shuffled epochs, seeds {tuple(digits.seeds)};"
           " exact true-Fisher trace after training (mean +- std over seeds). Protocol 'epochs': "
           f"{config.num_epochs} epochs at every B (the paper's Fig. 4); 'steps': "
           f"{digits.fixed_steps} steps at every B (equal SDE time eta * steps at a fixed lr).",
           "  protocol  B      lr        eta/B      steps   tr F               train loss   "
           "test acc."]
  for r in sorted(records, key=lambda r: (r["protocol"], r["learning_rate"], r["batch_size"])):
    lines.append(f"  {r['protocol']:<8}  {r['batch_size']:<5d}  {r['learning_rate']:<8g}  "
                 f"{r['eta_over_batch']:.2e}   {r['num_steps']:<6d}  {r['fisher_trace']:8.3f}+-"
                 f"{r['fisher_trace_std']:<7.3f}  {r['train_loss']:.4f}       "
                 f"{r['test_accuracy']:.3f}")
  for protocol in PROTOCOLS:
    points = [r for r in records if r["protocol"] == protocol]
    if not points:
      continue
    effects = _batch_effect(points)
    fit = log_linear_fit([r["fisher_trace"] for r in points],
                         [r["learning_rate"] for r in points], [r["batch_size"] for r in points])
    summary.update({f"digits_{protocol}_{name}": value for name, value in fit.items()})
    if effects:
      rises = [rise for rise, _ in effects.values()]
      summary[f"digits_{protocol}_rises_with_batch"] = sum(rises) / len(rises)
      summary.update({f"digits_{protocol}_lr{rate:g}_batch_ratio": ratio
                      for rate, (_, ratio) in effects.items()})
      claim = ("smaller batch, smaller Fisher (the paper's Fig. 4)" if protocol == "epochs" else
               "smaller batch, smaller Fisher at equal SDE time (the temperature alone)")
      lines.append(f"  [{protocol}] tr F rises strictly with B at fixed lr for {sum(rises)} of "
                   f"{len(rises)} learning rates (largest / smallest B: " + ", ".join(
                       f"{ratio:.2f} at lr {rate:g}" for rate, (_, ratio) in effects.items())
                   + f"); {claim}: " + ("REPRODUCES" if all(rises) else "PARTLY" if any(rises)
                                        else "DOES NOT REPRODUCE") + ".")
    if math.isfinite(fit["r2"]):
      holds = temperature_sets_fisher(fit)
      summary[f"digits_{protocol}_temperature_sets_fisher"] = float(holds)
      lines.append(
          f"  [{protocol}] fit log tr F = a + b log eta + c log B: b = {fit['lr_exponent']:+.3f},"
          f" c = {fit['batch_exponent']:+.3f} (R^2 {fit['r2']:.3f}); on log(eta/B) alone: slope "
          f"{fit['temperature_exponent']:+.3f} (R^2 {fit['temperature_r2']:.3f}). The "
          "temperature eta/(2B) alone sets the Fisher (b = -c within 25%): " + _verdict(holds)
          + ".")
    spread = _equal_temperature_spread(points)
    if spread is not None:
      summary[f"digits_{protocol}_equal_temperature_ratio"] = spread[0]
      lines.append(f"  [{protocol}] at equal eta/B tr F differs by at most a factor "
                   f"{spread[0]:.2f}, against a factor {spread[1]:.2f} over all points.")
  by_protocol = {p: summary.get(f"digits_{p}_temperature_sets_fisher") for p in PROTOCOLS}
  if by_protocol["epochs"] == 1.0 and by_protocol["steps"] == 0.0:
    lines.append("  At equal epochs eta/B also fixes the SDE time eta * steps = eta * epochs * N "
                 "/ B; with the time fixed (protocol 'steps') the batch size moves the Fisher less "
                 "than the learning rate does: the Fisher after training follows the training "
                 "time (and the training loss) more than the SGD temperature.")
  losses = np.log([r["train_loss"] for r in records])
  traces = np.log([r["fisher_trace"] for r in records])
  if len(records) > 2 and np.std(losses) > 0 and np.std(traces) > 0:
    correlation = float(np.corrcoef(losses, traces)[0, 1])
    summary["digits_loss_fisher_correlation"] = correlation
    lines.append(f"  Correlation of log tr F with log training loss over all points: "
                 f"{correlation:+.3f}. The Fisher of a confident classifier falls with its loss "
                 "(logit saturation), so a lower Fisher after more or noisier training need not "
                 "mean a flatter minimum in any other sense.")
  return lines


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the toy and the digits sweep; writes metrics, plots and the summary (process 0).

  Args:
    config: see ``configs/fisher_vs_batch.py``.
    workdir: the output directory; a rerun with the same config resumes.

  Returns:
    On process 0 (``{}`` on the others, which compute the same and write nothing): per toy batch
    size ``toy_B<b>_<quantity>`` (``mean_log_fisher``, ``piece_entropy``, ``paper_estimator``,
    ``information``), the drops from the largest to the smallest batch (``toy_<quantity>_drop``)
    and the verdicts (``toy_fisher_falls`` etc., 1.0 or 0.0); per digits point
    ``digits_B<b>_lr<lr>_fisher_trace`` and the fit of `log_linear_fit` (``digits_*``).
  """
  _check_config(config)
  workdir = config_lib.prepare_workdir(config, workdir)
  metrics_path = os.path.join(workdir, METRICS_FILE)
  saved = _saved(metrics_path)
  records, summary, lines = [], {}, [
      "fisher_vs_batch: does a smaller SGD batch find lower-Fisher minima and less information in "
      "the weights? (Achille, Paolini & Soatto, 'Where is the information in a deep network?', "
      "Sec. 4; science.md §2.10, §15 B.16)"]

  def write():
    common.write_records(metrics_path, records, tensorboard=config.tensorboard)

  # The digits points first, the toy's last (its points are the cheapest to redo on a resume).
  digits_lines, toy_lines = [], []
  if "digits" in config.parts:
    done = {(r["protocol"], r["batch_size"], r["learning_rate"]): r for r in saved
            if r.get("kind") == "digits"}
    rates = [float(rate) for rate in config.digits.learning_rates]
    setup = None
    for protocol in config.digits.protocols:
      for batch_size in config.digits.batch_sizes:
        missing = [rate for rate in rates if (protocol, int(batch_size), rate) not in done]
        if missing:
          setup = setup or digits_setup(config)
          for record in digits_points(config, protocol, int(batch_size), missing, setup=setup):
            done[(protocol, record["batch_size"], record["learning_rate"])] = record
        records.extend(done[(protocol, int(batch_size), rate)] for rate in rates)
        write()
    digits_records = [r for r in records if r["kind"] == "digits"]
    for r in digits_records:
      name = f"digits_{r['protocol']}_B{r['batch_size']}_lr{r['learning_rate']:g}_fisher_trace"
      summary[name] = r["fisher_trace"]
    digits_lines = _digits_lines(config, digits_records, summary)
    if io.is_primary_process():
      _plot_digits(os.path.join(workdir, DIGITS_PLOT), digits_records)

  if "toy" in config.parts:
    done = {_toy_key(r): r for r in saved if r.get("kind") in ("toy", "toy_langevin")}
    settings = ([{"batch_size": int(b)} for b in config.toy.batch_sizes]
                + [{"temperature": float(t)} for t in config.toy.temperatures])
    for setting in settings:
      key = (("toy", setting["batch_size"]) if "batch_size" in setting
             else ("toy_langevin", setting["temperature"]))
      records.append(done[key] if key in done else toy_point(config, **setting))
      write()
    toy_records = [r for r in records if r["kind"] == "toy"]
    langevin_records = [r for r in records if r["kind"] == "toy_langevin"]
    for r in toy_records:
      for name in ("mean_log_fisher", "piece_entropy", "paper_estimator", "information"):
        summary[f"toy_B{r['batch_size']}_{name}"] = r[name]
    toy_lines = _toy_lines(config, toy_records, langevin_records, summary)
    if io.is_primary_process():
      _plot_toy(os.path.join(workdir, TOY_PLOT), toy_records, langevin_records,
                config.toy.num_points)

  lines += toy_lines + digits_lines
  common.write_summary(os.path.join(workdir, SUMMARY_FILE), lines)
  return summary if io.is_primary_process() else {}
