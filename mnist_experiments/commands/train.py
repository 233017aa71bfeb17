"""The ``mnist-exp`` command: a Hydra app around
:func:`mnist_experiments.workflows.experiment.run_experiment`.

Importing this module is cheap: TensorFlow and MLflow are imported only when a job
runs, so ``mnist-exp --help`` and ``mnist-exp --cfg job`` stay fast.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

from mnist_experiments import terminal
from mnist_experiments.commands import version_text
from mnist_experiments.compat import (
    compose_each_sweep_job_once,
    hide_help_groups,
    report_errors_with,
    share_config_repository_for_help,
)
from mnist_experiments.config.groups import check_group_overrides
from mnist_experiments.config.identity import config_id
from mnist_experiments.config.schema import register_configs
from mnist_experiments.config.validation import validate
from mnist_experiments.errors import ConfigError, UserError, disk_full_error, no_space_left
from mnist_experiments.launch import heap, numerics, signals
from mnist_experiments.launch.callback import MlflowSweepCallback
from mnist_experiments.launch.context import JobContext
from mnist_experiments.launch.files import finished_before
from mnist_experiments.launch.study import open_job_trial
from mnist_experiments.launch.reporting import describe, discard_output_dir

CONFIG_PATH = "pkg://mnist_experiments.conf"

register_configs()


if any(arg in ("--help", "-h") for arg in sys.argv[1:]):
    share_config_repository_for_help()
    hide_help_groups(("schema",))  # the structured configs' groups are internal


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def app(cfg: DictConfig) -> Optional[float]:
    """Train and evaluate the configured model; return the objective for sweepers."""
    # a launcher's worker process runs jobs without main(): it handles signals here
    terminal.dump_on_crash()  # (and a native crash shows where Python was)
    with signals.handled():
        try:
            return _job(cfg)
        except KeyboardInterrupt as exc:  # the job's runs have ended KILLED
            if signals.detached_worker():  # scancel of a SLURM job: the sweep goes on
                raise signals.JobStopped(signals.signal_of(exc)) from None
            raise


def _exit_without_teardown() -> None:
    """The last exit step of a joblib (loky) worker that ran jobs: its runs are ended and
    its records written, so it skips TensorFlow's interpreter teardown (~2 s, which the
    sweep's launcher waits for at its own exit)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _job(cfg: DictConfig) -> Optional[float]:
    import multiprocessing

    if multiprocessing.current_process().name.startswith("LokyProcess"):
        # (atexit runs the last registered first: a second registration is harmless)
        atexit.unregister(_exit_without_teardown)
        atexit.register(_exit_without_teardown)
    context = JobContext.from_hydra()
    if context.parent_run_id is not None and context.output_dir:  # a sweep's job
        done = finished_before(Path(context.output_dir), context.parent_run_id,
                               context.overrides, config_id(cfg))
        if done is not None:  # a resumed sweep: this job finished before
            logging.getLogger(__name__).info(
                "finished in this sweep before (objective %.4f): not run again", done)
            return done
    if context.parent_run_id is not None:  # a job of a pruned Optuna search: its trial
        open_job_trial(Path(context.tags["sweep.dir"]), context.tags.get("sweep.job_num"))
    try:
        validate(cfg)  # a bad value is refused before anything heavy is imported
        if cfg.get("resume"):  # the run's recorded config, checked against the overrides
            from mnist_experiments.workflows.resume import prepare

            context.resume = prepare(cfg, context)
            cfg = context.resume.cfg
            context.tracking_uri = context.resume.tracking_uri
            context.experiment_id = context.resume.experiment_id
        numerics.prepare(cfg)  # oneDNN and its ISA: read by TensorFlow when it loads
    except UserError:  # (a ConfigError too)
        discard_output_dir()  # a refused config leaves no outputs/runs/<date>
        raise
    # a brand-new SQLite store is built by a helper process while TensorFlow imports
    with context.start_store_creation(cfg) as creation:
        with heap.heavy_imports():
            from mnist_experiments.workflows.experiment import run_experiment  # heavy

        try:
            return run_experiment(cfg, context, creation).objective
        except Exception as exc:  # noqa: BLE001 - only a full disk is translated
            if no_space_left(exc):
                raise disk_full_error(exc, _store_dir(cfg, context)) from None
            raise


def _store_dir(cfg: DictConfig, context: JobContext) -> str:
    from mnist_experiments.tracking.store import resolve_tracking_uri, sqlite_file

    db = sqlite_file(context.tracking_uri
                     or resolve_tracking_uri(cfg.mlflow.tracking_uri, context.launch_dir))
    return str(db.parent) if db is not None else context.launch_dir


def main() -> None:
    """``mnist-exp``: run the Hydra app.

    After a successful single run, or a sweep whose jobs all ran in this process (the
    basic launcher), everything is logged and flushed, so the process exits at once
    instead of spending ~2 s in TensorFlow's interpreter teardown. Errors and other
    launchers' sweeps (whose workers must be shut down) exit normally.
    """
    if "--version" in sys.argv[1:]:  # (Hydra's own --version prints Hydra's)
        print(version_text("mnist-exp"))
        return
    terminal.dump_on_crash()
    report_errors_with(describe, "mnist-exp")  # a bad config: one paragraph, exit 1
    try:
        check_group_overrides(sys.argv[1:])  # optimizer=null: Hydra fails before our code
    except ConfigError as exc:
        print(f"mnist-exp: {exc}", file=sys.stderr)
        sys.exit(1)
    compose_each_sweep_job_once()  # not once to check the sweep and again to run the job
    with signals.handled():
        try:
            app()
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM, the runs already ended KILLED
            sys.exit(stopped(exc))
    multirun = bool({"-m", "--multirun"} & set(sys.argv[1:]))
    if "tensorflow" in sys.modules and (not multirun or MlflowSweepCallback.ran_in_process()):
        logging.shutdown()
        terminal.remove_autograph_files()  # TensorFlow removes them at exit, skipped here
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def stopped(exc: BaseException) -> int:
    """After a signal: stop a sweep's workers and end its runs, say so in one line and
    return the conventional exit status (130 for SIGINT, 143 for SIGTERM)."""
    with signals.deferred():
        summary = MlflowSweepCallback.stop_active(signals.signal_of(exc))
        if summary is None:
            summary = describe_last_run()
    print(f"mnist-exp: stopped by {signals.name_of(exc)}; {summary}", file=sys.stderr, flush=True)
    return signals.exit_status(exc)


def describe_last_run() -> str:
    """What the signal left behind in a single run."""
    runs = sys.modules.get("mnist_experiments.tracking.runs")
    ended = getattr(runs, "last_ended", None)
    if not ended:
        return "it stopped before an MLflow run was started; nothing was recorded."
    return f"run {ended['run_id']} is {ended['status']}. {ended['where']}"


if __name__ == "__main__":
    main()
