"""The leaderboard of a sweep: ``summary.csv``, ``summary.md`` and objective plots.

Built at the end of every sweep by :class:`mnist_experiments.launch.callback.MlflowSweepCallback`,
and rebuilt at any time with::
    mnist-exp-report outputs/multirun/2026-11-24_10-00-00-123456   # a sweep dir
    mnist-exp-report 3f2a...c9                                     # a parent run id

One row per job (overrides, objective, test metrics, status, run id, duration), sorted
by the objective, the best marked; failed jobs are listed with their error.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mlflow.entities import Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.errors import UserError
from mnist_experiments import figures
from mnist_experiments.launch.files import job_records, read_sweep_file
from mnist_experiments.workflows import grouped
from mnist_experiments.tracking import liveness
from mnist_experiments.tracking.notes import NOTE_TAG, sweep_note
from mnist_experiments.tracking.search import search_all_runs
from mnist_experiments.tracking.store import existing_store_uri

COLUMNS = ["rank", "best", "job", "overrides", "objective", "test_accuracy", "test_loss",
           "test_f1_macro", "status", "run_id", "duration_s", "error"]


@dataclass
class Report:
    rows: List[Dict[str, Any]]
    markdown: str
    files: List[Path] = field(default_factory=list)
    registered: Optional[str] = None  # models:/<name>/<version> of the registered best model
    # an Optuna search that reached its n_trials: the trials that failed were replaced
    retried: bool = False

    @property
    def failed(self) -> List[Dict[str, Any]]:
        if self.retried:
            return []
        return [r for r in self.rows if r["status"] not in ("FINISHED", "PRUNED")]

    @property
    def best(self) -> Optional[Dict[str, Any]]:
        return next((r for r in self.rows if r["best"]), None)


# bars in a figure: a sweep of thousands of jobs draws its best ones (its table has all)
MAX_BARS = 40


def _number(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _of_this_sweep(record: Dict[str, Any], parent_run_id: str, started_ms: int) -> bool:
    """Whether a job record belongs to the sweep of ``parent_run_id``.

    Hydra reuses a sweep dir silently, so it may hold the jobs of older sweeps. Records
    name their sweep's parent run; older records without that are kept only when they
    were written after this sweep started.
    """
    owner = record.get("parent_run_id")
    if owner:
        return owner == parent_run_id
    written = record.get("_mtime")
    return written is None or written * 1000 >= started_ms


def collect_rows(sweep_dir: Optional[Path], uri: str, parent_run_id: str) -> List[Dict[str, Any]]:
    """Join the jobs' ``job.json`` records with their MLflow child runs."""
    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    children = search_all_runs(client, [parent.info.experiment_id],
                               f"tags.mlflow.parentRunId = '{parent_run_id}'")
    by_job: Dict[str, Dict[str, Any]] = {}
    # a resumed sweep has a job's killed run and its re-run: the finished one, else the last
    for run in sorted(children, key=lambda r: r.info.start_time or 0):
        job = run.data.tags.get("sweep.job_num")
        if job is None:
            continue
        if by_job.get(job, {}).get("status") == "FINISHED" and run.info.status != "FINISHED":
            continue
        m = run.data.metrics
        duration = ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000.0
        by_job[job] = {
            "job": job,
            "overrides": run.data.tags.get("overrides", ""),
            "objective": m.get("objective"),
            "test_accuracy": m.get("test_accuracy"),
            "test_loss": m.get("test_loss"),
            "test_f1_macro": m.get("test_f1_macro"),
            # an Optuna trial its pruner stopped early: its run FINISHED the epochs it ran
            "status": ("PRUNED" if run.info.status == "FINISHED"
                       and run.data.tags.get("pruned") == "true" else run.info.status),
            "run_id": run.info.run_id,
            "duration_s": round(duration, 1),
            "error": "",
            "config_id": run.data.tags.get("config_id"),
            "seed": run.data.params.get("seed"),
        }
    if sweep_dir is not None and sweep_dir.is_dir():
        for record in job_records(sweep_dir):
            if not _of_this_sweep(record, parent_run_id, parent.info.start_time):
                continue  # a job of an older sweep that used the same sweep dir
            row = by_job.setdefault(record["job"], {
                "job": record["job"], "objective": None, "test_accuracy": None, "test_loss": None,
                "test_f1_macro": None, "run_id": "", "duration_s": None, "error": "",
            })
            row["overrides"] = " ".join(record["overrides"])
            if record.get("pruned") and record["status"] == "FINISHED":
                row["status"] = "PRUNED"
                row.setdefault("objective", record.get("objective"))
            elif record["status"] != "FINISHED":  # KILLED: stopped by a signal
                row["status"] = "KILLED" if record["status"] == "KILLED" else "FAILED"
                row["error"] = (record.get("error") or "").splitlines()[0][:300] if record.get("error") else ""
            else:
                row.setdefault("status", "FINISHED")
                if row.get("objective") is None:
                    row["objective"] = record.get("objective")
    rows = list(by_job.values())
    for row in rows:
        row.setdefault("status", "FAILED")
        if row["status"] == "FINISHED" and _number(row["objective"]) is None:
            row["status"] = "FAILED"
            row["error"] = row["error"] or "objective is NaN"
    rows.sort(key=lambda r: ({"FINISHED": 0, "PRUNED": 1}.get(r["status"], 2),
                             -(_number(r["objective"]) or -math.inf),
                             int(r["job"]) if str(r["job"]).isdigit() else 0))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["best"] = rank == 1 and row["status"] == "FINISHED"
    return rows


