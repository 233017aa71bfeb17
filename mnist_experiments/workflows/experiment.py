"""The task function: a composed config in, a tracked and evaluated model out.

``train(cfg)`` is what ``mnist-exp`` runs for every job (and what tests call with a
config composed by Hydra's Compose API). It returns the objective that sweepers
maximise: the final validation accuracy.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from mnist_experiments.config.validation import validate
from mnist_experiments.tracking.store import StoreCreation, resolve_tracking_uri

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Where a job was launched from and how (filled from Hydra when it runs the job)."""

    launch_dir: str
    output_dir: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    tags: Dict[str, str] = field(default_factory=dict)  # extra run tags (e.g. reproduces)
    parent_run_id: Optional[str] = None  # e.g. the sweep's parent run
    tracking_uri: Optional[str] = None  # set for sweep jobs: the sweep's store ...
    experiment_id: Optional[str] = None  # ... and experiment (created once, before the jobs)

    @classmethod
    def from_hydra(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return cls(launch_dir=os.getcwd(), output_dir=None, overrides=[])
        from mnist_experiments.sweeps.callback import job_sweep_info

        hc = HydraConfig.get()
        context = cls(
            launch_dir=hc.runtime.cwd,
            output_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
        )
        sweep = job_sweep_info()
        if sweep is not None:
            context.parent_run_id = sweep["parent_run_id"]
            context.tracking_uri = sweep["tracking_uri"]
            context.experiment_id = sweep["experiment_id"]
            context.tags.update({"sweep.job_num": sweep["job_num"],
                                 "sweep.dir": sweep["sweep_dir"]})
        return context


def run_name_for(cfg: DictConfig, overrides: List[str]) -> str:
    """``mlflow.run_name``, else the overrides that shape the result, else the defaults."""
    if cfg.mlflow.run_name:
        return str(cfg.mlflow.run_name)
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("mlflow.", "hydra.", "hydra/"))]
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


def run_experiment(cfg: DictConfig, context: Optional[JobContext] = None) -> Outcome:
    """Train, evaluate and track one experiment described by ``cfg``.

    Parameters
    ----------
    cfg : DictConfig
        A config composed from ``conf/`` (``mnist-exp`` or Hydra's Compose API).
    context : JobContext, optional
        Launch directory, output directory and overrides; read from Hydra if omitted.

    Returns
    -------
    Outcome
        The MLflow run id, the objective (the final epoch's validation accuracy) and
        the run's final metrics.

    Raises
    ------
    ConfigError, DataError
        Before any MLflow run is created, for an invalid config or unusable data.
    """
    context = context or JobContext.from_hydra()
    validate(cfg)

    uri = context.tracking_uri or resolve_tracking_uri(cfg.mlflow.tracking_uri,
                                                       context.launch_dir)
    # a brand-new SQLite store is built by a helper process while TensorFlow imports
    with _store_creation(uri, cfg, context) as creation:
        from mnist_experiments.data import load_dataset

        started = time.perf_counter()
        dataset = load_dataset(cfg.data, int(cfg.seed))
        log.info(
            "data %s: %d train, %d validation, %d test images (sha256 %s...)",
            dataset.source, len(dataset.y_train), len(dataset.y_val), len(dataset.y_test),
            dataset.fingerprint[:12],
        )

        kfold = cfg.cv.name == "kfold"
        if kfold:
            from mnist_experiments.workflows import kfold as cv

            x_pool, y_pool = cv.training_pool(dataset, cfg.data.validation)
            cv.check_folds(y_pool, cfg.cv)  # before any run exists

        import mlflow

        from mnist_experiments.tracking import runs as tracking
        from mnist_experiments.training import fit as training

        creation.install()
        experiment_id = _open_store(uri, cfg, context)
    training.seed_everything(int(cfg.seed), bool(cfg.train.deterministic))

    tags = tracking.provenance_tags(context.launch_dir)
    tags.update(
        {
            "data.fingerprint": dataset.fingerprint,
            "data.source": dataset.source,
            "model.name": str(cfg.model.name),
            "overrides": " ".join(context.overrides)[:5000],
        }
    )
    if context.output_dir:
        tags["hydra.output_dir"] = context.output_dir
    tags.update(context.tags)

    with tracking.tracked_run(experiment_id, run_name_for(cfg, context.overrides), tags,
                              parent_run_id=context.parent_run_id) as run:
        log.info("MLflow run %s in %s", run.info.run_id, uri)
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        tracking.log_params_flat(tracking.flatten(container))
        mlflow.log_dict(container, "config.yaml")
        mlflow.log_dict({"overrides": context.overrides}, "overrides.yaml")
        mlflow.log_dict({"source": dataset.source, "fingerprint": dataset.fingerprint,
                         "shapes": dataset.shapes()}, "data.json")
        if kfold:
            metrics = _kfold(cfg, dataset, x_pool, y_pool, experiment_id, tags)
        else:
            metrics = _holdout(cfg, dataset)
        mlflow.log_metric("total_seconds", time.perf_counter() - started)
        run_id = run.info.run_id
    register_as = cfg.mlflow.get("register_as")
    if register_as and context.parent_run_id is None and cfg.mlflow.log_model:
        # a sweep registers its best job's model instead (see sweep.py)
        from mnist_experiments.tracking.models import register

        version = register(run_id, register_as, cfg.mlflow.get("register_alias"), tracking_uri=uri)
        log.info("registered as models:/%s/%s", version.name, version.version)
    objective = metrics["objective"]
    log.info("objective (%s) = %.4f", "cv_val_accuracy_mean" if kfold else "final val_accuracy",
             objective)
    return Outcome(run_id=run_id, objective=float(objective), metrics=metrics)


