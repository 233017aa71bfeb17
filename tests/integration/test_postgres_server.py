"""A team's tracking server, for real: ``mlflow server`` on PostgreSQL with proxied artifacts.

The module starts a throw-away PostgreSQL cluster and ``mlflow server --backend-store-uri
postgresql://... --serve-artifacts`` on it (tests/integration/servers.py), runs a sweep
of 4 parallel jobs that log to it over HTTP, and then the other commands against the
same server: reproduce, grade, evaluate, report (with its model registration). What
the server holds is read back through its REST API and straight from PostgreSQL.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from integration.servers import Rest, postgres, tracking_server

EPOCHS = 2
SWEEP = ["-m", "data=digits", "data.limit=300", f"train.epochs={EPOCHS}", "viz=off",
         "optimizer=adam,sgd", "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
         "mlflow.experiment_name=team"]
EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate",
                 "epoch_seconds"]
TEST_METRICS = ["test_loss", "test_accuracy", "test_precision", "test_recall",
                "test_f1_macro", "test_f1_weighted"]


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL, the tracking server on it (2 workers, as a team would run it)."""
    with postgres() as cluster, tracking_server(
            cluster, tmp_path_factory.mktemp("team-server"), cli_env(), workers=2) as server:
        yield {"cluster": cluster, "server": server, "url": server.url,
               "rest": Rest(server.url), "artifacts": server.workdir / "artifacts",
               "workdir": tmp_path_factory.mktemp("team-member")}


@pytest.fixture(scope="module")
def sweep(team):
    """The 4-job sweep, all jobs at once, logged over HTTP."""
    workdir = team["workdir"]
    result = run_cli([*SWEEP, f"mlflow.tracking_uri={team['url']}"], workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    (sweep_dir,) = list((workdir / "outputs" / "multirun").iterdir())
    rest = team["rest"]
    experiment = rest.get("/api/2.0/mlflow/experiments/get-by-name",
                          experiment_name="team")["experiment"]
    runs = rest.post("/api/2.0/mlflow/runs/search",
                     {"experiment_ids": [experiment["experiment_id"]],
                      "max_results": 100})["runs"]
    (parent,) = [r for r in runs if _tags(r).get("sweep") == "true"]
    children = [r for r in runs
                if _tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    return {"dir": sweep_dir, "experiment": experiment, "runs": runs, "parent": parent,
            "children": children, "result": result}


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _params(run: dict) -> dict:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def _metrics(run: dict) -> dict:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _summary(directory: Path):
    with open(directory / "summary.csv") as fh:
        return list(csv.DictReader(fh))


def test_a_parallel_sweep_logs_everything_over_http(team, sweep):
    rest, parent, children = team["rest"], sweep["parent"], sweep["children"]
    assert len(sweep["runs"]) == 5  # the parent and its 4 jobs, nothing else
    assert parent["info"]["status"] == "FINISHED"
    assert len(children) == 4 and {c["info"]["status"] for c in children} == {"FINISHED"}
    assert sorted(_tags(c)["sweep.job_num"] for c in children) == ["0", "1", "2", "3"]
    # all four ran at once, each on its share of the cores
    share = max(1, len(os.sched_getaffinity(0)) // 4)
    assert {_params(c)["train.threads"] for c in children} == {str(share)}
    # nothing went to a local store
    assert not (team["workdir"] / "mlflow.db").exists()
    assert not (team["workdir"] / "mlruns").exists()

    for child in children:
        run_id = child["info"]["run_id"]
        params = _params(child)
        assert params["train.epochs"] == str(EPOCHS) and params["data.limit"] == "300"
        assert params["mlflow.tracking_uri"] == team["url"]
        assert params["seed"] in ("1", "2") and params["optimizer._target_"] in (
            "keras.optimizers.Adam", "keras.optimizers.SGD")
        assert set(TEST_METRICS) <= set(_metrics(child))
        for key in EPOCH_METRICS:  # every epoch's point, none lost or doubled
            history = rest.get("/api/2.0/mlflow/metrics/get-history", run_id=run_id,
                               metric_key=key)["metrics"]
            assert sorted(m["step"] for m in history) == list(range(1, EPOCHS + 1)), (key, history)
        # artifacts go through the server's proxy into its artifacts destination
        assert child["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
        listed = rest.get("/api/2.0/mlflow/artifacts/list", run_id=run_id)
        assert {"config.yaml", "overrides.yaml", "data.json"} <= {
            f["path"] for f in listed.get("files", [])}
        on_disk = (team["artifacts"] / sweep["experiment"]["experiment_id"] / run_id
                   / "artifacts" / "config.yaml")
        assert f"seed: {params['seed']}" in on_disk.read_text()

    # every job's logged model, downloaded through the proxy, is a loadable Keras model
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(team["url"])
    models = client.search_logged_models(experiment_ids=[sweep["experiment"]["experiment_id"]])
    assert sorted(m.source_run_id for m in models) == sorted(c["info"]["run_id"] for c in children)
    best_id = _tags(parent)["best_run_id"]
    (best_model,) = [m for m in models if m.source_run_id == best_id]
    assert best_model.artifact_location.startswith("mlflow-artifacts:/")
    local = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=best_model.artifact_location, dst_path=str(team["workdir"] / "model"),
        tracking_uri=team["url"]))
    assert (local / "MLmodel").is_file()
    assert any(p.suffix == ".keras" for p in local.rglob("*")), sorted(local.rglob("*"))

    # PostgreSQL holds them: the runs, and each epoch's metric rows
    db = team["cluster"]
    assert db.query("mlflow", "SELECT count(*) FROM runs") == "5"
    assert db.query("mlflow", "SELECT count(*) FROM metrics WHERE key = 'val_accuracy' "
                              "AND step >= 1") == str(4 * EPOCHS)

    # the leaderboard: in the sweep dir and on the parent run
    rows = _summary(sweep["dir"])
    assert len(rows) == 4 and {r["status"] for r in rows} == {"FINISHED"}
    assert rows[0]["best"] == "True" and rows[0]["run_id"] == best_id
    assert _metrics(parent)["best_objective"] == max(float(r["objective"]) for r in rows)
    logged = rest.get("/api/2.0/mlflow/artifacts/list", run_id=parent["info"]["run_id"],
                      path="summary")
    assert {"summary/summary.csv", "summary/summary.md"} <= {f["path"] for f in logged["files"]}


@pytest.fixture(scope="module")
def commands(team, sweep):
    """The other commands against the same server, all at once (as a team would):
    reproduce one job, grade the best, evaluate the best's model, report the sweep and
    register its best model."""
    url, workdir = team["url"], team["workdir"]
    best_id = _tags(sweep["parent"])["best_run_id"]
    other = next(c["info"]["run_id"] for c in sweep["children"]
                 if c["info"]["run_id"] != best_id)
    planned = {
        "reproduce": ("reproduce", [other, "--tracking-uri", url, "--calibration-runs", "0"]),
        "grade": ("grade", [best_id, "--out", str(workdir / "grades"), "--tracking-uri", url,
                            "--calibration-runs", "0"]),
        "evaluate": ("evaluate", [best_id, "--tracking-uri", url]),
        "report": ("report", [str(sweep["dir"]), "--out", str(workdir / "report"),
                              "--register", "team-cnn", "--alias", "champion"]),
    }
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", f"mnist_experiments.commands.{module}", *args], cwd=workdir,
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (module, args) in planned.items()}
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=900)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return {"best_id": best_id, "other": other, **results}


