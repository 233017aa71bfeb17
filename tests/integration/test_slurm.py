"""A sweep on a real single-node SLURM cluster (Debian's slurm-wlm and munge), through
Hydra's Submitit launcher (``hydra/launcher=slurm``): every job is a task of a SLURM
job array submitted with sbatch.

The cluster is started by tests/integration/slurm/start-slurm.sh (CI runs it too; here
it is run again if the node is not up). The jobs share the sweep's SQLite store in the
test's directory: on one machine, that is the shared file system a real cluster has.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from needs import need_module, need_program, skip_or_fail
from conftest import all_runs, cli_env, parent_and_children, read_summary, run_cli, store_uri

START = Path(__file__).resolve().parent / "slurm" / "start-slurm.sh"
INSTALL = "apt-get install slurm-wlm munge, then tests/integration/slurm/start-slurm.sh as root"

# tiny jobs, one CPU each: the two cores of a small machine run two jobs at once
QUICK = ["data=digits", "data.limit=300", "viz=off", "mlflow.log_model=false"]
ON_SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def slurm() -> Dict[str, str]:
    """The test cluster, up (started by start-slurm.sh if it is not)."""
    need_module("hydra_plugins.hydra_submitit_launcher",
                "pip install -e '.[slurm]' (hydra-submitit-launcher)")
    tools = {name: need_program(name, INSTALL) for name in ("sbatch", "squeue", "scancel", "sinfo")}
    result = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        skip_or_fail(f"no SLURM cluster: {START.name} failed ({INSTALL}):\n"
                     f"{result.stdout}{result.stderr}")
    return tools


def _running_job(uri: str, job: str):
    """The sweep job's run once it has logged an epoch (mid-training), else None."""
    for run in all_runs(uri):
        if (run.data.tags.get("sweep.job_num") == job and run.info.status == "RUNNING"
                and "loss" in run.data.metrics):
            return run
    return None


