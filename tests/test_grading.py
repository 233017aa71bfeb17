"""A graded result on the grader's machine: thread counts, calibrated verdicts, a class.

Real training runs in subprocesses (some under a 1-core CPU affinity), real
reproductions, a real SQLite store; the "other CPU" of a submission is its recorded
provenance, edited in the store, with metrics that differ slightly.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import all_runs, cli_env, run_cli, store_uri

pytestmark = pytest.mark.slow

TINY = ["data=digits", "data.limit=300", "train.epochs=1", "viz=off", "mlflow.log_model=false"]
REPRODUCE = "mnist_experiments.commands.reproduce"
RESULTS = ("objective", "test_loss", "test_accuracy", "test_f1_macro")

needs_two_cores = pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
    reason="needs taskset and at least 2 cores")


def train(workdir: Path, *overrides: str, cores: str | None = None):
    """One mnist-exp run in ``workdir`` (optionally pinned to ``cores``); its MLflow run."""
    before = {r.info.run_id for r in all_runs(store_uri(workdir))} \
        if (workdir / "mlflow.db").exists() else set()
    args = [sys.executable, "-m", "mnist_experiments", *TINY, *overrides]
    if cores is not None:
        args = ["taskset", "-c", cores, *args]
    result = subprocess.run(args, cwd=workdir, env=cli_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = [r for r in all_runs(store_uri(workdir)) if r.info.run_id not in before]
    return run


def reproduce(workdir: Path, *args: str, cores: str | None = None):
    command = [sys.executable, "-m", REPRODUCE, *args]
    if cores is not None:
        command = ["taskset", "-c", cores, *command]
    return subprocess.run(command, cwd=workdir, env=cli_env(), capture_output=True, text=True,
                          timeout=900)


def reproduction_of(uri: str, run_id: str):
    return [r for r in all_runs(uri) if r.data.tags.get("reproduces") == run_id]


@needs_two_cores
def test_a_run_made_on_one_core_reproduces_bit_for_bit_on_two_and_back(tmp_path):
    one = train(tmp_path, cores="0")
    two = train(tmp_path)
    # the thread count was resolved from the CPU affinity, recorded, and it matters:
    assert one.data.params["train.threads"] == "1" and two.data.params["train.threads"] == "2"
    assert one.data.tags["runtime.intra_op_threads"] == "1"
    assert one.data.metrics["test_loss"] != two.data.metrics["test_loss"]

    uri = store_uri(tmp_path)
    for original, cores in ((one, None), (two, "0")):
        result = reproduce(tmp_path, original.info.run_id, cores=cores)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        assert "Verdict: REPRODUCED" in result.stdout
        (new,) = reproduction_of(uri, original.info.run_id)
        for name in RESULTS:
            assert new.data.metrics[name] == original.data.metrics[name], name
        assert new.data.params["train.threads"] == original.data.params["train.threads"]


def test_the_recorded_onednn_and_instruction_set_are_re_applied(tmp_path):
    """oneDNN's ISA changes the numbers (as another CPU would); reproduce re-applies the
    recorded one in fresh worker processes, so the capped run reproduces exactly."""
    default = train(tmp_path)
    capped = train(tmp_path, "train.cpu_isa=SSE41")
    assert default.data.params["train.onednn"] in ("True", "False")
    assert capped.data.params["train.cpu_isa"] == "SSE41"
    if default.data.params["train.cpu_isa"] == "SSE41":
        pytest.skip("this CPU has nothing above SSE4.1 to compare with")
    assert default.data.metrics["test_loss"] != capped.data.metrics["test_loss"]
    result = reproduce(tmp_path, capped.info.run_id)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Verdict: REPRODUCED" in result.stdout
    (new,) = reproduction_of(store_uri(tmp_path), capped.info.run_id)
    assert new.data.params["train.cpu_isa"] == "SSE41"
    for name in RESULTS:
        assert new.data.metrics[name] == capped.data.metrics[name], name


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A student's run, registered under a name with an alias (as their config says)."""
    workdir = tmp_path_factory.mktemp("student")
    run = train(workdir, "mlflow.log_model=true", "mlflow.register_as=graded-cnn",
                "mlflow.register_alias=champion")
    return {"dir": workdir, "uri": store_uri(workdir), "run": run}


