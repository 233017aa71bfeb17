"""Run descriptions: the Markdown note MLflow's UI shows on a run's page (the tag
``mlflow.note.content``) and in the runs table's Description column.

A training run says what was trained, on which data, and how it scored; a sweep's
parent run says how many jobs ran, which was best (with a link to its run) and holds
the leaderboard table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

NOTE_TAG = "mlflow.note.content"
MAX_TABLE_ROWS = 50

# MLflow 3's UI opens an experiment in its "GenAI" view (traces, token usage) unless the
# user once chose "Model training" in the switch at the top left; the experiment tag
# ``mlflow.experimentKind`` does not change that (3.17 takes the kind from the switch).
# The URL parameter ``workflowType`` selects the view for that visit, so every link this
# framework prints opens on the training runs.
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # what MLflow records for model training


def ui_page(experiment_id: str, run_id: Optional[str] = None) -> str:
    """The MLflow UI's address (the part after the server) of an experiment or a run,
    in the "Model training" view."""
    page = f"#/experiments/{experiment_id}"
    page += f"/runs/{run_id}" if run_id else "/runs"
    return page + MODEL_TRAINING_VIEW


def _number(value: Any) -> str:
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return "n/a"


def run_note(cfg: Any, dataset: Any, metrics: Mapping[str, float], overrides: List[str],
             config_id: str) -> str:
    """The description of a training run."""
    optimizer = str(cfg.optimizer["_target_"]).rsplit(".", 1)[-1]
    schedule = cfg.get("schedule", {}).get("name", "constant")
    kfold = cfg.cv.name == "kfold"
    lines = [
        f"**{cfg.model.name}** trained on **{cfg.data.name}** ({dataset.source}: "
        f"{len(dataset.y_train)} training, {len(dataset.y_val)} validation, "
        f"{len(dataset.y_test)} test images) with {optimizer} (learning rate "
        f"{cfg.optimizer.learning_rate}, {schedule} schedule), {cfg.train.epochs} epochs, "
        f"batch size {cfg.train.batch_size}, seed {cfg.seed}"
        + (f", {cfg.cv.folds}-fold cross-validation." if kfold else "."),
        "",
        f"- objective ({'cv_val_accuracy_mean' if kfold else 'val_accuracy'}): "
        f"{_number(metrics.get('objective'))}",
    ]
    if "test_accuracy" in metrics:
        lines.append(f"- test accuracy {_number(metrics['test_accuracy'])}, "
                     f"test loss {_number(metrics.get('test_loss'))}")
    lines.append(f"- overrides: `{' '.join(overrides) or 'none'}`")
    lines.append(f"- config_id: `{config_id}` (the same for runs that differ only in seed)")
    return "\n".join(lines)


def sweep_note(rows: List[Dict[str, Any]], experiment_id: str, title: str,
               table: str, grouped_sentence: Optional[str] = None) -> str:
    """The description of a sweep's parent run."""
    finished = [r for r in rows if r["status"] == "FINISHED"]
    best = next((r for r in rows if r.get("best")), None)
    lines = [f"**{title}**: {len(rows)} jobs, {len(finished)} finished, "
             f"{len(rows) - len(finished)} failed or killed.", ""]
    if best is not None:
        link = ui_page(experiment_id, best["run_id"])
        lines.append(f"Best: job {best['job']} (`{best['overrides'] or 'defaults'}`), "
                     f"objective {_number(best['objective'])}, test accuracy "
                     f"{_number(best.get('test_accuracy'))}: [its run]({link}).")
    if grouped_sentence:
        lines += ["", grouped_sentence]
    table_lines = table.strip().splitlines()
    if len(table_lines) > MAX_TABLE_ROWS + 2:
        table_lines = table_lines[:MAX_TABLE_ROWS + 2] + [
            f"\n({len(rows) - MAX_TABLE_ROWS} more jobs in summary.md)"]
    lines += ["", *table_lines]
    return "\n".join(lines)
