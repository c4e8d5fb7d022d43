"""Models (flax.linen; NHWC inputs with a leading example axis; logits of shape (N, num_classes)).

Parameterised layers are flax ``Dense`` and ``Conv`` with their default names, so the Fisher
engine's factored fast path covers every model here except the normalisation parameters of
``ResNet18(norm="group"|"batch")`` and ``AllCNN(batch_norm=True)`` (those take the exact vmap path).
"""

from infojax.models.allcnn import AllCNN
from infojax.models.cnn1d import CNN1D
from infojax.models.convnet import ConvNet
from infojax.models.lenet import LeNet5
from infojax.models.mlp import MLP
from infojax.models.registry import MODELS
from infojax.models.registry import get_model
from infojax.models.registry import init
from infojax.models.registry import make_apply_fn
from infojax.models.resnet import BasicBlock
from infojax.models.resnet import ResNet18
