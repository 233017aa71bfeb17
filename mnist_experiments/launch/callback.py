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
  the leaderboard, ends the parent run, and makes the sweep command exit non-zero when
  any job failed.

The MLflow work itself is :mod:`mnist_experiments.workflows.sweep`, imported by the
hooks that need it, so that loading this callback (Hydra does for every run) is cheap.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnist_experiments.compat import job_return_value
from mnist_experiments.errors import UserError
from mnist_experiments.launch.files import write_job_record

log = logging.getLogger(__name__)


class MlflowSweepCallback(Callback):
    """Sweep-level MLflow work: parent run, job records and the leaderboard."""

    def __init__(self) -> None:
        self._sweep: Optional[Dict[str, str]] = None
        self._finished = False

    # ----------------------------------------------------------------- multirun
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_experiments.workflows import sweep  # heavy: MLflow

        self._sweep = sweep.start(config)
        atexit.register(self._finish)  # also when a failed job makes Hydra abort the sweep

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_experiments.workflows import sweep

        message = sweep.describe_failures(self._finish(), self._sweep and self._sweep["sweep_dir"])
        if message:
            raise UserError(message)

    def _finish(self):
        if self._sweep is None or self._finished:
            return None
        self._finished = True
        from mnist_experiments.workflows import sweep

        return sweep.finish(self._sweep)

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
        write_job_record(Path(hc.runtime.output_dir), record)
