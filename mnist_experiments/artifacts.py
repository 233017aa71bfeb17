"""Run artifacts: figures, reports, activation maps and the model, logged to MLflow."""

from __future__ import annotations

import mlflow

from mnist_experiments.models import summary_text


def log_run_artifacts(cfg, dataset, result, proba) -> None:
    """Log everything a run shows in the MLflow UI besides params and metrics."""
    mlflow.log_text(summary_text(result.model), "model/summary.txt")