def _store_creation(uri: str, cfg: DictConfig, context: JobContext) -> StoreCreation:
    """See :class:`mnist_experiments.tracking.store.StoreCreation` (nothing to do for sweep jobs)."""
    if context.experiment_id is not None:  # a sweep job: the sweep made the store
        return StoreCreation()
    return StoreCreation.start(uri, str(cfg.mlflow.experiment_name))


def _open_store(uri: str, cfg: DictConfig, context: JobContext) -> str:
    """The experiment id (the experiment created once if needed)."""
    import mlflow

    from mnist_experiments.tracking import runs as tracking

    if context.experiment_id is not None:
        mlflow.set_tracking_uri(uri)
        return context.experiment_id
    return tracking.ensure_experiment(uri, cfg.mlflow.experiment_name)


def _fit_and_test(cfg: DictConfig, dataset: Any, x_train, y_train, x_val, y_val,
                  prefix: str = ""):
    """Fit, evaluate on the test set, log metrics and every run artifact.

    Returns the test metrics and the training history.
    """
    import mlflow

    from mnist_experiments.tracking import artifacts
    from mnist_experiments.tracking import runs as tracking
    from mnist_experiments.training import fit as training

    with tracking.BackgroundMetrics(mlflow.active_run().info.run_id) as writer:
        result = training.fit(cfg, x_train, y_train, x_val, y_val, on_metrics=writer.log,
                              callbacks=artifacts.training_callbacks(cfg, dataset),
                              prefix=prefix)
    proba = training.predict_proba(result.model, dataset.x_test)
    test_metrics = training.classification_metrics(dataset.y_test, proba)
    mlflow.log_metrics(
        {
            **test_metrics,
            "fit_seconds": result.fit_seconds,
            "first_epoch_seconds": result.epoch_seconds[0],
            "seconds_per_epoch": sum(result.epoch_seconds) / len(result.epoch_seconds),
        }
    )
    log.info("%stest %s", prefix, " ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))
    artifacts.log_run_artifacts(cfg, dataset, result, proba)
    return test_metrics, result.history


def _holdout(cfg: DictConfig, dataset: Any) -> Dict[str, float]:
    import mlflow

    metrics, history = _fit_and_test(cfg, dataset, dataset.x_train, dataset.y_train,
                                     dataset.x_val, dataset.y_val)
    metrics["objective"] = history["val_accuracy"][-1]
    mlflow.log_metric("objective", metrics["objective"])
    return metrics


def _kfold(cfg: DictConfig, dataset: Any, x_pool, y_pool, experiment_id: str,
           tags: Dict[str, str]) -> Dict[str, float]:
    """Folds as child runs; their summary, plots and (with refit) the final model here."""
    import keras
    import mlflow

    from mnist_experiments.tracking import artifacts
    from mnist_experiments.workflows import kfold as cv
    from mnist_experiments.figures import plots
    from mnist_experiments.training import fit as training

    names = list(dataset.class_names)
    child_tags = {k: v for k, v in tags.items() if k != "hydra.output_dir"}
    folds = cv.run_folds(cfg, x_pool, y_pool, names, experiment_id, child_tags)
    summary = cv.summarize(folds.results)
    mlflow.log_metrics({**summary, "objective": summary["cv_val_accuracy_mean"]})
    for r in folds.results:
        mlflow.log_metric("fold_val_accuracy", r.history["val_accuracy"][-1], step=r.fold)
        mlflow.log_metric("fold_val_loss", r.history["val_loss"][-1], step=r.fold)
    mlflow.log_dict({f"fold-{r.fold}": r.run_id for r in folds.results}, "cv/fold_runs.json")
    log.info("cross-validation: val_accuracy %.4f ± %.4f over %d folds",
             summary["cv_val_accuracy_mean"], summary["cv_val_accuracy_std"], len(folds.results))
    if cfg.viz.enabled:
        histories = [r.history for r in folds.results]
        artifacts.log_figure(plots.fold_curves(histories, metric="val_accuracy"),
                          "plots/cv_val_accuracy_per_epoch.png")
        artifacts.log_figure(plots.fold_curves(histories, metric="val_loss"),
                          "plots/cv_val_loss_per_epoch.png")
        artifacts.log_figure(
            plots.fold_summary([r.history["val_accuracy"][-1] for r in folds.results]),
            "plots/cv_fold_accuracy.png")

    metrics = {**summary, "objective": summary["cv_val_accuracy_mean"]}
    if cfg.cv.refit:
        keras.backend.clear_session()
        training.seed_everything(int(cfg.seed), bool(cfg.train.deterministic))
        log.info("refit on all %d training images", len(y_pool))
        test_metrics, _ = _fit_and_test(cfg, dataset, x_pool, y_pool, None, None, prefix="refit ")
        metrics.update(test_metrics)
    elif cfg.viz.enabled and cfg.viz.activations:
        # the notebook: activation maps of the last fold's model, for one of its validation images
        index = int(folds.last_val_idx[artifacts.sample_index(cfg.viz, int(cfg.seed),
                                                              len(folds.last_val_idx))])
        figures = artifacts.activation_artifacts(
            folds.last_model, x_pool[index], names[int(y_pool[index])], index,
            int(cfg.viz.max_channels))
        for path, fig in figures.items():
            artifacts.log_figure(fig, path)
    return metrics
