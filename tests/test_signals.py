"""Ctrl-C and SIGTERM at any moment: every run ends in a terminal state, the command says
so in one line, exits 130 (SIGINT) or 143 (SIGTERM), prints no traceback and leaves no
worker process behind. Real processes, real signals, real sweeps (sequential and joblib).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import all_runs, cli_env, store_uri
from faults import Job, default_sigint, jobs_past_epoch_2, reproduction_at_epoch_2, run_statuses
from mnist_experiments.tracking.store_template import CACHE_ENV, build_template

pytestmark = pytest.mark.slow

LONG = ["data=digits", "train.epochs=200", "viz=off", "mlflow.log_model=false"]
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _assert_stopped(job: Job, signum: int, output: str) -> str:
    assert job.returncode == EXIT[signum], output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"mnist-exp: stopped by {signal.Signals(signum).name}"), output
    return last


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_training_ends_the_run_killed(tmp_path, signum):
    job = Job(LONG, tmp_path)
    job.wait_for("epoch 2/200")
    job.signal(signum, group=signum == signal.SIGINT)  # Ctrl-C reaches the whole group
    last = _assert_stopped(job, signum, job.finish())
    (status, reason), = run_statuses(store_uri(tmp_path)).values()
    assert status == "KILLED"
    assert reason == f"interrupted by {signal.Signals(signum).name}"
    assert "is KILLED" in last and "mlflow ui" in last


@pytest.mark.parametrize("cache", ["empty", "template"])
def test_sigterm_during_start_up_and_store_creation_records_nothing(
        tmp_path, monkeypatch, cache):
    # empty: the first store of a machine, built by the helper (with the template) while
    # the job imports TensorFlow; template: the store is a copy of it, made at once
    session_template = build_template()  # in the test session's cache (conftest.py)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    if cache == "template":
        (tmp_path / "cache").mkdir()
        shutil.copy(session_template, tmp_path / "cache")
    job = Job(LONG, tmp_path)
    job.wait_until(lambda: any(tmp_path.glob(".mlflow.db.*.creating")))
    job.signal(signal.SIGTERM)
    last = _assert_stopped(job, signal.SIGTERM, job.finish())
    assert "nothing was recorded" in last
    time.sleep(1)  # the helper is stopped and the temporary file removed
    assert not list(tmp_path.glob(".mlflow.db*")), list(tmp_path.iterdir())
    assert not (tmp_path / "mlflow.db").exists()


def test_a_second_ctrl_c_while_the_run_ends_still_ends_it(tmp_path):
    job = Job(LONG, tmp_path)
    job.wait_for("epoch 2/200")
    job.signal(signal.SIGINT, group=True)
    job.signal(signal.SIGINT, group=True)
    output = job.finish()
    assert job.returncode == 130, output
    assert [s for s, _ in run_statuses(store_uri(tmp_path)).values()] == ["KILLED"]


def _sweep(tmp_path, *extra):
    return Job(["-m", *LONG[:-1], "train.epochs=40", "seed=1,2,3,4",
                f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra], tmp_path)


def test_ctrl_c_at_a_job_boundary_stops_a_sequential_sweep(tmp_path):
    job = _sweep(tmp_path)
    job.wait_until(lambda: (tmp_path / "sweep" / "0" / "job.json").exists())
    job.signal(signal.SIGINT, group=True)
    last = _assert_stopped(job, signal.SIGINT, job.finish())
    statuses = run_statuses(store_uri(tmp_path))
    parent = next(v for k, v in statuses.items() if k.startswith("sweep-"))
    assert parent == ("KILLED", "interrupted by SIGINT")
    jobs = [s for k, (s, _) in statuses.items() if not k.startswith("sweep-")]
    assert jobs and "FINISHED" in jobs and "RUNNING" not in jobs
    assert len(jobs) < 4  # the sweep stopped: not every job ran
    assert "sweep parent run" in last and "KILLED" in last
    assert f"run the same command again with hydra.sweep.dir={tmp_path / 'sweep'}" in last
    assert "of the 4 planned jobs never ran" in (tmp_path / "sweep" / "summary.md").read_text()
    assert json.loads((tmp_path / "sweep" / "0" / "job.json").read_text())["status"] == "FINISHED"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "SIGTERM"])
def test_a_signal_stops_a_joblib_sweep_and_its_workers(tmp_path, signum):
    job = _sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    job.wait_until(jobs_past_epoch_2(tmp_path / "sweep", 2))
    workers = job.session_processes()
    assert len(workers) >= 3  # the launcher and its two workers (and loky's helpers)
    job.signal(signum, group=signum == signal.SIGINT)
    last = _assert_stopped(job, signum, job.finish())
    statuses = run_statuses(store_uri(tmp_path))
    assert {s for s, _ in statuses.values()} == {"KILLED"}, statuses
    children = [reason for k, (_, reason) in statuses.items() if not k.startswith("sweep-")]
    assert len(children) == 2
    assert all(r.startswith("interrupted by") for r in children), children  # ended by the job
    assert "2 KILLED" in last
    time.sleep(2)
    assert job.session_processes() == [], "orphaned worker processes"
    assert "killed (interrupted" in (tmp_path / "sweep" / "summary.md").read_text()


def test_sigterm_stops_a_reproduction_and_its_worker(tmp_path):
    original, job = reproduction_at_epoch_2(tmp_path)
    workers = job.session_processes()
    job.signal(signal.SIGTERM)
    output = job.finish()
    assert job.returncode == 143, output
    last = output.strip().splitlines()[-1]
    assert "Traceback" not in output and "stopped by SIGTERM" in last
    statuses = {s for s, _ in run_statuses(store_uri(tmp_path)).values()}
    assert statuses == {"FINISHED", "KILLED"}, (statuses, output)  # the original, its reproduction
    (reproduction,) = [r.info.run_id for r in all_runs(store_uri(tmp_path))
                       if r.info.run_id != original]
    assert f"run {reproduction} is KILLED. See it: mlflow ui" in last, output
    time.sleep(1)
    assert len(workers) >= 2 and job.session_processes() == []


def test_sigterm_while_the_artifacts_are_logged_ends_the_run_killed(tmp_path):
    from conftest import FAST

    job = Job([*FAST, "train.epochs=2"], tmp_path)  # figures, activations and the model
    job.wait_for("test test_loss=")  # evaluated: the artifacts are being drawn and logged
    job.signal(signal.SIGTERM)
    output = job.finish()
    statuses = [s for s, _ in run_statuses(store_uri(tmp_path)).values()]
    if job.returncode == 0:  # the ~1 s of artifacts ended before the signal landed
        assert statuses == ["FINISHED"]
        pytest.skip("the run finished before the signal arrived")
    _assert_stopped(job, signal.SIGTERM, output)
    assert statuses == ["KILLED"]


_LANDS_AS_THE_SWEEP_ENDS = """
import os, signal, sys
from mnist_experiments.workflows import sweep

