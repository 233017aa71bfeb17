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
import contextlib
import copy
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mnist_experiments.compat import job_return_value
from mnist_experiments.config.identity import config_id
from mnist_experiments.errors import UserError
from mnist_experiments.launch import heap, numerics, signals
from mnist_experiments.launch.files import (
    absolute,
    read_sweep_file,
    record_objective,
    write_job_record,
)
from mnist_experiments.launch.study import job_trial
from mnist_experiments.tracking.preflight import check_store
from mnist_experiments.tracking.store import StoreCreation, resolve_tracking_uri

log = logging.getLogger(__name__)

# While a sweep runs in this process, signals are passed to its workers first. Kept
# here, not on the callback: Hydra pickles the callbacks for joblib's workers.
_passing_signals = contextlib.ExitStack()


def sweep_start_failure(exc: BaseException) -> str:
    """The one paragraph printed when a sweep cannot start (no job has run)."""
    if isinstance(exc, UserError):
        cause = str(exc)
    else:
        first = (str(exc).splitlines() or [""])[0][:300]
        cause = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"The sweep did not start, no job ran: {cause}"


def runs_jobs_here(config: DictConfig) -> bool:
    """Whether the sweep's launcher runs its jobs in this process (Hydra's basic one)."""
    return str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher")


def import_job_modules(config: DictConfig) -> None:
    """Import what this process's jobs import (TensorFlow, Keras: ~3 s), now.

    Called while a helper process builds a new store on the other core, which the sweep
    would otherwise wait for (~2 s on a fresh store, measured on 2 cores) before its
    parent run. TensorFlow reads ``train.onednn`` and ``train.cpu_isa`` when it loads,
    so they are applied first, from the sweep's config (a job that sweeps them gets
    the usual "new process" error, as its second job would anyway). A failure here is
    left to the first job, which reports it as it always does.
    """
    cfg = copy.deepcopy(config)
    OmegaConf.set_readonly(cfg, False)
    try:
        numerics.prepare(cfg)
        importlib.import_module("mnist_experiments.workflows.experiment")  # TensorFlow
    except Exception:  # noqa: BLE001 - the job imports it again and reports the error
        log.debug("importing the jobs' modules early failed", exc_info=True)


