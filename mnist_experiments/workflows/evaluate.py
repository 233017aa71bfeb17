"""Evaluating a logged model on a test set, as a new MLflow run (``mnist-exp-evaluate``).

Which data (the model run's own, the same with some keys changed, or a data group from
scratch) is decided by :func:`eval_overrides`; :func:`evaluate` loads it, predicts,
and logs the test metrics, the confusion matrix, the classification report, the data
fingerprint and the tags that link the evaluation and the model's run both ways. The
command line and the full description live in :mod:`mnist_experiments.commands.evaluate`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import fields
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence, Tuple

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from mnist_experiments import figures
from mnist_experiments.config.compose import hydra_value
from mnist_experiments.config.schema import DataConfig
from mnist_experiments.data import load_dataset
from mnist_experiments.errors import UserError
from mnist_experiments.tracking import artifacts, provenance
from mnist_experiments.tracking import runs as tracking
from mnist_experiments.tracking.datasets import log_datasets
from mnist_experiments.tracking.store import resolve_tracking_uri
from mnist_experiments.training.evaluation import evaluate as evaluate_model

logger = logging.getLogger(__name__)

def data_groups() -> List[str]:
    """The options of the packaged ``data`` config group (``mnist``, ``digits``, ...)."""
    folder = resources.files("mnist_experiments.conf").joinpath("data")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))

def run_data_overrides(run_config: Optional[Dict[str, Any]]) -> Tuple[List[str], List[str]]:
    """Overrides that recompose a run's data config and seed; and the keys skipped."""
    if not run_config or not isinstance(run_config.get("data"), dict):
        return [], []
    data = run_config["data"]
    known = [f.name for f in fields(DataConfig)]
    overrides = []
    if data.get("name") in data_groups():
        overrides.append(f"data={data['name']}")
    overrides += [f"data.{key}={hydra_value(data[key])}" for key in known if key in data]
    if run_config.get("seed") is not None:
        overrides.append(f"seed={hydra_value(run_config['seed'])}")
    skipped = [key for key in data if key not in known]
    return overrides, skipped

def eval_overrides(run_config: Optional[Dict[str, Any]],
                   user: Sequence[str]) -> Tuple[List[str], str, List[str]]:
    """The overrides to compose, where the data config comes from, and warnings."""
    warnings: List[str] = []
    if any(o.split("=", 1)[0] == "data" for o in user):
        return list(user), "your overrides (data=GROUP: as mnist-exp composes them)", warnings
    base, skipped = run_data_overrides(run_config)
    if skipped:
        warnings.append(f"the model run's data config has key(s) {', '.join(skipped)} that "
                        "this version does not know; they are ignored.")
    if not base:
        warnings.append("the model's run has no config.yaml to take the data from: "
                        "evaluating on the default data (data=mnist) plus your overrides. "
                        "Give data=GROUP to choose.")
        return list(user), "the default config" + (" with your overrides" if user else ""), warnings
    origin = "the model run's data config" + (" with your overrides" if user else "")
    return base + list(user), origin, warnings

# ------------------------------------------------------------------- evaluation
def class_names_mismatch(run_config: Optional[Dict[str, Any]], data_cfg: Any) -> str:
    """One line if the model's run recorded class names other than ``data_cfg``'s, else ""
    (a digits model evaluated on Fashion-MNIST: its label 3 means "3", the data's "Dress")."""
    data = (run_config or {}).get("data")
    trained = data.get("class_names") if isinstance(data, dict) else None
    if not isinstance(trained, list):
        return ""  # the run recorded none: nothing to compare
    trained = [str(n) for n in trained]
    evaluated = [str(n) for n in data_cfg.class_names]
    if trained == evaluated:
        return ""
    return (f"Class names differ: the model was trained on classes {_names(trained)} (data "
            f"{data.get('name', '?')}) but the evaluation data {data_cfg.name} names its "
            f"classes {_names(evaluated)}: the metrics compare labels by number only.")


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:10])
    return f"[{shown}{', ...' if len(names) > 10 else ''}]"


def _short(loaded: Any) -> str:
    uri = loaded.uri
    if uri.startswith("runs:/"):
        return uri[len("runs:/"):].split("/", 1)[0][:8]
    if uri.startswith("models:/"):
        return uri[len("models:/"):]
    return os.path.basename(uri.rstrip("/")) or uri

