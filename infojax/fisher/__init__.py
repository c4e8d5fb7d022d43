"""The curvature engine: exact per-example gradients, Fisher diagonals, traces and products."""

import jax.flatten_util  # noqa: F401  (used by infojax.fisher.reference)

from infojax.fisher import columns
from infojax.fisher import discovery
from infojax.fisher import factored
from infojax.fisher import reference
from infojax.fisher._checks import check_model
from infojax.fisher.columns import sample_targets
from infojax.fisher.diagonal import diagonal
from infojax.fisher.diagonal import per_filter
from infojax.fisher.diagonal import per_layer
from infojax.fisher.diagonal import trace
from infojax.fisher.discovery import plan
from infojax.fisher.kfac import kfac_factors
from infojax.fisher.per_example import per_example_grad_norms
from infojax.fisher.per_example import per_example_grads
from infojax.fisher.products import hessian_vector_product
from infojax.fisher.products import vector_product
from infojax.fisher.covariance import gradient_covariance
from infojax.fisher.covariance import gradient_covariance_product_fn
from infojax.fisher.hessian import Estimate
from infojax.fisher.hessian import hessian_diagonal
from infojax.fisher.jacobians import per_example_jacobians
from infojax.fisher.jacobians import per_example_jvp
from infojax.fisher.jacobians import per_example_vjp
from infojax.fisher.spectrum import Eigenpairs
from infojax.fisher.spectrum import SpectralDensity
from infojax.fisher.spectrum import eigenvalues
from infojax.fisher.spectrum import spectral_density
