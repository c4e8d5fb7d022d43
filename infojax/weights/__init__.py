"""Information in the weights, the structure function of a task, and PAC-Bayes bounds.

``posterior``: Gaussian post-distributions, the information Lagrangian (closed forms and variational
fits); ``structure``: the structure function S(t) from a beta sweep; ``pac_bayes``: generalisation
bounds and the Dziugaite-Roy certificate. All quantities in nats.
"""

from infojax.fisher.diagonal import per_layer
from infojax.weights import pac_bayes
from infojax.weights import posterior
from infojax.weights import structure
from infojax.weights.posterior import GaussianPosterior
from infojax.weights.posterior import PosteriorFit
from infojax.weights.posterior import PosteriorState
from infojax.weights.posterior import convert_beta
from infojax.weights.posterior import expected_loss_quadratic
from infojax.weights.posterior import fit
from infojax.weights.posterior import gaussian_information
from infojax.weights.posterior import gaussian_posterior
from infojax.weights.posterior import gaussian_posterior_fit
from infojax.weights.posterior import information_lagrangian_fit
from infojax.weights.posterior import information_per_direction
from infojax.weights.posterior import information_per_weight
from infojax.weights.posterior import kl_per_weight
from infojax.weights.posterior import optimal_lagrangian
from infojax.weights.posterior import optimal_posterior_variance
from infojax.weights.posterior import quadratic_lagrangian
from infojax.weights.posterior import sample_weights
from infojax.weights.posterior import sampled_losses
from infojax.weights.posterior import sum_per_filter
from infojax.weights.posterior import sum_per_leaf
from infojax.weights.posterior import total
from infojax.weights.structure import HullKnee
from infojax.weights.structure import StructureFunction
from infojax.weights.structure import hull_knee
from infojax.weights.structure import kolmogorov_knee
from infojax.weights.structure import plot_structure_functions
from infojax.weights.structure import trace_structure_function