class MlflowSweepCallback(Callback):
    """Sweep-level MLflow work: parent run, job records and the leaderboard."""

    _active: Optional["MlflowSweepCallback"] = None  # the sweep this process launched

    def __init__(self) -> None:
        self._sweep: Optional[Dict[str, str]] = None
        self._finished = False
        self._account: Optional[str] = None  # the one line on how the sweep ended
        self._in_process = False  # the launcher runs the jobs in this process

    @classmethod
    def ran_in_process(cls) -> bool:
        """Whether this process launched a sweep whose jobs all ran in it (Hydra's basic
        launcher: no worker process to wait for) and ended it."""
        active = cls._active
        return (active is not None and active._finished
                and active._in_process)

    @classmethod
    def stop_active(cls, signum: int) -> Optional[str]:
        """After SIGINT/SIGTERM in the launching process: stop the launcher's workers,
        end the jobs' runs and the parent run KILLED, write the leaderboard; return a
        one-line account, or None if this process launched no sweep."""
        active = cls._active
        if active is None or active._sweep is None:
            return None
        signals.stop_children()
        if active._finished:  # the signal came as the sweep ended: its records are whole
            return active._account
        return active._finish(signum=signum, account=True)

    @classmethod
    def end_after_a_worker_died(cls) -> Optional[Dict[str, str]]:
        """After the launcher lost a worker process (the OOM killer, SIGKILL; joblib then
        stops the others): end the runs their deaths left RUNNING (KILLED) and the
        parent run, write the leaderboard; return the account line and the sweep dir,
        or None if this process launched no sweep."""
        active = cls._active
        if active is None or active._sweep is None:
            return None
        signals.stop_children()
        sweep_dir = active._sweep["sweep_dir"]
        return {"account": active._finish(account=True) or "", "sweep_dir": sweep_dir}

    @classmethod
    def end_after_a_slurm_job_died(cls, job: str) -> Optional[Dict[str, str]]:
        """After a SLURM job of the sweep ended without its result (Submitit's launcher
        then stops waiting for the others): scancel the sweep's other jobs and wait for
        them to end their runs, end the runs SLURM says are over (KILLED) and the parent
        run, write the leaderboard; return the account line and the sweep dir, or None
        if this process launched no sweep. ``job``: the dead job's id (its array is this
        launch's; the sweep dir's Submitit folders name the arrays of earlier ones)."""
        active = cls._active
        if active is None or active._sweep is None:
            return None
        from mnist_experiments.launch import slurm
        from mnist_experiments.workflows import sweep

        sweep_dir = active._sweep["sweep_dir"]
        arrays = {job.split("_")[0], *slurm.sweep_arrays(Path(sweep_dir))} - {"?"}
        states = slurm.stop_sweep_jobs(sorted(arrays))
        sweep.end_runs_of_ended_slurm_jobs(active._sweep, states)
        return {"account": active._finish(account=True) or "", "sweep_dir": sweep_dir}

    # ----------------------------------------------------------------- multirun
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Start the sweep; if that fails, stop it before any job runs.

        Hydra turns a callback's exception into a warning and runs the jobs anyway
        (``hydra._internal.callbacks.Callbacks._notify``), which would leave them
        without a parent run and the sweep without a leaderboard, and exit 0. So the
        error is printed here, as one paragraph, and the sweep exits with status 1
        (``SystemExit`` is not an ``Exception``: Hydra lets it through).
        """
        try:
            # a bad store is refused before MLflow is even imported, and a new one is
            # built by a helper process while this one imports MLflow (seconds each)
            uri = resolve_tracking_uri(config.mlflow.tracking_uri, os.getcwd())
            check_store(uri)
            creation = StoreCreation.start(uri, str(config.mlflow.experiment_name))
            try:
                with heap.heavy_imports():
                    from mnist_experiments.workflows import sweep  # heavy: MLflow

                    if creation.building and runs_jobs_here(config):
                        import_job_modules(config)  # while the helper builds the store
                self._sweep = sweep.start(config, creation)
            finally:
                creation.discard()  # (already done unless the start failed)
        except Exception as exc:  # noqa: BLE001 - every failure stops the sweep
            sys.stderr.write(sweep_start_failure(exc) + "\n")
            sys.stderr.flush()
            raise SystemExit(1) from None
        MlflowSweepCallback._active = self
        self._in_process = runs_jobs_here(config)
        if str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
            from mnist_experiments.compat.slurm import watch_jobs_without_accounting

            watch_jobs_without_accounting()  # a job that dies is seen to end
        # a signal stops the workers (they end their runs) before it unwinds the sweep
        _passing_signals.enter_context(signals.passed_to_children())
        atexit.register(self._finish)  # also when a failed job makes Hydra abort the sweep

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mnist_experiments.workflows import sweep

        message = sweep.describe_failures(self._finish(), self._sweep and self._sweep["sweep_dir"])
        if message:
            raise UserError(message)

    def _finish(self, signum: Optional[int] = None, account: bool = False):
        if self._sweep is None or self._finished:
            return None
        self._finished = True
        from mnist_experiments.workflows import sweep

        # the workers are done with: signals are ours again. A signal that lands now is
        # held back until the leaderboard is written and the parent run ended, then
        # raised (interrupted half-way, the parent run would be left RUNNING)
        with _passing_signals, signals.deferred():
            report = sweep.finish(self._sweep, signum=signum)
            self._account = sweep.account(report, self._sweep)
        return self._account if account else report

    # ---------------------------------------------------------------------- job
    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        """No job starts after a signal: in a sequential sweep, a Ctrl-C that reached a
        library's clean-up between two jobs (a ``__del__``, a ``finally``) can be lost
        there; the next job would then run as if nothing happened."""
        signals.raise_if_received()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not HydraConfig.initialized() or str(HydraConfig.get().mode.name) != "MULTIRUN":
            return
        hc = HydraConfig.get()
        status = getattr(job_return.status, "name", str(job_return.status))
        sweep_dir = absolute(hc.sweep.dir, hc.runtime.cwd)
        record: Dict[str, Any] = {
            "job": str(hc.job.num),
            "overrides": list(hc.overrides.task),
            "status": "FINISHED" if status == "COMPLETED" else "FAILED",
            "error": None,
            "objective": None,
            # a reused sweep dir holds older sweeps' jobs too: the record says whose it is
            "parent_run_id": (read_sweep_file(sweep_dir) or {}).get("parent_run_id"),
            # a resumed sweep skips this job only if its config is still the same
            "config_id": config_id(config),
        }
        trial = job_trial()
        if trial is not None and trial.pruned_at is not None:
            record["pruned"] = trial.pruned_at  # the epoch its Optuna trial was pruned at
        value = job_return_value(job_return)
        if status == "COMPLETED":
            record["objective"] = value
        elif isinstance(value, signals.JobStopped):  # scancel, a time limit: not a failure
            record["status"], record["error"] = "KILLED", str(value)
        else:
            record["error"] = f"{type(value).__name__}: {value}" if value is not None else status
        write_job_record(Path(hc.runtime.output_dir), record)
        if record["status"] == "FINISHED" and record["objective"] is not None \
                and record["parent_run_id"] and "pruned" not in record:  # what the next jobs' figures are judged by
            record_objective(sweep_dir, record["parent_run_id"], record["job"],
                             float(record["objective"]))
