"""A sweep in MLflow: its parent run, and its end (leaderboard, parent status).

Called by the Hydra callback :class:`mnist_experiments.launch.callback.MlflowSweepCallback`
in the launching process: :func:`start` before any job (it creates the store and the
experiment once, so parallel jobs on a fresh SQLite store never race, starts the
parent run and writes the sweep file every job reads), :func:`finish` after the last
job or at exit when a failed job aborted Hydra's sweep.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional

from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

import mnist_experiments
from mnist_experiments.launch.files import absolute, write_sweep_file
from mnist_experiments.tracking import provenance
from mnist_experiments.tracking.runs import ensure_experiment
from mnist_experiments.tracking.store import resolve_tracking_uri
from mnist_experiments.workflows.leaderboard import Report, build_report

log = logging.getLogger(__name__)


def start(config: DictConfig) -> Dict[str, str]:
    """Create the store, the experiment and the parent run; write the sweep file."""
    launch_dir = os.getcwd()
    sweep_dir = absolute(str(config.hydra.sweep.dir), launch_dir).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(config.mlflow.tracking_uri, launch_dir)
    experiment_id = ensure_experiment(uri, str(config.mlflow.experiment_name))

    client = MlflowClient(uri)
    overrides = list(config.hydra.overrides.task)
    sweeper = OmegaConf.to_container(config.hydra.sweeper, resolve=False)
    launcher = OmegaConf.to_container(config.hydra.launcher, resolve=False)
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep-{sweep_dir.name}",
        tags={
            "sweep": "true",
            "sweep.dir": str(sweep_dir),
            "sweep.overrides": " ".join(overrides)[:5000],
            "sweep.sweeper": str(sweeper.get("_target_", "")),
            "sweep.launcher": str(launcher.get("_target_", "")),
            **provenance.git_info(Path(mnist_experiments.__file__).resolve().parent, launch_dir),
        },
    )
    run_id = parent.info.run_id
    base = OmegaConf.to_container(config, resolve=False)
    base.pop("hydra", None)
    client.log_dict(run_id, base, "sweep/config.yaml")
    client.log_dict(run_id, {"overrides": overrides, "sweeper": sweeper, "launcher": launcher},
                    "sweep/sweep.yaml")
    info = {
        "register_as": config.mlflow.get("register_as") or "",
        "register_alias": config.mlflow.get("register_alias") or "",
        "tracking_uri": uri,
        "experiment_id": experiment_id,
        "parent_run_id": run_id,
        "sweep_dir": str(sweep_dir),
    }
    write_sweep_file(sweep_dir, info)
    log.info("sweep parent run %s in %s (%s)", run_id, uri, sweep_dir)
    return info


def finish(info: Dict[str, str]) -> Optional[Report]:
    """Write the leaderboard and end the parent run (never left RUNNING)."""
    try:
        report = build_report(Path(info["sweep_dir"]), info["tracking_uri"],
                              info["parent_run_id"], log_to_parent=True,
                              register_as=info.get("register_as") or None,
                              register_alias=info.get("register_alias") or None)
        status = "FAILED" if report.failed or not report.rows else "FINISHED"
    except Exception:  # never leave the parent RUNNING
        log.exception("could not build the sweep summary")
        report, status = None, "FAILED"
    MlflowClient(info["tracking_uri"]).set_terminated(info["parent_run_id"], status)
    if report is not None:
        log.info("sweep summary: %s", Path(info["sweep_dir"]) / "summary.md")
        print(report.markdown)
    return report


def describe_failures(report: Any, sweep_dir: str) -> Optional[str]:
    """The message for a sweep with failed jobs, or None."""
    if report is None or not report.failed:
        return None
    return (f"{len(report.failed)} of {len(report.rows)} sweep jobs failed "
            f"(jobs {', '.join(r['job'] for r in report.failed)}). The other jobs' runs "
            f"are kept; see {Path(sweep_dir) / 'summary.md'} for each job's error.")
