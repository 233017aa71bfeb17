"""Grading a class: one reproduction per submission, a grade sheet, resumable.

A submission is a run id, an MLflow experiment name (all its training runs), a
directory (of submitted config files or Hydra run dirs, or one of them), or a CSV file
with one row per student (``student``, ``submission`` and optionally ``metric`` and
``claimed``). Each submission is reproduced by ``mnist-exp-reproduce`` in its own
process (a broken or hostile submission cannot take the grader down, and each applies
the thread count its run recorded), as a child run of the grading's parent run.
``DIR/grades.csv`` and ``DIR/grades.md`` are rewritten after every submission, so an
interrupted grading loses nothing; run again with the same ``--out``, it skips the
rows already graded.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.errors import UserError
from mnist_experiments.tracking import liveness
from mnist_experiments.tracking.runs import ensure_experiment
from mnist_experiments.tracking.search import search_all_runs
from mnist_experiments.tracking.store import resolve_tracking_uri
from mnist_experiments.workflows.reproduce.original import RUN_ID

COLUMNS = ["student", "submission", "verdict", "metric", "claimed", "reproduced",
           "difference", "interval", "provenance_differences", "run_id", "original_run_id",
           "error", "seconds"]
VERDICTS = ("REPRODUCED", "CONSISTENT", "INCONSISTENT", "ERROR")
DEFAULT_METRIC = "test_accuracy"
GRADING_EXPERIMENT = "grading"


@dataclass
class Submission:
    student: str
    submission: str
    metric: str = DEFAULT_METRIC
    claimed: Optional[float] = None

    @property
    def key(self) -> str:
        return f"{self.student}\t{self.submission}"


# ----------------------------------------------------------------- submissions
def expand(items: Sequence[str], uri: str) -> List[Submission]:
    """Every submission named by ``items``, in the order given."""
    found: List[Submission] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_file() and path.suffix.lower() == ".csv":
            found += _from_csv(path)
        elif path.is_dir():
            found += _from_directory(path)
        elif path.is_file():
            found.append(Submission(path.stem, str(path.absolute())))
        elif RUN_ID.match(item.strip().lower()):
            found.append(Submission(item.strip().lower(), item.strip().lower()))
        else:
            found += _from_experiment(item, uri)
    return found


def _from_csv(path: Path) -> List[Submission]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "submission" not in reader.fieldnames:
            raise UserError(f"{path} has no 'submission' column (it has "
                            f"{', '.join(reader.fieldnames or []) or 'none'}). A class CSV "
                            "has one row per student: student,submission[,metric,claimed].")
        rows = []
        for i, row in enumerate(reader, start=2):
            sub = (row.get("submission") or "").strip()
            target = Path(sub).expanduser()
            if sub and not target.is_absolute() and (path.parent / target).exists():
                sub = str((path.parent / target).resolve())  # relative to the CSV
            claimed = (row.get("claimed") or "").strip()
            try:
                value = float(claimed) if claimed else None
            except ValueError:
                raise UserError(f"{path} line {i}: claimed={claimed!r} is not a number.") from None
            rows.append(Submission((row.get("student") or "").strip() or f"row {i - 1}", sub,
                                   (row.get("metric") or "").strip() or DEFAULT_METRIC, value))
        return rows


def _from_directory(path: Path) -> List[Submission]:
    if (path / ".hydra" / "config.yaml").is_file() or (path / "config.yaml").is_file():
        return [Submission(path.name, str(path.absolute()))]
    found = []
    for child in sorted(path.iterdir()):
        if child.is_dir() and ((child / ".hydra" / "config.yaml").is_file()
                               or (child / "config.yaml").is_file()):
            found.append(Submission(child.name, str(child.absolute())))
        elif child.is_file() and child.suffix.lower() in (".yaml", ".yml"):
            found.append(Submission(child.stem, str(child.absolute())))
    if not found:
        raise UserError(f"{path} holds no submission: no config.yaml, .hydra/config.yaml, "
                        "*.yaml file or run dir in it.")
    return found


def _from_experiment(name: str, uri: str) -> List[Submission]:
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
    except MlflowException:
        experiment = None
    if experiment is None:
        raise UserError(f"{name!r} is not a file, a directory, a run id (32 hex digits) or "
                        f"an experiment in {uri}. Give submissions as run ids, experiment "
                        "names, directories of configs or run dirs, or a class CSV.")
    # every page: a class can have many runs
    runs = list(search_all_runs(client, [experiment.experiment_id],
                                order_by=["attributes.start_time ASC"]))
    # the training runs themselves: no k-fold children, sweep parents or reproductions
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
            and "reproduces" not in r.data.tags and r.data.tags.get("sweep") != "true"]
    return [Submission(r.data.tags.get("mlflow.user") or r.info.run_name or r.info.run_id,
                       r.info.run_id) for r in runs]


# ---------------------------------------------------------------------- sheet
def read_sheet(path: Path) -> Dict[str, Dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        return {f"{r['student']}\t{r['submission']}": r for r in csv.DictReader(fh)}


def write_sheet(out: Path, rows: List[Dict[str, Any]]) -> None:
    """``grades.csv`` and ``grades.md`` (rewritten whole, then renamed into place)."""
    counts = {v: sum(1 for r in rows if r.get("verdict") == v) for v in VERDICTS}
    counts = {k: v for k, v in counts.items() if v}
    tmp = out / "grades.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out / "grades.csv")
    lines = ["# Grades", "", f"{len(rows)} submission(s): "
             + ", ".join(f"{n} {v}" for v, n in counts.items()), "",
             "| " + " | ".join(COLUMNS[:-1]) + " |", "|" + "---|" * (len(COLUMNS) - 1)]
    for r in rows:
        shown = dict(r, provenance_differences=", ".join(  # the keys; grades.csv has it all
            d.split(":", 1)[0] for d in str(r.get("provenance_differences") or "").split("; ")
            if d))
        cells = [str(shown.get(c, "")).replace("|", "\\|").replace("\n", " ")
                 for c in COLUMNS[:-1]]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "grades.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# -------------------------------------------------------------------- grading
def _reproduce(sub: Submission, uri: str, parent_run_id: str, calibration_runs: int,
               launch_dir: str, experiment_name: str) -> Dict[str, Any]:
    """Reproduce one submission in its own process, in the grading's experiment (beside
    its parent run, where the grader may write: on a course server each student's
    experiment is the student's); its grade-sheet row."""
    started = time.perf_counter()
    row: Dict[str, Any] = {"student": sub.student, "submission": sub.submission,
                           "metric": sub.metric,
                           "claimed": "" if sub.claimed is None else repr(sub.claimed)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        args = [sys.executable, "-m", "mnist_experiments.commands.reproduce", sub.submission,
                "--tracking-uri", uri, "--json", str(out), "--parent-run-id", parent_run_id,
                "--calibration-runs", str(calibration_runs), "--experiment-name",
                experiment_name]
        if sub.claimed is not None:
            args += ["--expect", f"{sub.metric}={sub.claimed!r}"]
        proc = subprocess.run(args, cwd=launch_dir, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        result = json.loads(out.read_text()) if out.is_file() else None
    row["seconds"] = round(time.perf_counter() - started, 1)
    if result is None or result.get("verdict") in ("ERROR", "NOTHING_TO_COMPARE"):
        error = (result or {}).get("error") or (result or {}).get("detail") or \
            _last_paragraph(proc.stderr) or f"exit status {proc.returncode}"
        row.update(verdict="ERROR", error=" ".join(str(error).split())[:1000],
                   run_id=(result or {}).get("run_id", ""))
        row["interrupted"] = proc.returncode not in (0, 1, 2)
        return row
    metric = result["metrics"].get(sub.metric, {})
    interval = result.get("intervals", {}).get(sub.metric)
    row.update(
        verdict=result["verdict"],
        claimed=row["claimed"] or _fmt(metric.get("original")),
        reproduced=_fmt(metric.get("reproduced")),
        difference=_fmt(metric.get("difference")),
        interval=f"[{interval['low']:.4f}, {interval['high']:.4f}]" if interval else "",
        provenance_differences="; ".join(result.get("provenance_differences", [])),
        run_id=result.get("run_id", ""), original_run_id=result.get("original_run_id") or "",
        error="" if result["verdict"] != "INCONSISTENT" else result.get("detail", ""),
    )
    return row


def _fmt(value: Any) -> str:
    return "" if value is None else f"{float(value):.6g}"


def _last_paragraph(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    return errors[-1].split(": error: ", 1)[1] if errors else (lines[-1] if lines else "")


def grade(items: Sequence[str], out: Path, tracking_uri: Optional[str] = None,
          jobs: int = 1, calibration_runs: int = 5, experiment_name: str = GRADING_EXPERIMENT,
          echo=print) -> List[Dict[str, Any]]:
    """Grade ``items`` into ``out``; return the sheet's rows (in the order given)."""
    launch_dir = os.getcwd()
    uri = resolve_tracking_uri(tracking_uri, launch_dir)
    submissions = expand(items, uri)
    if not submissions:
        raise UserError("No submission to grade: the experiments given hold no training runs.")
    out.mkdir(parents=True, exist_ok=True)
    done = {k: r for k, r in read_sheet(out / "grades.csv").items() if r.get("verdict")}
    parent_run_id = _parent_run(out, uri, experiment_name, items)
    rows: Dict[str, Dict[str, Any]] = {}
    todo = []
    for sub in submissions:
        if sub.key in done:
            rows[sub.key] = done[sub.key]
        else:
            todo.append(sub)
    if done and len(todo) < len(submissions):
        echo(f"{len(submissions) - len(todo)} submission(s) already graded in "
             f"{out / 'grades.csv'}: skipped")

    def ordered() -> List[Dict[str, Any]]:
        return [rows[s.key] for s in submissions if s.key in rows]

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_reproduce, s, uri, parent_run_id, calibration_runs,
                                   launch_dir, experiment_name): s for s in todo}
            for future in futures:
                sub = futures[future]
                row = future.result()
                echo(f"{sub.student}: {row['verdict']}"
                     + (f" ({row['error'][:200]})" if row.get("error") else ""))
                if not row.pop("interrupted", False):
                    rows[sub.key] = row
                    write_sheet(out, ordered())
    finally:
        write_sheet(out, ordered())
        _end_parent(uri, parent_run_id, ordered(), len(submissions))
    return ordered()


def _parent_run(out: Path, uri: str, experiment_name: str, items: Sequence[str]) -> str:
    """The grading's parent run: made once per ``--out`` dir, continued afterwards."""
    record = out / "grading.json"
    client = MlflowClient(uri)
    if record.is_file():
        known = json.loads(record.read_text())
        if known.get("tracking_uri") == uri:
            try:
                client.get_run(known["parent_run_id"])
                client.update_run(known["parent_run_id"], status="RUNNING")
                return known["parent_run_id"]
            except MlflowException:
                pass
    experiment_id = ensure_experiment(uri, experiment_name)
    run = client.create_run(experiment_id, run_name=f"grading-{out.name}", tags={
        **liveness.account_tags(), "grading": "true", "grading.out": str(out.resolve()),
        "grading.submissions": " ".join(items)[:5000]})
    record.write_text(json.dumps({"tracking_uri": uri,
                                  "parent_run_id": run.info.run_id}, indent=2))
    return run.info.run_id


def _end_parent(uri: str, run_id: str, rows: List[Dict[str, Any]], total: int) -> None:
    client = MlflowClient(uri)
    for verdict in VERDICTS:
        client.log_metric(run_id, f"count_{verdict.lower()}",
                          sum(1 for r in rows if r.get("verdict") == verdict))
    client.log_metric(run_id, "graded", len(rows))
    client.set_tag(run_id, "mlflow.note.content",
                   f"Grading of {total} submission(s); {len(rows)} graded. See grades.md.")
    status = "FINISHED" if len(rows) == total else "KILLED"
    client.set_terminated(run_id, status)