def _fmt(value: Any, column: str = "") -> str:
    if column == "duration_s" and isinstance(value, (int, float)):
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return ""
    if isinstance(value, bool):
        return "★" if value else ""
    return str(value).replace("|", "\\|")


def to_markdown(rows: List[Dict[str, Any]], title: str, planned: Optional[int] = None) -> str:
    lines = [f"# {title}", ""]
    best = next((r for r in rows if r["best"]), None)
    finished = sum(r["status"] == "FINISHED" for r in rows)
    killed = sum(r["status"] == "KILLED" for r in rows)
    pruned = sum(r["status"] == "PRUNED" for r in rows)
    never = (f" {planned - len(rows)} of the {planned} planned jobs never ran."
             if planned is not None and planned > len(rows) else "")
    lines.append(f"{len(rows)} jobs, {finished} finished"
                 + (f", {pruned} pruned (stopped early by the Optuna pruner)" if pruned else "")
                 + f", {len(rows) - finished - killed - pruned} failed"
                 + (f", {killed} killed (interrupted, or their process died)." if killed else ".")
                 + never
                 + (f" Best: job {best['job']} ({best['overrides'] or 'defaults'}), "
                    f"objective {best['objective']:.4f}." if best else ""))
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: List[Dict[str, Any]], columns: List[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in columns})
    return buffer.getvalue()


def _swept_values(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, List[float]]]:
    """For each override key that varies across jobs: value -> objectives."""
    per_key: Dict[str, Dict[str, List[float]]] = {}
    for row in rows:
        for item in str(row.get("overrides") or "").split():
            if "=" not in item:
                continue
            key, value = item.split("=", 1)
            per_key.setdefault(key, {}).setdefault(value, [])
            objective = _number(row.get("objective"))
            if objective is not None:
                per_key[key][value].append(objective)
    # meaningful where a value was shared by several jobs (a grid), not for a
    # continuous search where every job has its own value
    return {k: v for k, v in per_key.items()
            if len(v) > 1 and any(len(objectives) > 1 for objectives in v.values())}


