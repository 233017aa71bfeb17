"""``mnist-exp-evaluate`` end to end on the shared trained run's real SQLite store.

The evaluation of the run itself and the one of an unknown run id run as subprocesses
(``python -m mnist_experiments.commands.evaluate``, the same code as the console script) in the
trained run's launch directory, so they find its default store ``./mlflow.db``; the
evaluation of the registered model runs in this process (``evaluate.main``) while they
run, to keep the module fast. They only add runs to the experiment ``evaluations``
and one registered model to that store.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import cli_env, compose_cfg

TEST_METRICS = ["test_loss", "test_accuracy", "test_precision", "test_recall",
                "test_f1_macro", "test_f1_weighted"]
UNKNOWN_RUN = "0123456789abcdef0123456789abcdef"


def start(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_experiments.commands.evaluate", *args],
                            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    return {"rc": proc.returncode, "out": out, "err": err}


def evaluate_in_process(args, uri: str) -> dict:
    """``evaluate.main(args)`` in this process, leaving no global MLflow state behind."""
    from mnist_experiments.commands import evaluate
    from mnist_experiments.tracking import models as models_io

    saved_env = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with models_io.using_tracking_uri(uri), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            rc = evaluate.main(args)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}


@pytest.fixture(scope="module")
def evaluations(trained_run):
    """Two evaluations as subprocesses (the CLI), one in process (via the registry)."""
    from mlflow.tracking import MlflowClient

    from mnist_experiments.tracking import models as models_io

    run_id = trained_run["run"].info.run_id
    cwd = trained_run["dir"]
    procs = {"own": start([run_id], cwd), "unknown": start([UNKNOWN_RUN], cwd)}
    name = f"evaluate-test-{uuid.uuid4().hex[:8]}"
    version = models_io.register(run_id, name, alias="candidate", tracking_uri=trained_run["uri"])
    results = {"registry": evaluate_in_process(
        [f"models:/{name}/{version.version}", "data=digits", "data.limit=300",
         "--run-name", "registry-eval", "--tracking-uri", trained_run["uri"]],
        trained_run["uri"])}
    results.update({key: finish(proc) for key, proc in procs.items()})
    client = MlflowClient(trained_run["uri"])
    experiment = client.get_experiment_by_name("evaluations")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {"results": results, "runs": runs, "client": client, "name": name,
            "version": version, "run_id": run_id}


def _run_from_output(evaluations, key):
    result = evaluations["results"][key]
    assert result["rc"] == 0, result["err"][-3000:]
    assert "Traceback" not in result["err"]
    printed = [line for line in result["out"].splitlines() if line.startswith("evaluation run ")]
    assert printed, result["out"]
    run_id = printed[0].split()[2]
    (run,) = [r for r in evaluations["runs"] if r.info.run_id == run_id]
    return run, result["out"]


@pytest.mark.slow
def test_evaluating_a_run_reproduces_its_test_metrics(trained_run, evaluations):
    source = trained_run["run"]
    run, out = _run_from_output(evaluations, "own")
    client = evaluations["client"]
    assert run.info.status == "FINISHED"
    assert run.info.run_id != source.info.run_id

    # the same data as training (read from the run's config.yaml) -> the same metrics
    assert run.data.params["data.name"] == "digits" and run.data.params["data.limit"] == "600"
    assert run.data.params["seed"] == "42"
    assert run.data.tags["data.fingerprint"] == source.data.tags["data.fingerprint"]
    assert run.data.tags["data.same_as_model_run"] == "true"
    # its test set as an MLflow dataset: the Dataset column of the runs table, the same
    # name and digest (the data's fingerprint) as the training run's test set
    (test_set,) = run.inputs.dataset_inputs
    assert [t.value for t in test_set.tags if t.key == "mlflow.data.context"] == ["test"]
    (trained,) = [d.dataset for d in source.inputs.dataset_inputs if d.dataset.name == "digits-test"]
    assert (test_set.dataset.name, test_set.dataset.digest) == (trained.name, trained.digest)
    assert trained.digest == source.data.tags["data.fingerprint"][:36]
    for key in TEST_METRICS:
        assert run.data.metrics[key] == pytest.approx(source.data.metrics[key], abs=1e-6), key

    # linked to the model and its run
    tags = run.data.tags
    assert tags["evaluated_run_id"] == source.info.run_id
    assert tags["evaluated_model_uri"] == f"runs:/{source.info.run_id}/model"
    assert tags["evaluated_model_id"].startswith("m-")
    assert tags["run_kind"] == "evaluation"
    assert source.info.run_id in tags["mlflow.note.content"]

    # the confusion matrix, as training logs it, and the same counts
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "metrics")}
    paths |= {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"metrics/confusion_matrix.json", "metrics/classification_report.json",
            "plots/confusion_matrix.png"} <= paths
    ours = json.load(open(client.download_artifacts(run.info.run_id,
                                                    "metrics/confusion_matrix.json")))
    theirs = json.load(open(client.download_artifacts(source.info.run_id,
                                                      "metrics/confusion_matrix.json")))
    assert ours == theirs
    assert ours["class_names"] == [str(i) for i in range(10)]
    config = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml")))
    assert config["data"]["limit"] == 600 and config["seed"] == 42

    # the printed table shows the metrics and the new run id
    assert "test_accuracy" in out and run.info.run_id in out
    assert f"{run.data.metrics['test_accuracy']:.4f}" in out


@pytest.mark.slow
def test_registered_model_version_on_other_data(trained_run, evaluations):
    version = evaluations["version"]
    assert str(version.version) == "1" and version.name == evaluations["name"]
    run, _ = _run_from_output(evaluations, "registry")
    assert run.info.run_name == "registry-eval"
    tags = run.data.tags
    assert tags["evaluated_model_uri"] == f"models:/{evaluations['name']}/1"
    assert tags["evaluated_run_id"] == evaluations["run_id"]  # found through the registry
    # data=digits data.limit=300 is what mnist-exp makes of it: 300 test images, new data
    assert run.data.params["data.limit"] == "300"
    assert tags["data.same_as_model_run"] == "false"
    assert tags["data.fingerprint"] != trained_run["run"].data.tags["data.fingerprint"]
    for key in TEST_METRICS:
        assert 0.0 <= run.data.metrics[key] <= (20.0 if key == "test_loss" else 1.0)
    matrix = json.load(open(evaluations["client"].download_artifacts(
        run.info.run_id, "metrics/confusion_matrix.json")))["matrix"]
    assert sum(map(sum, matrix)) == 300
    # the alias resolves to the same version
    mv = evaluations["client"].get_model_version_by_alias(evaluations["name"], "candidate")
    assert str(mv.version) == "1"


@pytest.mark.slow
def test_unknown_model_is_a_clear_error(evaluations):
    result = evaluations["results"]["unknown"]
    assert result["rc"] == 2
    assert "Traceback" not in result["err"]
    assert UNKNOWN_RUN in result["err"] and "not found" in result["err"]
    assert len(result["err"].strip().splitlines()) == 1  # one paragraph
    runs = evaluations["runs"]
    assert not [r for r in runs if r.data.tags.get("evaluated_run_id") == UNKNOWN_RUN]


def test_overrides_compose_like_mnist_exp():
    """Without data=GROUP the run's data config is kept; with it, mnist-exp's meaning."""
    from mnist_experiments.config.compose import compose_config, hydra_value
    from mnist_experiments.workflows.evaluate import eval_overrides

    run_config = {"seed": 7, "data": {"name": "digits", "path": None, "validation": "holdout",
                                      "val_fraction": 0.2, "limit": 120,
                                      "class_names": ["zero", "it's", "a\\b", "${x}", "4",
                                                      "5", "6", "7", "8", "9"]}}
    overrides, origin, _ = eval_overrides(run_config, [])
    cfg = compose_config(overrides)
    assert cfg.seed == 7 and cfg.data.name == "digits" and cfg.data.limit == 120
    assert cfg.data.val_fraction == 0.2
    assert list(cfg.data.class_names) == run_config["data"]["class_names"]  # quoting
    assert "model run" in origin

    overrides, _, _ = eval_overrides(run_config, ["data.limit=null"])
    cfg = compose_config(overrides)
    assert cfg.data.limit is None and cfg.seed == 7 and cfg.data.val_fraction == 0.2

    overrides, _, _ = eval_overrides(run_config, ["data=digits", "data.limit=300"])
    expected = compose_cfg("data=digits", "data.limit=300")
    assert compose_config(overrides).data == expected.data
    assert compose_config(overrides).seed == expected.seed

    assert hydra_value(None) == "null" and hydra_value(True) == "true"


def test_bad_overrides_are_refused_before_loading_anything():
    from mnist_experiments.errors import UserError
    from mnist_experiments.config.compose import compose_config
    from mnist_experiments.commands.evaluate import check_overrides

    with pytest.raises(UserError, match="model=lenet5"):
        check_overrides(["data.limit=5", "model=lenet5"])
    with pytest.raises(UserError, match="data.limt"):
        compose_config(["data=digits", "data.limt=5"])