def test_reproduce_and_grade_against_the_server(team, commands):
    url, workdir, best_id = team["url"], team["workdir"], commands["best_id"]
    reproduced = commands["reproduce"]
    assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr[-3000:]
    assert "Verdict: REPRODUCED" in reproduced.stdout
    assert f"store:  {url}" in reproduced.stdout

    graded = commands["grade"]
    assert graded.returncode == 0, graded.stdout + graded.stderr[-3000:]
    with open(workdir / "grades" / "grades.csv") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["verdict"] == "REPRODUCED" and row["original_run_id"] == best_id

    rest = team["rest"]
    run = rest.get("/api/2.0/mlflow/runs/get", run_id=row["run_id"])["run"]
    assert _tags(run)["reproduces"] == best_id
    assert _tags(run)["reproduction.verdict"] == "REPRODUCED"
    grading = rest.get("/api/2.0/mlflow/experiments/get-by-name",
                       experiment_name="grading")["experiment"]
    # the grading's parent and its reproduction, together in the grading's experiment
    runs = rest.post("/api/2.0/mlflow/runs/search",
                     {"experiment_ids": [grading["experiment_id"]]})["runs"]
    assert sorted(_tags(r).get("grading", "child") for r in runs) == ["child", "true"]


def test_evaluate_and_report_with_registration_against_the_server(team, sweep, commands):
    workdir, rest, best_id = team["workdir"], team["rest"], commands["best_id"]
    (best,) = [c for c in sweep["children"] if c["info"]["run_id"] == best_id]

    evaluated = commands["evaluate"]
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (line,) = [x for x in evaluated.stdout.splitlines() if x.startswith("evaluation run ")]
    run = rest.get("/api/2.0/mlflow/runs/get", run_id=line.split()[2])["run"]
    assert run["info"]["status"] == "FINISHED"
    assert _tags(run)["evaluated_run_id"] == best_id
    assert _metrics(run)["test_accuracy"] == pytest.approx(_metrics(best)["test_accuracy"],
                                                           abs=0.02)

    reported = commands["report"]
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert "registered the best model as models:/team-cnn/1" in reported.stdout
    rows = _summary(workdir / "report")
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in _summary(sweep["dir"])]
    version = rest.get("/api/2.0/mlflow/registered-models/alias", name="team-cnn",
                       alias="champion")["model_version"]
    assert version["run_id"] == best_id and version["version"] == "1"
