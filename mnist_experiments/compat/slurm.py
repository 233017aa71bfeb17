"""Submitit's private job watcher, taught to ask ``squeue`` when ``sacct`` is silent.

Submitit 1.5 (``submitit.slurm.slurm.SlurmInfoWatcher``, the class attribute
``SlurmJob.watcher``, its private ``_registered``, ``_finished`` and ``_info_dict``)
learns a job's state only from ``sacct``. Without SLURM accounting every call fails
("status may be inaccurate"), every job stays UNKNOWN, and a job that died without its
result file is waited for forever (:mod:`mnist_experiments.launch.slurm`). The watcher
installed here runs ``sacct`` as before, then asks ``squeue`` about the jobs it left
without a state. With accounting, nothing changes.

Light: Submitit is imported only when the patch is applied (by a sweep that launches
on SLURM), or by :func:`died_job` once something else has imported it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

SUBMITIT_WATCHER_PATCH_VERSIONS = ("1.5.",)
# how often (at most, in s) the launcher asks SLURM about its jobs; Submitit's own
# watcher waits up to 600 s between calls once a job has run for 20 minutes
REFRESH_SECONDS = 60.0
# what squeue's other unfinished states (CONFIGURING, SUSPENDED, ...) are told to
# Submitit's watcher, which knows only a few by name and takes the rest as ended
_STILL_RUNNING = "RUNNING"
_SOURCE = "mnist_exp.source"


def _from_squeue(info: dict) -> bool:
    """Whether sacct has said nothing of this job (no state, or only squeue's)."""
    return not info.get("State") or info.get(_SOURCE) == "squeue"


def watch_jobs_without_accounting() -> bool:
    """Install the watcher (once); False if this Submitit does not have the shape it
    patches (``tests/test_compat.py`` says so), which leaves Submitit as it is."""
    watcher_class = _submitit_watcher_class()
    if watcher_class is None:
        return False
    from submitit.slurm.slurm import SlurmJob

    if isinstance(SlurmJob.watcher, _QueueWatcherMixin):
        return True
    watcher = type("QueueWatcher", (_QueueWatcherMixin, watcher_class), {})
    SlurmJob.watcher = watcher(delay_s=REFRESH_SECONDS)
    return True


def _submitit_watcher_class() -> Optional[type]:
    try:
        import submitit
        from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob
    except ImportError:
        return None
    if not str(getattr(submitit, "__version__", "")).startswith(SUBMITIT_WATCHER_PATCH_VERSIONS):
        return None
    probe = SlurmInfoWatcher(delay_s=REFRESH_SECONDS)
    if not all(hasattr(probe, name) for name in ("_registered", "_finished", "_info_dict",
                                                  "_last_status_check", "update", "is_done")):
        return None
    return SlurmInfoWatcher if hasattr(SlurmJob, "watcher") else None


class _QueueWatcherMixin:
    _registered: Any
    _finished: Any
    _info_dict: Any
    _last_status_check: float

    _accounting: Optional[bool] = None

    def update(self) -> None:
        from mnist_experiments.launch import slurm

        if self._accounting is None:
            self._accounting = slurm.has_accounting()
            if self._accounting is False:
                log.info("SLURM accounting is disabled on this cluster (sacct says so): the "
                         "sweep follows its jobs with squeue")
        if self._accounting is not False:
            super().update()  # type: ignore[misc]  # sacct, as Submitit does
        else:  # (spares a warning a poll: "Bypassing sacct error ...")
            self._last_status_check = time.time()

        silent = [job for job in self._registered - self._finished
                  if _from_squeue(self._info_dict.get(job, {}))]
        states = slurm.queue_states(silent) if silent else None
        for job, state in (states or {}).items():
            if not slurm.ended(state) and state != "PENDING":
                state = _STILL_RUNNING  # CONFIGURING, SUSPENDED, ...: not ended
            # (marked as squeue's: asked again next time, unless sacct answers then)
            self._info_dict[job] = {"State": state, "JobID": job, _SOURCE: "squeue"}
            if self.is_done(job, mode="cache"):  # type: ignore[attr-defined]
                self._finished.add(job)


def died_job(exc: BaseException) -> Optional[Dict[str, str]]:
    """The job and its state if ``exc`` is Submitit's error for a job that ended without
    writing its result (``UncompletedJobError``, whose message is its only record of
    which job: "Job <id> (task: ...) ... has not produced any output (state: <state>)"),
    else None. A job whose function raised (``FailedJobError``) is not one of them."""
    if "submitit" not in sys.modules:
        return None
    from submitit.core.utils import FailedJobError, UncompletedJobError

    if not isinstance(exc, UncompletedJobError) or isinstance(exc, FailedJobError):
        return None
    message = str(exc)
    job = re.search(r"\bJob (\S+) \(task", message)
    state = re.search(r"\(state: ([A-Za-z_]+)\)", message)
    return {"job": job.group(1) if job else "?", "state": state.group(1) if state else "?"}
