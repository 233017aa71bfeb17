"""Sweeps that race or reuse: two sweeps started together on a fresh store, and a sweep
dir used a second time.

Before (issue 14): of two sweeps started together on a fresh store, one lost its
parent run and its leaderboard (2 of 2 tries) with only a warning
(``on_multirun_start raised OperationalError: table _alembic_tmp_params already
exists``) and exit 0; a reused ``hydra.sweep.dir`` merged the old sweep's jobs into the
new leaderboard and recorded a stale best.
"""

from __future__ import annotations

import csv
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


def test_a_reused_sweep_dir_lists_only_this_sweeps_jobs(tmp_path):
    first = run_cli(["-m", *QUICK, "seed=1,2,3", "hydra.sweep.dir=sweep"], tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    old_rows = summary(tmp_path / "sweep")
    assert len(old_rows) == 3

    second = run_cli(["-m", *QUICK, "seed=4,5", "hydra.sweep.dir=sweep"], tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    uri = store_uri(tmp_path)
    runs = all_runs(uri)
    parents = sorted((r for r in runs if r.data.tags.get("sweep") == "true"),
                     key=lambda r: r.info.start_time)
    assert len(parents) == 2
    old, new = parents
    assert old.info.run_id in second.stdout + second.stderr  # whose dir it was, and how to see it
    new_children = {r.info.run_id for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == new.info.run_id}
    rows = summary(tmp_path / "sweep")
    assert len(rows) == 2, rows  # not the old sweep's job 2
    assert {r["run_id"] for r in rows} == new_children
    assert sorted(r["overrides"].split()[-1] for r in rows) == ["seed=4", "seed=5"]
    assert new.data.tags["best_run_id"] in new_children  # not a stale best
    assert new.data.metrics["jobs_finished"] == 2

    # the old sweep's leaderboard is not lost: rebuilt from its parent run
    rebuilt = run_cli([old.info.run_id, "--out", str(tmp_path / "old")], tmp_path,
                      module="mnist_experiments.commands.report")
    assert rebuilt.returncode == 0, rebuilt.stderr[-4000:]
    again = summary(tmp_path / "old")
    assert sorted(r["overrides"].split()[-1] for r in again) == ["seed=1", "seed=2", "seed=3"]
    assert {r["run_id"] for r in again} == {r["run_id"] for r in old_rows}