def test_an_honest_run_from_another_cpu_is_consistent_and_an_invented_one_is_not(tmp_path, student):
    """The original's provenance names another CPU and its metrics differ slightly (as
    another machine's would); a claim the config cannot produce is INCONSISTENT."""
    workdir = tmp_path
    shutil.copy(student["dir"] / "mlflow.db", workdir / "mlflow.db")
    shutil.copytree(student["dir"] / "mlruns", workdir / "mlruns")
    uri = store_uri(workdir)
    client = MlflowClient(uri)
    run_id = student["run"].info.run_id
    metrics = student["run"].data.metrics
    client.set_tag(run_id, "platform.cpu", "Intel(R) Xeon(R) Platinum 8488C")
    client.log_metric(run_id, "test_accuracy", metrics["test_accuracy"] + 1 / 150)
    client.log_metric(run_id, "objective", metrics["objective"] - 1 / 150)

    result = reproduce(workdir, run_id, "--calibration-runs", "3",
                       "--tracking-uri", uri, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Verdict: CONSISTENT" in result.stdout
    assert "provenance differs: platform.cpu" in result.stderr
    assert "test_accuracy: 99% interval [" in result.stdout and "from 4 runs here" in result.stdout
    (new,) = reproduction_of(uri, run_id)
    assert new.data.tags["reproduction.verdict"] == "CONSISTENT"
    low, high = map(float, new.data.tags["reproduction.interval.test_accuracy"].strip("[]")
                    .split(","))
    assert low <= metrics["test_accuracy"] + 1 / 150 <= high
    calibration = [r for r in all_runs(uri)
                   if r.data.tags.get("reproduction.calibration_of") == new.info.run_id]
    assert sorted(r.data.params["seed"] for r in calibration) == ["43", "44", "45"]
    assert all(r.data.tags["mlflow.parentRunId"] == new.info.run_id for r in calibration)

    invented = reproduce(workdir, run_id, "--calibration-runs", "2", "--tracking-uri", uri,
                         "--expect", "test_accuracy=0.999")
    assert invented.returncode == 1, invented.stdout + invented.stderr[-3000:]
    verdict = invented.stdout.split("Verdict: ", 1)[1]
    assert verdict.startswith("INCONSISTENT") and "test_accuracy 0.9990 lies" in verdict


def test_reproducing_never_touches_the_graders_registry(tmp_path, student):
    uri = student["uri"]
    client = MlflowClient(uri)
    before = [(v.version, v.run_id) for v in client.search_model_versions("name='graded-cnn'")]
    assert str(client.get_model_version_by_alias("graded-cnn", "champion").version) == "1"
    result = reproduce(student["dir"], student["run"].info.run_id, "--tracking-uri", uri)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "a reproduction never registers models or moves aliases" in result.stderr
    after = [(v.version, v.run_id) for v in client.search_model_versions("name='graded-cnn'")]
    assert after == before
    assert str(client.get_model_version_by_alias("graded-cnn", "champion").version) == "1"


def test_grading_a_class_and_resuming_it(tmp_path, student):
    workdir = tmp_path
    shutil.copy(student["dir"] / "mlflow.db", workdir / "mlflow.db")
    shutil.copytree(student["dir"] / "mlruns", workdir / "mlruns")
    uri = store_uri(workdir)
    run_id = student["run"].info.run_id
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\ntrain:\n  epochz: 3\n")
    sheet = tmp_path / "class.csv"
    with sheet.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "submission", "metric", "claimed"])
        writer.writerow(["ada", run_id, "", ""])
        writer.writerow(["bob", run_id, "test_accuracy", "0.999"])
        writer.writerow(["cy", "broken.yaml", "", ""])
        writer.writerow(["dee", "0" * 32, "", ""])
    out = tmp_path / "grades"
    args = [str(sheet), "--out", str(out), "--calibration-runs", "2", "--jobs", "2"]
    first = run_cli(args, workdir, module="mnist_experiments.commands.grade", timeout=1200)
    assert first.returncode == 1, first.stdout + first.stderr[-3000:]  # rows in ERROR
    with (out / "grades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["student"] for r in rows] == ["ada", "bob", "cy", "dee"]
    assert [r["verdict"] for r in rows] == ["REPRODUCED", "INCONSISTENT", "ERROR", "ERROR"]
    assert rows[0]["reproduced"] == f"{student['run'].data.metrics['test_accuracy']:.6g}"
    # the run itself reproduces exactly, so its claimed test_accuracy is refuted outright
    assert rows[1]["claimed"] == "0.999" and "not the claimed test_accuracy=0.999" in rows[1]["error"]
    assert "train.epochz" in rows[2]["error"]
    assert "There is no run 0000" in rows[3]["error"]
    assert all(r["run_id"] for r in rows[:2])
    markdown = (out / "grades.md").read_text()
    assert "4 submission(s): 1 REPRODUCED, 1 INCONSISTENT, 2 ERROR" in markdown
    client = MlflowClient(uri)
    grading = [r for r in all_runs(uri) if r.data.tags.get("grading") == "true"]
    assert len(grading) == 1 and grading[0].info.status == "FINISHED"
    children = [r for r in all_runs(uri)
                if r.data.tags.get("mlflow.parentRunId") == grading[0].info.run_id]
    assert {r.info.run_id for r in children} == {rows[0]["run_id"], rows[1]["run_id"]}
    assert client.get_run(grading[0].info.run_id).data.metrics["count_error"] == 2

    runs_before = len(all_runs(uri))
    again = run_cli(args, workdir, module="mnist_experiments.commands.grade", timeout=600)
    assert again.returncode == 1, again.stderr[-3000:]
    assert "4 submission(s) already graded" in again.stdout
    assert len(all_runs(uri)) == runs_before  # nothing re-run
    with (out / "grades.csv").open() as fh:
        assert [r["verdict"] for r in csv.DictReader(fh)] == [r["verdict"] for r in rows]
