"""The MLflow UI, for real: ``mlflow server`` over the store of a real ``mnist-exp`` run.

The REST API is checked for what the UI shows (the run, its params, its per-epoch metric
history, its artifacts and its logged model); then a real headless Chromium (Debian's
``chromium``, driven by Playwright) renders the run's pages.

Without a Chromium or the ``playwright`` package (the ``test`` extra) the browser tests are
skipped, except under ``CI=true`` where they fail: CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path

import pytest
from conftest import UI_HEIGHT as HEIGHT
from conftest import UI_WIDTH as WIDTH
from conftest import cli_env
from ui_helpers import (
    PNG_MAGIC,
    MlflowServer,
    goto,
    png_size,
    run_page_url,
    wait_for_image,
    wait_for_texts,
)

pytestmark = pytest.mark.slow  # a training run, an mlflow server and a browser

# How long the server may take to come up, and how long it should: a start slower than
# STARTUP_BUDGET fails the health test instead of timing out the fixture.
STARTUP_TIMEOUT, STARTUP_BUDGET = 180, 60
# How long the browser waits for the overview, and how long it should take to render.
RENDER_TIMEOUT, RENDER_BUDGET = 120, 45

PLOTS = ["samples.png", "curves.png", "confusion_matrix.png", "predictions.png",
         "misclassified.png"]
ACTIVATIONS = ["input.png", "conv1.png", "conv2.png", "conv3.png"]
EPOCH_METRICS = ["accuracy", "loss", "val_accuracy", "val_loss"]


@pytest.fixture(scope="module")
def server(trained_run, tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 (a free port) over the trained run's SQLite store."""
    # Its own working directory: nothing the server may write lands beside the store.
    srv = MlflowServer(trained_run["uri"], tmp_path_factory.mktemp("mlflow-server"),
                       env=cli_env(), startup_timeout=STARTUP_TIMEOUT)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def ids(trained_run):
    run = trained_run["run"]
    return {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "run_name": run.info.run_name}


# ---------------------------------------------------------------------------
# REST API
# ---------------------------------------------------------------------------


