"""A brand-new SQLite store is made aside and installed whole: by a helper process that
migrates it (and keeps the template of MLflow's schema), or as a copy of that template."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import cli_env
from mnist_experiments.tracking.preflight import StoreError
from mnist_experiments.tracking.store import StoreCreation, install_template
from mnist_experiments.tracking.store_template import (
    CACHE_ENV,
    build_template,
    copy_template,
    template_path,
)
from mnist_experiments.tracking.runs import ensure_experiment


@pytest.fixture
def session_template() -> Path:
    """The test session's template (its cache: tests/conftest.py), built once."""
    return build_template()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No template yet: the first new store on a machine (the helper inherits this)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


@pytest.mark.slow
def test_a_new_store_is_built_aside_then_installed_and_the_next_one_copied(
        tmp_path, empty_cache):
    uri = f"sqlite:///{tmp_path}/first/mlflow.db"
    (tmp_path / "first").mkdir()
    with StoreCreation.start(uri, "digits") as creation:
        assert creation.process is not None  # no template yet: the helper migrates
        assert not (tmp_path / "first" / "mlflow.db").exists()  # nothing half-made there
        assert creation.install()
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["mlflow.db"]
    experiment = MlflowClient(uri).get_experiment_by_name("digits")
    assert experiment is not None
    assert experiment.artifact_location == (tmp_path / "first" / "mlruns").as_uri()
    assert ensure_experiment(uri, "digits") == experiment.experiment_id
    # the store exists now: nothing to do
    assert StoreCreation.start(uri, "digits").process is None
    # the helper kept the template, named after this MLflow, and it holds no experiment
    template = template_path()
    assert template.parent == empty_cache and mlflow.__version__ in template.name
    assert experiments_in(template) == 0

    second = f"sqlite:///{tmp_path}/second/mlflow.db"
    (tmp_path / "second").mkdir()
    with StoreCreation.start(second, "digits") as creation:
        assert creation.process is None and not creation.building  # a copy: ready now
        assert not (tmp_path / "second" / "mlflow.db").exists()
        assert creation.install()
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == ["mlflow.db"]
    experiment_id = ensure_experiment(second, "digits")
    client = MlflowClient(second)
    assert client.get_experiment(experiment_id).artifact_location == \
        (tmp_path / "second" / "mlruns").as_uri()  # its own, not the first store's
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "val_accuracy", 0.5)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"val_accuracy": 0.5}
    assert len(MlflowClient(uri).search_runs([experiment.experiment_id])) == 0


def experiments_in(path) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
    finally:
        connection.close()


def test_a_store_opened_in_process_is_a_copy_of_the_template_too(tmp_path, empty_cache):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert install_template(uri)  # builds the template here, then copies it
    assert template_path().is_file()
    assert not install_template(uri)  # the store exists: left alone
    assert ensure_experiment(uri, "digits") == "1"  # the Default experiment is 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "mlflow.db"]


@pytest.mark.parametrize("damage", ["not sqlite", "torn", "no schema"])
def test_a_damaged_template_is_never_copied_and_is_built_again(
        tmp_path, session_template, empty_cache, damage):
    template = template_path()
    empty_cache.mkdir()
    if damage == "not sqlite":
        template.write_bytes(b"not an SQLite file")
    elif damage == "torn":  # an intact header, then pages of another file
        shutil.copy(session_template, template)
        data = bytearray(template.read_bytes())
        data[4096:len(data) // 2] = os.urandom(len(data) // 2 - 4096)
        template.write_bytes(bytes(data))
    else:  # an SQLite file, but not MLflow's
        connection = sqlite3.connect(template)
        connection.execute("CREATE TABLE notes (text TEXT)")
        connection.commit()
        connection.close()
    assert not copy_template(tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists() and not template.exists()  # removed
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with StoreCreation.start(uri, "digits") as creation:
        assert creation.process is not None  # the helper migrates the store instead
        assert creation.install()
    assert ensure_experiment(uri, "digits") == "1"
    assert copy_template(tmp_path / "copy.db")  # and the helper built the template again


@pytest.mark.parametrize("template", [False, True])
def test_leaving_before_install_leaves_no_store(tmp_path, empty_cache, template):
    if template:
        install_template(f"sqlite:///{tmp_path}/other.db")
        (tmp_path / "other.db").unlink()
    directory = tmp_path / "store"
    directory.mkdir()
    with StoreCreation.start(f"sqlite:///{directory}/mlflow.db", "digits") as creation:
        assert (creation.process is None) is template
    if not template:
        assert creation.process.poll() is not None  # the helper was stopped
    assert list(directory.iterdir()) == []


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
@pytest.mark.parametrize("launcher, store, imported", [
    ("basic", "new", True),        # the helper builds the store meanwhile: TF imports then
    ("basic", "template", False),  # a copy of the template: nothing to wait for
    ("basic", "exists", False),    # nothing to wait for: the first job imports it
    ("joblib", "new", False),      # the jobs run in workers: never in the launching process
])
def test_a_sequential_sweep_imports_tensorflow_while_its_new_store_is_built(
        tmp_path, launcher, store, imported):
    env = cli_env(MNIST_EXP_CACHE_DIR=str(tmp_path / "cache"))  # no template: built here
    if store == "exists":
        ensure_experiment(f"sqlite:///{tmp_path}/mlflow.db", "mnist-experiments")
    elif store == "template":
        (tmp_path / "cache").mkdir()
        template = build_template()  # the session's
        shutil.copy(template, tmp_path / "cache" / template.name)
    overrides = ["data=digits", "train.onednn=false", f"hydra.sweep.dir={tmp_path}/sweep"]
    if launcher == "joblib":
        overrides.append("hydra/launcher=joblib")
    done = subprocess.run([sys.executable, "-c", _SWEEP_START, *overrides], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.splitlines()[0])
    assert state["tensorflow"] is imported
    if imported:  # TensorFlow loaded with the sweep's settings, applied before it
        assert state["onednn"] == "0"
    assert (tmp_path / "mlflow.db").is_file()  # and the store was installed all the same


def test_an_unusable_cache_only_means_mlflow_migrates_the_store(tmp_path, monkeypatch):
    (tmp_path / "not-a-dir").write_text("a file where the cache dir would be")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "not-a-dir"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert build_template() is None and not install_template(uri)
    assert ensure_experiment(uri, "digits") == "1"  # migrated in place, as MLflow does
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "not-a-dir"]
