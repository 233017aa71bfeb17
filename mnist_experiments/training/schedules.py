"""The learning rate of a run: ``optimizer.learning_rate`` under the ``schedule`` option.

The options (:mod:`mnist_experiments.config.schedule`) are written in epochs; Keras'
schedules count optimizer steps, so they are converted here with the run's steps per
epoch. ``constant`` returns the plain float, so the optimizer is built exactly as
without a schedule (same numbers, bit for bit).
"""

from __future__ import annotations

import math
from typing import Any, Union

import keras


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last batch may be smaller)."""
    return max(1, math.ceil(int(n_train) / int(batch_size)))


def learning_rate(cfg: Any, steps: int) -> Union[float, keras.optimizers.schedules.LearningRateSchedule]:
    """What the optimizer gets as ``learning_rate``: a float, or a Keras schedule.

    Parameters
    ----------
    cfg : DictConfig
        The validated run config (``optimizer.learning_rate``, ``schedule``,
        ``train.epochs``).
    steps : int
        Optimizer steps per epoch (:func:`steps_per_epoch`).
    """
    base = float(cfg.optimizer.learning_rate)
    schedule = cfg.get("schedule") or {"name": "constant"}
    name = schedule["name"]
    total = max(1, int(cfg.train.epochs) * steps)
    schedules = keras.optimizers.schedules
    if name == "constant":
        return base
    if name == "exponential":
        return schedules.ExponentialDecay(
            base, decay_steps=max(1, round(float(schedule["decay_epochs"]) * steps)),
            decay_rate=float(schedule["decay_rate"]), staircase=bool(schedule["staircase"]))
    if name == "cosine":
        return schedules.CosineDecay(base, decay_steps=total, alpha=float(schedule["alpha"]))
    if name == "warmup_cosine":
        warmup = min(total - 1, max(1, round(float(schedule["warmup_epochs"]) * steps)))
        return schedules.CosineDecay(
            base * float(schedule["warmup_from"]), decay_steps=max(1, total - warmup),
            alpha=float(schedule["alpha"]), warmup_target=base, warmup_steps=warmup)
    if name == "piecewise":
        # Keras keeps values[i] while step <= boundaries[i]: the last step of epoch b
        # is b * steps - 1, so epoch b + 1 starts with the next value
        return schedules.PiecewiseConstantDecay(
            boundaries=[round(float(b) * steps) - 1 for b in schedule["boundaries"]],
            values=[base * float(f) for f in schedule["factors"]])
    raise ValueError(f"unknown schedule {name!r}")  # validate() refuses it before this


def current_learning_rate(optimizer: Any) -> float:
    """The rate the optimizer applies at its next step (a schedule evaluated at the
    optimizer's step count)."""
    rate = optimizer.learning_rate  # a Keras Variable, or a schedule's tensor
    rate = getattr(rate, "value", rate)
    return float(rate.numpy() if hasattr(rate, "numpy") else rate)
