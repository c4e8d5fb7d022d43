"""Information in the weights during training: the trace of the Fisher and accuracy, per epoch.

The main job (a small CNN on the bundled 8x8 digits; about a minute on 2 CPU cores):

  python scripts/info_plot.py --config=configs/info_plot.py --workdir=/tmp/info_plot

The real experiment (All-CNN on CIFAR-10, prepared in the TFDS data_dir; a GPU):

  python scripts/info_plot.py --config=configs/info_plot.py \
      --config.dataset=cifar10 --config.model=allcnn --workdir=/tmp/info_plot_cifar10

A smoke run (seconds): --config=configs/info_plot.py:smoke. Rerun the same command to resume.

Defaults follow the critical-periods protocol of Achille, Rovere & Soatto (2019): SGD with momentum
0.9, learning rate 0.05 decayed by 0.97 per epoch, weight decay 0.001, batch size 128; the Fisher is
measured exactly on a fixed class-balanced probe set from the training split.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The info_plot config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.normalize = True  # standardise each channel with the training split's mean and std
  # Multi-process runs: each process reads only its share of each split (tfds.split_for_jax_process)
  # instead of holding the whole splits; for data too large for one host (results then depend on
  # the number of processes through the batches).
  config.process_local_data = False
  config.model = "lenet5"
  config.model_kwargs = ml_collections.ConfigDict()
  config.seed = 0
  config.num_epochs = 30
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.checkpoint_every = 5
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False
  config.optimizer = config_lib.optimizer_config(
      name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="exponential",
      decay_factor=0.97)
  config.fisher = ml_collections.ConfigDict()
  config.fisher.probe_per_class = 10  # probe examples per class, from the training split
  config.fisher.kinds = ("empirical", "true")
  config.fisher.method = "auto"
  # Also record each layer's trace ("fisher_trace_<kind>/<layer>") and plot the true Fisher's.
  config.fisher.per_layer = True
  config.fisher.chunk_size = config_dict.placeholder(int)  # examples per chunk; None: automatic

  if arg == "smoke":
    config.num_epochs = 2
    config.batch_size = 64
    config.checkpoint_every = 1
    config.fisher.probe_per_class = 2
  elif arg not in (None, ""):
    raise ValueError(f"configs/info_plot.py: unknown config argument {arg!r}; use none or 'smoke'.")
  return config
