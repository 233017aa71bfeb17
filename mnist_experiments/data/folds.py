"""K-fold splits of a training pool: which images each fold trains and validates on.

The folds split the training pool (the training set, plus the holdout validation
images when ``data.validation=holdout``); the test set is never used to select a model.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

from mnist_experiments.errors import ConfigError

Split = Tuple[np.ndarray, np.ndarray]


def training_pool(dataset: Any, validation: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The images the folds split: train (+ the holdout validation images)."""
    if getattr(validation, "value", validation) == "test_halves":
        return dataset.x_train, dataset.y_train
    return (np.concatenate([dataset.x_train, dataset.x_val]),
            np.concatenate([dataset.y_train, dataset.y_val]))


def check_folds(y: np.ndarray, cv_cfg: Any) -> None:
    """Refuse a fold count the data cannot support, before any run exists."""
    folds = int(cv_cfg.folds)  # at least 2: the schema's rule (config/cv.py)
    if len(y) < folds:
        raise ConfigError(f"cv.folds={folds} is more than the {len(y)} training images. "
                          "Lower cv.folds or raise data.limit.")
    if cv_cfg.stratified:
        counts = np.bincount(y, minlength=10)
        present = counts[counts > 0]
        smallest = int(present.min())
        if folds > smallest:
            label = int(np.flatnonzero(counts == smallest)[0])
            raise ConfigError(
                f"cv.folds={folds} is more than the {smallest} training images of class "
                f"{label}, so stratified folds cannot all contain that class. Use "
                f"cv.folds={smallest} or fewer, raise data.limit, or set cv.stratified=false."
            )


def fold_indices(y: np.ndarray, cv_cfg: Any, seed: int) -> List[Split]:
    """(train indices, validation indices) of every fold; shuffled by ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold  # not before a holdout's fit

    shuffle = bool(cv_cfg.shuffle)
    kwargs = dict(n_splits=int(cv_cfg.folds), shuffle=shuffle,
                  random_state=int(seed) if shuffle else None)
    splitter = StratifiedKFold(**kwargs) if cv_cfg.stratified else KFold(**kwargs)
    return [(train, val) for train, val in splitter.split(np.zeros(len(y)), y)]
