"""Task2Vec on a suite of small tasks: exact Fisher against the official estimator, two probes.

The default run (18 tasks from digits, mnist1d and sprites on 16x16 images; a trained and a random
ConvNet probe; the exact and the official minibatch Fisher; a few minutes on 2 CPU cores):

  python scripts/task2vec.py --config=configs/task2vec.py --workdir=/tmp/task2vec

A smoke run (seconds): --config=configs/task2vec.py:smoke. A rerun in the same workdir resumes at
the first (probe, task, method) point it has not written (the probes are read back).
On several processes add the shared flags (--coordinator_address, --num_processes, --process_id):
every process computes the same embeddings and process 0 writes.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections

from infojax import config as config_lib


def get_config(arg=None):
  """The task2vec config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.tasks = (
      "digits/all", "digits/permuted", "digits/inverted", "digits/classes_0-4",
      "digits/classes_5-9", "digits/even_odd", "digits/one_vs_rest_0", "digits/one_vs_rest_8",
      "mnist1d/all", "mnist1d/permuted", "mnist1d/classes_0-4", "mnist1d/even_odd",
      "sprites/shape", "sprites/permuted", "sprites/inverted", "sprites/scale",
      "sprites/position_x", "sprites/position_y")
  config.seed = 0                  # task subsets and sprites, probe initialisation, heads, Fishers
  config.num_train = None          # None: every training example of a task (sprites: 2000)
  config.num_test = None
  config.data_dir = None           # the TFDS data directory (None: the default)
  # The probe, pre-trained on the union of these tasks' classes (the ImageNet analogue).
  config.pretrain_tasks = ("digits/all", "mnist1d/all", "sprites/shape")
  config.channels = (16, 32, 32)
  config.strides = (1, 2, 2)
  config.num_epochs = 15
  config.batch_size = 128
  config.optimizer = config_lib.optimizer_config(name="adam", lr=3e-3)
  config.probes = ("trained", "random")
  # The head fitted on cached features (the official code: Adam, lr 4e-4, weight decay 1e-4, 10
  # epochs on 10,000 images). Our tasks have 700-4000 images; the L2-regularised softmax head is a
  # strictly convex problem, fitted near its optimum (with 30 epochs a sprites task and its
  # permuted copy end 0.3 apart, with 300 epochs 0.01).
  config.head_epochs = 300
  config.head_learning_rate = 1e-2
  config.head_weight_decay = 1e-4
  config.head_batch_size = 64
  # The embedding.
  config.methods = ("exact", "minibatch_squared")
  config.fisher_examples = 400     # class-balanced images for the Fisher
  config.minibatch_size = 20       # B of the official estimator
  config.mc_samples = 1            # labels per example, for "mc" in methods
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.tasks = ("digits/all", "digits/permuted", "mnist1d/all")
    config.num_train = 60
    config.num_test = 30
    config.pretrain_tasks = ("digits/all",)
    config.channels = (4, 8)
    config.strides = (2, 2)
    config.num_epochs = 1
    config.batch_size = 30
    config.head_epochs = 2
    config.head_batch_size = 20
    config.fisher_examples = 30
    config.minibatch_size = 5
  elif arg not in (None, ""):
    raise ValueError(f"configs/task2vec.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