def build_report(sweep_dir: Optional[Path], uri: str, parent_run_id: str,
                 log_to_parent: bool = False, out_dir: Optional[Path] = None,
                 register_as: Optional[str] = None,
                 register_alias: Optional[str] = None) -> Report:
    """Write the leaderboard files (and, optionally, log them to the parent run).

    With ``register_as``, the best job's model is registered under that name (and
    ``register_alias`` points at the new version).
    """
    # jobs (and a parent) whose processes died are ended first: the table tells the truth
    liveness.repair_sweep(MlflowClient(uri), parent_run_id)
    rows = collect_rows(sweep_dir, uri, parent_run_id)
    out_dir = Path(out_dir or sweep_dir or Path.cwd() / f"sweep-{parent_run_id}")
    out_dir.mkdir(parents=True, exist_ok=True)
    title = f"Sweep {out_dir.name}"
    planned = (read_sweep_file(sweep_dir) or {}).get("planned_jobs") if sweep_dir else None
    markdown = to_markdown(rows, title, planned)
    table = "\n".join(line for line in markdown.splitlines() if line.startswith("|"))
    files = [out_dir / "summary.md", out_dir / "summary.csv", out_dir / "objective_per_job.png"]
    files[0].write_text(markdown)
    files[1].write_text(to_csv(rows))
    best_index = next((i for i, r in enumerate(rows) if r["best"]), None)
    shown = rows[:MAX_BARS]  # ranked: the best jobs (the table has them all)
    labels = [f"#{r['job']} {r['overrides'] or 'defaults'}" for r in shown]
    values = [(_number(r["objective"]) if r["status"] == "FINISHED" else float("nan")) or float("nan")
              for r in shown]
    title = ("Sweep objective per job" if len(rows) <= MAX_BARS
             else f"Sweep objective: the best {MAX_BARS} of {len(rows)} jobs")
    figures.save_png(figures.objective_per_job(labels, values, best_index, title=title),
                     files[2])
    for key, by_value in _swept_values(rows).items():
        if len(by_value) > MAX_BARS:  # e.g. a seed per job: bars would say nothing
            continue
        names = sorted(by_value)
        means = [sum(by_value[v]) / len(by_value[v]) if by_value[v] else float("nan") for v in names]
        finite = [i for i, m in enumerate(means) if math.isfinite(m)]
        best = max(finite, key=lambda i: means[i]) if finite else None
        path = out_dir / f"objective_by_{key.replace('/', '_')}.png"
        figures.save_png(figures.objective_per_job([f"{key}={v}" for v in names], means, best,
                                               title=f"Mean objective by {key}"), path)
        files.append(path)
    seeds = grouped.varies_seed(rows)
    groups = grouped.group_rows(rows) if seeds else []
    comparison = grouped.compare_best(groups) if groups else None
    if groups:  # a seed sweep: one row per configuration, with its spread
        markdown += grouped.to_markdown(groups, comparison)
        files[0].write_text(markdown)
        files.append(out_dir / "summary_grouped.csv")
        files[-1].write_text(to_csv(groups, grouped.COLUMNS))
    report = Report(rows=rows, markdown=markdown, files=files)

    if log_to_parent:
        client = MlflowClient(uri)
        for path in files:
            client.log_artifact(parent_run_id, str(path), "summary")
        best_row = report.best
        if best_row is not None:
            metrics = {f"best_{k}": _number(best_row[k]) for k in
                       ("objective", "test_accuracy", "test_loss", "test_f1_macro")}
            for key, value in metrics.items():
                if value is not None:
                    client.log_metric(parent_run_id, key, value)
            client.set_tag(parent_run_id, "best_run_id", best_row["run_id"])
            client.set_tag(parent_run_id, "best_job", str(best_row["job"]))
            client.set_tag(parent_run_id, "best_overrides", str(best_row["overrides"])[:5000])
            _log_best_params(client, parent_run_id, best_row)
        experiment_id = client.get_run(parent_run_id).info.experiment_id
        client.set_tag(parent_run_id, NOTE_TAG, sweep_note(
            rows, experiment_id, title, table,
            comparison.sentence(groups) if comparison is not None else None))
        if groups:
            for key, value in grouped.parent_metrics(groups, comparison).items():
                client.log_metric(parent_run_id, key, value)
            client.set_tag(parent_run_id, "grouped_best_config_id", groups[0]["config_id"])
            if comparison is not None:
                client.set_tag(parent_run_id, "grouped_best_is_significant",
                               str(comparison.significant).lower())
        client.log_metric(parent_run_id, "jobs_finished", len(rows) - len(report.failed))
        client.log_metric(parent_run_id, "jobs_failed", len(report.failed))
    if register_as and report.best is not None:
        # imported here: it loads Keras and TensorFlow, which a sweep's launcher process
        # (joblib: the jobs run in workers) otherwise never needs
        from mnist_experiments.tracking.models import register

        version = register(report.best["run_id"], register_as, register_alias, tracking_uri=uri)
        report.registered = f"models:/{version.name}/{version.version}"
        if log_to_parent:
            MlflowClient(uri).set_tag(parent_run_id, "best_model_registered", report.registered)
    return report


def _log_best_params(client: MlflowClient, parent_run_id: str, row: Dict[str, Any]) -> None:
    """The best job's overrides as the parent's params ``best.<key>``. Params cannot
    change: a rebuilt report whose best job differs keeps the first ones (and says so)."""
    params = dict(item.split("=", 1) for item in str(row.get("overrides") or "").split()
                  if "=" in item)
    try:
        client.log_batch(parent_run_id, params=[
            Param(f"best.{key}"[:250], value[:6000]) for key, value in params.items()])
    except MlflowException:
        client.set_tag(parent_run_id, "best_params_note",
                       "best.* params name the best job of the first report")


def locate_sweep(target: str, tracking_uri: Optional[str] = None
                 ) -> Tuple[Optional[Path], str, str]:
    """``(sweep dir or None, tracking URI, parent run id)`` of a sweep dir or parent run id.

    Raises
    ------
    UserError
        When ``target`` is neither a sweep dir of mnist-exp nor a run id in the store.
    """
    if Path(target).is_dir():
        sweep_dir = Path(target).resolve()
        info = read_sweep_file(sweep_dir)
        if info is None:
            raise UserError(f"{target} is not a sweep dir of mnist-exp (it has no "
                            "mlflow_sweep.json). Pass outputs/multirun/<sweep> or the "
                            "sweep's parent run id.")
        # the store is checked (exists, is MLflow's, answers) before MLflow opens it
        uri = existing_store_uri(tracking_uri or info["tracking_uri"], os.getcwd())
        return sweep_dir, uri, info["parent_run_id"]
    uri = existing_store_uri(tracking_uri, os.getcwd())
    try:
        parent = MlflowClient(uri).get_run(target)
    except MlflowException:
        raise UserError(f"{target!r} is neither a sweep dir nor a run id in {uri}. "
                        "Pass outputs/multirun/<sweep>, or a parent run id with "
                        "--tracking-uri pointing at its store.") from None
    tagged = parent.data.tags.get("sweep.dir")
    return (Path(tagged) if tagged and Path(tagged).is_dir() else None), uri, target
