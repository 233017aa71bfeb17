"""Runs whose process died (SIGKILL, the OOM killer, a full disk) are ended by the next
command, with a tag saying why; stale temporary stores are removed. Real processes
killed for real, real SQLite stores, a real full tmpfs."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs, run_cli, store_uri
from faults import (
    Job, jobs_past_epoch_2, reproduction_at_epoch_2, resize, run_statuses, small_filesystem,
)
from mnist_experiments.tracking import liveness
from mnist_experiments.tracking.owner import (
    HEARTBEAT_TAG, HOST_TAG, NAMESPACE_TAG, PID_TAG, START_TAG, Owner, process_start, stale_creation,
)
from mnist_experiments.tracking.store import remove_stale_creations

LONG = ["data=digits", "train.epochs=200", "viz=off", "mlflow.log_model=false"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _builders(temporary) -> list:
    """Processes building the store ``temporary``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if str(temporary).encode() in (entry / "cmdline").read_bytes():
                found.append(entry.name)
        except OSError:
            pass
    return found


def test_an_owner_is_alive_only_while_its_process_runs():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        me = Owner.this_process()
        owner = Owner(me.host, child.pid, process_start(child.pid), me.namespace)
        tags = owner.tags()
        assert owner.alive() and liveness.why_dead(tags) is None
        # the same pid with another start time: the pid was reused by another process
        reused = {**tags, START_TAG: tags[START_TAG] + "1"}
        assert "ended without ending the run" in liveness.why_dead(reused)
    finally:
        child.kill()
        child.wait()
    assert not owner.alive()
    assert f"process {child.pid}" in liveness.why_dead(tags)
    assert liveness.why_dead({}) is None  # a run of another tool is never touched


def test_a_run_on_another_host_is_dead_only_when_its_heartbeat_is_older_than_the_lease():
    now = int(time.time() * 1000)
    tags = {HOST_TAG: "elsewhere.example", PID_TAG: "1", START_TAG: "x:1"}
    assert liveness.why_dead({**tags, HEARTBEAT_TAG: str(now - 60_000)}, now) is None
    old = now - int(liveness.lease_seconds() * 1000) - 1000
    assert "no heartbeat" in liveness.why_dead({**tags, HEARTBEAT_TAG: str(old)}, now)
    # a container on this host (same host name, its own pids): judged by its heartbeat too
    container = {**Owner.this_process().tags(), PID_TAG: str(_dead_pid()),
                 NAMESPACE_TAG: "pid:[1]", HEARTBEAT_TAG: str(now - 60_000)}
    assert liveness.why_dead(container, now) is None


def test_stale_temporary_stores_are_removed_and_live_ones_kept(tmp_path):
    db = tmp_path / "mlflow.db"
    dead = tmp_path / f".mlflow.db.{_dead_pid()}-1.creating"
    mine = tmp_path / f".mlflow.db.{os.getpid()}-{process_start(os.getpid()).split(':')[1]}.creating"
    for path in (dead, dead.with_name(dead.name + "-journal"), mine):
        path.write_bytes(b"x")
    assert stale_creation(dead) and not stale_creation(mine)
    remove_stale_creations(db)
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]


@pytest.mark.slow
def test_a_run_killed_by_sigkill_is_ended_by_the_next_run(tmp_path):
    job = Job(LONG, tmp_path)
    job.wait_for("epoch 2/200")
    job.signal(signal.SIGKILL)
    job.finish()
    uri = store_uri(tmp_path)
    ((name, (status, _)),) = run_statuses(uri).items()
    assert status == "RUNNING"  # what SIGKILL leaves: nothing could end it

    result = run_cli([*FAST, "viz=off", "mlflow.log_model=false"], tmp_path)
    assert result.returncode == 0, result.stderr
    statuses = run_statuses(uri)
    assert statuses[name][0] == "KILLED"
    assert "ended without ending the run" in statuses[name][1]
    assert "FINISHED" in [s for s, _ in statuses.values()]
    assert "as KILLED" in result.stderr + result.stdout


