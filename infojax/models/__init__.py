"""Models (flax.linen; NHWC inputs with a leading example axis; logits of shape (N, num_classes)).

Parameterised layers are flax ``Dense``, ``Conv`` and ``GroupNorm`` with their default names, so the
Fisher engine's factored fast path covers every model here except those with BatchNorm
(``ResNet18(norm="batch")``, ``AllCNN(batch_norm=True)``), whose per-example quantities need eval
mode and take the exact vmap path.
So do the kernels and biases of the p4 layers (`P4LiftingConv`, `P4GroupConv`, in `P4Conv`):
rotated-kernel correlations over plain parameters (`P4Conv`'s ``Dense_0`` is factored).
`DeepSets` and `PermutationEquivariant` are flax ``Dense`` layers only (all factored).
"""

from infojax.models.allcnn import AllCNN
from infojax.models.cnn1d import CNN1D
from infojax.models.convnet import ConvNet
from infojax.models.deepsets import DeepSets
from infojax.models.deepsets import PermutationEquivariant
from infojax.models.gconv import P4Conv
from infojax.models.gconv import P4GroupConv
from infojax.models.gconv import P4LiftingConv
from infojax.models.lenet import LeNet5
from infojax.models.mlp import MLP
from infojax.models.registry import MODELS
from infojax.models.registry import get_model
from infojax.models.registry import init
from infojax.models.registry import make_apply_fn
from infojax.models.resnet import BasicBlock
from infojax.models.resnet import ResNet18
