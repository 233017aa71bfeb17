"""K-fold cross-validation: one parent MLflow run, one child run per fold.

The folds (:mod:`mnist_experiments.data.folds`) split the training pool; the test set
is never used to select a model. Each fold trains in a child run with its per-epoch
metrics, final validation metrics and validation confusion matrix; the parent gets
the summary (``cv_val_{accuracy,loss}_{mean,std,min,max}``, ``fold_val_accuracy``
per fold), the fold plots and, with ``cv.refit``, a model trained on the whole pool
and evaluated on the test set, so a k-fold run also yields one final model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import keras
import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from mnist_experiments import figures
from mnist_experiments.data.folds import fold_indices
from mnist_experiments.tracking import artifacts
from mnist_experiments.tracking.datasets import log_datasets
from mnist_experiments.tracking.runs import BackgroundMetrics, tracked_run
from mnist_experiments.tracking.search import search_all_runs
from mnist_experiments.training.evaluation import (
    ActivationMaps,
    activation_maps,
    evaluate,
    sample_index,
)
from mnist_experiments.training.fit import fit
from mnist_experiments.training.seeding import seed_everything
from mnist_experiments.workflows.resume import metric_steps

log = logging.getLogger(__name__)


@dataclass
class FoldResult:
    fold: int
    run_id: str
    history: Dict[str, List[float]]
    val_metrics: Dict[str, float]
    kept_epoch: int = 0  # whose weights the fold's model holds (0: the last)

    def final(self, key: str) -> float:
        """``history[key]`` at the epoch whose weights the fold's model holds."""
        return self.history[key][self.kept_epoch - 1 if self.kept_epoch else -1]


@dataclass
class FoldsOutcome:
    results: List[FoldResult]
    last_model: Any  # the last fold's model (for activation maps without a refit)
    last_val_idx: np.ndarray


def summarize(results: List[FoldResult]) -> Dict[str, float]:
    """``cv_val_<metric>_{mean,std,min,max}`` over the folds' final values."""
    summary: Dict[str, float] = {}
    for metric in ("accuracy", "loss"):
        values = np.array([r.final(f"val_{metric}") for r in results], dtype=np.float64)
        summary.update({
            f"cv_val_{metric}_mean": float(values.mean()),
            f"cv_val_{metric}_std": float(values.std()),
            f"cv_val_{metric}_min": float(values.min()),
            f"cv_val_{metric}_max": float(values.max()),
        })
    return summary


def run_folds(cfg: Any, x: np.ndarray, y: np.ndarray, class_names: List[str],
              experiment_id: str, parent_tags: Dict[str, str],
              checkpoints: Optional[Any] = None) -> FoldsOutcome:
    """Train one model per fold, each in a child run nested under the active run.

    With ``checkpoints`` (:class:`~mnist_experiments.workflows.resume.RunCheckpoints`),
    each fold saves its state every epoch (``fold-2/``). A resumed run's folds that
    FINISHED are rebuilt from their last states without training; the fold that was
    interrupted continues in its own run.
    """
    splits = fold_indices(y, cfg.cv, int(cfg.seed))
    k = len(splits)
    client = MlflowClient()
    resuming = checkpoints is not None and checkpoints.resuming
    before = fold_runs(client, mlflow.active_run().info.run_id) if resuming else {}
    results: List[FoldResult] = []
    for fold, (train_idx, val_idx) in enumerate(splits, start=1):
        keras.backend.clear_session()  # keeps memory and time flat across folds
        seed_everything(int(cfg.seed), bool(cfg.train.deterministic))
        prefix = f"fold {fold}/{k} "
        name = f"fold-{fold}"
        earlier = before.get(fold)
        if earlier is not None and earlier.info.status == "FINISHED":
            log.info("%s: finished before the run was interrupted", prefix.strip())
            result = fit(cfg, x[train_idx], y[train_idx], x[val_idx], y[val_idx],
                         prefix=prefix, checkpoints=checkpoints, name=name)
            evaluation = evaluate(result.model, x[val_idx], y[val_idx], class_names,
                                  prefix="final_val_")
            results.append(FoldResult(fold, earlier.info.run_id, result.history,
                                      evaluation.metrics, result.kept_epoch))
            last_model = result.model
            continue
        log.info("%s: %d training, %d validation images", prefix.strip(), len(train_idx),
                 len(val_idx))
        tags = {} if earlier else {**parent_tags, "fold": str(fold), "folds": str(k)}
        with tracked_run(experiment_id, None if earlier else name, tags, nested=True,
                         run_id=earlier.info.run_id if earlier else None) as run:
            if earlier is None:
                mlflow.log_params({"fold": fold, "folds": k, "train_size": len(train_idx),
                                   "val_size": len(val_idx)})
                log_datasets(f"{cfg.data.name}-fold-{fold}",
                             parent_tags.get("data.fingerprint", ""),
                             parent_tags.get("data.source", ""),
                             {"training": (x[train_idx], y[train_idx]),
                              "validation": (x[val_idx], y[val_idx])})
            logged = metric_steps(client, run.info.run_id) if earlier else 0
            with BackgroundMetrics(run.info.run_id, skip_through=logged) as writer:
                result = fit(cfg, x[train_idx], y[train_idx], x[val_idx], y[val_idx],
                             on_metrics=writer.log, prefix=prefix, name=name,
                             checkpoints=checkpoints)
            artifacts.log_fit_outcome(result)
            evaluation = evaluate(result.model, x[val_idx], y[val_idx], class_names,
                                  prefix="final_val_")
            mlflow.log_metrics({**evaluation.metrics, "fit_seconds": result.fit_seconds})
            artifacts.log_confusion(evaluation, class_names)
            if artifacts.wanted(cfg.viz, "confusion_matrix"):
                artifacts.log_figure(
                    figures.confusion_matrix_figure(
                        evaluation.confusion, class_names,
                        title=f"Confusion matrix (fold {fold} validation)"),
                    "plots/confusion_matrix.png")
            results.append(FoldResult(fold, run.info.run_id, result.history, evaluation.metrics,
                                      result.kept_epoch))
            last_model = result.model
        log.info("%sfinal val_accuracy=%.4f", prefix, results[-1].final("val_accuracy"))
    return FoldsOutcome(results, last_model, splits[-1][1])


