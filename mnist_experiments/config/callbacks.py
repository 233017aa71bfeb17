"""The ``callbacks`` group: Keras callbacks a run trains with, composed as a mapping.

``conf/callbacks/<name>.yaml`` puts one callback under its own key of ``callbacks``
(``callbacks.early_stopping``, ...); ``callbacks=default`` composes several through its
defaults list, and ``callbacks=[early_stopping,reduce_lr]`` picks any set on the command
line. ``none`` (the default) trains without any, as before this group existed. Each
entry is typed by the schema its ``_target_`` selects (:data:`CALLBACKS`, a registry of
many options at once), so a key that the callback does not take is refused.

The callbacks are Keras' own (:mod:`mnist_experiments.training.callbacks` builds them):
``EarlyStopping``, ``ReduceLROnPlateau``, and ``ModelCheckpoint``, which ``checkpoint``
uses twice, for the best and the last weights, both kept with the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from mnist_experiments.config.registry import Option, Registry
from mnist_experiments.config.rules import bounded

# what Keras' history has each epoch (a validation set: holdout runs and k-fold folds)
MONITORS = frozenset({"val_accuracy", "val_loss", "accuracy", "loss"})
MODES = frozenset({"auto", "min", "max"})


@dataclass
class EarlyStoppingConfig:
    """``keras.callbacks.EarlyStopping``: stop once ``monitor`` has not improved by
    ``min_delta`` for ``patience`` epochs; with ``restore_best_weights`` the model keeps
    the best epoch's weights, which the test metrics and the objective then measure."""
    _target_: str = "keras.callbacks.EarlyStopping"
    monitor: str = bounded("val_accuracy", choices=MONITORS)
    patience: int = bounded(3, ge=0)
    min_delta: float = bounded(0.0, ge=0.0, example=0.001)
    restore_best_weights: bool = True
    mode: str = bounded("auto", choices=MODES)
    start_from_epoch: int = bounded(0, ge=0)


@dataclass
class ReduceLROnPlateauConfig:
    """``keras.callbacks.ReduceLROnPlateau``: multiply the learning rate by ``factor``
    once ``monitor`` has not improved for ``patience`` epochs."""
    _target_: str = "keras.callbacks.ReduceLROnPlateau"
    monitor: str = bounded("val_loss", choices=MONITORS)
    factor: float = bounded(0.5, gt=0.0, lt=1.0)
    patience: int = bounded(2, ge=0)
    min_delta: float = bounded(1e-4, ge=0.0)
    cooldown: int = bounded(0, ge=0)
    min_lr: float = bounded(0.0, ge=0.0, example=1e-6)
    mode: str = bounded("auto", choices=MODES)


@dataclass
class CheckpointConfig:
    """``keras.callbacks.ModelCheckpoint``, twice: the weights of the best epoch by
    ``monitor`` (``checkpoints/best.weights.h5``) and of the last epoch
    (``checkpoints/last.weights.h5``), written in the run's Hydra directory each epoch and
    logged with the run at its end."""
    _target_: str = "keras.callbacks.ModelCheckpoint"
    monitor: str = bounded("val_accuracy", choices=MONITORS)
    mode: str = bounded("auto", choices=MODES)


CALLBACKS = Registry("callbacks", [
    Option("early_stopping", EarlyStoppingConfig),
    Option("reduce_lr", ReduceLROnPlateauConfig),
    Option("checkpoint", CheckpointConfig),
], key="_target_", many=True)


def callback_problems(cfg: object) -> List[str]:
    """Cross-group rules of a typed config's ``callbacks``."""
    problems: List[str] = []
    schedule = getattr(getattr(cfg, "schedule", None), "name", "constant")
    for name, node in (getattr(cfg, "callbacks", None) or {}).items():
        if node.get("_target_") == "keras.callbacks.ReduceLROnPlateau" and schedule != "constant":
            problems.append(
                f"callbacks.{name} (ReduceLROnPlateau) sets the learning rate itself, which "
                f"Keras cannot do under schedule={schedule}: use one of them (e.g. "
                "schedule=constant, or callbacks=early_stopping).")
    return problems
