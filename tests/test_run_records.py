"""What a run shows in the MLflow UI besides its metrics: its datasets (the Dataset
column), its config_id (to group a seed sweep) and a readable description."""

from __future__ import annotations

import pytest

from conftest import FAST, all_runs, run_cli, store_uri

pytestmark = pytest.mark.slow


def _inputs(run):
    return {tuple(t.value for t in d.tags if t.key == "mlflow.data.context")[0]: d.dataset
            for d in run.inputs.dataset_inputs}


def test_a_training_run_logs_its_three_datasets_and_a_description(trained_run):
    run = trained_run["run"]
    inputs = _inputs(run)
    assert sorted(inputs) == ["test", "training", "validation"]
    fingerprint = run.data.tags["data.fingerprint"]
    for context, dataset in inputs.items():
        assert dataset.name == f"digits-{context}"
        assert dataset.digest == fingerprint[:36]
        assert "sklearn:load_digits" in dataset.source
    assert '"features_shape": [540, 28, 28]' in inputs["training"].profile  # 600 - 10%
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**seed_cnn** trained on **digits**")
    assert f"test accuracy {run.data.metrics['test_accuracy']:.4f}" in note
    assert f"config_id: `{run.data.tags['config_id']}`" in note


def test_a_kfold_run_logs_its_pool_and_each_fold_its_split(tmp_path):
    done = run_cli([*FAST, "cv=kfold", "cv.folds=2", "viz=off", "mlflow.log_model=false"],
                   tmp_path)
    assert done.returncode == 0, done.stderr
    runs = {r.info.run_name: r for r in all_runs(store_uri(tmp_path))}
    fold = _inputs(runs["fold-2"])
    assert {k: v.name for k, v in fold.items()} == {
        "training": "digits-fold-2-training", "validation": "digits-fold-2-validation"}
    (parent,) = [r for name, r in runs.items() if not name.startswith("fold-")]
    assert sorted(_inputs(parent)) == ["test", "training"]
    assert "cv_val_accuracy_mean" in parent.data.tags["mlflow.note.content"]


def test_a_single_run_samples_system_metrics(trained_run):
    metrics = trained_run["run"].data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert metrics["system/system_memory_usage_megabytes"] > 0


def test_the_experiment_is_tagged_for_model_training_and_links_open_that_view(trained_run):
    from mlflow.tracking import MlflowClient

    run = trained_run["run"]
    experiment = MlflowClient(trained_run["uri"]).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the line a user copies into a browser opens the run in the "Model training" view
    link = (f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
            "?workflowType=machine_learning")
    assert f"then open http://127.0.0.1:5000/{link}" in trained_run["result"].stdout


def test_a_local_data_source_is_logged_without_mlflows_ambiguity_warning(tmp_path):
    """MLflow registers its local-file dataset source twice and warns "can be interpreted
    in multiple ways" for every local path: that warning reached every run on IDX or npz
    data and meant nothing to a user."""
    import warnings

    import mlflow
    import numpy as np

    from mnist_experiments.tracking.datasets import log_datasets

    data = tmp_path / "data.npz"
    images, labels = np.zeros((4, 28, 28), np.float32), np.arange(4)
    np.savez(data, x_train=images, y_train=labels)
    mlflow.set_tracking_uri(store_uri(tmp_path))
    try:
        with mlflow.start_run() as run, warnings.catch_warnings():
            warnings.simplefilter("error")
            log_datasets("npz", "ab" * 32, f"npz:{data}", {"training": (images, labels)})
    finally:
        mlflow.set_tracking_uri(None)
    (logged,) = mlflow.MlflowClient(store_uri(tmp_path)).get_run(
        run.info.run_id).inputs.dataset_inputs
    assert str(data) in logged.dataset.source