def fold_runs(client: MlflowClient, parent_run_id: str) -> Dict[int, Any]:
    """The fold runs of a k-fold run, by fold number."""
    parent = client.get_run(parent_run_id)
    query = f"tags.mlflow.parentRunId = '{parent_run_id}'"
    found: Dict[int, Any] = {}
    for run in search_all_runs(client, [parent.info.experiment_id], query):
        fold = run.data.tags.get("fold")
        if fold and fold.isdigit():
            found[int(fold)] = run
    return found


def log_summary(cfg: Any, folds: FoldsOutcome) -> Dict[str, float]:
    """The parent's summary metrics, per-fold metrics, fold runs and fold plots."""
    summary = summarize(folds.results)
    mlflow.log_metrics({**summary, "objective": summary["cv_val_accuracy_mean"]})
    for r in folds.results:
        mlflow.log_metric("fold_val_accuracy", r.final("val_accuracy"), step=r.fold)
        mlflow.log_metric("fold_val_loss", r.final("val_loss"), step=r.fold)
    mlflow.log_dict({f"fold-{r.fold}": r.run_id for r in folds.results}, "cv/fold_runs.json")
    log.info("cross-validation: val_accuracy %.4f ± %.4f over %d folds",
             summary["cv_val_accuracy_mean"], summary["cv_val_accuracy_std"], len(folds.results))
    if cfg.viz.enabled:
        histories = [r.history for r in folds.results]
        artifacts.log_figure(figures.fold_curves(histories, metric="val_accuracy"),
                             "plots/cv_val_accuracy_per_epoch.png")
        artifacts.log_figure(figures.fold_curves(histories, metric="val_loss"),
                             "plots/cv_val_loss_per_epoch.png")
        artifacts.log_figure(
            figures.fold_summary([r.final("val_accuracy") for r in folds.results]),
            "plots/cv_fold_accuracy.png")
    return {**summary, "objective": summary["cv_val_accuracy_mean"]}


def log_last_fold_activations(cfg: Any, folds: FoldsOutcome, x_pool: np.ndarray,
                              y_pool: np.ndarray, class_names: List[str]) -> None:
    """The notebook, without a refit: activation maps of the last fold's model for one
    of its validation images."""
    picked = sample_index(cfg.viz, int(cfg.seed), len(folds.last_val_idx))
    index = int(folds.last_val_idx[picked])
    maps = ActivationMaps(index, x_pool[index], int(y_pool[index]),
                          activation_maps(folds.last_model, x_pool[index]))
    for path, fig in artifacts.activation_figures(maps, class_names,
                                                  int(cfg.viz.max_channels)).items():
        artifacts.log_figure(fig, path)
