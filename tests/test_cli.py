"""The ``mnist-exp`` command end to end, in subprocesses, on a real MLflow SQLite store."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs, cli_env, run_cli, store_uri

EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy"]
TEST_METRICS = ["test_loss", "test_accuracy", "test_precision", "test_recall",
                "test_f1_macro", "test_f1_weighted"]


@pytest.mark.slow
def test_a_run_records_everything(trained_run):
    run = trained_run["run"]
    client = MlflowClient(trained_run["uri"])
    assert run.info.status == "FINISHED"
    assert (trained_run["dir"] / "mlflow.db").exists()  # the launch dir's default store

    # run name from the overrides
    assert "data=digits" in run.info.run_name and "train.epochs=2" in run.info.run_name

    # per-epoch metrics, one point per epoch (step = epoch)
    for key in EPOCH_METRICS:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2], key
    for key in TEST_METRICS:
        assert 0.0 <= run.data.metrics[key] <= (10.0 if key == "test_loss" else 1.0), key
    assert run.data.metrics["objective"] == pytest.approx(
        client.get_metric_history(run.info.run_id, "val_accuracy")[-1].value)

    # params: the flattened, resolved config
    params = run.data.params
    assert params["train.epochs"] == "2"
    assert params["model.conv_blocks.0.filters"] == "32"
    assert params["optimizer._target_"] == "keras.optimizers.RMSprop"
    assert params["data.name"] == "digits"

    # tags: versions, platform, data fingerprint, git commit when there is one
    tags = run.data.tags
    for key in ("version.tensorflow", "version.keras", "version.mlflow", "version.python",
                "platform.cpu", "data.fingerprint", "data.source"):
        assert tags.get(key), key
    assert len(tags["data.fingerprint"]) == 64
    assert tags["data.source"] == "sklearn:load_digits"
    _assert_git_provenance(tags)

    # the composed config and the overrides as artifacts
    paths = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "data.json"} <= paths
    config = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml")))
    assert config["train"]["epochs"] == 2 and config["data"]["limit"] == 600

    # mlflow.register_as / register_alias: the model is in the registry under that name
    version = client.get_model_version_by_alias("digits-cnn", "champion")
    assert version.run_id == run.info.run_id and str(version.version) == "1"


def _assert_git_provenance(tags):
    """A commit of this package's checkout when the package is one, else no git tags."""
    import re

    import mnist_experiments

    package_dir = Path(mnist_experiments.__file__).resolve().parent
    try:
        toplevel = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=package_dir,
                                  capture_output=True, text=True, timeout=30)
    except FileNotFoundError:  # no git: nothing to record
        toplevel = None
    if toplevel is None or toplevel.returncode != 0:
        assert "git_commit" not in tags, tags.get("git_commit")
        return
    commit = tags.get("git_commit", "")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), commit
    # a commit of this repository (HEAD may have moved on since the run)
    exists = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=package_dir,
                            capture_output=True, timeout=30)
    assert exists.returncode == 0, f"{commit} is no commit of {toplevel.stdout.strip()}"
    assert tags["git_repo"] == toplevel.stdout.strip()
    assert tags["git_dirty"] in ("true", "false")


def test_invalid_values_are_rejected_before_any_run(tmp_path):
    result = run_cli([*FAST, "train.epochs=0", "optimizer.learning_rate=-1"], tmp_path)
    assert result.returncode != 0
    assert "train.epochs=0" in result.stderr and "optimizer.learning_rate=-1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))  # no store, no half-built one


def test_typos_are_rejected(tmp_path):
    result = run_cli([*FAST, "train.epoch=3"], tmp_path)
    assert result.returncode != 0
    assert "train.epoch" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))  # no store, no half-built one


@pytest.mark.slow
def test_offline_download_fails_fast_with_a_clear_error(tmp_path):
    # No cached dataset (empty KERAS_HOME) and no network (closed proxy port).
    start = time.monotonic()
    result = run_cli(["data=mnist"], tmp_path, env=cli_env(KERAS_HOME=str(tmp_path / "keras")))
    assert time.monotonic() - start < 60
    assert result.returncode != 0
    assert "data.path=" in result.stderr and "data=digits" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))  # no store, no half-built one


@pytest.mark.slow
def test_missing_data_path_is_a_clear_error(tmp_path):
    result = run_cli(["data=mnist", f"data.path={tmp_path}/nowhere"], tmp_path)
    assert result.returncode != 0
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_diverging_training_marks_the_run_failed(tmp_path):
    result = run_cli([*FAST, "optimizer=sgd", "optimizer.learning_rate=1e12", "viz=off"], tmp_path)
    assert result.returncode != 0
    assert "diverged" in result.stderr and "Traceback" not in result.stderr
    runs = all_runs(store_uri(tmp_path))
    assert [r.info.status for r in runs] == ["FAILED"]


def test_console_script_and_module_are_the_same_app(tmp_path):
    import shutil

    exe = shutil.which("mnist-exp") or str(Path(sys.executable).with_name("mnist-exp"))
    via_script = subprocess.run([exe, "--cfg", "job", "model=lenet5"], cwd=tmp_path,
                                capture_output=True, text=True, env=cli_env(), timeout=60)
    via_module = run_cli(["--cfg", "job", "model=lenet5"], tmp_path)
    assert via_script.returncode == 0, via_script.stderr
    assert via_script.stdout == via_module.stdout
    assert "name: lenet5" in via_script.stdout

