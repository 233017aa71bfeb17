"""A sweep in MLflow: its parent run, and its end (leaderboard, parent status).

Called by the Hydra callback :class:`mnist_experiments.launch.callback.MlflowSweepCallback`
in the launching process: :func:`start` before any job (it checks the store, creates
it aside and the experiment once, so parallel jobs, or sweeps, on a fresh SQLite store
never race, starts the parent run and writes the sweep file every job reads),
:func:`finish` after the last job or at exit when a failed job aborted Hydra's sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any, Dict, List, Optional

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

import mnist_experiments
from mnist_experiments.errors import UserError
from mnist_experiments.launch import slurm, study
from mnist_experiments.launch.files import absolute, read_sweep_file, write_sweep_file
from mnist_experiments.tracking import liveness, provenance
from mnist_experiments.tracking.owner import END_REASON_TAG
from mnist_experiments.tracking.runs import ensure_experiment
from mnist_experiments.tracking.store import StoreCreation, resolve_tracking_uri
from mnist_experiments.workflows.leaderboard import Report, build_report

log = logging.getLogger(__name__)

_heartbeats: Dict[str, liveness.Heartbeat] = {}  # parent run id -> its heartbeat thread


def start(config: DictConfig, creation: Optional[StoreCreation] = None) -> Dict[str, str]:
    """Create the store, the experiment and the parent run; write the sweep file.

    The store is checked first and, when new, built aside and linked into place
    (:class:`~mnist_experiments.tracking.store.StoreCreation`, as single runs do), so
    that sweeps started together on a fresh store never migrate it in place at once.
    A sweep dir that holds a sweep already is that sweep resumed when the command's
    overrides are the same (:func:`_resume`: the same parent run goes on, jobs whose
    runs finished are not run again); a different sweep there is refused.
    """
    study.check_pruner_settings(config.hydra.sweeper)  # an Optuna sweep's, before any run
    launch_dir = os.getcwd()
    sweep_dir = absolute(str(config.hydra.sweep.dir), launch_dir).resolve()
    uri = resolve_tracking_uri(config.mlflow.tracking_uri, launch_dir)
    name = str(config.mlflow.experiment_name)
    # refuses a store that cannot work; ``creation``: started by the caller, so that the
    # helper builds a new store while this process imports MLflow
    with creation or StoreCreation.start(uri, name) as building:
        building.install()
    experiment_id = ensure_experiment(uri, name)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(uri)
    overrides = list(config.hydra.overrides.task)
    previous = read_sweep_file(sweep_dir)
    if previous is not None:
        return _resume(client, previous, overrides, uri, sweep_dir)
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=False)
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_dir.name}",
        tags={
            **liveness.owner_tags(),
            "sweep": "true",
            "sweep.dir": str(sweep_dir),
            "sweep.overrides": " ".join(overrides)[:5000],
            "sweep.sweeper": str(sweeper.get("_target_", "")),
            "sweep.launcher": str(launcher.get("_target_", "")),
            **provenance.git_info(Path(mnist_experiments.__file__).resolve().parent, launch_dir),
        },
    )
    run_id = parent.info.run_id
    _heartbeats[run_id] = liveness.Heartbeat(run_id, uri=uri).start()
    info = {
        "planned_jobs": planned_jobs(config),
        # Optuna replaces a failed trial with a new one: its failures are not the sweep's
        "replaces_failed": "n_trials" in sweeper,
        "register_as": config.mlflow.get("register_as") or "",
        "register_alias": config.mlflow.get("register_alias") or "",
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "parent_run_id": run_id,
        "sweep_dir": str(sweep_dir),
        "overrides": overrides,
    }
    try:
        base = OmegaConf.to_container(config, resolve=False)
        base.pop("hydra", None)
        client.log_dict(run_id, base, "sweep/config.yaml")
        client.log_dict(run_id, {"overrides": overrides, "sweeper": sweeper,
                                 "launcher": launcher}, "sweep/sweep.yaml")
        write_sweep_file(sweep_dir, info)
    except BaseException:  # no job will run: never leave the parent RUNNING
        heartbeat = _heartbeats.pop(run_id, None)
        if heartbeat is not None:
            heartbeat.stop()
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    log.info("sweep parent run %s in %s (%s)", run_id, uri, sweep_dir)
    return info


def _resume(client: MlflowClient, previous: Dict[str, Any], overrides: List[str], uri: str,
            sweep_dir: Path) -> Dict[str, Any]:
    """Continue the sweep of ``previous`` (its sweep file): the same parent run, RUNNING
    again with this process as its owner. Its jobs whose runs finished with the same
    config return their recorded objective without training (see
    :func:`mnist_experiments.launch.files.finished_before`); failed, killed and never-started jobs run.

    Raises
    ------
    UserError
        When the sweep dir holds another sweep (other overrides, or another store).
    """
    parent_id = str(previous.get("parent_run_id"))
    before = previous.get("overrides")
    if before is None:  # a sweep file from before resuming existed: the parent's tag
        with contextlib.suppress(Exception):
            before = client.get_run(parent_id).data.tags.get("sweep.overrides", "").split()
    if sorted(before or []) != sorted(overrides) or previous.get("tracking_uri") != uri:
        raise UserError(
            f"The sweep dir {sweep_dir} holds another sweep (parent run {parent_id}: "
            f"{' '.join(before or []) or '?'} in {previous.get('tracking_uri')}); this one "
            f"({' '.join(overrides)} in {uri}) would mix their jobs. Give this sweep its own "
            "hydra.sweep.dir=DIR, or run the other sweep's command again to resume it.")
    client.update_run(parent_id, status="RUNNING")
    for key, value in liveness.owner_tags().items():
        client.set_tag(parent_id, key, value)
    with contextlib.suppress(Exception):
        client.delete_tag(parent_id, END_REASON_TAG)
    resumed = int(client.get_run(parent_id).data.tags.get("sweep.resumed", "0")) + 1
    client.set_tag(parent_id, "sweep.resumed", str(resumed))
    _heartbeats[parent_id] = liveness.Heartbeat(parent_id, uri=uri).start()
    log.info("sweep parent run %s resumed in %s (%s): jobs that finished are not run again",
             parent_id, uri, sweep_dir)
    return dict(previous)


def planned_jobs(config: DictConfig) -> Optional[int]:
    """How many jobs the sweep will launch: the product of the swept values' counts for
    Hydra's basic sweeper, ``n_trials`` for a sweeper that has it; None if unknown."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    count = 1
    try:
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            if override.is_sweep_override():
                count *= len(list(override.sweep_string_iterator()))
    except Exception:  # noqa: BLE001 - e.g. a range sweep of floats: just say nothing
        return None
    return count


