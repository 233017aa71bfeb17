"""K-fold cross-validation: folds, parent and child runs, summary, refit, errors."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import all_runs, compose_cfg, run_cli, store_uri
from mnist_experiments.data import folds as cv
from mnist_experiments.data import load_dataset
from mnist_experiments.config.validation import validate
from mnist_experiments.errors import ConfigError


def test_folds_partition_the_training_set_and_are_stratified():
    cfg = compose_cfg("data=digits", "cv=kfold", "cv.folds=3")
    dataset = load_dataset(cfg.data, 0)
    x, y = cv.training_pool(dataset, cfg.data.validation)
    assert len(y) == len(dataset.y_train) + len(dataset.y_val)
    splits = cv.fold_indices(y, cfg.cv, seed=0)
    assert len(splits) == 3
    val_sets = [set(v.tolist()) for _, v in splits]
    assert set().union(*val_sets) == set(range(len(y)))  # union = all
    assert sum(len(v) for v in val_sets) == len(y)  # disjoint
    for train, val in splits:
        assert not set(train.tolist()) & set(val.tolist())
        overall = np.bincount(y, minlength=10) / len(y)
        in_fold = np.bincount(y[val], minlength=10) / len(val)
        assert np.abs(in_fold - overall).max() < 0.01  # stratified
    # shuffled by the seed: another seed, other folds; the same seed, the same folds
    assert not np.array_equal(splits[0][1], cv.fold_indices(y, cfg.cv, seed=1)[0][1])
    assert np.array_equal(splits[0][1], cv.fold_indices(y, cfg.cv, seed=0)[0][1])


def test_impossible_fold_counts_are_rejected():
    y = np.repeat(np.arange(10), 3)  # 3 images per class
    cfg = compose_cfg("cv=kfold", "cv.folds=4")
    with pytest.raises(ConfigError, match=r"cv\.folds=4 is more than the 3 training images of class"):
        cv.check_folds(y, cfg.cv)
    cfg = compose_cfg("cv=kfold", "cv.folds=1")
    with pytest.raises(ConfigError, match=r"cv\.folds=1 is invalid: it must be at least 2"):
        validate(cfg)  # the schema's rule (config/cv.py), checked before any data is read


@pytest.mark.slow
def test_a_kfold_run_has_a_parent_and_one_child_per_fold(tmp_path):
    result = run_cli(["experiment=seed_kfold", "data=digits", "data.limit=400", "train.epochs=2",
                      "train.batch_size=32", "viz.max_channels=4", "mlflow.log_model=false"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    for fold in (1, 2, 3):
        assert f"fold {fold}/3" in result.stderr + result.stdout
    uri = store_uri(tmp_path)
    client = MlflowClient(uri)
    runs = all_runs(uri)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.info.run_name)
    assert [c.info.run_name for c in children] == ["fold-1", "fold-2", "fold-3"]
    assert all(r.info.status == "FINISHED" for r in runs)

    finals = []
    for child in children:
        history = client.get_metric_history(child.info.run_id, "val_accuracy")
        assert [m.step for m in history] == [1, 2]
        assert child.data.metrics["final_val_accuracy"] == pytest.approx(history[-1].value, abs=1e-6)
        finals.append(history[-1].value)
        assert "metrics/confusion_matrix.json" in {
            a.path for a in client.list_artifacts(child.info.run_id, "metrics")}

    m = parent.data.metrics
    assert m["cv_val_accuracy_mean"] == pytest.approx(np.mean(finals))
    assert m["cv_val_accuracy_std"] == pytest.approx(np.std(finals))
    assert m["cv_val_accuracy_min"] == pytest.approx(min(finals))
    assert m["cv_val_accuracy_max"] == pytest.approx(max(finals))
    assert {"cv_val_loss_mean", "cv_val_loss_std", "cv_val_loss_min", "cv_val_loss_max"} <= set(m)
    assert m["objective"] == m["cv_val_accuracy_mean"]
    per_fold = client.get_metric_history(parent.info.run_id, "fold_val_accuracy")
    assert [p.step for p in per_fold] == [1, 2, 3]
    assert [p.value for p in per_fold] == pytest.approx(finals)
    # the refit's test metrics and artifacts are in the parent
    for key in ("test_accuracy", "test_loss", "test_f1_macro"):
        assert key in m
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {"plots/cv_val_accuracy_per_epoch.png", "plots/cv_fold_accuracy.png",
            "plots/confusion_matrix.png"} <= plots
    activations = {a.path for a in client.list_artifacts(parent.info.run_id, "activations")}
    assert {"activations/conv1.png", "activations/conv2.png", "activations/conv3.png"} <= activations


@pytest.mark.slow
def test_invalid_fold_counts_are_rejected_before_any_run(tmp_path):
    for args, named in ((["cv.folds=1"], "cv.folds=1"), (["cv.folds=400"], "cv.folds=400")):
        result = run_cli(["data=digits", "data.limit=300", "cv=kfold", *args], tmp_path)
        assert result.returncode != 0
        assert named in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))  # no store, no half-built one


@pytest.mark.slow
def test_a_failing_fold_fails_that_child_and_the_parent(tmp_path):
    result = run_cli(["data=digits", "data.limit=300", "train.epochs=1", "cv=kfold", "cv.folds=2",
                      "optimizer=sgd", "optimizer.learning_rate=1e12", "viz=off"], tmp_path)
    assert result.returncode != 0
    assert "fold 1/2" in result.stderr and "diverged" in result.stderr
    assert "Traceback" not in result.stderr
    runs = all_runs(store_uri(tmp_path))
    statuses = {r.info.run_name: r.info.status for r in runs}
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FAILED"
    assert statuses["fold-1"] == "FAILED" and "fold-2" not in statuses
    assert "RUNNING" not in statuses.values()
