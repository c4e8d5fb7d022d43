"""Information in the activations: effective information from Jacobians, and invariance.

``effective``: the Fisher of noisy activations about the input and the effective information
(Achille, Paolini & Soatto, "Where is the information in a deep network?", Sec. 3; science.md §2.9);
``invariance``: the mutual information between a representation and a nuisance (Achille & Soatto,
"Emergence of invariance and disentanglement", JMLR 2018; science.md §4); ``bottleneck``: the exact
information bottleneck of a discrete joint (Tishby, Pereira & Bialek 1999; science.md §8). All
quantities in nats.
"""

from infojax.activations import bottleneck
from infojax.activations import effective
from infojax.activations import reference
from infojax.activations.bottleneck import BottleneckResult
from infojax.activations.bottleneck import blahut_arimoto
from infojax.activations.bottleneck import ib_curve
from infojax.activations.effective import EffectiveInformation
from infojax.activations.effective import activation_fisher
from infojax.activations.effective import activations_fn
from infojax.activations.effective import effective_information
from infojax.activations.effective import log_determinant
from infojax.activations.effective import noise_covariance
from infojax.activations import invariance
from infojax.activations.invariance import mutual_information_with_nuisance
from infojax.activations.invariance import decoder_lower_bound