def finish(info: Dict[str, str], signum: Optional[int] = None) -> Optional[Report]:
    """End the jobs' runs left RUNNING by dead workers, write the leaderboard and end
    the parent run: KILLED after a signal (``signum``), else FAILED or FINISHED."""
    client = MlflowClient(info["tracking_uri"])
    parent = info["parent_run_id"]
    heartbeat = _heartbeats.pop(parent, None)
    if heartbeat is not None:
        heartbeat.stop()
    try:
        report = build_report(Path(info["sweep_dir"]), info["tracking_uri"],
                              parent, log_to_parent=True,
                              register_as=None if signum else info.get("register_as") or None,
                              register_alias=info.get("register_alias") or None)
        done = sum(r["status"] in ("FINISHED", "PRUNED") for r in report.rows)
        report.retried = bool(info.get("replaces_failed") and info.get("planned_jobs")
                              and done >= int(info["planned_jobs"]))
        status = "FAILED" if report.failed or not report.rows else "FINISHED"
    except Exception:  # never leave the parent RUNNING
        log.exception("could not build the sweep summary")
        report, status = None, "FAILED"
    if signum is not None:
        status = "KILLED"
        client.set_tag(parent, END_REASON_TAG, f"interrupted by {signal.Signals(signum).name}")
    client.set_terminated(parent, status)
    info["status"] = status
    if report is not None:
        log.info("sweep summary: %s", Path(info["sweep_dir"]) / "summary.md")
        print(report.markdown)
    return report


def end_runs_of_ended_slurm_jobs(info: Dict[str, str], states: Dict[str, str]) -> List[str]:
    """End (KILLED) the sweep's job runs still RUNNING whose SLURM job has ended
    (``states``: SLURM's, by job id, as each run's ``slurm.job_id`` tag names it).
    SLURM's word settles it at once, where the heartbeat's lease would take minutes for
    a job on another node."""
    over = {job: state for job, state in states.items() if slurm.ended(state)}

    def reason(tags: dict) -> Optional[str]:
        job = tags.get("slurm.job_id", "")
        return (f"its SLURM job {job} ended {over[job]} without ending the run"
                if job in over else None)

    # (the parent run has no SLURM job: left alone)
    return liveness.repair_sweep(MlflowClient(info["tracking_uri"]), info["parent_run_id"],
                                 reason)


def account(report: Optional[Report], info: Dict[str, str]) -> str:
    """One line: the parent run's status and what became of the jobs."""
    counts: Dict[str, int] = {}
    for row in (report.rows if report is not None else []):
        counts[str(row.get("status"))] = counts.get(str(row.get("status")), 0) + 1
    jobs = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no job ran"
    line = (f"sweep parent run {info['parent_run_id']} is {info.get('status', '?')} "
            f"({jobs}); see {Path(info['sweep_dir']) / 'summary.md'}")
    if info.get("status") == "KILLED":  # what to type next: the sweep resumes in its dir
        line += (". Continue it: run the same command again with "
                 f"hydra.sweep.dir={info['sweep_dir']}")
    return line


def describe_failures(report: Any, sweep_dir: str) -> Optional[str]:
    """The message for a sweep with failed jobs, or None."""
    if report is None or not report.failed:
        return None
    return (f"{len(report.failed)} of {len(report.rows)} sweep jobs failed "
            f"(jobs {', '.join(r['job'] for r in report.failed)}). The other jobs' runs "
            f"are kept; see {Path(sweep_dir) / 'summary.md'} for each job's error.")