real_finish = sweep.finish

def finish(info, signum=None):
    if signum is None:  # the sweep's normal end: its leaderboard, then its parent run
        os.kill(os.getpid(), signal.SIGTERM)
    return real_finish(info, signum)

sweep.finish = finish
sys.argv = ["mnist-exp", *sys.argv[1:]]
from mnist_experiments.commands.train import main
main()
"""


def test_a_signal_as_a_sweep_ends_leaves_its_records_whole(tmp_path):
    """SIGTERM while the sweep writes its leaderboard and ends its parent run: that
    clean-up completes (nothing left RUNNING), then the process stops, saying how the
    sweep ended (it used to say "nothing was recorded" and leave the parent RUNNING)."""
    done = subprocess.run(
        [sys.executable, "-c", _LANDS_AS_THE_SWEEP_ENDS, "-m", *LONG[:-1], "train.epochs=1",
         "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
        preexec_fn=default_sigint)
    output = done.stdout + done.stderr
    assert done.returncode == 143, output
    assert "Traceback" not in output, output
    statuses = run_statuses(store_uri(tmp_path))
    assert sorted(s for s, _ in statuses.values()) == ["FINISHED"] * 3, statuses
    last = output.strip().splitlines()[-1]
    assert last.startswith("mnist-exp: stopped by SIGTERM; sweep parent run "), output
    assert "is FINISHED (2 FINISHED)" in last, output
    assert (tmp_path / "sweep" / "summary.md").is_file()


_LANDS_IN_A_DEL = """
import os, signal, sys, time
from mnist_experiments.launch import signals

class Collected:
    def __del__(self):  # a library's clean-up, run by the garbage collector
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100000):  # the handler runs here, inside __del__
            pass

try:
    with signals.handled():
        Collected()
        for _ in range(100):
            time.sleep(0.02)
        print("went on as if nothing happened")
except KeyboardInterrupt as exc:
    print("stopped by", signal.Signals(signals.signal_of(exc)).name, signals.received)
"""


def test_a_signal_that_lands_in_a_del_still_stops_the_process_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", _LANDS_IN_A_DEL], env=cli_env(),
                          capture_output=True, text=True, timeout=60,
                          preexec_fn=default_sigint)  # (CI may start us with it ignored)
    assert done.stdout.strip() == "stopped by SIGINT [2]", (done.stdout, done.stderr)
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, \
        done.stderr
