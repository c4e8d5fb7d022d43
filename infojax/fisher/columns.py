"""Output-space columns: what each kind of Fisher squares.

Every Fisher the engine computes has the form

    F = (1/N) sum_n sum_k (J_n^T u_nk)(J_n^T u_nk)^T,

where ``J_n`` is the Jacobian of example n's outputs in the weights and the ``u_nk`` are K columns
in output space that depend only on the outputs and targets of that example:

* ``"empirical"`` (K = 1): ``u = grad_z nll(z_n, y_n)`` with the true label;
* ``"mc"`` (K = S): ``u_s = grad_z nll(z_n, yhat_ns) / sqrt(S)`` with S labels sampled from the
  model;
* ``"true"`` (K = number of output Fisher columns, C for C classes): the columns of the square-root
  factor of the output Fisher, so that ``sum_k u_k u_k^T = E_{y~p(y|z_n)} grad_z nll grad_z nll^T``
  exactly (Martens 2020, JMLR 21(146); Kunstner, Hennig & Balles 2019, "Limitations of the
  empirical Fisher approximation").

The strategies (``vmap`` and ``factored``) differ only in how they push the columns back to the
weights.
"""

import jax
import jax.numpy as jnp


def example_keys(key, num_examples: int):
  """One PRNG key per example, so that sampling does not depend on chunking or sharding."""
  return jax.random.split(key, num_examples)


def nll_gradient(likelihood, outputs, targets):
  """``grad_z sum(nll(z, y))`` for the outputs of one example (any output shape)."""
  return jax.grad(lambda z: jnp.sum(likelihood.nll(z, targets)))(outputs)


def make_column_fn(likelihood, kind: str, mc_samples: int = 1):
  """Returns ``column_fn(outputs_n, targets_n, key_n) -> (K, *outputs_n.shape)`` for one example.

  ``kind`` is one of ``_checks.KINDS``, validated by the caller.
  """
  if kind == "empirical":
    def column_fn(outputs, targets, key):
      del key
      return nll_gradient(likelihood, outputs, targets)[None]
    return column_fn
  if kind == "mc":
    scale = 1.0 / jnp.sqrt(float(mc_samples))

    def column_fn(outputs, targets, key):
      del targets
      sampled = likelihood.sample(key, outputs, mc_samples)
      columns = jax.vmap(lambda y: nll_gradient(likelihood, outputs, y))(sampled)
      return columns * scale.astype(outputs.dtype)
    return column_fn

  def column_fn(outputs, targets, key):
    del targets, key
    return likelihood.fisher_factor(outputs)
  return column_fn


def sample_targets(apply_fn, params, inputs, *, likelihood, key, mc_samples: int = 1):
  """Labels sampled from the model, as used by ``kind="mc"``.

  Args:
    apply_fn: ``apply_fn(params, inputs) -> outputs`` with a leading example axis N.
    params: the parameter pytree.
    inputs: inputs with a leading example axis N.
    likelihood: an ``infojax.likelihoods.Likelihood``.
    key: a PRNG key; example n uses ``jax.random.split(key, N)[n]``.
    mc_samples: labels per example, S.

  Returns:
    Targets of shape ``(N, S, *target_shape)``.
  """
  if key is None:
    raise ValueError("sample_targets draws labels from the model and needs a PRNG key: pass key=.")
  outputs = apply_fn(params, inputs)
  keys = example_keys(key, outputs.shape[0])
  return jax.vmap(lambda z, k: likelihood.sample(k, z, mc_samples))(outputs, keys)
