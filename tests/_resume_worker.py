"""A small training run in its own process, for the kill/resume tests of test_train.py.

  python tests/_resume_worker.py WORKDIR [--kill=PHASE:EPOCH]

PHASE says where the process kills itself (SIGKILL, no clean-up) during epoch EPOCH:
``hook`` (after training, before the epoch's record is written), ``save`` (record written,
checkpoint not yet saved) or ``saved`` (just after the checkpoint is complete). The run uses a
per-step random key (input noise), so a resumed run only matches if the keys are restored exactly.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np

from infojax import train
from infojax.train import checkpoint

NUM_EPOCHS = 6
CHECKPOINT_EVERY = 2


def _die():
  os.kill(os.getpid(), signal.SIGKILL)


def _objective():
  def apply_fn(params, inputs):
    return jnp.tanh(inputs @ params["hidden"]) @ params["out"]

  def loss(params, model_state, batch, key):
    noisy = batch["image"] + 0.1 * jax.random.normal(key, batch["image"].shape)
    nll = -jnp.take_along_axis(
        jax.nn.log_softmax(apply_fn(params, noisy)), batch["label"][:, None], axis=-1)
    return jnp.mean(nll), (model_state, {})

  return train.Objective(loss=loss, evaluate=train.classification(apply_fn).evaluate)


def _data():
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(256, 6)).astype(np.float32)
  labels = np.argmax(inputs @ rng.normal(size=(6, 4)), axis=-1).astype(np.int32)
  return inputs, labels


def main(workdir, kill=None):
  inputs, labels = _data()

  def train_data(epoch):
    order = np.random.default_rng(epoch).permutation(len(labels))
    return {"image": inputs[order].reshape(8, 32, 6), "label": labels[order].reshape(8, 32)}

  kill_phase, kill_epoch = (None, None)
  if kill:
    kill_phase, kill_epoch = kill.split(":")
    kill_epoch = int(kill_epoch)

  def hook(epoch, state):
    if kill_phase == "hook" and epoch == kill_epoch:
      _die()
    return {"hidden_norm": jnp.linalg.norm(state.params["hidden"])}

  save = checkpoint.Checkpointer.save

  def save_then_maybe_die(self, epoch, state):
    if kill_phase == "save" and epoch == kill_epoch:
      _die()
    save(self, epoch, state)
    if kill_phase == "saved" and epoch == kill_epoch:
      _die()

  checkpoint.Checkpointer.save = save_then_maybe_die
  key = jax.random.key(0)
  params = {"hidden": 0.5 * jax.random.normal(key, (6, 16)), "out": jnp.zeros((16, 4))}
  optimizer = train.make_optimizer(
      {"name": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "exponential", "decay_factor": 0.9},
      steps_per_epoch=8, num_epochs=NUM_EPOCHS)
  state = train.init_state(params, optimizer, key=jax.random.key(1))
  train.fit(_objective(), optimizer, state, train_data=train_data, num_epochs=NUM_EPOCHS,
            eval_data={"test": {"image": inputs[:100], "label": labels[:100]}}, eval_batch_size=48,
            hooks=[hook], workdir=workdir, checkpoint_every=CHECKPOINT_EVERY)


if __name__ == "__main__":
  main(sys.argv[1], *[a.split("=", 1)[1] for a in sys.argv[2:] if a.startswith("--kill=")])
