"""No run is left RUNNING: runs whose process died are ended by the next command.

A run's process can die without ending it: SIGKILL, the kernel's OOM killer, a full
disk that refuses the final status write, a power cut. Every run this package starts
records its owner (:mod:`mnist_experiments.tracking.owner`: host, pid, process start
time) and, while it lives, a heartbeat tag. :func:`repair` ends the RUNNING runs whose
owner is gone, as KILLED with a tag ``mnist_exp.end_reason`` saying why:

- an owner on this host: at once, when its process no longer exists (or the pid now
  belongs to another process: the start time differs);
- an owner on another host (a shared tracking server, cluster jobs): when its
  heartbeat is older than the lease, ``$MNIST_EXP_RUN_LEASE_SECONDS`` (default 900 s,
  15 heartbeats).

Runs without an owner (logged by other tools) are never touched. ``mnist-exp``,
sweeps and ``mnist-exp-report`` call :func:`repair` when they open a store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Iterable, List, Optional

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.tracking.owner import END_REASON_TAG, HEARTBEAT_TAG, Owner
from mnist_experiments.tracking.search import search_all_runs

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 60.0
DEFAULT_LEASE_SECONDS = 900.0
KILLED = RunStatus.to_string(RunStatus.KILLED)


def lease_seconds() -> float:
    try:
        return max(float(os.environ.get("MNIST_EXP_RUN_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)),
                   2 * HEARTBEAT_SECONDS)
    except ValueError:
        return DEFAULT_LEASE_SECONDS


def owner_tags() -> dict:
    """The tags that name this process as a run's owner, with a first heartbeat, and
    the account it logs as (:func:`account_tags`)."""
    return {**Owner.this_process().tags(), HEARTBEAT_TAG: str(int(time.time() * 1000)),
            **account_tags()}


def account_tags() -> dict:
    """On a server with accounts, the account (``$MLFLOW_TRACKING_USERNAME``) is the
    run's user (``mlflow.user``, the UI's "User" column); MLflow would record the OS
    user, which is ``root`` or ``student`` on many machines. Never the password."""
    account = os.environ.get("MLFLOW_TRACKING_USERNAME", "").strip()
    return {"mlflow.user": account} if account else {}


def why_dead(tags: dict, now_ms: Optional[int] = None) -> Optional[str]:
    """Why the owner of a RUNNING run with these tags is gone, or None if it may live."""
    owner = Owner.from_tags(tags)
    if owner is None:
        return None
    if owner.local:
        if owner.alive():
            return None
        return (f"its process {owner.pid} on {owner.host} ended without ending the run "
                "(killed by SIGKILL or the OOM killer, or it could not write to the store)")
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        beat = int(tags.get(HEARTBEAT_TAG, "0"))
    except ValueError:
        beat = 0
    silent = (now_ms - beat) / 1000.0
    if silent <= lease_seconds():
        return None
    return (f"no heartbeat from process {owner.pid} on {owner.host} for {silent:.0f} s "
            f"(lease {lease_seconds():.0f} s)")


def repair(client: MlflowClient, experiment_ids: Optional[Iterable[str]] = None,
           filter_string: str = "",
           reason: Callable[[dict], Optional[str]] = why_dead) -> List[str]:
    """End as KILLED every RUNNING run (in these experiments, default all) whose owner
    is gone; return their ids. ``reason``: why a run with these tags is dead, or None
    (default :func:`why_dead`; a launcher that knows better, SLURM's word, passes its
    own). Store errors are logged, never raised: repairing is a courtesy of a command
    that has its own work to do."""
    repaired: List[str] = []
    try:
        if experiment_ids is None:
            experiment_ids = [e.experiment_id for e in client.search_experiments()]
        experiment_ids = list(experiment_ids)
        if not experiment_ids:
            return repaired
        query = "attributes.status = 'RUNNING'" + (f" and {filter_string}" if filter_string else "")
        # all pages first: ending runs while paging would shift the pages of this query
        for run in list(search_all_runs(client, experiment_ids, query)):
            why = reason(run.data.tags)
            if why is None:
                continue
            client.set_tag(run.info.run_id, END_REASON_TAG, why)
            client.set_terminated(run.info.run_id, KILLED)
            repaired.append(run.info.run_id)
            log.warning("ended run %s (%s) as KILLED: %s", run.info.run_id,
                        run.info.run_name, why)
    except MlflowException as exc:
        log.warning("could not check for runs left RUNNING: %s", str(exc).splitlines()[0])
    return repaired


def repair_sweep(client: MlflowClient, parent_run_id: str,
                 reason: Callable[[dict], Optional[str]] = why_dead) -> List[str]:
    """End a sweep's job runs, and its parent run, whose processes are gone (``reason``:
    see :func:`repair`)."""
    try:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    except MlflowException:
        return []
    return (repair(client, [experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                   reason)
            + repair(client, [experiment_id], f"attributes.run_id = '{parent_run_id}'", reason))


class Heartbeat:
    """A daemon thread that refreshes a run's heartbeat tag every ``interval`` seconds."""

    def __init__(self, run_id: str, interval: float = HEARTBEAT_SECONDS,
                 uri: Optional[str] = None):
        self.run_id = run_id
        self.uri = uri
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="mlflow-heartbeat", daemon=True)

    def _beat(self) -> None:
        client = MlflowClient(self.uri)
        while not self._stop.wait(self.interval):
            try:
                client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time() * 1000)))
            except Exception:  # noqa: BLE001 - a missed beat is not the run's failure
                log.debug("heartbeat of run %s failed", self.run_id, exc_info=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
