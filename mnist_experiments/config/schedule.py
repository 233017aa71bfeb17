"""The ``schedule`` group: how the learning rate changes during training.

Each option is one of ``keras.optimizers.schedules`` (built in
:mod:`mnist_experiments.training.schedules`), written in epochs rather than optimizer
steps, so that a config means the same thing whatever the data size and batch size:
``decay_epochs: 2`` is two passes over the training set. The starting rate is always
``optimizer.learning_rate``.

``constant`` (the default) hands the optimizer its plain ``learning_rate``, exactly as
before this group existed, so every earlier config and recorded run gives the same
numbers. A recorded config without a ``schedule`` section is read as ``constant``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from mnist_experiments.config.registry import Option, Registry
from mnist_experiments.config.rules import FRACTION, bounded


@dataclass
class ConstantSchedule:
    """``optimizer.learning_rate`` throughout."""
    name: str = "constant"


@dataclass
class ExponentialSchedule:
    """``keras.optimizers.schedules.ExponentialDecay``: the rate is multiplied by
    ``decay_rate`` every ``decay_epochs`` (smoothly, or in steps with ``staircase``)."""
    name: str = "exponential"
    decay_rate: float = bounded(0.5, gt=0.0, le=1.0)
    decay_epochs: float = bounded(1.0, gt=0.0)
    staircase: bool = False


@dataclass
class CosineSchedule:
    """``keras.optimizers.schedules.CosineDecay`` over the whole training, down to
    ``alpha`` times the starting rate."""
    name: str = "cosine"
    alpha: float = bounded(0.0, **FRACTION, example=0.01)


@dataclass
class WarmupCosineSchedule:
    """``CosineDecay`` with ``warmup_steps``: a linear rise from ``warmup_from`` times
    the starting rate over ``warmup_epochs``, then the cosine decay over the rest."""
    name: str = "warmup_cosine"
    warmup_epochs: float = bounded(1.0, gt=0.0)
    warmup_from: float = bounded(0.0, **FRACTION, example=0.1)
    alpha: float = bounded(0.0, **FRACTION, example=0.01)


@dataclass
class PiecewiseSchedule:
    """``keras.optimizers.schedules.PiecewiseConstantDecay``: ``factors[i]`` times the
    starting rate until epoch ``boundaries[i]``, then the next factor (one factor more
    than boundaries)."""
    name: str = "piecewise"
    boundaries: List[float] = field(default_factory=lambda: [3.0, 6.0])
    factors: List[float] = field(default_factory=lambda: [1.0, 0.1, 0.01])


SCHEDULES = Registry("schedule", [
    Option("constant", ConstantSchedule),
    Option("exponential", ExponentialSchedule),
    Option("cosine", CosineSchedule),
    Option("warmup_cosine", WarmupCosineSchedule),
    Option("piecewise", PiecewiseSchedule),
], key="name", default="constant")


def schedule_problems(schedule: object) -> List[str]:
    """Cross-field rules of a typed ``schedule`` node (piecewise's lists)."""
    if getattr(schedule, "name", None) != "piecewise":
        return []
    boundaries, factors = list(schedule.boundaries), list(schedule.factors)
    problems = []
    if len(factors) != len(boundaries) + 1:
        problems.append(
            f"schedule.factors has {len(factors)} values for {len(boundaries)} boundaries: "
            "give one factor more than boundaries (e.g. schedule.boundaries=[3,6] "
            "schedule.factors=[1,0.1,0.01]).")
    if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
        problems.append(f"schedule.boundaries={boundaries} must be increasing epochs above 0.")
    if any(f <= 0 for f in factors):
        problems.append(f"schedule.factors={factors} must all be above 0.")
    return problems
