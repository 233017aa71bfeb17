"""One experiment, end to end: a composed config in, a tracked and evaluated model out.

``train(cfg)`` is what ``mnist-exp`` runs for every job (and what tests call with a
config composed by Hydra's Compose API). It returns the objective that sweepers
maximise: the final validation accuracy (``cv_val_accuracy_mean`` for k-fold).

A run flows one way, each stage handing its result to the next: the data
(:mod:`mnist_experiments.data`), then the model and its fit
(:mod:`mnist_experiments.training.fit`), then its evaluation
(:mod:`mnist_experiments.training.evaluation`), then what is recorded
(:mod:`mnist_experiments.tracking.artifacts`), which only draws and logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import keras
import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mnist_experiments.config.identity import config_id
from mnist_experiments.config.validation import validate
from mnist_experiments.data import load_dataset
from mnist_experiments.errors import DataError
from mnist_experiments.data.folds import check_folds, training_pool
from mnist_experiments.tracking import artifacts, provenance, runs
from mnist_experiments.tracking.datasets import log_datasets
from mnist_experiments.tracking.models import register
from mnist_experiments.tracking.notes import NOTE_TAG, run_note
from mnist_experiments.tracking.runs import (
    BackgroundMetrics,
    ensure_experiment,
    flatten,
    log_params_flat,
    tracked_run,
)
from mnist_experiments.tracking.store import StoreCreation, resolve_tracking_uri
from mnist_experiments.training.augmentation import augmented_samples
from mnist_experiments.training.evaluation import activation_maps, evaluate, sample_index
from mnist_experiments.training.fit import EveryNEpochs, fit
from mnist_experiments.training.pruning import OptunaPruning
from mnist_experiments.training.seeding import apply_threads, resolve_threads, seed_everything
from mnist_experiments.workflows import kfold
from mnist_experiments.workflows.resume import RunCheckpoints, metric_steps
from mnist_experiments.launch import numerics
from mnist_experiments.launch.context import JobContext
from mnist_experiments.launch.study import job_trial

log = logging.getLogger(__name__)

AUGMENT_SAMPLES = 6  # training images shown with their augmented versions


def run_name_for(cfg: DictConfig, overrides: List[str], common: List[str] = ()) -> str:
    """``mlflow.run_name``, else the overrides that shape the result, else the defaults.

    ``common``: for a sweep job, the sweep command's overrides; those every job shares
    are left out, so that the runs table tells the jobs apart ("optimizer=sgd,seed=2").
    """
    if cfg.mlflow.run_name:
        return str(cfg.mlflow.run_name)
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("mlflow.", "hydra.", "hydra/"))]
    shown = [o for o in shown if o not in set(common)] or shown
    if shown:
        return ",".join(shown)[:250]
    return f"{cfg.model.name}-{cfg.data.name}"


@dataclass
class Outcome:
    """What a finished run produced."""

    run_id: str
    objective: float
    metrics: Dict[str, float]


def train(cfg: DictConfig, context: Optional[JobContext] = None) -> float:
    """Train, evaluate and track ``cfg``; return the objective (for Hydra sweepers)."""
    return run_experiment(cfg, context).objective


def run_experiment(cfg: DictConfig, context: Optional[JobContext] = None,
                   creation: Optional[StoreCreation] = None) -> Outcome:
    """Train, evaluate and track one experiment described by ``cfg``.

    Parameters
    ----------
    cfg : DictConfig
        A config composed from ``conf/`` (``mnist-exp`` or Hydra's Compose API).
    context : JobContext, optional
        Launch directory, output directory and overrides; read from Hydra if omitted.
    creation : StoreCreation, optional
        A store creation already started by the caller
        (:meth:`~mnist_experiments.launch.context.JobContext.start_store_creation`).

    Returns
    -------
    Outcome
        The MLflow run id, the objective and the run's final metrics.

    Raises
    ------
    ConfigError, DataError
        Before any MLflow run is created, for an invalid config or unusable data.
    """
    context = context or JobContext.from_hydra()
    validate(cfg)
    # what shapes the numbers besides the config's values: resolved, applied, recorded
    numerics.prepare(cfg)
    cfg.train.threads = resolve_threads(cfg.train.threads, context.parallel_jobs)
    apply_threads(cfg.train.threads)
    uri = context.tracking_uri or resolve_tracking_uri(cfg.mlflow.tracking_uri,
                                                       context.launch_dir)
    with creation or context.start_store_creation(cfg) as creation:
        started = time.perf_counter()
        dataset = load_dataset(cfg.data, int(cfg.seed))
        log.info(
            "data %s: %d train, %d validation, %d test images (sha256 %s...)",
            dataset.source, len(dataset.y_train), len(dataset.y_val), len(dataset.y_test),
            dataset.fingerprint[:12],
        )
        is_kfold = cfg.cv.name == "kfold"
        if is_kfold:
            x_pool, y_pool = training_pool(dataset, cfg.data.validation)
            check_folds(y_pool, cfg.cv)  # before any run exists
        creation.install()
        experiment_id = _open_store(uri, cfg, context)
    resumption = context.resume
    if resumption is not None and resumption.fingerprint not in ("", dataset.fingerprint):
        raise DataError(
            f"resume={resumption.run_id}: the data at {dataset.source} is not the data the "
            f"run trained on (sha256 {dataset.fingerprint[:12]}... now, "
            f"{resumption.fingerprint[:12]}... recorded). Put the run's data back there, "
            "or start a new run on this data (without resume=).")
    seed_everything(int(cfg.seed), bool(cfg.train.deterministic))
    tags = _run_tags(cfg, context, dataset)

    system = cfg.mlflow.get("system_metrics")
    name = run_name_for(cfg, context.overrides, context.sweep_overrides)
    start_tags = tags
    if resumption is not None:  # the same run: its name, params and inputs stay
        name, system = None, False
        start_tags = {"resume.count": str(resumption.count), **(
            {"hydra.output_dir": context.output_dir} if context.output_dir else {})}
    checkpoints = None
    with tracked_run(experiment_id, name, start_tags, parent_run_id=context.parent_run_id,
                     system_metrics=context.parent_run_id is None if system is None
                     else bool(system),
                     run_id=resumption.run_id if resumption else None) as run:
        log.info("MLflow run %s in %s%s", run.info.run_id, uri,
                 f" (resumed, {resumption.count}x)" if resumption else "")
        checkpoints = _checkpoints(context, run.info.run_id)
        if resumption is None:
            _log_inputs(cfg, context, dataset, x_pool if is_kfold else None,
                        y_pool if is_kfold else None)
        try:
            if is_kfold:
                metrics = _kfold(cfg, dataset, x_pool, y_pool, experiment_id, tags, checkpoints,
                                 context)
            else:
                metrics = _holdout(cfg, dataset, checkpoints, context)
        finally:
            if checkpoints is not None:
                checkpoints.close()
        if checkpoints is not None:
            mlflow.log_metric("checkpoint_bytes", checkpoints.total_bytes())
        mlflow.log_metric("total_seconds", time.perf_counter() - started)
        note = run_note(cfg, dataset, metrics, context.overrides, tags["config_id"])
        given = context.tags.get(NOTE_TAG)  # a caller's description (a reproduction's) first
        mlflow.set_tag(NOTE_TAG, f"{given}\n\n{note}" if given else note)
        run_id = run.info.run_id
    if checkpoints is not None:  # FINISHED: the states are no longer needed
        checkpoints.remove_all()
        log.info("resume checkpoints: %s (the last state of each fit), removed now that "
                 "the run FINISHED",
                 _size(checkpoints.total_bytes()))
    register_as = cfg.mlflow.get("register_as")
    if register_as and context.parent_run_id is None and cfg.mlflow.log_model:
        # a sweep registers its best job's model instead (see workflows/sweep.py)
        version = register(run_id, register_as, cfg.mlflow.get("register_alias"),
                           tracking_uri=uri)
        log.info("registered as models:/%s/%s", version.name, version.version)
    objective = metrics["objective"]
    log.info("objective (%s) = %.4f",
             "cv_val_accuracy_mean" if is_kfold else "final val_accuracy", objective)
    return Outcome(run_id=run_id, objective=float(objective), metrics=metrics)


def _checkpoints(context: JobContext, run_id: str) -> Optional[RunCheckpoints]:
    """Where the run saves its state each epoch: its Hydra dir (none without one)."""
    if not context.output_dir:
        return None
    runs.resumable.add(run_id)
    previous = context.resume.previous_dir if context.resume is not None else None
    return RunCheckpoints(Path(context.output_dir), run_id,
                          resuming=context.resume is not None, previous_dir=previous)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def _log_inputs(cfg: DictConfig, context: JobContext, dataset: Any, x_pool, y_pool) -> None:
    """A new run's params, config, overrides and datasets (a resumed run has them)."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    log_params_flat(flatten(container))
    mlflow.log_dict(container, "config.yaml")
    mlflow.log_dict({"overrides": context.overrides}, "overrides.yaml")
    mlflow.log_dict({"source": dataset.source, "fingerprint": dataset.fingerprint,
                     "shapes": dataset.shapes()}, "data.json")
    test = (dataset.x_test, dataset.y_test)
    log_datasets(str(cfg.data.name), dataset.fingerprint, dataset.source,
                 {"training": (x_pool, y_pool), "test": test} if x_pool is not None else
                 {"training": (dataset.x_train, dataset.y_train),
                  "validation": (dataset.x_val, dataset.y_val), "test": test})


def _run_tags(cfg: DictConfig, context: JobContext, dataset: Any) -> Dict[str, str]:
    tags = provenance.provenance_tags(context.launch_dir)
    tags.update({
        "data.fingerprint": dataset.fingerprint,
        "data.source": dataset.source,
        "model.name": str(cfg.model.name),
        "overrides": " ".join(context.overrides)[:5000],
        "config_id": config_id(cfg),  # the same for runs that differ only in their seed
    })
    if context.output_dir:
        tags["hydra.output_dir"] = context.output_dir
    tags.update(context.tags)
    return tags


def _open_store(uri: str, cfg: DictConfig, context: JobContext) -> str:
    """The experiment id (the experiment created once if needed)."""
    if context.experiment_id is not None:
        mlflow.set_tracking_uri(uri)
        return context.experiment_id
    return ensure_experiment(uri, cfg.mlflow.experiment_name)


def _fit_and_test(cfg: DictConfig, dataset: Any, x_train, y_train, x_val, y_val,
                  context: JobContext, prefix: str = "",
                  checkpoints: Optional[RunCheckpoints] = None, name: str = "",
                  objective: Optional[float] = None):
    """Fit, evaluate on the test set, then record: metrics and every run artifact.

    With ``checkpoints``, the fit saves its state each epoch (as ``name``), and a
    resumed run's fit goes on from it, logging only the epochs not logged before.
    The figures are drawn unless this is a sweep job that is not the sweep's best so
    far (:meth:`JobContext.draws_figures`), judged by ``objective`` (by default the
    fit's validation accuracy). Returns the test metrics and the fit's result.
    """
    names = list(dataset.class_names)
    viz = cfg.viz
    index = sample_index(viz, int(cfg.seed), len(dataset.y_test))
    callbacks = []
    every = int(viz.activations_every_n_epochs)
    if every > 0 and artifacts.wanted(viz, "activations"):
        image, channels = dataset.x_test[index], int(viz.max_channels)
        callbacks.append(EveryNEpochs(every, lambda model, epoch: artifacts.log_activation_images(
            activation_maps(model, image), epoch, channels)))
    trial = job_trial() if x_val is not None and not prefix else None
    if trial is not None:  # a job of an Optuna search (holdout only): report, maybe prune
        callbacks.append(OptunaPruning(trial))
    run_id = mlflow.active_run().info.run_id
    logged = metric_steps(MlflowClient(), run_id) if checkpoints and checkpoints.resuming else 0
    with BackgroundMetrics(run_id, skip_through=logged) as writer:
        result = fit(cfg, x_train, y_train, x_val, y_val, on_metrics=writer.log,
                     callbacks=callbacks, prefix=prefix, checkpoints=checkpoints, name=name)
    fit_metrics = {"fit_seconds": result.fit_seconds,
                   "first_epoch_seconds": result.epoch_seconds[0],
                   "seconds_per_epoch": sum(result.epoch_seconds) / len(result.epoch_seconds)}
    if trial is not None and trial.pruned_at is not None:
        return _record_pruned(trial, result, fit_metrics, viz), result
    if objective is None and x_val is not None:
        objective = result.at_kept_epoch("val_accuracy")
    draw, why_not = context.draws_figures(viz, objective)
    if not draw and viz.enabled:
        log.info("%sfigures not drawn: %s", prefix, why_not)
        mlflow.set_tag("figures", f"not drawn: {why_not}")
    evaluation = evaluate(result.model, dataset.x_test, dataset.y_test, names,
                          activation_index=index if draw and artifacts.wanted(viz, "activations")
                          else None)
    mlflow.log_metrics({**evaluation.metrics, **fit_metrics})
    log.info("%stest %s", prefix, " ".join(f"{k}={v:.4f}" for k, v in evaluation.metrics.items()))
    artifacts.log_fit_outcome(result)
    augmented = None
    if draw and artifacts.wanted(viz, "samples"):
        shown = slice(0, min(AUGMENT_SAMPLES, len(y_train)))
        versions = augmented_samples(cfg, x_train[shown])
        if versions is not None:
            augmented = (x_train[shown], y_train[shown], versions)
    # cores free for drawing: those not given to the sweep's other jobs running now
    workers = numerics.available_cores() // max(1, context.parallel_jobs)
    artifacts.log_run_artifacts(cfg, dataset, result.history, evaluation, augmented,
                                draw=draw, workers=workers)
    return evaluation.metrics, result


def _record_pruned(trial: Any, result: Any, fit_metrics: Dict[str, float],
                   viz: Any) -> Dict[str, float]:
    """A trial its pruner stopped: the run keeps the epochs it ran and their metrics, and
    is neither tested nor given figures or a model (as Optuna abandons a pruned trial:
    testing a half-trained model would cost the time pruning saves, ~2 s per trial on
    6,000 Fashion test images, and put a meaningless test accuracy beside the others)."""
    mlflow.set_tags({"pruned": "true", "pruned_at_epoch": str(trial.pruned_at),
                     "test": "not evaluated: the trial was pruned"})
    if viz.enabled:
        mlflow.set_tag("figures", "not drawn: the trial was pruned")
    mlflow.log_metrics(fit_metrics)
    artifacts.log_fit_outcome(result)
    log.info("not tested, no figures or model: the trial was pruned")
    return {}


def _holdout(cfg: DictConfig, dataset: Any, checkpoints: Optional[RunCheckpoints],
             context: JobContext) -> Dict[str, float]:
    metrics, result = _fit_and_test(cfg, dataset, dataset.x_train, dataset.y_train,
                                    dataset.x_val, dataset.y_val, context,
                                    checkpoints=checkpoints)
    # the validation accuracy of the weights kept (early stopping may restore the best)
    metrics["objective"] = result.at_kept_epoch("val_accuracy")
    mlflow.log_metric("objective", metrics["objective"])
    return metrics


def _kfold(cfg: DictConfig, dataset: Any, x_pool, y_pool, experiment_id: str,
           tags: Dict[str, str], checkpoints: Optional[RunCheckpoints],
           context: JobContext) -> Dict[str, float]:
    """Folds as child runs; their summary, plots and (with refit) the final model here."""
    names = list(dataset.class_names)
    child_tags = {k: v for k, v in tags.items() if k != "hydra.output_dir"}
    folds = kfold.run_folds(cfg, x_pool, y_pool, names, experiment_id, child_tags,
                            checkpoints)
    metrics = kfold.log_summary(cfg, folds)
    if cfg.cv.refit:
        keras.backend.clear_session()
        seed_everything(int(cfg.seed), bool(cfg.train.deterministic))
        log.info("refit on all %d training images", len(y_pool))
        test_metrics, _ = _fit_and_test(cfg, dataset, x_pool, y_pool, None, None, context,
                                        prefix="refit ", checkpoints=checkpoints, name="refit",
                                        objective=metrics["objective"])
        metrics.update(test_metrics)
    elif artifacts.wanted(cfg.viz, "activations"):
        kfold.log_last_fold_activations(cfg, folds, x_pool, y_pool, names)
    return metrics
