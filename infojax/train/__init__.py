"""Training: a `TrainState`, optax optimisers from configs, the scanned loop, orbax checkpoints."""

from infojax.train.checkpoint import Checkpointer
from infojax.train.loop import EvalSet
from infojax.train.loop import FitResult
from infojax.train.loop import NonFiniteLossError
from infojax.train.loop import Objective
from infojax.train.loop import classification
from infojax.train.loop import fit
from infojax.train.loop import flax_classification
from infojax.train.loop import make_eval_set
from infojax.train.loop import make_evaluator
from infojax.train.loop import make_train_epoch
from infojax.train.loop import make_train_step
from infojax.train.optim import make_optimizer
from infojax.train.optim import make_schedule
from infojax.train.state import TrainState
from infojax.train.state import init_state
