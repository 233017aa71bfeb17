"""Every run tells its story: the figures, reports, activation maps and model in MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import compose_cfg

PNGS = [
    "plots/samples.png",
    "plots/curves.png",
    "plots/confusion_matrix.png",
    "plots/predictions.png",
    "plots/misclassified.png",
    "model/architecture.png",
    "activations/input.png",
    "activations/conv1.png",
    "activations/conv2.png",
    "activations/conv3.png",
]


def artifact_paths(client, run_id, path=""):
    out = set()
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            out |= artifact_paths(client, run_id, item.path)
        else:
            out.add(item.path)
    return out


@pytest.fixture(scope="module")
def logged(trained_run):
    import mlflow

    # MLflow 3 resolves a run's model/ artifacts through the *global* tracking URI
    mlflow.set_tracking_uri(trained_run["uri"])
    client = MlflowClient(trained_run["uri"])
    run_id = trained_run["run"].info.run_id
    return client, run_id, artifact_paths(client, run_id)


@pytest.mark.slow
def test_every_artifact_is_logged_and_every_png_decodes(logged):
    client, run_id, paths = logged
    expected = set(PNGS) | {"metrics/confusion_matrix.json", "metrics/classification_report.json",
                            "model/summary.txt", "artifact_seconds.json"}
    assert expected <= paths, sorted(expected - paths)
    assert any(p.startswith("model/") and p.endswith("MLmodel") for p in paths)
    for path in PNGS:
        with Image.open(client.download_artifacts(run_id, path)) as image:
            image.load()
            width, height = image.size
            assert 200 <= width <= 4000 and 200 <= height <= 4000, (path, image.size)
            assert np.asarray(image.convert("L")).std() > 1, path  # not blank
    summary = open(client.download_artifacts(run_id, "model/summary.txt")).read()
    assert "93,322" in summary.replace("93322", "93,322")


def _test_set(trained_run):
    from mnist_experiments.data import load_dataset

    config = trained_run["config"]
    return load_dataset(config.data, int(config.seed))


@pytest.fixture(scope="module")
def trained_config(trained_run):
    import yaml
    from omegaconf import OmegaConf

    client = MlflowClient(trained_run["uri"])
    path = client.download_artifacts(trained_run["run"].info.run_id, "config.yaml")
    trained_run["config"] = OmegaConf.create(yaml.safe_load(open(path)))
    return trained_run["config"]


@pytest.mark.slow
def test_confusion_matrix_and_report_agree_with_the_model(trained_run, trained_config, logged):
    import mlflow
    from sklearn.metrics import classification_report

    client, run_id, _ = logged
    metrics = trained_run["run"].data.metrics
    cm = json.load(open(client.download_artifacts(run_id, "metrics/confusion_matrix.json")))
    matrix = np.array(cm["matrix"])
    dataset = _test_set(trained_run)
    assert cm["class_names"] == [str(i) for i in range(10)] and cm["labels"] == list(range(10))
    assert matrix.sum() == len(dataset.y_test)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["test_accuracy"])

    mlflow.set_tracking_uri(trained_run["uri"])
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    x = (dataset.x_test.astype(np.float32) / 255.0)[..., np.newaxis]
    y_pred = np.asarray(model.predict(x)).argmax(axis=1)
    assert np.mean(y_pred == dataset.y_test) == pytest.approx(metrics["test_accuracy"])
    report = json.load(open(client.download_artifacts(run_id, "metrics/classification_report.json")))
    expected = classification_report(dataset.y_test, y_pred, labels=list(range(10)),
                                     target_names=cm["class_names"], output_dict=True,
                                     zero_division=0)
    for name in cm["class_names"] + ["macro avg", "weighted avg"]:
        for key in ("precision", "recall", "f1-score", "support"):
            assert report[name][key] == pytest.approx(expected[name][key]), (name, key)


@pytest.mark.slow
def test_the_logged_model_predicts_like_the_in_memory_model(tmp_path):
    import keras
    import mlflow

    from mnist_experiments.tracking.artifacts import log_model
    from mnist_experiments.models.builder import build_model

    cfg = compose_cfg("model=seed_tiny")
    model = build_model(cfg.model)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    model.fit(x, rng.integers(0, 10, 32), epochs=1, verbose=0)
    expected = model.predict(x, verbose=0)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run() as run:
        log_model(model, x[:2], expected[:2])
    uri = f"runs:/{run.info.run_id}/model"
    pyfunc = mlflow.pyfunc.load_model(uri)
    np.testing.assert_allclose(np.asarray(pyfunc.predict(x)), expected, rtol=1e-5, atol=1e-6)
    reloaded = mlflow.keras.load_model(uri)
    assert isinstance(reloaded, keras.Model)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # the signature: float32 (n, 28, 28, 1) -> 10 probabilities
    signature = pyfunc.metadata.signature
    spec = signature.inputs.to_dict()[0]["tensor-spec"]
    assert spec["dtype"] == "float32" and list(spec["shape"]) == [-1, 28, 28, 1]
    assert list(signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 10]
    requirements = open(mlflow.pyfunc.get_model_dependencies(uri)).read()
    assert "keras==" in requirements and "mlflow==" in requirements


@pytest.mark.parametrize("model, convs", [("seed_tiny", 1), ("lenet5", 2)])
@pytest.mark.slow
def test_one_activation_image_per_conv_layer(tmp_path, model, convs):
    from mnist_experiments.workflows.experiment import JobContext, run_experiment

    cfg = compose_cfg("data=digits", "data.limit=200", "train.epochs=1", f"model={model}",
                      "mlflow.log_model=false", "viz.max_channels=4",
                      "viz.activations_every_n_epochs=1",
                      f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    outcome = run_experiment(cfg, JobContext(launch_dir=str(tmp_path)))
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    paths = artifact_paths(client, outcome.run_id, "activations")
    assert sorted(paths) == sorted(["activations/input.png"] + [
        f"activations/conv{i}.png" for i in range(1, convs + 1)])
    # step-wise activation images (viz.activations_every_n_epochs=1): one per conv layer
    stepwise = [p for p in artifact_paths(client, outcome.run_id, "images")]
    assert len([p for p in stepwise if p.endswith(".png") and "conv" in p]) >= convs


@pytest.mark.slow
def test_viz_off_logs_no_figures(tmp_path):
    from mnist_experiments.workflows.experiment import JobContext, run_experiment

    cfg = compose_cfg("data=digits", "data.limit=200", "train.epochs=1", "model=seed_tiny",
                      "viz=off", "mlflow.log_model=false",
                      f"mlflow.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}")
    outcome = run_experiment(cfg, JobContext(launch_dir=str(tmp_path)))
    paths = artifact_paths(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), outcome.run_id)
    assert not [p for p in paths if p.endswith(".png")]
    assert "metrics/confusion_matrix.json" in paths  # reports are still logged


def test_no_figure_leaks_across_runs():
    import gc

    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from mnist_experiments import figures

    gc.collect()
    before = sum(isinstance(o, Figure) for o in gc.get_objects())
    for _ in range(3):
        fig = figures.confusion_matrix_figure(np.eye(10, dtype=int) * 5, [str(i) for i in range(10)])
        del fig
    gc.collect()
    assert sum(isinstance(o, Figure) for o in gc.get_objects()) == before
    assert plt.get_fignums() == []
