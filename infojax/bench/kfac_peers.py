"""kfac-jax peers of the Fisher benchmark: its diagonal curvature estimators on the flax model.

``kfac_jax.BlockDiagonalCurvature`` with diagonal blocks for every dense and conv2d layer
(``DenseDiagonal``, ``Conv2DDiagonal``), one curvature update from zero on the batch
(``ema_old=0, ema_new=1``), read out as the curvature times a vector of ones. Estimation modes:
``"fisher_empirical"`` (empirical), ``"fisher_exact"`` and ``"ggn_exact"`` (true: one backward pass
per class, unrolled), ``"fisher_gradients"`` (one sampled label per example; kfac-jax draws its own
labels, so that row has no exact reference).

Scaling (checked by the error column): the loss is the mean cross-entropy, registered with
``register_softmax_cross_entropy_loss``. kfac-jax normalises its second-order statistics by the
batch size, and in ``"fisher_empirical"`` mode once more (block_diagonal.py divides the loss
gradients by sqrt(N) before squaring, "so that the 2nd-order stats are effectively normalized by
batch_size an additional time"), so that row is multiplied by N here. The other modes are the
mean-normalised Fisher as they come.

kfac-jax 0.0.8 predates jax 0.10, where ``Primitive.get_bind_params`` returns only the parameters
(no ``(subfuns, params)`` pair); its ``tag_graph_matcher.eval_jaxpr_eqn`` then fails. `patch_kfac`
replaces that one helper, at run time and only when the installed jax needs it, by a function
written here for the new signature; the benchmark says so in its output.
"""

from typing import List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from infojax.bench import measure

MODES = {
    "fisher_empirical": "empirical",
    "fisher_exact": "true",
    "ggn_exact": "true",
    "fisher_gradients": "mc",
}


def unavailable_reason() -> Optional[str]:
  """None if kfac-jax imports, else why its rows are skipped."""
  try:
    import kfac_jax  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError as error:
    return f"kfac-jax is not installed ({error}); pip install kfac-jax==0.0.8"
  return None


def _bind_params_is_pair() -> bool:
  """Whether this jax's ``get_bind_params`` returns ``(subfuns, params)`` (jax < 0.10)."""
  equation = jax.make_jaxpr(lambda x: x + 1.0)(1.0).eqns[0]
  return isinstance(equation.primitive.get_bind_params(equation.params), tuple)


def _eval_equation(equation, in_values):
  """Evaluates one jaxpr equation on concrete or traced inputs; always returns a list.

  Written for jax >= 0.10, where ``get_bind_params`` returns the parameters alone (subfunctions, for
  call primitives, travel inside them).
  """
  bind_params = equation.primitive.get_bind_params(equation.params)
  with jax.extend.source_info_util.user_context(equation.source_info.traceback):
    outputs = equation.primitive.bind(*in_values, **bind_params)
  return list(outputs) if equation.primitive.multiple_results else [outputs]


def patch_kfac() -> Optional[str]:
  """Replaces ``kfac_jax``'s ``eval_jaxpr_eqn`` if this jax needs it; returns a note, or None."""
  from kfac_jax._src import tag_graph_matcher  # pylint: disable=g-import-not-at-top
  if _bind_params_is_pair():
    return None
  tag_graph_matcher.eval_jaxpr_eqn = _eval_equation
  return _PATCH_NOTE


_PATCH_NOTE = (f"kfac-jax: kfac_jax._src.tag_graph_matcher.eval_jaxpr_eqn replaced at run time by "
               f"{__name__}._eval_equation (jax {jax.__version__}'s get_bind_params returns the "
               f"parameters alone, not the (subfuns, params) pair kfac-jax expects)")


def _estimator(workload):
  """A block-diagonal estimator with exact diagonal blocks on every dense/conv2d layer."""
  import kfac_jax  # pylint: disable=g-import-not-at-top
  apply_fn = workload.apply_fn

  def loss(params, batch):
    inputs, targets = batch
    logits = apply_fn(params, inputs)
    kfac_jax.register_softmax_cross_entropy_loss(logits, targets)
    return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], axis=1))

  blocks = {"dense": kfac_jax.DenseDiagonal, "conv2d": kfac_jax.Conv2DDiagonal}
  return kfac_jax.BlockDiagonalCurvature(loss, layer_tag_to_block_ctor=blocks)


def entries(workload, *, key) -> List[measure.Entry]:
  """The kfac-jax rows for ``workload``: one compiled function per estimation mode.

  Applies `patch_kfac` first (the caller reports its note).
  """
  import kfac_jax  # pylint: disable=g-import-not-at-top
  patch_kfac()
  estimator = _estimator(workload)
  inputs, targets = jnp.asarray(workload.inputs), jnp.asarray(workload.targets)
  num_examples = inputs.shape[0]
  state = estimator.init(key, (workload.params, (inputs, targets)), None, None)
  unrecognised = [type(block).__name__ for block in estimator.blocks
                  if not isinstance(block, (kfac_jax.DenseDiagonal, kfac_jax.Conv2DDiagonal))]
  warning = ("; blocks other than exact diagonals: " + ", ".join(unrecognised)
             if unrecognised else "")
  rows = []
  for mode, quantity in MODES.items():
    def diagonal(params, inputs, targets, key, mode=mode):
      updated = estimator.update_curvature_matrix_estimate(
          state, ema_old=0.0, ema_new=1.0, identity_weight=0.0, batch_size=num_examples, rng=key,
          func_args=(params, (inputs, targets)), estimation_mode=mode)
      # The diagonal blocks' curvature times a vector of ones is their diagonal.
      ones = jax.tree.map(jnp.ones_like, params)
      return estimator.multiply(updated, ones, identity_weight=0.0, exact_power=True,
                                use_cached=False, pmap_axis_name=None)

    scale = num_examples if mode == "fisher_empirical" else 1.0
    kwargs = {"note": ("x N (kfac-jax normalises empirical statistics by N twice)"
                       if mode == "fisher_empirical" else "") + warning}
    if mode == "fisher_gradients":
      kwargs.update(comparable=False,
                    note="own sampled labels: no exact reference" + warning)
    rows.append(measure.jax_entry(
        quantity, f"kfac_{mode}", jax.jit(diagonal), (workload.params, inputs, targets, key),
        to_reference_layout=lambda value, scale=scale: jax.tree.map(
            lambda v: np.asarray(v, np.float64) * scale, value),
        **kwargs))
  return rows
