"""What SLURM itself says of a sweep's jobs, through ``squeue`` and ``scancel``.

Submitit learns that a job ended from ``sacct``, i.e. from SLURM's accounting
database. Many small clusters (a lab's, a course's) run without one: ``sacct`` then
answers "Slurm accounting storage is disabled", and a job that died without writing its
result (the OOM killer, a node failure, a native crash) is never seen to end, so the
launcher waits for it forever. ``squeue`` needs no accounting: it lists queued and
running jobs, and ended ones for ``MinJobAge`` (300 s by default) with their final
state. :mod:`mnist_experiments.compat.slurm` has Submitit's watcher ask it about the
jobs ``sacct`` says nothing of; :func:`stop_sweep_jobs` ends a sweep whose job died.

Light: the standard library only.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

# the states a job ends in (``squeue --help``, "JOB STATE CODES")
ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED",
                   "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"})
# a job no longer listed at all: it ended more than MinJobAge ago
GONE = "NOT_IN_QUEUE"
STOP_SECONDS = 90.0  # SLURM's KillWait (30 s by default) between SIGTERM and SIGKILL, and more


def queue_states(job_ids: Iterable[str]) -> Optional[Dict[str, str]]:
    """The state ``squeue`` gives each of these jobs (array tasks as ``<array>_<task>``),
    :data:`GONE` for those it no longer lists; None if it cannot answer (no ``squeue``,
    no controller), which says nothing about the jobs."""
    job_ids = sorted(set(job_ids))
    listed = _listed({job.split("_")[0] for job in job_ids})
    if listed is None:
        return None
    return {job: listed.get(job, GONE) for job in job_ids}


def _listed(arrays: Iterable[str]) -> Optional[Dict[str, str]]:
    """Every job or array task ``squeue`` lists of these jobs or arrays, with its state."""
    arrays = sorted(set(arrays))
    if not arrays:
        return {}
    try:
        listed = subprocess.run(
            ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
             f"--jobs={','.join(arrays)}"],
            capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0 and "Invalid job id" not in listed.stderr:
        return None  # (every one of the jobs has left the queue: "Invalid job id")
    states: Dict[str, str] = {}
    for line in listed.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job and state:
            states[job] = state.strip()
    return states


def has_accounting() -> Optional[bool]:
    """Whether ``sacct`` can answer on this cluster: False when it says accounting is
    disabled (or there is no ``sacct``), None when it failed for another reason."""
    try:
        answer = subprocess.run(["sacct", "--noheader", "--jobs=1"], capture_output=True,
                                text=True, timeout=60)
    except OSError:
        return False
    except subprocess.SubprocessError:
        return None
    if answer.returncode == 0:
        return True
    return False if "accounting storage is disabled" in answer.stderr.lower() else None


def ended(state: str) -> bool:
    return state in ENDED or state == GONE


def sweep_arrays(sweep_dir: Path) -> List[str]:
    """The SLURM job arrays this sweep submitted: Submitit's folders in the sweep dir are
    named ``<array>_<task>`` (``hydra.launcher.submitit_folder``'s default)."""
    folder = Path(sweep_dir) / ".submitit"
    if not folder.is_dir():
        return []
    return sorted({p.name.split("_")[0] for p in folder.iterdir()
                   if p.is_dir() and p.name.split("_")[0].isdigit()})


def stop_sweep_jobs(arrays: List[str], timeout: float = STOP_SECONDS) -> Dict[str, str]:
    """``scancel`` the sweep's jobs still queued or running (each ends its run KILLED,
    as after any scancel), then wait, bounded, until SLURM lists all of them as ended;
    return every task's state."""
    if not arrays:
        return {}
    try:
        subprocess.run(["scancel", *arrays], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        pass
    deadline = time.monotonic() + timeout
    while True:
        tasks = _listed(arrays)
        if tasks is None or all(ended(s) for s in tasks.values()):
            return tasks or {}
        if time.monotonic() > deadline:
            return tasks
        time.sleep(1.0)
