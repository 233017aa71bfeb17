"""K-fold cross-validation: one parent MLflow run, one child run per fold.

The folds split the training pool (the training set, plus the holdout validation
images when ``data.validation=holdout``); the test set is never used to select a
model. With ``cv.refit`` the model is then trained on the whole pool and evaluated on
the test set in the parent run, so a k-fold run also yields one final model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from mnist_experiments.errors import ConfigError

log = logging.getLogger(__name__)

Split = Tuple[np.ndarray, np.ndarray]


def training_pool(dataset: Any, validation: Any) -> Tuple[np.ndarray, np.ndarray]:
    """The images the folds split: train (+ the holdout validation images)."""
    if getattr(validation, "value", validation) == "test_halves":
        return dataset.x_train, dataset.y_train
    return (np.concatenate([dataset.x_train, dataset.x_val]),
            np.concatenate([dataset.y_train, dataset.y_val]))


def check_folds(y: np.ndarray, cv_cfg: Any) -> None:
    """Refuse a fold count the data cannot support, before any run exists."""
    folds = int(cv_cfg.folds)
    if folds < 2:
        raise ConfigError(f"cv.folds={folds} is invalid: k-fold needs at least 2 folds. "
                          "Try cv.folds=3, or cv=holdout for a single split.")
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
    from sklearn.model_selection import KFold, StratifiedKFold

    shuffle = bool(cv_cfg.shuffle)
    kwargs = dict(n_splits=int(cv_cfg.folds), shuffle=shuffle,
                  random_state=int(seed) if shuffle else None)
    splitter = StratifiedKFold(**kwargs) if cv_cfg.stratified else KFold(**kwargs)
    return [(train, val) for train, val in splitter.split(np.zeros(len(y)), y)]


@dataclass
class FoldResult:
    fold: int
    run_id: str
    history: Dict[str, List[float]]
    val_metrics: Dict[str, float]


@dataclass
class FoldsOutcome:
    results: List[FoldResult]
    last_model: Any  # the last fold's model (for activation maps without a refit)
    last_val_idx: np.ndarray


def summarize(results: List[FoldResult]) -> Dict[str, float]:
    """``cv_val_<metric>_{mean,std,min,max}`` over the folds' final values."""
    summary: Dict[str, float] = {}
    for metric in ("accuracy", "loss"):
        values = np.array([r.history[f"val_{metric}"][-1] for r in results], dtype=np.float64)
        summary.update({
            f"cv_val_{metric}_mean": float(values.mean()),
            f"cv_val_{metric}_std": float(values.std()),
            f"cv_val_{metric}_min": float(values.min()),
            f"cv_val_{metric}_max": float(values.max()),
        })
    return summary


def run_folds(
    cfg: Any,
    x: np.ndarray,
    y: np.ndarray,
    class_names: List[str],
    experiment_id: str,
    parent_tags: Dict[str, str],
) -> FoldsOutcome:
    """Train one model per fold, each in a child run nested under the active run."""
    import keras
    import mlflow

    from mnist_experiments.tracking import artifacts
    from mnist_experiments.figures import plots
    from mnist_experiments.tracking import runs as tracking
    from mnist_experiments.training import fit as training

    splits = fold_indices(y, cfg.cv, int(cfg.seed))
    k = len(splits)
    results: List[FoldResult] = []
    for fold, (train_idx, val_idx) in enumerate(splits, start=1):
        keras.backend.clear_session()  # keeps memory and time flat across folds
        training.seed_everything(int(cfg.seed), bool(cfg.train.deterministic))
        prefix = f"fold {fold}/{k} "
        log.info("%s: %d training, %d validation images", prefix.strip(), len(train_idx), len(val_idx))
        tags = {**parent_tags, "fold": str(fold), "folds": str(k)}
        with tracking.tracked_run(experiment_id, f"fold-{fold}", tags, nested=True) as run:
            mlflow.log_params({"fold": fold, "folds": k, "train_size": len(train_idx),
                               "val_size": len(val_idx)})

            with tracking.BackgroundMetrics(run.info.run_id) as writer:
                result = training.fit(cfg, x[train_idx], y[train_idx], x[val_idx], y[val_idx],
                                      on_metrics=writer.log, prefix=prefix)
            proba = training.predict_proba(result.model, x[val_idx])
            val_metrics = training.classification_metrics(y[val_idx], proba, prefix="final_val_")
            mlflow.log_metrics({**val_metrics, "fit_seconds": result.fit_seconds})
            cm = artifacts.log_confusion_matrix(y[val_idx], proba.argmax(axis=1), class_names)
            if cfg.viz.enabled and cfg.viz.confusion_matrix:
                artifacts.log_figure(
                    plots.confusion_matrix_figure(
                        cm, class_names, title=f"Confusion matrix (fold {fold} validation)"),
                    "plots/confusion_matrix.png")
            results.append(FoldResult(fold, run.info.run_id, result.history, val_metrics))
            last_model = result.model
        log.info("%sfinal val_accuracy=%.4f", prefix, result.history["val_accuracy"][-1])
    return FoldsOutcome(results, last_model, splits[-1][1])
