"""The task function: a composed config in, a tracked and evaluated model out.

``train(cfg)`` is what ``mnist-exp`` runs for every job (and what tests call with a
config composed by Hydra's Compose API). It returns the objective that sweepers
maximise: the final validation accuracy.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf

from mnist_experiments.schema import validate

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    """Where a job was launched from and how (filled from Hydra when it runs the job)."""

    launch_dir: str
    output_dir: Optional[str]
    overrides: List[str]

    @classmethod
    def from_hydra(cls) -> "JobContext":
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return cls(launch_dir=os.getcwd(), output_dir=None, overrides=[])
        hc = HydraConfig.get()
        return cls(
            launch_dir=hc.runtime.cwd,
            output_dir=hc.runtime.output_dir,
            overrides=list(hc.overrides.task),
        )


def run_name_for(cfg: DictConfig, overrides: List[str]) -> str:
    """``mlflow.run_name``, else the overrides that shape the result, else the defaults."""
    if cfg.mlflow.run_name:
        return str(cfg.mlflow.run_name)
    shown = [o for o in overrides if not o.lstrip("+~").startswith(("mlflow.", "hydra.", "hydra/"))]
    if shown:
        return ",".join(shown)[:250]
    return f"{cfg.model.name}-{cfg.data.name}"


def train(cfg: DictConfig, context: Optional[JobContext] = None) -> float:
    """Train, evaluate and track one experiment described by ``cfg``.

    Parameters
    ----------
    cfg : DictConfig
        A config composed from ``conf/`` (``mnist-exp`` or Hydra's Compose API).
    context : JobContext, optional
        Launch directory, output directory and overrides; read from Hydra if omitted.

    Returns
    -------
    float
        The objective: the final epoch's validation accuracy.

    Raises
    ------
    ConfigError, DataError
        Before any MLflow run is created, for an invalid config or unusable data.
    """
    context = context or JobContext.from_hydra()
    validate(cfg)

    from mnist_experiments.data import load_dataset

    started = time.perf_counter()
    dataset = load_dataset(cfg.data, int(cfg.seed))
    log.info(
        "data %s: %d train, %d validation, %d test images (sha256 %s...)",
        dataset.source, len(dataset.y_train), len(dataset.y_val), len(dataset.y_test),
        dataset.fingerprint[:12],
    )

    import mlflow

    from mnist_experiments import tracking, training

    uri = tracking.resolve_tracking_uri(cfg.mlflow.tracking_uri, context.launch_dir)
    experiment_id = tracking.ensure_experiment(uri, cfg.mlflow.experiment_name)
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

    with tracking.tracked_run(experiment_id, run_name_for(cfg, context.overrides), tags) as run:
        log.info("MLflow run %s in %s", run.info.run_id, uri)
        container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        tracking.log_params_flat(tracking.flatten(container))
        mlflow.log_dict(container, "config.yaml")
        mlflow.log_dict({"overrides": context.overrides}, "overrides.yaml")
        mlflow.log_dict({"source": dataset.source, "fingerprint": dataset.fingerprint,
                         "shapes": dataset.shapes()}, "data.json")

        def log_epoch(metrics: Dict[str, float], step: int) -> None:
            mlflow.log_metrics(metrics, step=step, synchronous=False)

        from mnist_experiments import artifacts

        result = training.fit(cfg, dataset.x_train, dataset.y_train, dataset.x_val,
                              dataset.y_val, on_metrics=log_epoch,
                              callbacks=artifacts.training_callbacks(cfg, dataset))
        proba = training.predict_proba(result.model, dataset.x_test)
        test_metrics = training.classification_metrics(dataset.y_test, proba)
        objective = result.history["val_accuracy"][-1]
        mlflow.log_metrics(
            {
                **test_metrics,
                "objective": objective,
                "fit_seconds": result.fit_seconds,
                "first_epoch_seconds": result.epoch_seconds[0],
                "seconds_per_epoch": sum(result.epoch_seconds) / len(result.epoch_seconds),
            }
        )
        log.info("test %s", " ".join(f"{k}={v:.4f}" for k, v in test_metrics.items()))

        artifacts.log_run_artifacts(cfg, dataset, result, proba)
        mlflow.log_metric("total_seconds", time.perf_counter() - started)
    log.info("objective (final val_accuracy) = %.4f", objective)
    return float(objective)
