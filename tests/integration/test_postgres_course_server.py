"""A course's tracking server, for real: MLflow's basic-auth app on PostgreSQL.

The set-up the README's "Running a course" describes: ``default_permission = READ``
(everyone reads everything), an account per student and one for the teaching
assistant, made by the admin through the REST API. Each student logs into an
experiment of their own (``hw1-<student>``, created by their first run, so MLflow
grants them MANAGE on it); another student may read it but not change it (403). The
assistant grades the class from the server into an experiment of their own.
Credentials travel only in ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``
and never land in a run, a log or the CLI's output.
"""

from __future__ import annotations

import csv
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env
from integration.servers import Rest, postgres, tracking_server

STUDENTS = ("alice", "bob")
TINY = ["data=digits", "data.limit=300", "train.epochs=1", "viz=off", "mlflow.log_model=false"]


def password(user: str) -> str:
    return f"pw-{user}-{secrets.token_hex(8)}"  # unique: any leak is found by a search


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    admin = ("admin", password("admin"))
    with postgres() as cluster, tracking_server(
            cluster, tmp_path_factory.mktemp("course-server"), cli_env(), auth=admin) as server:
        accounts = {user: password(user) for user in (*STUDENTS, "ta")}
        as_admin = Rest(server.url, admin)
        for user, secret in accounts.items():
            as_admin.post("/api/2.0/mlflow/users/create", {"username": user, "password": secret})
        yield {"url": server.url, "server": server, "admin": admin, "accounts": accounts,
               "root": tmp_path_factory.mktemp("course")}


def env_of(course, user: str) -> dict:
    """What a student (or the assistant) exports: the server, the account."""
    return cli_env(MLFLOW_TRACKING_URI=course["url"], MLFLOW_TRACKING_USERNAME=user,
                   MLFLOW_TRACKING_PASSWORD=course["accounts"][user])


def rest(course, user: str) -> Rest:
    return Rest(course["url"], (user, course["accounts"][user]))


def _command(course, user: str, module: str, args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd,
                            env=env_of(course, user), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def every_run(client: Rest) -> list:
    """Every run in every experiment, as this user sees it."""
    experiments = client.post("/api/2.0/mlflow/experiments/search",
                              {"max_results": 1000})["experiments"]
    return client.post("/api/2.0/mlflow/runs/search", {
        "experiment_ids": [e["experiment_id"] for e in experiments],
        "max_results": 1000})["runs"]


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


@pytest.fixture(scope="module")
def homework(course):
    """Both students submit at once, each from their own directory into hw1-<student>."""
    procs = {}
    for student in STUDENTS:
        workdir = course["root"] / student
        workdir.mkdir()
        procs[student] = (workdir, _command(course, student, "mnist_experiments",
                                            [*TINY, f"mlflow.experiment_name=hw1-{student}"],
                                            workdir))
    done = {}
    for student, (workdir, proc) in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        experiment = rest(course, student).get("/api/2.0/mlflow/experiments/get-by-name",
                                               experiment_name=f"hw1-{student}")["experiment"]
        (run,) = rest(course, student).post("/api/2.0/mlflow/runs/search", {
            "experiment_ids": [experiment["experiment_id"]]})["runs"]
        done[student] = {"dir": workdir, "out": out, "err": err, "run": run,
                         "experiment": experiment}
    return done


def test_students_write_their_own_runs_and_cannot_touch_others(course, homework):
    alice_run = homework["alice"]["run"]
    run_id = alice_run["info"]["run_id"]
    assert alice_run["info"]["status"] == "FINISHED"
    assert alice_run["info"]["user_id"] == "alice" and _tags(alice_run)["mlflow.user"] == "alice"
    as_bob = rest(course, "bob")
    # bob reads alice's run (default permission READ) ...
    assert as_bob.get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]["info"]["run_id"] == run_id
    # ... but may not change it, improve its numbers or delete it
    for endpoint, body in (
            ("/api/2.0/mlflow/runs/set-tag", {"run_id": run_id, "key": "grade", "value": "F"}),
            ("/api/2.0/mlflow/runs/log-metric", {"run_id": run_id, "key": "test_accuracy",
                                                 "value": 0.0, "timestamp": 0, "step": 0}),
            ("/api/2.0/mlflow/runs/delete", {"run_id": run_id}),
            ("/api/2.0/mlflow/experiments/delete",
             {"experiment_id": homework["alice"]["experiment"]["experiment_id"]})):
        status, payload = as_bob.call("POST", endpoint, body)
        assert status == 403, (endpoint, status, payload)
    # an anonymous request is refused outright, a wrong password too
    assert Rest(course["url"]).call("GET", "/api/2.0/mlflow/runs/get", run_id=run_id)[0] == 401
    assert Rest(course["url"], ("bob", "guess")).call(
        "GET", "/api/2.0/mlflow/runs/get", run_id=run_id)[0] == 401
    # alice's run is unchanged
    after = rest(course, "alice").get("/api/2.0/mlflow/runs/get", run_id=run_id)["run"]
    assert after["info"]["lifecycle_stage"] == "active" and "grade" not in _tags(after)
    history = rest(course, "alice").get("/api/2.0/mlflow/metrics/get-history", run_id=run_id,
                                        metric_key="test_accuracy")["metrics"]
    assert [m["value"] for m in history] == [
        m["value"] for m in alice_run["data"]["metrics"] if m["key"] == "test_accuracy"]
    # and alice herself may write to it
    assert rest(course, "alice").call("POST", "/api/2.0/mlflow/runs/set-tag", {
        "run_id": run_id, "key": "note", "value": "mine"})[0] == 200