def _sweep_whose_job_1_is_stopped(tmp_path: Path, stop: Callable[[Any], None]):
    """Start a sweep whose job 0 is quick and job 1 trains long enough to be stopped
    half-way; once job 1's run has logged an epoch, ``stop(its run)``; return the
    command, the launcher's output and exit status, and job 1's run."""
    sweep_dir = tmp_path / "sweep"
    command = ["-m", *QUICK, *ON_SLURM, "train.epochs=1,60", f"hydra.sweep.dir={sweep_dir}"]
    uri = store_uri(tmp_path)
    launcher = subprocess.Popen([sys.executable, "-m", "mnist_experiments", *command],
                                cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        victim = None
        while victim is None:
            assert launcher.poll() is None, launcher.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "job 1 never started training"
            time.sleep(0.3)
            # (not before the sweep made the store: opening a fresh one here would race it)
            if (sweep_dir / "mlflow_sweep.json").exists():
                victim = _running_job(uri, "1")
        stop(victim)
        output, _ = launcher.communicate(timeout=240)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    return command, output, launcher.returncode, victim


def _job_errors(sweep_dir: Path) -> str:
    """The end of each SLURM job's stderr (a native crash's stack dump is there)."""
    logs = sorted((sweep_dir / ".submitit").glob("*_*/*_log.err"))
    return "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def test_a_slurm_sweep_survives_scancel_of_a_job_and_resumes(slurm, tmp_path):
    sweep_dir = tmp_path / "sweep"
    uri = store_uri(tmp_path)

    def cancel(run):
        cancel = subprocess.run([slurm["scancel"], run.data.tags["slurm.job_id"]],
                                capture_output=True, text=True)
        assert cancel.returncode == 0, cancel.stderr

    command, output, returncode, victim = _sweep_whose_job_1_is_stopped(tmp_path, cancel)
    slurm_id = victim.data.tags["slurm.job_id"]
    # the sweep waited for job 0, then ended with job 1 listed as killed: exit non-zero
    assert returncode == 1, output[-4000:] + _job_errors(sweep_dir)
    assert "mnist-exp: a job of the sweep was stopped by SIGTERM; its run ended KILLED" in output, (
        output[-4000:] + _job_errors(sweep_dir))
    parent, children, _ = parent_and_children(uri)
    by_job = {c.data.tags["sweep.job_num"]: c for c in children}
    assert by_job["1"].info.run_id == victim.info.run_id
    assert by_job["1"].info.status == "KILLED"  # not RUNNING, not FAILED
    assert by_job["1"].data.tags["mnist_exp.end_reason"] == "interrupted by SIGTERM"
    assert len(by_job["1"].data.metrics) > 0
    assert by_job["0"].info.status == "FINISHED"
    assert parent.info.status == "FAILED"
    # each job ran as a task of one SLURM job array that sbatch took from this sweep
    tasks = sorted(c.data.tags["slurm.job_id"] for c in children)
    assert [re.fullmatch(r"\d+_\d", t) is not None for t in tasks] == [True, True], tasks
    assert len({t.split("_")[0] for t in tasks}) == 1 and slurm_id == tasks[1]
    assert len(list((sweep_dir / ".submitit").glob("*_*/*_log.out"))) == 2
    # --cpus-per-task=1: TensorFlow ran on one thread in each job, recorded
    assert [c.data.params["train.threads"] for c in children] == ["1", "1"]
    rows = {r["job"]: r for r in read_summary(sweep_dir)}
    assert (rows["0"]["status"], rows["1"]["status"]) == ("FINISHED", "KILLED")
    record = json.loads((sweep_dir / "1" / "job.json").read_text())
    assert record["status"] == "KILLED" and "SIGTERM" in record["error"]
    first_zero = by_job["0"].info.run_id

    # the same command again: the sweep resumes, only job 1 trains
    again = run_cli(command, tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    job_log = "".join(p.read_text() for p in (sweep_dir / "0").glob("*.log"))
    assert "finished in this sweep before" in job_log
    parent, children, _ = parent_and_children(uri)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.resumed"] == "1"
    zeros = [c for c in children if c.data.tags["sweep.job_num"] == "0"]
    assert [c.info.run_id for c in zeros] == [first_zero]  # not trained again
    ones = sorted((c for c in children if c.data.tags["sweep.job_num"] == "1"),
                  key=lambda r: r.info.start_time)
    assert [c.info.status for c in ones] == ["KILLED", "FINISHED"]
    rows = {r["job"]: r for r in read_summary(sweep_dir)}
    assert {j: r["status"] for j, r in rows.items()} == {"0": "FINISHED", "1": "FINISHED"}
    assert (rows["0"]["run_id"], rows["1"]["run_id"]) == (first_zero, ones[1].info.run_id)
    assert parent.data.tags["best_run_id"] in {first_zero, ones[1].info.run_id}
    # every job has left the queue
    queue = subprocess.run([slurm["squeue"], "-h", "-o", "%i"], capture_output=True, text=True)
    assert not any(i.startswith(slurm_id.split("_")[0]) for i in queue.stdout.split())


def test_a_slurm_job_killed_without_its_result_ends_the_sweep_and_it_resumes(slurm, tmp_path):
    """SIGKILL (the OOM killer's signal) leaves no result file. On a cluster without
    accounting (this one: sacct answers "accounting storage is disabled"), Submitit
    alone never sees such a job end and the sweep waited forever."""
    sweep_dir = tmp_path / "sweep"
    uri = store_uri(tmp_path)
    command, output, returncode, victim = _sweep_whose_job_1_is_stopped(
        tmp_path, lambda run: os.kill(int(run.data.tags["mnist_exp.pid"]), signal.SIGKILL))
    slurm_id = victim.data.tags["slurm.job_id"]
    assert returncode == 1, output[-4000:] + _job_errors(sweep_dir)
    assert "Traceback" not in output, output[-4000:]
    paragraph = output[output.index("mnist-exp: SLURM job ") + len("mnist-exp: "):]
    assert paragraph.startswith(f"SLURM job {slurm_id} of the sweep ended FAILED without its "
                                "result"), output[-4000:]
    assert f"hydra.sweep.dir={sweep_dir}" in paragraph
    assert str(sweep_dir / ".submitit" / slurm_id) in paragraph
    parent, children, _ = parent_and_children(uri)
    by_job = {c.data.tags["sweep.job_num"]: c for c in children}
    assert by_job["1"].info.status == "KILLED"
    assert by_job["1"].data.tags["mnist_exp.end_reason"] == (
        f"its SLURM job {slurm_id} ended FAILED without ending the run")
    assert by_job["0"].info.status == "FINISHED" and parent.info.status == "FAILED"
    rows = {r["job"]: r["status"] for r in read_summary(sweep_dir)}
    assert rows == {"0": "FINISHED", "1": "KILLED"}

    # the paragraph's advice: the same command again runs job 1 only
    again = run_cli(command, tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    parent, children, _ = parent_and_children(uri)
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.status for c in children) == ["FINISHED", "FINISHED", "KILLED"]
