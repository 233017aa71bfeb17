"""Sweeps: one MLflow parent run per Hydra multirun, one child run per job, a leaderboard.

:class:`MlflowSweepCallback` is a Hydra ``Callback`` (enabled in ``conf/config.yaml``):

- ``on_multirun_start`` (once, in the launching process, before any job): creates the
  store and the experiment, so that parallel jobs on a fresh SQLite store never race,
  starts the sweep's parent run, and writes ``<sweep dir>/mlflow_sweep.json`` telling
  every job (in any process, or on any machine sharing the sweep dir) where to log.
- ``on_job_end`` (in the job's process): writes ``<job dir>/job.json`` with the job's
  status and error, so failed jobs appear in the leaderboard even when they failed
  before their MLflow run existed.
- ``on_multirun_end``, or process exit when a failed job aborts Hydra's sweep: writes
  the leaderboard (see :mod:`mnist_experiments.workflows.leaderboard`), ends the parent run, and makes
  the sweep command exit non-zero when any job failed.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_experiments.compat import job_return_value
from mnist_experiments.errors import UserError

log = logging.getLogger(__name__)

SWEEP_FILE = "mlflow_sweep.json"
JOB_FILE = "job.json"


def _abs(path: str, base: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base) / p


def read_sweep_file(sweep_dir: Path) -> Optional[Dict[str, str]]:
    path = Path(sweep_dir) / SWEEP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def job_sweep_info() -> Optional[Dict[str, Any]]:
    """For a job of a multirun: the sweep's tracking URI, experiment and parent run."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if str(getattr(hc.mode, "name", hc.mode)) != "MULTIRUN":
        return None
    info = read_sweep_file(_abs(hc.sweep.dir, hc.runtime.cwd))
    if info is None:
        return None
    return {**info, "job_num": str(hc.job.num), "job_overrides": list(hc.overrides.task)}


class MlflowSweepCallback(Callback):
    """Sweep-level MLflow work: parent run, job records and the leaderboard."""

    def __init__(self) -> None:
        self._sweep: Optional[Dict[str, str]] = None
        self._finished = False

    # ----------------------------------------------------------------- multirun
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_experiments.tracking import runs as tracking
        from mnist_experiments.tracking.store import resolve_tracking_uri

        launch_dir = os.getcwd()
        sweep_dir = _abs(str(config.hydra.sweep.dir), launch_dir).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        uri = resolve_tracking_uri(config.mlflow.tracking_uri, launch_dir)
        experiment_id = tracking.ensure_experiment(uri, str(config.mlflow.experiment_name))

        from mlflow.tracking import MlflowClient

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
                **tracking.git_info(Path(__file__).resolve().parent, launch_dir),
            },
        )
        run_id = parent.info.run_id
        base = OmegaConf.to_container(config, resolve=False)
        base.pop("hydra", None)
        client.log_dict(run_id, base, "sweep/config.yaml")
        client.log_dict(run_id, {"overrides": overrides, "sweeper": sweeper, "launcher": launcher},
                        "sweep/sweep.yaml")
        self._sweep = {
            "register_as": config.mlflow.get("register_as") or "",
            "register_alias": config.mlflow.get("register_alias") or "",
            "tracking_uri": uri,
            "experiment_id": experiment_id,
            "parent_run_id": run_id,
            "sweep_dir": str(sweep_dir),
        }
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(self._sweep, indent=2))
        log.info("sweep parent run %s in %s (%s)", run_id, uri, sweep_dir)
        atexit.register(self._finish)  # also when a failed job makes Hydra abort the sweep

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        report = self._finish()
        if report is not None and report.failed:
            raise UserError(
                f"{len(report.failed)} of {len(report.rows)} sweep jobs failed "
                f"(jobs {', '.join(r['job'] for r in report.failed)}). The other jobs' runs "
                f"are kept; see {Path(self._sweep['sweep_dir']) / 'summary.md'} for each "
                "job's error."
            )

    def _finish(self):
        if self._sweep is None or self._finished:
            return None
        self._finished = True
        from mnist_experiments.workflows.leaderboard import build_report

        try:
            report = build_report(Path(self._sweep["sweep_dir"]), self._sweep["tracking_uri"],
                                  self._sweep["parent_run_id"], log_to_parent=True,
                                  register_as=self._sweep.get("register_as") or None,
                                  register_alias=self._sweep.get("register_alias") or None)
            status = "FAILED" if report.failed or not report.rows else "FINISHED"
        except Exception:  # never leave the parent RUNNING
            log.exception("could not build the sweep summary")
            report, status = None, "FAILED"
        from mlflow.tracking import MlflowClient

        MlflowClient(self._sweep["tracking_uri"]).set_terminated(self._sweep["parent_run_id"], status)
        if report is not None:
            log.info("sweep summary: %s", Path(self._sweep["sweep_dir"]) / "summary.md")
            print(report.markdown)
        return report

    # ---------------------------------------------------------------------- job
    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not HydraConfig.initialized() or str(HydraConfig.get().mode.name) != "MULTIRUN":
            return
        hc = HydraConfig.get()
        status = getattr(job_return.status, "name", str(job_return.status))
        record: Dict[str, Any] = {
            "job": str(hc.job.num),
            "overrides": list(hc.overrides.task),
            "status": "FINISHED" if status == "COMPLETED" else "FAILED",
            "error": None,
            "objective": None,
        }
        value = job_return_value(job_return)
        if status == "COMPLETED":
            record["objective"] = value
        else:
            record["error"] = f"{type(value).__name__}: {value}" if value is not None else status
        path = Path(hc.runtime.output_dir) / JOB_FILE
        path.write_text(json.dumps(record, indent=2, default=str))