def test_logging_into_anothers_experiment_is_one_paragraph(course, homework):
    """bob's mnist-exp aimed at alice's experiment stops before training, exit 1."""
    proc = _command(course, "bob", "mnist_experiments",
                    [*TINY, "mlflow.experiment_name=hw1-alice"], homework["bob"]["dir"])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert "refuses to let bob write to experiment" in err and "Traceback" not in err
    assert "epoch 1/1" not in err
    runs = rest(course, "alice").post("/api/2.0/mlflow/runs/search", {
        "experiment_ids": [homework["alice"]["experiment"]["experiment_id"]]})["runs"]
    assert len(runs) == 1  # nothing was added to alice's experiment


def test_the_assistant_grades_the_class_from_the_server(course, homework):
    workdir = course["root"] / "ta"
    workdir.mkdir()
    proc = _command(course, "ta", "mnist_experiments.commands.grade",
                    ["hw1-alice", "hw1-bob", "--out", "grades", "--calibration-runs", "0",
                     "--jobs", "2"],
                    workdir)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err[-4000:]
    with open(workdir / "grades" / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    # each student named by their account, each run reproduced exactly
    assert [(r["student"], r["verdict"]) for r in rows] == [("alice", "REPRODUCED"),
                                                            ("bob", "REPRODUCED")]
    assert [r["original_run_id"] for r in rows] == [
        homework[s]["run"]["info"]["run_id"] for s in STUDENTS]
    # the grading and its reproductions are the assistant's, in their own experiment ...
    as_ta = rest(course, "ta")
    grading = as_ta.get("/api/2.0/mlflow/experiments/get-by-name",
                        experiment_name="grading")["experiment"]
    runs = as_ta.post("/api/2.0/mlflow/runs/search",
                      {"experiment_ids": [grading["experiment_id"]]})["runs"]
    assert len(runs) == 3 and {r["info"]["user_id"] for r in runs} == {"ta"}
    reproduction = next(r for r in runs if r["info"]["run_id"] == rows[0]["run_id"])
    # ... which a student reads and cannot alter
    assert rest(course, "alice").call("POST", "/api/2.0/mlflow/runs/set-tag", {
        "run_id": reproduction["info"]["run_id"], "key": "reproduction.verdict",
        "value": "REPRODUCED"})[0] == 403
    course["grading"] = {"dir": workdir, "out": out, "err": err}


def test_no_password_is_recorded_or_shown(course, homework):
    secrets_ = [course["admin"][1], *course["accounts"].values()]
    shown = []  # every text a user or a reader of the runs sees
    for student in STUDENTS:
        shown += [homework[student]["out"], homework[student]["err"]]
        for path in (homework[student]["dir"] / "outputs").rglob("*"):
            if path.is_file():
                shown.append(path.read_text(errors="replace"))
    grading = course.get("grading")
    if grading is not None:
        shown += [grading["out"], grading["err"]]
        shown += [p.read_text(errors="replace") for p in (grading["dir"] / "grades").rglob("*")
                  if p.is_file()]
    as_admin = Rest(course["url"], course["admin"])
    runs = every_run(as_admin)
    assert len(runs) >= 2
    for run in runs:
        shown.append(repr(run["data"]))  # params, tags, metrics
        root = run["info"]["artifact_uri"].split("mlflow-artifacts:/", 1)[1].strip("/")
        for name in ("config.yaml", "overrides.yaml"):
            status, text = as_admin.call(
                "GET", f"/api/2.0/mlflow-artifacts/artifacts/{root}/{name}")
            if status == 200:
                shown.append(str(text))
    config = [t for t in shown if "tracking_uri" in t]
    assert config, "expected the configs and logs in the texts searched"
    for secret in secrets_:
        assert not [t[:200] for t in shown if secret in t]


def test_a_password_in_the_tracking_uri_is_refused(course, tmp_path):
    secret = course["accounts"]["alice"]
    host = course["url"].split("//", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "mnist_experiments", *TINY,
         f"mlflow.tracking_uri=http://alice:{secret}@{host}", "mlflow.experiment_name=hw1-alice"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in result.stderr
    assert secret not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert all(secret not in repr(r["data"]) for r in every_run(rest(course, "alice")))
