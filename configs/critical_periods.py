"""Critical learning periods: deficit-removal and sensitivity sweeps on the bundled digits.

  python scripts/critical_periods.py --config=configs/critical_periods.py --workdir=/tmp/cp

Every deficit (blur 8 -> 4 -> 8, vertical flip, label permutation, noise) is applied for the first
T epochs (the removal sweep) and in a window of ``window_length`` epochs at several onsets (the
sensitivity sweep), each followed by ``clean_epochs`` clean epochs, for three seeds; each
deficit's runs train as one vmapped program, with the clean test accuracy and the exact per-layer
true-Fisher trace on a 100-image probe set measured every epoch. About 3 minutes on 2 CPU cores
(2 min 50 s measured). A rerun of the same command resumes; several processes work with the
shared flags (every process computes, process 0 writes).

Smoke run (seconds): --config=configs/critical_periods.py:smoke.

The paper's setting (All-CNN on CIFAR-10, SGD lr 0.05 x 0.97 per epoch, weight decay 1e-3, batch
128, 160 clean epochs after removal, 40-epoch windows; hours on one GPU, CIFAR-10 prepared in the
TFDS data_dir): --config=configs/critical_periods.py:cifar10. Note: the paper's All-CNN has batch
normalisation; infojax's per-example Fisher needs a model without batch statistics, so this uses
``allcnn`` without it (``batch_norm=False``, the default).

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The critical_periods config; ``arg`` is ``None``, ``"smoke"`` or ``"cifar10"``."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)
  config.num_classes = 10
  # An MLP on the (blurred, flipped, ...) 8x8 images: XLA:CPU runs the gradient convolutions of
  # a scanned, vmapped training step off its fast path (jax-ml/jax#12868), so the CPU default is
  # fully connected; the cifar10 config uses All-CNN.
  config.model = "mlp"
  config.model_kwargs = ml_collections.ConfigDict({"hidden_sizes": (128, 128, 128)})
  config.deficits = ("blur", "vertical_flip", "label_permutation", "noise")
  config.blur_low_size = 4          # 8 -> 4 -> 8 (32 -> 8 -> 32 for CIFAR-10)
  config.deficit_seed = 0           # the label permutation
  config.removal_epochs = (0, 5, 10, 20, 30)
  config.window_onsets = (0, 5, 10, 20)
  config.window_length = 10
  config.clean_epochs = 30
  # The sweep's length: every deficit must end by num_epochs - clean_epochs.
  config.num_epochs = 60
  config.seeds = (0, 1, 2)
  config.batch_size = 128
  config.optimizer = config_lib.optimizer_config(
      name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="exponential",
      decay_factor=0.97)
  config.probe_per_class = 10
  config.checkpoint_every = 5
  # A deficit is "lasting" when the longest removal's final accuracy is below the clean run's by
  # more than twice the combined seed spread and more than this.
  config.lasting_deficit_threshold = 0.01
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.deficits = ("blur", "label_permutation")
    config.removal_epochs = (0, 2)
    config.window_onsets = (0,)
    config.window_length = 1
    config.clean_epochs = 1
    config.num_epochs = 3
    config.seeds = (0, 1)
    config.model_kwargs = ml_collections.ConfigDict({"hidden_sizes": (16, 16)})
    config.probe_per_class = 1
    config.checkpoint_every = 1
  elif arg == "cifar10":
    config.dataset = "cifar10"
    config.model = "allcnn"
    config.model_kwargs = ml_collections.ConfigDict()
    config.blur_low_size = 8
    config.removal_epochs = (0, 20, 40, 60, 80, 100, 120, 140)
    config.window_onsets = (0, 20, 40, 60, 80, 100)
    config.window_length = 40
    config.clean_epochs = 160
    config.num_epochs = 300
    config.seeds = (0,)
  elif arg not in (None, ""):
    raise ValueError(f"configs/critical_periods.py: unknown config argument {arg!r}; use none, "
                     "'smoke' or 'cifar10'.")
  return config
