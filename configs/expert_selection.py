"""Expert selection by the asymmetric Task2Vec distance: the chosen expert against the bank's best.

The default run (a bank of 8 MLP experts on suite tasks, 5 targets at 2 few-shot sizes; a few
minutes on 2 CPU cores):

  python scripts/expert_selection.py --config=configs/expert_selection.py \
      --workdir=/tmp/expert_selection

A smoke run (seconds): --config=configs/expert_selection.py:smoke. A rerun in the same workdir
resumes at the first (target, few-shot size) point it has not written. On several processes add
the shared flags (--coordinator_address, --num_processes, --process_id): every process computes
the same points and process 0 writes. Each source task's expert is trained from one initialisation
w0 (num_steps Adam steps); for each target and size n in target_num_train every expert is
fine-tuned on the n examples (fine_tune_steps steps) and the expert chosen by
d_sym(expert, target) - alpha d_sym(expert, trivial) (a probe trained on probe_task; each alpha in
alphas) is scored against the best in the bank, a random choice and training from scratch.

To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.
"""

import ml_collections

from infojax import config as config_lib


def get_config(arg=None):
  """The expert_selection config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  # The bank (one expert per source task) and the targets, tasks of infojax.tasks.suite.
  config.source_tasks = ("digits/all", "digits/classes_0-4", "digits/even_odd", "digits/inverted",
                         "mnist1d/all", "mnist1d/even_odd", "sprites/shape", "sprites/position_x")
  config.target_tasks = ("digits/permuted", "digits/classes_5-9", "mnist1d/classes_0-4",
                         "mnist1d/inverted", "sprites/scale")
  config.target_num_train = (20, 100)  # few-shot sizes of each target's training set
  config.exclude_target = True          # leave the target's own task's expert out of the bank
  config.probe_task = "digits/all"      # the Task2Vec probe is the MLP trained on this task
  config.data_seed = 0
  config.num_train = 500                # training examples of every source task
  config.num_test = 150
  config.seed = 0
  # The network and the experts' training (as in configs/task_transfer.py).
  config.hidden_sizes = (64, 32)
  config.num_steps = 800
  config.batch_size = 64
  config.optimizer = config_lib.optimizer_config(name="adam", lr=3e-3)
  config.head_epochs = 10
  # Fine-tuning every expert on the target.
  config.fine_tune_steps = 100
  config.fine_tune_batch_size = 16
  config.fine_tune_optimizer = config_lib.optimizer_config(name="adam", lr=1e-3)
  config.eval_every = 100               # only the final error is used
  config.alphas = (0.0, 0.15)           # 0: the symmetric distance; 0.15: the paper's choice
  # Also write TensorBoard event files in WORKDIR/tensorboard (pip install "infojax[tensorboard]").
  config.tensorboard = False

  if arg == "smoke":
    config.source_tasks = ("digits/classes_0-4", "digits/classes_5-9", "mnist1d/classes_0-4")
    config.target_tasks = ("digits/classes_5-9",)
    config.target_num_train = (10,)
    config.probe_task = "digits/classes_0-4"
    config.num_train = 60
    config.num_test = 40
    config.hidden_sizes = (8,)
    config.num_steps = 30
    config.batch_size = 16
    config.head_epochs = 2
    config.fine_tune_steps = 10
    config.fine_tune_batch_size = 8
    config.eval_every = 10
  elif arg not in (None, ""):
    raise ValueError(f"configs/expert_selection.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