@pytest.mark.slow
def test_sigkill_while_the_store_is_built_leaves_a_file_that_the_next_run_removes(tmp_path):
    job = Job(LONG, tmp_path)
    job.wait_until(lambda: any(tmp_path.glob(".mlflow.db.*.creating")))
    job.signal(signal.SIGKILL)  # the job only: its store helper finishes, then exits
    job.finish()
    left = list(tmp_path.glob(".mlflow.db.*.creating"))
    deadline = time.monotonic() + 60
    while _builders(left[0]) and time.monotonic() < deadline:  # in a session of its own
        time.sleep(0.1)
    assert left and left[0].stat().st_size > 100_000  # the ~1 MB the issue saw
    result = run_cli([*FAST, "viz=off", "mlflow.log_model=false"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(".mlflow.db.*")), list(tmp_path.iterdir())
    assert [r.info.status for r in all_runs(store_uri(tmp_path))] == ["FINISHED"]


@pytest.mark.slow
def test_a_full_disk_is_one_paragraph_and_the_run_is_ended_once_there_is_space(tmp_path):
    with small_filesystem(tmp_path / "disk", 60_000) as disk:
        first = run_cli([*FAST, "viz=off", "mlflow.log_model=false", "mlflow.run_name=first"],
                        disk)
        assert first.returncode == 0, first.stderr
        # room for a run's records, not for its figures and its ~1.1 MB model file
        used = shutil.disk_usage(disk).used // 1024
        resize(disk, used + 400)
        full = run_cli([*FAST, "mlflow.run_name=second"], disk)
        assert full.returncode == 1
        assert "Traceback" not in full.stderr, full.stderr
        assert "disk holding the MLflow store" in full.stderr and "is full" in full.stderr
        uri = store_uri(disk)
        with sqlite3.connect(disk / "mlflow.db") as db:  # nothing recorded was corrupted
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        resize(disk, 60_000)
        again = run_cli([*FAST, "viz=off", "mlflow.log_model=false", "mlflow.run_name=third"],
                        disk)
        assert again.returncode == 0, again.stderr
        statuses = run_statuses(uri)
        assert statuses["first"][0] == "FINISHED" and statuses["third"][0] == "FINISHED"
        assert statuses["second"][0] in ("KILLED", "FAILED")
        assert MlflowClient(uri).search_runs(
            [r.info.experiment_id for r in all_runs(uri)][:1],
            "attributes.status = 'RUNNING'") == []


@pytest.mark.slow
def test_a_report_ends_a_sweep_whose_processes_were_killed(tmp_path):
    sweep = tmp_path / "sweep"
    job = Job(["-m", *LONG, "seed=1,2", f"hydra.sweep.dir={sweep}",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], tmp_path)
    job.wait_until(jobs_past_epoch_2(sweep, 2))
    job.signal(signal.SIGKILL, group=True)  # the launcher and its workers, at once
    job.finish()
    uri = store_uri(tmp_path)
    assert {s for s, _ in run_statuses(uri).values()} == {"RUNNING"}
    report = run_cli([str(sweep)], tmp_path, module="mnist_experiments.commands.report")
    statuses = run_statuses(uri)
    assert {s for s, _ in statuses.values()} == {"KILLED"}, (statuses, report.stderr)
    assert "2 killed" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_a_reproduction_whose_worker_is_killed_ends_its_run_and_says_so(tmp_path):
    # the kernel's OOM killer takes the biggest process: the worker that trains
    _, job = reproduction_at_epoch_2(tmp_path)
    (worker,) = job.session_processes(running=b"spawn_main")
    os.kill(worker, signal.SIGKILL)
    output = job.finish()
    assert job.returncode == 2, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("mnist-exp-reproduce: error: A worker process of the reproduction "
                           "died"), output
    statuses = run_statuses(store_uri(tmp_path))
    assert sorted(s for s, _ in statuses.values()) == ["FINISHED", "KILLED"], statuses
    (reason,) = [r for s, r in statuses.values() if s == "KILLED"]
    assert f"its process {worker} " in reason and "are now marked KILLED" in last


@pytest.mark.slow
def test_a_joblib_sweep_whose_worker_is_killed_says_so_and_resumes(tmp_path):
    sweep = ["-m", "data=digits", "train.epochs=30", "viz=off", "mlflow.log_model=false",
             "seed=1,2,3", f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=joblib",
             "hydra.launcher.n_jobs=2"]
    job = Job(sweep, tmp_path)
    job.wait_until(jobs_past_epoch_2(tmp_path / "sweep", 2))
    workers = job.session_processes(running=b"LokyProcess")
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)  # what the OOM killer does
    output = job.finish()
    assert job.returncode == 1, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("mnist-exp: a worker process of the sweep died"), output
    assert f"hydra.sweep.dir={tmp_path / 'sweep'}" in last
    statuses = run_statuses(store_uri(tmp_path))
    assert "RUNNING" not in {s for s, _ in statuses.values()}, statuses

    again = run_cli(sweep, tmp_path)  # what the paragraph says to do
    assert again.returncode == 0, again.stderr[-3000:]
    runs = [(r.info.run_name, r.info.status) for r in all_runs(store_uri(tmp_path))]
    finished = {name for name, status in runs if status == "FINISHED"}
    assert finished == {"seed=1", "seed=2", "seed=3", "sweep-sweep"}, runs
    assert "RUNNING" not in {status for _, status in runs}, runs
