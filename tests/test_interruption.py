"""An error that surfaces after SIGINT/SIGTERM is reported as that signal.

A signal raises ``Interrupted`` wherever the main thread happens to be; inside a
library's half-done state change (Hydra composing the next job of a sequential sweep) it
can come out as another error: in CI, Ctrl-C at a job boundary printed "defaults is not
a config key" and exited 1 instead of 130. These tests put a real signal into this
process and check each place that turns errors into outcomes: the command's error
report, a run's final status, and the start of the next sweep job.
"""

from __future__ import annotations

import os
import signal

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from mnist_experiments.launch import signals
from mnist_experiments.launch.callback import MlflowSweepCallback
from mnist_experiments.launch.reporting import describe


@pytest.fixture
def after_a_signal():
    """This process has really received SIGTERM (handled, not yet raised)."""
    before = list(signals.received)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signals.received.append(signum))
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.received[-1] == signal.SIGTERM
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signals.received[:] = before


def _composition_error() -> ConfigCompositionException:
    try:
        raise ConfigKeyError("Key 'defaults' is not in struct")
    except ConfigKeyError as cause:
        error = ConfigCompositionException("Error merging 'config' with schema")
        error.__cause__ = cause
        return error


def test_a_config_error_is_the_users_when_no_signal_came():
    assert "is not a config key" in describe(_composition_error())


def test_a_config_error_after_a_signal_is_the_signal(after_a_signal):
    with pytest.raises(signals.Interrupted) as stopped:
        describe(_composition_error())
    assert stopped.value.signum == signal.SIGTERM
    assert stopped.value.exit_status == 143
    assert isinstance(stopped.value.__cause__, ConfigCompositionException)


def test_a_keyboard_interrupt_is_left_alone(after_a_signal):
    assert signals.interrupting(signals.Interrupted(signal.SIGINT)) == signal.SIGINT
    signals.raise_interruption(KeyboardInterrupt())  # nothing to translate


def test_the_next_sweep_job_does_not_start_after_a_signal(after_a_signal):
    with pytest.raises(signals.Interrupted):
        MlflowSweepCallback().on_job_start(config=None)


def test_the_next_sweep_job_starts_without_one():
    assert not signals.received
    MlflowSweepCallback().on_job_start(config=None)


def test_no_epoch_starts_after_a_signal(after_a_signal):
    """A signal that something caught and carried on from stops the fit at its next
    epoch (here, its first)."""
    from conftest import compose_cfg
    from mnist_experiments.config.validation import validate
    from mnist_experiments.data import load_dataset
    from mnist_experiments.training.fit import fit

    cfg = validate(compose_cfg("data=digits", "data.limit=100", "model=seed_tiny",
                               "train.epochs=2"))
    data = load_dataset(cfg.data, 0)
    epochs = []
    with pytest.raises(signals.Interrupted) as stopped:
        fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val,
            on_metrics=lambda metrics, epoch: epochs.append(epoch))
    assert stopped.value.signum == signal.SIGTERM and epochs == []


@pytest.mark.slow
def test_a_run_that_fails_after_a_signal_ends_killed(after_a_signal, tmp_path):
    import mlflow

    from mnist_experiments.tracking.runs import ensure_experiment, tracked_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = ensure_experiment(uri, "interrupted")
    with pytest.raises(RuntimeError):
        with tracked_run(experiment, "broken by a signal") as run:
            raise RuntimeError("a library's state, broken half-way by the signal")
    ended = mlflow.tracking.MlflowClient(uri).get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags["mnist_exp.end_reason"] == "interrupted by SIGTERM"


LAUNCHER = r'''
import subprocess, sys, time
from mnist_experiments.launch import signals

WORKER = """
import sys, time
from mnist_experiments.launch import signals
with signals.handled():
    try:
        print("ready", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        time.sleep(0.5)  # ending its runs
        open(sys.argv[1], "w").write("runs ended")
        raise
open(sys.argv[1] + ".after", "w").write("exited by itself")
"""
with signals.passed_to_children():
    worker = subprocess.Popen([sys.executable, "-c", WORKER, sys.argv[1]],
                              stdout=subprocess.PIPE, text=True)
    assert worker.stdout.readline() == "ready\n"
    start = time.monotonic()
    stopped = signals.stop_children(timeout=30)
    print(stopped, round(time.monotonic() - start, 1), worker.wait(timeout=10))
'''


@pytest.mark.slow
def test_a_worker_that_ended_its_runs_waits_for_its_launcher(tmp_path):
    """A worker whose runs ended after a passed-on signal waits to be stopped, instead
    of exiting: joblib SIGKILLs every worker once one of them exits, which cut the other
    worker's run short (its run was then ended by the liveness repair, not by itself)."""
    import subprocess
    import sys

    ended = tmp_path / "ended"
    out = subprocess.run([sys.executable, "-c", LAUNCHER, str(ended)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, seconds, status = out.stdout.split()
    assert count == "1"
    assert ended.read_text() == "runs ended"
    assert int(status) == -signal.SIGKILL  # parked until its launcher stopped it
    assert not (tmp_path / "ended.after").exists()
    assert float(seconds) < 20  # the launcher did not wait for its timeout