def _outward_address():
    """This machine's address on its default route (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else address


def test_server_health_and_urls(server):
    assert server.proc.poll() is None, server.log_tail()  # still serving
    assert server.get_raw("/health").strip() == b"OK"
    # listening on the loopback only: not reachable on the machine's outward address
    address = _outward_address()
    if address is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, server.port), timeout=5).close()
    # well within the fixture's timeout: a slow start fails here rather than timing out
    assert server.startup_seconds < STARTUP_BUDGET, server.startup_seconds


def test_rest_run_params_and_metric_history(server, ids, trained_run):
    run = server.get("/api/2.0/mlflow/runs/get", run_id=ids["run_id"])["run"]
    info = run["info"]
    assert info["status"] == "FINISHED"
    assert info["run_name"] == ids["run_name"]
    assert info["experiment_id"] == ids["experiment_id"]
    assert info["lifecycle_stage"] == "active"

    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["train.epochs"] == "2"
    assert params["data.name"] == "digits"
    assert params["data.limit"] == "600"
    assert params["model.conv_blocks.0.filters"] == "32"
    assert params["viz.max_channels"] == "4"
    # the server serves exactly what the run logged
    assert params == dict(trained_run["run"].data.params)

    latest = {m["key"]: m for m in run["data"]["metrics"]}
    for key in EPOCH_METRICS + ["test_accuracy"]:
        assert key in latest, sorted(latest)

    for key in EPOCH_METRICS:
        history = server.get("/api/2.0/mlflow/metrics/get-history",
                             run_id=ids["run_id"], metric_key=key)["metrics"]
        assert [m["step"] for m in history] == [1, 2], (key, history)  # one point per epoch
        assert history[-1]["value"] == pytest.approx(latest[key]["value"])
    # training learned something in two epochs
    val = server.get("/api/2.0/mlflow/metrics/get-history",
                     run_id=ids["run_id"], metric_key="val_accuracy")["metrics"]
    assert all(0.0 <= m["value"] <= 1.0 for m in val)
    assert latest["test_accuracy"]["value"] > 0.3

    # and the run is found the way the experiment page looks for it
    found = server.post("/api/2.0/mlflow/runs/search",
                        {"experiment_ids": [ids["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in found] == [ids["run_id"]]


def _listing(server, run_id, path=None):
    params = {"run_id": run_id}
    if path:
        params["path"] = path
    return server.get("/api/2.0/mlflow/artifacts/list", **params)


def test_rest_artifacts_listed_and_downloadable(server, ids, trained_run):
    run_id = ids["run_id"]
    root = _listing(server, run_id)
    top = {f["path"]: f["is_dir"] for f in root["files"]}
    for d in ("plots", "activations", "metrics", "model"):
        assert top.get(d) is True, top
    for f in ("config.yaml", "overrides.yaml", "data.json"):
        assert top.get(f) is False, top

    def names(path):
        return {f["path"]: f.get("file_size", 0) for f in _listing(server, run_id, path)["files"]}

    plots = names("plots")
    activations = names("activations")
    metrics = names("metrics")
    model = names("model")
    for f in PLOTS:
        assert plots.get(f"plots/{f}", 0) > 1000, plots
    for f in ACTIVATIONS:
        assert activations.get(f"activations/{f}", 0) > 500, activations
    assert {"metrics/confusion_matrix.json", "metrics/classification_report.json"} <= set(metrics)
    assert {"model/summary.txt", "model/architecture.png"} <= set(model)

    # downloads through the server, as the UI's artifact viewer does
    local_root = Path(trained_run["dir"])
    for path in ("plots/confusion_matrix.png", "activations/conv1.png"):
        data = server.get_raw("/get-artifact", path=path, run_uuid=run_id)
        assert data[:8] == PNG_MAGIC, (path, data[:16])
        assert len(data) == plots.get(path, activations.get(path))
        width, height = png_size(data)
        assert width > 100 and height > 100
        # other tests may add runs to this store: compare with this run's own file
        on_disk = local_root / "mlruns" / run_id / "artifacts" / path
        assert on_disk.read_bytes() == data

    cm = json.loads(server.get_raw("/get-artifact", path="metrics/confusion_matrix.json",
                                   run_uuid=run_id))
    assert cm, "confusion matrix JSON is empty"
    summary = server.get_raw("/get-artifact", path="model/summary.txt", run_uuid=run_id)
    assert b"Total params" in summary or b"params" in summary.lower()


def test_rest_logged_model(server, ids):
    """MLflow 3 logs the Keras model as a *logged model* (``models:/m-...``), not under the
    run's artifacts: the run's ``outputs`` point to it, and it has its own artifact tree."""
    run = server.get("/api/2.0/mlflow/runs/get", run_id=ids["run_id"])["run"]
    outputs = run.get("outputs", {}).get("model_outputs", [])
    assert len(outputs) == 1, run.get("outputs")
    model_id = outputs[0]["model_id"]
    assert model_id.startswith("m-")

    model = server.get(f"/api/2.0/mlflow/logged-models/{model_id}")["model"]["info"]
    assert model["status"] == "LOGGED_MODEL_READY"
    assert model["source_run_id"] == ids["run_id"]
    assert model["experiment_id"] == ids["experiment_id"]
    assert model["name"] == "model"

    # the experiment's "Models" page lists it
    found = server.post("/api/2.0/mlflow/logged-models/search",
                        {"experiment_ids": [ids["experiment_id"]]})["models"]
    assert [m["info"]["model_id"] for m in found] == [model_id]

    files = server.get(f"/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories")
    listed = {f["path"]: f["is_dir"] for f in files["files"]}
    assert listed.get("MLmodel") is False and listed.get("data") is True, listed
    mlmodel = server.get_raw(f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/files",
                             artifact_file_path="MLmodel").decode()
    assert "keras:" in mlmodel and "python_function:" in mlmodel
    assert ids["run_id"] in mlmodel and model_id in mlmodel
    data = server.get(f"/api/2.0/mlflow/logged-models/{model_id}/artifacts/directories",
                      artifact_directory_path="data")
    assert "data/model.keras" in {f["path"] for f in data["files"]}


# ---------------------------------------------------------------------------
# The rendered UI in a real headless Chromium
# ---------------------------------------------------------------------------


def _check_screenshot(data: bytes, path: Path) -> None:
    from PIL import Image

    path.write_bytes(data)
    assert data[:8] == PNG_MAGIC
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 20_000, len(data)
    img = Image.open(io.BytesIO(data)).convert("RGB")
    # a rendered page, not a blank one or a lone spinner
    colors = img.getcolors(maxcolors=1_000_000)
    assert colors is not None and len(colors) > 50, len(colors or [])


def test_browser_shows_run_overview(page, server, ids, tmp_path):
    url = run_page_url(server.url, ids["experiment_id"], ids["run_id"])
    needles = [ids["run_name"], ids["run_id"], "val_accuracy", "test_accuracy", "train.epochs",
               "model.conv_blocks.0.filters", "Finished", "Artifacts"]
    t0 = time.monotonic()
    goto(page, url)
    # the overview's "Logged models" table lists one model, with the status "Ready"
    text = wait_for_texts(page, needles, near=("Logged models (1)", "Ready", 600),
                          timeout=RENDER_TIMEOUT)
    elapsed = time.monotonic() - t0
    assert "Metrics (" in text and "Parameters (" in text
    assert "MLflow" in page.title()
    _check_screenshot(page.screenshot(), tmp_path / "overview.png")
    # well within the wait's timeout: a slow render fails here rather than timing out
    assert elapsed < RENDER_BUDGET, elapsed


def test_browser_shows_artifacts(page, server, ids, tmp_path):
    # The artifacts tab, with the confusion matrix selected by the URL
    url = run_page_url(server.url, ids["experiment_id"], ids["run_id"],
                       "artifacts/plots/confusion_matrix.png")
    goto(page, url)
    text = wait_for_texts(
        page, ["activations", "plots", "metrics", "config.yaml", "plots/confusion_matrix.png",
               "curves.png"], timeout=60)
    assert ids["run_name"] in text
    # the PNG, fetched through the server and decoded by the browser: the run's own image
    img = wait_for_image(page, min_size=200)
    served = server.get_raw("/get-artifact", path="plots/confusion_matrix.png",
                            run_uuid=ids["run_id"])
    assert (img["naturalWidth"], img["naturalHeight"]) == png_size(served)
    assert img["shownWidth"] > 100
    _check_screenshot(page.screenshot(), tmp_path / "confusion_matrix.png")

    # An activation image, opened the same way
    goto(page, run_page_url(server.url, ids["experiment_id"], ids["run_id"],
                            "artifacts/activations/conv1.png"))
    wait_for_texts(page, ["activations/conv1.png", "conv2.png", "input.png"], timeout=60)
    img = wait_for_image(page, min_size=100)
    served = server.get_raw("/get-artifact", path="activations/conv1.png",
                            run_uuid=ids["run_id"])
    assert (img["naturalWidth"], img["naturalHeight"]) == png_size(served)
    _check_screenshot(page.screenshot(), tmp_path / "conv1.png")
