"""Sweeps that race or reuse: two sweeps started together on a fresh store, and a sweep
dir used a second time.

Before (issue 14): of two sweeps started together on a fresh store, one lost its
parent run and its leaderboard (2 of 2 tries) with only a warning
(``on_multirun_start raised OperationalError: table _alembic_tmp_params already
exists``) and exit 0; a reused ``hydra.sweep.dir`` merged the old sweep's jobs into the
new leaderboard and recorded a stale best. Now (issue 16) the same command in the same
sweep dir resumes that sweep, and another sweep there is refused.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import all_runs, cli_env, run_cli, store_uri

pytestmark = pytest.mark.slow  # every test runs sweeps (training) in subprocesses

QUICK = ["data=digits", "data.limit=300", "train.epochs=1", "viz=off", "mlflow.log_model=false"]


def sweep(*args: str) -> List[str]:
    return [sys.executable, "-m", "mnist_experiments", "-m", *QUICK, *args]


def summary(directory: Path) -> List[Dict[str, str]]:
    with open(directory / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def parents_by_dir(uri: str):
    """Each sweep's parent run, by sweep dir, and each parent's children."""
    runs = all_runs(uri)
    parents = {Path(r.data.tags["sweep.dir"]).name: r for r in runs
               if r.data.tags.get("sweep") == "true"}
    children = {name: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for name, p in parents.items()}
    return parents, children


def test_two_sweeps_started_together_on_a_fresh_store_both_keep_their_parent_and_leaderboard(
        tmp_path):
    env = cli_env()
    processes = [subprocess.Popen(sweep("seed=1,2", f"hydra.sweep.dir=sweeps/{name}"),
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for name in ("a", "b")]
    outputs = [p.communicate(timeout=900) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-4000:]
        assert "raised" not in err and "_alembic_tmp" not in err, err[-4000:]

    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlruns", "sweeps"]
    parents, children = parents_by_dir(store_uri(tmp_path))
    assert sorted(parents) == ["a", "b"]
    experiments = {p.info.experiment_id for p in parents.values()}
    assert len(experiments) == 1  # the same experiment, created once
    for name, parent in parents.items():
        assert parent.info.status == "FINISHED"
        kids = children[name]
        assert sorted(c.data.tags["sweep.job_num"] for c in kids) == ["0", "1"]
        assert all(c.info.status == "FINISHED" for c in kids)
        rows = summary(tmp_path / "sweeps" / name)
        assert sorted(r["run_id"] for r in rows) == sorted(c.info.run_id for c in kids)
        assert parent.data.tags["best_run_id"] in {c.info.run_id for c in kids}


def test_a_sweep_dir_holding_another_sweep_is_refused(tmp_path):
    first = run_cli(["-m", *QUICK, "seed=1,2,3", "hydra.sweep.dir=sweep"], tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    old_rows = summary(tmp_path / "sweep")
    assert len(old_rows) == 3
    before = {r.info.run_id for r in all_runs(store_uri(tmp_path))}

    second = run_cli(["-m", *QUICK, "seed=4,5", "hydra.sweep.dir=sweep"], tmp_path)
    assert second.returncode == 1, second.stderr[-4000:]
    message = second.stderr.strip().splitlines()[-1]
    assert "holds another sweep" in message and "hydra.sweep.dir=DIR" in message
    old_parent = next(r for r in all_runs(store_uri(tmp_path))
                      if r.data.tags.get("sweep") == "true")
    assert old_parent.info.run_id in message
    assert "Traceback" not in second.stderr
    assert {r.info.run_id for r in all_runs(store_uri(tmp_path))} == before  # no run added
    assert summary(tmp_path / "sweep") == old_rows  # the old leaderboard is intact


def test_an_interrupted_sweep_resumes_with_only_the_missing_jobs(tmp_path):
    from faults import Job

    args = ["-m", *QUICK[:-2], "train.epochs=40", "viz=off", "mlflow.log_model=false",
            "seed=1,2,3", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    job = Job(args, tmp_path)
    job.wait_until(lambda: (tmp_path / "sweep" / "0" / "job.json").exists())
    job.signal(signal.SIGTERM)
    job.finish()
    assert job.returncode == 143, job.output
    uri = store_uri(tmp_path)
    (parent,) = [r for r in all_runs(uri) if r.data.tags.get("sweep") == "true"]
    assert parent.info.status == "KILLED"
    first = {r.data.tags["sweep.job_num"]: r.info.run_id for r in all_runs(uri)
             if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
             and r.info.status == "FINISHED"}
    assert list(first) == ["0"]

    again = run_cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "not run again" in again.stderr + again.stdout
    runs = all_runs(uri)
    (resumed,) = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert resumed.info.run_id == parent.info.run_id  # the same parent run goes on
    assert resumed.info.status == "FINISHED" and resumed.data.tags["sweep.resumed"] == "1"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    zeros = [r for r in children if r.data.tags["sweep.job_num"] == "0"]
    assert [r.info.run_id for r in zeros] == [first["0"]]  # job 0 was not trained again
    assert "RUNNING" not in {r.info.status for r in children}
    rows = summary(tmp_path / "sweep")
    assert sorted(r["job"] for r in rows) == ["0", "1", "2"]
    assert all(r["status"] == "FINISHED" for r in rows)
    assert next(r for r in rows if r["job"] == "0")["run_id"] == first["0"]
