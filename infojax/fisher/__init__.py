"""The curvature engine: exact per-example gradients, Fisher diagonals, traces and products."""

import jax.flatten_util  # noqa: F401  (used by infojax.fisher.reference)

from infojax.fisher import columns
from infojax.fisher import factored
from infojax.fisher import reference
from infojax.fisher.columns import sample_targets
from infojax.fisher.diagonal import diagonal
from infojax.fisher.diagonal import per_filter
from infojax.fisher.diagonal import per_layer
from infojax.fisher.diagonal import trace
from infojax.fisher.per_example import per_example_grad_norms
from infojax.fisher.per_example import per_example_grads
from infojax.fisher.products import hessian_vector_product
from infojax.fisher.products import vector_product
