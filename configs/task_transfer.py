"""Fine-tuning cost between tasks against the Task2Vec and the information task distances.

The default run (an MLP on 6 tasks of the offline suite, 30 ordered pairs; a few minutes on 2 CPU
cores):

  python scripts/task_transfer.py --config=configs/task_transfer.py --workdir=/tmp/task_transfer

A smoke run (seconds): --config=configs/task_transfer.py:smoke. A rerun in the same workdir resumes
at the first (source, target) pair it has not written. On several processes add the shared flags
(--coordinator_address, --num_processes, --process_id): every process computes the same pairs and
process 0 writes. Each task's expert is trained from one initialisation w0 (num_steps Adam steps);
for every ordered pair (S, T) the expert of S is fine-tuned on fine_tune_num_train examples of T
(fine_tune_steps steps) and its cost (steps to accuracy_fraction x the accuracy of training T from
scratch) is set against the Task2Vec distances (a probe trained on probe_task) and the information
distance I(S T; w) - I(S; w) (a joint network with one head per task, beta, prior_variance).

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections

from infojax import config as config_lib


def get_config(arg=None):
  """The task_transfer config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  # Tasks of infojax.tasks.suite (all 16x16x1 inputs).
  config.tasks = ("digits/classes_0-4", "digits/classes_5-9", "digits/even_odd",
                  "digits/inverted", "mnist1d/classes_0-4", "sprites/shape")
  config.probe_task = "digits/all"  # the Task2Vec probe is the MLP trained on this task
  config.data_seed = 0
  config.num_train = 500            # training examples of every task (the experts, the joint)
  config.num_test = 150             # digits/classes_0-4 has 173 test examples
  config.seed = 0                   # w0, the training minibatches, the resamples
  # The network and the experts' training.
  config.hidden_sizes = (64, 32)
  config.num_steps = 800            # Adam steps of each expert (and of each joint network)
  config.batch_size = 64
  config.optimizer = config_lib.optimizer_config(name="adam", lr=3e-3)
  config.head_epochs = 10           # the probe head re-fit (task2vec.fit_head)
  # Fine-tuning on the target.
  config.fine_tune_num_train = 100
  config.fine_tune_steps = 200
  config.fine_tune_batch_size = 32
  config.fine_tune_optimizer = config_lib.optimizer_config(name="adam", lr=1e-3)
  config.eval_every = 10
  config.accuracy_fraction = 0.9    # target accuracy: this fraction of the scratch run's final one
  # Distances.
  config.alpha = 0.15               # Task2Vec's asymmetric distance
  config.beta = 1.0                 # the information distance (summed loss)
  config.prior_variance = 0.1       # lambda^2 of P = N(w0, lambda^2 I)
  config.num_resamples = 1000       # bootstrap resamples and permutations of the rank correlation
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.tasks = ("digits/classes_0-4", "digits/classes_5-9", "mnist1d/classes_0-4")
    config.probe_task = "digits/classes_0-4"
    config.num_train = 60
    config.num_test = 40
    config.hidden_sizes = (8,)
    config.num_steps = 30
    config.batch_size = 16
    config.head_epochs = 2
    config.fine_tune_num_train = 20
    config.fine_tune_steps = 20
    config.fine_tune_batch_size = 8
    config.eval_every = 5
    config.num_resamples = 50
  elif arg not in (None, ""):
    raise ValueError(f"configs/task_transfer.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
