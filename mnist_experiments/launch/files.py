"""The files a sweep keeps in its sweep dir, shared by the callback, the jobs and reports.

- ``<sweep dir>/mlflow_sweep.json``: where every job logs (tracking URI, experiment,
  parent run), written once by the sweep callback before any job starts;
- ``<job dir>/job.json``: one job's status, error and objective, written when it ends,
  so that jobs that failed before their MLflow run existed still reach the leaderboard;
- ``<sweep dir>/best_so_far.json``: the best objective of the jobs finished so far and
  the job that has it, which a job reads to decide whether it draws its figures
  (``viz.sweep_figures=best``).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

SWEEP_FILE = "mlflow_sweep.json"
JOB_FILE = "job.json"
BEST_FILE = "best_so_far.json"


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


def sweep_leader(sweep_dir: Path, parent_run_id: str) -> Optional[Tuple[float, str]]:
    """The best objective among this sweep's jobs finished so far and the job that has
    it (the lowest-numbered of the jobs tied for it), or None before the first."""
    try:
        best = json.loads((Path(sweep_dir) / BEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if best.get("parent_run_id") != parent_run_id or best.get("objective") is None:
        return None
    return float(best["objective"]), str(best.get("job", ""))


def leads(objective: float, job: str, leader: Optional[Tuple[float, str]]) -> bool:
    """Whether job ``job`` with ``objective`` ranks above ``leader`` as the leaderboard
    ranks jobs: by objective, a tie by the lower job number (an unknown number: yes)."""
    if leader is None or objective > leader[0]:
        return True
    if objective < leader[0]:
        return False
    mine, theirs = str(job), leader[1]
    return not (mine.isdigit() and theirs.isdigit()) or int(mine) < int(theirs)


def record_objective(sweep_dir: Path, parent_run_id: str, job: str, objective: float) -> None:
    """Keep ``objective`` and ``job`` in ``best_so_far.json`` if the job leads the sweep
    (:func:`leads`).

    Jobs of a parallel sweep end at the same time: the read and the replacement happen
    under an exclusive lock on the sweep dir's lock file, and the file is replaced
    atomically, so a reader never sees half of it.
    """
    sweep_dir = Path(sweep_dir)
    try:
        with open(sweep_dir / f".{BEST_FILE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not leads(objective, job, sweep_leader(sweep_dir, parent_run_id)):
                return
            temporary = sweep_dir / f".{BEST_FILE}.{os.getpid()}"
            temporary.write_text(json.dumps({"parent_run_id": parent_run_id, "job": job,
                                             "objective": objective}))
            os.replace(temporary, sweep_dir / BEST_FILE)
    except OSError:  # (a full disk, a file system without locks): jobs then draw figures
        pass
