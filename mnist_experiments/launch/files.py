"""The files a sweep keeps in its sweep dir, shared by the callback, the jobs and reports.

- ``<sweep dir>/mlflow_sweep.json``: where every job logs (tracking URI, experiment,
  parent run), written once by the sweep callback before any job starts;
- ``<job dir>/job.json``: one job's status, error and objective, written when it ends,
  so that jobs that failed before their MLflow run existed still reach the leaderboard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

SWEEP_FILE = "mlflow_sweep.json"
JOB_FILE = "job.json"


def absolute(path: str, base: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base) / p


def read_sweep_file(sweep_dir: Path) -> Optional[Dict[str, str]]:
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_sweep_file(sweep_dir: Path, info: Dict[str, str]) -> None:
    (Path(sweep_dir) / SWEEP_FILE).write_text(json.dumps(info, indent=2))


def write_job_record(job_dir: Path, record: Dict[str, Any]) -> None:
    (Path(job_dir) / JOB_FILE).write_text(json.dumps(record, indent=2, default=str))


def read_job_record(job_dir: Path) -> Optional[Dict[str, Any]]:
    path = Path(job_dir) / JOB_FILE
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def job_records(sweep_dir: Path) -> Iterator[Dict[str, Any]]:
    """Every job record of the sweep, in job-dir order."""
    for path in sorted(Path(sweep_dir).glob(f"*/{JOB_FILE}")):
        record = json.loads(path.read_text())
        record.setdefault("_mtime", path.stat().st_mtime)  # when it was written
        yield record


def finished_before(job_dir: Path, parent_run_id: str, overrides: List[str],
                    config_id: str) -> Optional[float]:
    """The objective a resumed sweep's job recorded, if it finished with the same
    overrides and config in this sweep; else None (the job runs)."""
    record = read_job_record(job_dir)
    if (record is None or record.get("status") != "FINISHED"
            or record.get("parent_run_id") != parent_run_id
            or list(record.get("overrides") or []) != list(overrides)
            or record.get("config_id") != config_id or record.get("objective") is None):
        return None
    return float(record["objective"])
