"""Non-vacuous PAC-Bayes bounds (Dziugaite & Roy 2017; Perez-Ortiz et al. 2021's objectives) on
binary digits; vacuous on random labels.

The default run (binary 8x8 digits, label = digit >= 5, a 64-100-2 MLP, three training objectives
with the prior at the initialisation and f_lambda with a data-dependent prior, on real and random
labels, 3 seeds; minutes on 2 CPU cores):

  python scripts/pac_bayes_bound.py --config=configs/pac_bayes_bound.py \
      --workdir=/tmp/pac_bayes_bound

The paper's setting (binary MNIST with m = 60,000 here, T-600: one hidden layer of 600; MNIST
prepared in the TFDS data_dir):

  python scripts/pac_bayes_bound.py --config=configs/pac_bayes_bound.py \
      --config.dataset=mnist --config.hidden_sizes='(600,)' --config.pac_bayes.num_epochs=1000 \
      --config.pac_bayes.optimizer.lr=0.001 --config.pac_bayes.optimizer.decay_epochs='(250,)' \
      --workdir=/tmp/pac_bayes_bound_mnist

(add --config.pac_bayes.min_probability=1e-5 for Perez-Ortiz et al.'s bounded cross-entropy). A
smoke run (seconds): --config=configs/pac_bayes_bound.py:smoke. A rerun in the same workdir
resumes (every pac_bayes.checkpoint_every epochs of each posterior fit, every SGD epoch).
To watch a run live, add --config.tensorboard=True and run tensorboard --logdir WORKDIR.

Defaults follow Dziugaite & Roy's code (gkdziugaite/pacbayes-opt; science.md §11.2) where they
carry over: SGD with momentum 0.9, learning rate 0.01, batch 100, 20 epochs; the prior mean is the
initialisation (or, for a *_data_dependent objective, SGD on half the training set, the bound on
the other half); the posterior standard deviations start at 2|w|, the prior variance at exp(-6);
RMSProp on the surrogate bound; the grid lambda = c exp(-j/b) with b = 100, c = 0.1; delta = 0.025
for the bound and delta' = 0.01 for the Monte-Carlo estimate. Changed for 1,437 examples of 8x8
inputs: a hidden layer of 100 (6,702 parameters, 4.7 per example), inputs standardised, and a longer
PAC-Bayes optimisation (4,000 epochs of 14 minibatches at learning rate 3e-3, x0.1 after 3,000),
the same for every objective.
"""

import math

import ml_collections
from ml_collections import config_dict

from infojax import config as config_lib


def get_config(arg=None):
  """The pac_bayes_bound config; ``arg="smoke"`` shrinks the run to seconds."""
  config = ml_collections.ConfigDict()
  config.dataset = "digits"
  config.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: the TFDS default
  config.normalize = True
  config.num_train = config_dict.placeholder(int)  # a seeded training subset; None: all
  config.binary_threshold = 5  # label = (digit >= 5)
  config.labels = ("real", "random")
  # The training objectives of step 2 (each certified the same way): Dziugaite & Roy's surrogate
  # bound, and Perez-Ortiz et al.'s f_quad and f_lambda on the bounded cross-entropy.
  # The suffix _data_dependent: the same objective with a prior mean learned by SGD on
  # pac_bayes.prior_fraction of the training set, the bound on the rest.
  config.objectives = ("dziugaite_roy", "f_quad", "f_lambda", "f_lambda_data_dependent")
  # Each seed draws w0, the random labels, the training order (the data-dependent prior's part),
  # the batches and the weight draws (and the subset with num_train).
  config.seeds = (0, 1, 2)
  # Also mirror the records as TensorBoard scalars in WORKDIR/tensorboard (pip install
  # "infojax[tensorboard]").
  config.tensorboard = False
  config.hidden_sizes = (100,)
  # Step 1: SGD from the initialisation w0 (the prior mean).
  config.num_epochs = 20
  config.batch_size = 100
  config.optimizer = config_lib.optimizer_config(name="sgd", lr=0.01, momentum=0.9)
  # Step 2: the Gaussian post-distribution and the prior variance on the surrogate bound.
  config.pac_bayes = ml_collections.ConfigDict()
  config.pac_bayes.num_epochs = 4000
  config.pac_bayes.batch_size = 100
  config.pac_bayes.optimizer = config_lib.optimizer_config(
      name="rmsprop", lr=3e-3, schedule="piecewise", decay_epochs=(3000,), decay_factor=0.1)
  config.pac_bayes.log_every = 100  # epochs per metrics record (their means)
  config.pac_bayes.checkpoint_every = 500  # epochs per checkpoint, a multiple of log_every
  config.pac_bayes.posterior_std_scale = 2.0  # initial std = 2 |w|
  config.pac_bayes.posterior_min_variance = 1e-8  # floor of the initial variances (zero biases)
  config.pac_bayes.prior_variance_init = math.exp(-6.0)
  # p_min of the bounded cross-entropy of f_quad and f_lambda: 1/2 clips the bits of
  # cross-entropy at 1 (Perez-Ortiz et al.'s 1e-5 collapses Q onto the prior at m = 1,437).
  config.pac_bayes.min_probability = 0.5
  config.pac_bayes.trade_off_init = 1.0  # f_lambda's l, in (0, 2)
  config.pac_bayes.prior_fraction = 0.5  # of the training set, for a data-dependent prior
  config.pac_bayes.grid_b = 100.0
  config.pac_bayes.grid_c = 0.1
  # Step 3: the certificate.
  config.pac_bayes.delta = 0.025
  config.pac_bayes.delta_monte_carlo = 0.01
  config.pac_bayes.num_mc_samples = 5000  # sampled networks for the training error of Q
  config.pac_bayes.test_mc_samples = 500  # sampled networks for the test error of Q

  if arg == "smoke":
    config.hidden_sizes = (20,)
    config.num_epochs = 5
    config.objectives = ("dziugaite_roy", "f_lambda_data_dependent")
    config.seeds = (0,)
    config.pac_bayes.num_epochs = 200
    config.pac_bayes.log_every = 50
    config.pac_bayes.checkpoint_every = 100
    config.pac_bayes.optimizer.lr = 1e-2
    config.pac_bayes.optimizer.decay_epochs = (150,)
    config.pac_bayes.num_mc_samples = 200
    config.pac_bayes.test_mc_samples = 20
  elif arg not in (None, ""):
    raise ValueError(f"configs/pac_bayes_bound.py: unknown config argument {arg!r}; use none or "
                     "'smoke'.")
  return config
