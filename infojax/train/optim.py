"""optax optimisers and learning-rate schedules built from a config.

The optimiser config (an ``ml_collections.ConfigDict`` or any mapping;
`infojax.config.optimizer_config` gives one with every field) has the fields:

* ``name``: ``"sgd"`` (heavy-ball or Nesterov momentum), ``"adam"``, ``"adamw"`` or ``"rmsprop"``
  (Tieleman & Hinton 2012, as in `optax.rmsprop`; Dziugaite & Roy's optimiser of the PAC-Bayes
  bound);
* ``lr``: the base learning rate;
* ``momentum`` (sgd; 0 is plain SGD), ``nesterov`` (sgd), ``b1``, ``b2`` (adam, adamw),
  ``rmsprop_decay`` (rmsprop: the decay of the running mean of squared gradients, default 0.9);
* ``weight_decay``: for ``sgd``, ``adam`` and ``rmsprop`` the L2 term ``weight_decay * w`` added to
  the gradient (the classic coupled weight decay of the critical-period and All-CNN papers); for
  ``adamw`` the decoupled decay of Loshchilov & Hutter (2019). It applies to every parameter;
* ``schedule``: ``"constant"``; ``"piecewise"`` (multiply by ``decay_factor`` at each epoch in
  ``decay_epochs``); ``"exponential"`` (multiply by ``decay_factor`` every epoch, smoothly, e.g. the
  0.97 per epoch of Achille et al. 2019); ``"cosine"`` (cosine decay to ``lr * decay_factor`` at
  the end);
* ``warmup_epochs``: linear warm-up from 0 over this many epochs before the schedule (0: none).

Schedules are defined in epochs and converted to steps with ``steps_per_epoch``.
"""

from typing import Any, Mapping

import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "piecewise", "exponential", "cosine")

DEFAULTS = {
    "momentum": 0.0,
    "nesterov": False,
    "b1": 0.9,
    "b2": 0.999,
    "rmsprop_decay": 0.9,
    "weight_decay": 0.0,
    "schedule": "constant",
    "decay_epochs": (),
    "decay_factor": 1.0,
    "warmup_epochs": 0,
}


def _field(config: Mapping[str, Any], name: str):
  if name in config:
    return config[name]
  if name in DEFAULTS:
    return DEFAULTS[name]
  raise ValueError(f"optimizer config: missing required field {name!r}.")


def _check_positive_int(name, value):
  if int(value) != value or value < 1:
    raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def make_schedule(config: Mapping[str, Any], *, steps_per_epoch: int,
                  num_epochs: int) -> optax.Schedule:
  """The learning rate as a function of the step, from ``config.lr``, ``schedule`` and friends.

  Args:
    config: the optimiser config (see the module docstring).
    steps_per_epoch: optimisation steps in one epoch (positive).
    num_epochs: epochs in the run (positive); the length of the cosine schedule.

  Returns:
    An optax schedule ``step -> learning rate``.
  """
  _check_positive_int("steps_per_epoch", steps_per_epoch)
  _check_positive_int("num_epochs", num_epochs)
  lr = float(_field(config, "lr"))
  schedule = _field(config, "schedule")
  factor = float(_field(config, "decay_factor"))
  warmup_steps = int(round(float(_field(config, "warmup_epochs")) * steps_per_epoch))
  total_steps = num_epochs * steps_per_epoch
  if lr < 0:
    raise ValueError(f"optimizer config: lr must be non-negative; got {lr}.")
  if schedule == "constant":
    main = optax.constant_schedule(lr)
  elif schedule == "piecewise":
    epochs = tuple(int(e) for e in _field(config, "decay_epochs"))
    if any(e < 1 for e in epochs) or list(epochs) != sorted(set(epochs)):
      raise ValueError(
          "optimizer config: decay_epochs must be strictly increasing positive epochs; "
          f"got {epochs}.")
    main = optax.piecewise_constant_schedule(
        lr, {e * steps_per_epoch - warmup_steps: factor for e in epochs})
  elif schedule == "exponential":
    if factor <= 0:
      raise ValueError(f"optimizer config: decay_factor must be positive; got {factor}.")
    main = optax.exponential_decay(lr, transition_steps=steps_per_epoch, decay_rate=factor)
  elif schedule == "cosine":
    main = optax.cosine_decay_schedule(
        lr, decay_steps=max(total_steps - warmup_steps, 1), alpha=factor)
  else:
    raise ValueError(f"optimizer config: schedule must be one of {SCHEDULES}; got {schedule!r}.")
  if warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, lr, transition_steps=warmup_steps)
  return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def make_optimizer(config: Mapping[str, Any], *, steps_per_epoch: int,
                   num_epochs: int) -> optax.GradientTransformation:
  """An optax optimiser from a config (see the module docstring for the fields).

  Args:
    config: the optimiser config.
    steps_per_epoch: optimisation steps in one epoch.
    num_epochs: epochs in the run.

  Returns:
    An ``optax.GradientTransformation``; its ``update`` needs ``params`` (weight decay).
  """
  name = _field(config, "name")
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer config: name must be one of {OPTIMIZERS}; got {name!r}.")
  learning_rate = make_schedule(config, steps_per_epoch=steps_per_epoch, num_epochs=num_epochs)
  weight_decay = float(_field(config, "weight_decay"))
  if weight_decay < 0:
    raise ValueError(f"optimizer config: weight_decay must be non-negative; got {weight_decay}.")
  if name == "adamw":
    return optax.adamw(learning_rate, b1=float(_field(config, "b1")),
                       b2=float(_field(config, "b2")), weight_decay=weight_decay)
  if name == "sgd":
    momentum = float(_field(config, "momentum"))
    base = optax.sgd(learning_rate, momentum=momentum or None,
                     nesterov=bool(_field(config, "nesterov")))
  elif name == "rmsprop":
    decay = float(_field(config, "rmsprop_decay"))
    if not 0.0 <= decay < 1.0:
      raise ValueError(f"optimizer config: rmsprop_decay must be in [0, 1); got {decay}.")
    base = optax.rmsprop(learning_rate, decay=decay)
  else:
    base = optax.adam(learning_rate, b1=float(_field(config, "b1")), b2=float(_field(config, "b2")))
  if weight_decay == 0:
    return base
  return optax.chain(optax.add_decayed_weights(weight_decay), base)
