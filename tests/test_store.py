"""A brand-new SQLite store is built aside by a helper process and installed whole."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

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
