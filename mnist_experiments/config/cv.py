"""The ``cv`` group: how a run validates (one holdout split, or k folds)."""

from __future__ import annotations

from dataclasses import dataclass

from mnist_experiments.config.registry import Option, Registry
from mnist_experiments.config.rules import bounded


@dataclass
class HoldoutConfig:
    name: str = "holdout"


@dataclass
class KFoldConfig:
    name: str = "kfold"
    folds: int = bounded(5, ge=2, example=3, note="k-fold needs at least 2 folds; "
                                                  "cv=holdout for a single split")
    shuffle: bool = True
    stratified: bool = True
    refit: bool = True


CROSS_VALIDATION = Registry("cv", [
    Option("holdout", HoldoutConfig),
    Option("kfold", KFoldConfig),
], key="name")