def evaluate(loaded: Any, cfg: Any, overrides: Sequence[str], origin: str,
             experiment_name: str, run_name: Optional[str] = None,
             launch_dir: Optional[str] = None) -> Dict[str, Any]:
    """Evaluate ``loaded`` on the test set of ``cfg.data`` and log a new run.

    Returns a dict with ``run_id``, ``experiment_id``, ``metrics``, ``dataset`` and
    ``source_run`` (the model's run, or None) and ``same_data`` (bool or None).
    """
    launch_dir = launch_dir or os.getcwd()
    mismatch = class_names_mismatch(loaded.run_config, cfg.data)
    if mismatch:
        logger.warning(mismatch)
    dataset = load_dataset(cfg.data, int(cfg.seed))  # DataError before any run exists
    n_out = int(loaded.model.outputs[0].shape[-1])
    if n_out != len(dataset.class_names):
        raise UserError(
            f"The model {loaded.spec!r} has {n_out} outputs but the data {cfg.data.name} "
            f"has {len(dataset.class_names)} classes; evaluate it on data with as many "
            "classes as it was trained for."
        )
    names = list(dataset.class_names)
    evaluation = evaluate_model(loaded.model, dataset.x_test, dataset.y_test, names)
    metrics = evaluation.metrics

    store = loaded.tracking_uri or resolve_tracking_uri(None, launch_dir)
    client = MlflowClient(store)
    source_run = None
    if loaded.run_id:
        try:
            source_run = client.get_run(loaded.run_id)
        except MlflowException:
            source_run = None
    source_fp = source_run.data.tags.get("data.fingerprint") if source_run else None
    same_data = None if source_fp is None else (source_fp == dataset.fingerprint)

    experiment_id = tracking.ensure_experiment(store, experiment_name)
    data_container = OmegaConf.to_container(cfg.data, resolve=True, enum_to_str=True)
    eval_config = {"data": data_container, "seed": int(cfg.seed)}
    run_label = source_run.info.run_name if source_run else None
    run_name = run_name or f"eval {_short(loaded)} on {cfg.data.name}"

    tags = provenance.provenance_tags(launch_dir)
    tags.update({
        "run_kind": "evaluation",
        "evaluated_model_uri": loaded.uri,
        "data.fingerprint": dataset.fingerprint,
        "data.source": dataset.source,
        "data.name": str(cfg.data.name),
        "data.same_as_model_run": {True: "true", False: "false", None: "unknown"}[same_data],
        "overrides": " ".join(overrides)[:5000],
        "mlflow.note.content": _note(loaded, source_run, cfg, dataset, same_data, origin),
    })
    if loaded.model_id:
        tags["evaluated_model_id"] = loaded.model_id
    if loaded.run_id:
        tags["evaluated_run_id"] = loaded.run_id
    if run_label:
        tags["evaluated_run_name"] = run_label[:5000]
    if source_run:
        tags["evaluated_experiment_id"] = source_run.info.experiment_id

    with tracking.tracked_run(experiment_id, run_name, tags) as run:
        params = tracking.flatten(eval_config)
        params["model_uri"] = loaded.uri
        tracking.log_params_flat(params)
        mlflow.log_dict(eval_config, "config.yaml")
        mlflow.log_dict({"source": dataset.source, "fingerprint": dataset.fingerprint,
                         "shapes": dataset.shapes()}, "data.json")
        test_set = log_datasets(str(cfg.data.name), dataset.fingerprint, dataset.source,
                                {"test": (dataset.x_test, dataset.y_test)})["test"]
        mlflow.log_metrics(metrics, model_id=loaded.model_id, dataset=test_set)
        artifacts.log_reports(evaluation, names)
        fig = figures.confusion_matrix_figure(
            evaluation.confusion, names, title=f"Confusion matrix ({cfg.data.name} test set)")
        artifacts.log_figure(fig, "plots/confusion_matrix.png", dpi=int(cfg.viz.dpi))
        run_id = run.info.run_id
    return {"run_id": run_id, "experiment_id": experiment_id, "metrics": metrics,
            "dataset": dataset, "source_run": source_run, "same_data": same_data,
            "tracking_uri": store}

def _note(loaded: Any, source_run: Any, cfg: Any, dataset: Any, same_data: Optional[bool],
          origin: str) -> str:
    """The run description (``mlflow.note.content``, Markdown)."""
    run = (f"run `{loaded.run_id}`" + (f" ({source_run.info.run_name})" if source_run else "")
           if loaded.run_id else "an unknown run")
    same = {True: "the same data (same fingerprint) as the model's run: the metrics "
                  "should equal its `test_*` metrics.",
            False: "different data from the model's run (the fingerprints differ).",
            None: "data whose relation to the model's training data is unknown."}[same_data]
    limit = cfg.data.limit if cfg.data.limit is not None else "all"
    return (
        f"Evaluation of `{loaded.uri}`, logged by {run}, on {len(dataset.y_test)} test "
        f"images of `{cfg.data.name}` (source `{dataset.source}`, limit {limit}, seed "
        f"{int(cfg.seed)}; data config from {origin}). This is {same} Data fingerprint "
        f"`{dataset.fingerprint}`."
    )

