"""Information in the activations: effective information, invariance, and the bottlenecks.

``effective``: the Fisher of noisy activations about the input and the effective information
(Achille, Paolini & Soatto, "Where is the information in a deep network?", Sec. 3; science.md §2.9);
``invariance``: the mutual information between a representation and a nuisance (Achille & Soatto,
"Emergence of invariance and disentanglement", JMLR 2018; science.md §4); ``bottleneck``: the exact
information bottleneck of a discrete joint and of jointly Gaussian variables (Tishby, Pereira &
Bialek 1999; Chechik et al. 2005; science.md §8); ``layers``: Information Dropout (Achille & Soatto,
PAMI 2018; science.md §5) and the deep variational bottleneck (Alemi et al. 2017; science.md §9.1)
as flax layers; ``vae``: the beta-VAE and capacity annealing (Higgins et al. 2017; Burgess et al.
2018; science.md §9.2-9.3); ``disentanglement``: the beta-VAE, FactorVAE, MIG and DCI metrics. All
quantities in nats.
"""

from infojax.activations import bottleneck
from infojax.activations import disentanglement
from infojax.activations import effective
from infojax.activations import invariance
from infojax.activations import layers
from infojax.activations import reference
from infojax.activations import vae
from infojax.activations.bottleneck import BottleneckResult
from infojax.activations.bottleneck import GaussianIBResult
from infojax.activations.bottleneck import blahut_arimoto
from infojax.activations.bottleneck import gaussian_ib
from infojax.activations.bottleneck import gaussian_ib_curve
from infojax.activations.bottleneck import ib_curve
from infojax.activations.bottleneck import maximal_correlation
from infojax.activations.disentanglement import beta_vae_metric
from infojax.activations.disentanglement import dci
from infojax.activations.disentanglement import factor_vae_metric
from infojax.activations.disentanglement import mig
from infojax.activations.effective import EffectiveInformation
from infojax.activations.effective import activation_fisher
from infojax.activations.effective import activations_fn
from infojax.activations.effective import effective_information
from infojax.activations.effective import log_determinant
from infojax.activations.effective import noise_covariance
from infojax.activations.invariance import decoder_lower_bound
from infojax.activations.invariance import mutual_information_with_nuisance
from infojax.activations.layers import InformationDropout
from infojax.activations.layers import VariationalBottleneck
from infojax.activations.vae import VAE
