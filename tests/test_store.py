"""A brand-new SQLite store is built aside by a helper process and installed whole."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from conftest import cli_env
from mnist_experiments.tracking.preflight import StoreError
from mnist_experiments.tracking.store import StoreCreation
from mnist_experiments.tracking.runs import ensure_experiment


@pytest.mark.slow
def test_a_new_store_is_built_aside_then_installed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with StoreCreation.start(uri, "digits") as creation:
        assert creation.process is not None
        assert not (tmp_path / "mlflow.db").exists()  # nothing half-made at the real path
        assert creation.install()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no temporary left
    experiment = MlflowClient(uri).get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "mlruns").as_uri()
    assert ensure_experiment(uri, "digits") == experiment.experiment_id
    # the store exists now: nothing to do
    assert StoreCreation.start(uri, "digits").process is None


def test_leaving_before_install_leaves_no_store(tmp_path):
    with StoreCreation.start(f"sqlite:///{tmp_path}/mlflow.db", "digits") as creation:
        assert creation.process is not None
    assert creation.process.poll() is not None  # the helper was stopped
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_store_made_meanwhile_is_kept(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with StoreCreation.start(uri, "digits") as creation:
        ensure_experiment(uri, "theirs")  # another process created the store first
        assert not creation.install()
    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert "theirs" in names and "digits" not in names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_only_a_missing_sqlite_store_is_created(tmp_path):
    assert StoreCreation.start(f"file://{tmp_path}/mlruns", "digits").process is None
    with pytest.raises(StoreError, match="does not answer"):  # checked first, in seconds
        StoreCreation.start("http://127.0.0.1:9", "digits")
    assert StoreCreation.start(f"sqlite:///{tmp_path}/no/such/dir/mlflow.db", "x").process is None
    assert StoreCreation().install() is False


_SWEEP_START = """
import json, os, sys
from hydra import compose, initialize_config_module
import mnist_experiments.commands.train  # noqa: F401 (the schemas)
from mnist_experiments.launch.callback import MlflowSweepCallback
with initialize_config_module("mnist_experiments.conf", version_base="1.3"):
    cfg = compose(config_name="config", overrides=sys.argv[1:], return_hydra_config=True)
MlflowSweepCallback().on_multirun_start(cfg)
print(json.dumps({"tensorflow": "tensorflow" in sys.modules,
                  "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS")}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("launcher, store_exists, imported", [
    ("basic", False, True),     # the helper builds the store meanwhile: TF imports then
    ("basic", True, False),     # nothing to wait for: the first job imports it
    ("joblib", False, False),   # the jobs run in workers: never in the launching process
])
def test_a_sequential_sweep_imports_tensorflow_while_its_new_store_is_built(
        tmp_path, launcher, store_exists, imported):
    if store_exists:
        ensure_experiment(f"sqlite:///{tmp_path}/mlflow.db", "mnist-experiments")
    overrides = ["data=digits", "train.onednn=false", f"hydra.sweep.dir={tmp_path}/sweep"]
    if launcher == "joblib":
        overrides.append("hydra/launcher=joblib")
    done = subprocess.run([sys.executable, "-c", _SWEEP_START, *overrides], cwd=tmp_path,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.splitlines()[0])
    assert state["tensorflow"] is imported
    if imported:  # TensorFlow loaded with the sweep's settings, applied before it
        assert state["onednn"] == "0"
    assert (tmp_path / "mlflow.db").is_file()  # and the store was installed all the same
