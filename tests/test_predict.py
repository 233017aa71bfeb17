"""MNIST-style preprocessing and ``mnist-exp-predict`` on real pictures of digits.

Unit tests of :mod:`mnist_experiments.data.images` use synthetic pictures and need no
model. The end-to-end tests render test images of the digits data set (the data the
shared ``trained_run`` model was trained on) as PNG files in three ways -- (a) white
digit on black 28x28, (b) the same inverted (dark on light), (c) dark on a large light
300x200 canvas, scaled up 5x and off-centre -- and classify them with the CLI
(``python -m mnist_experiments.commands.predict``, a subprocess) next to a truncated PNG and a
text file. Bad models and the table output are checked in process (``predict.main``).

The reference is the model's own prediction on the original 28x28 array. MNIST
preprocessing moves a digit (centring by centre of mass shifts these images by up to
a few pixels) and a model trained for two epochs on 540 images is not shift invariant,
so the strict check uses the images the model classifies correctly *and* robustly:
the same right label for the original and for all its shifts by up to 2 pixels. Over
all correctly classified images most labels must still agree.
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

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env
from mnist_experiments.data import images as preprocess
from mnist_experiments.data.images import ImageError

N_IMAGES = 100  # test images rendered (x3 variants)
UNKNOWN_RUN = "fedcba9876543210fedcba9876543210"


# ------------------------------------------------------------------ pictures
def digit_28(size: int = 28) -> np.ndarray:
    """A white '7'-like stroke figure on black, uint8, deliberately off-centre."""
    img = np.zeros((size, size), dtype=np.uint8)
    img[3:5, 2:14] = 255  # the bar
    for r in range(5, 18):  # the diagonal
        c = 13 - (r - 5) // 2
        img[r, c - 1:c + 1] = 230
    return img


def light_canvas(ink: np.ndarray, shape=(200, 300), scale=5, at=(30, 160),
                 paper=230) -> np.ndarray:
    """Dark ink (from a light-on-dark uint8 digit) on light paper, scaled and placed."""
    big = Image.fromarray(ink).resize((ink.shape[1] * scale, ink.shape[0] * scale),
                                      Image.Resampling.BICUBIC)
    layer = np.zeros(shape)
    big = np.asarray(big, dtype=np.float64) / 255.0
    r, c = at
    layer[r:r + big.shape[0], c:c + big.shape[1]] = big
    return np.rint(paper * (1.0 - np.clip(layer, 0, 1))).astype(np.uint8)


def ink_box(image: np.ndarray):
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


# ------------------------------------------------------------------ unit tests
def test_output_is_mnist_shaped_and_centred():
    out = preprocess.to_mnist(digit_28())
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() == pytest.approx(1.0)
    # centre of mass at the frame's centre: pixel (13.5, 13.5), i.e. 14 from the corner
    assert preprocess.center_of_mass(out) == pytest.approx((13.5, 13.5), abs=0.15)
    assert 19 <= max(ink_box(out > 0.1)) <= 21  # fitted into the 20x20 box


def test_aspect_ratio_is_kept_and_digit_fills_the_box():
    bar = np.zeros((100, 100), dtype=np.uint8)
    bar[20:30, 10:90] = 255  # 10 x 80: wide and flat
    h, w = ink_box(preprocess.to_mnist(bar) > 0.1)
    assert 19 <= w <= 21 and 2 <= h <= 4  # 10/80 of 20 = 2.5


def test_polarity_is_detected_from_the_border():
    white_on_black = digit_28()
    black_on_white = 255 - white_on_black
    assert not preprocess.is_light_background(white_on_black / 255.0)
    assert preprocess.is_light_background(black_on_white / 255.0)
    np.testing.assert_allclose(preprocess.to_mnist(black_on_white),
                               preprocess.to_mnist(white_on_black), atol=1e-6)


def test_large_light_canvas_equals_the_small_digit():
    small = preprocess.to_mnist(digit_28())
    canvas = light_canvas(digit_28(), at=(58, 5))  # off-centre (bottom left), grey paper
    big = preprocess.to_mnist(canvas)
    assert preprocess.center_of_mass(big) == pytest.approx((13.5, 13.5), abs=0.15)
    # shrinking instead of enlarging is not pixel-identical, but the same picture
    assert np.abs(big - small).mean() < 0.05
    assert np.corrcoef(big.ravel(), small.ravel())[0, 1] > 0.9


def test_noisy_jpeg_is_cropped_to_the_digit(tmp_path):
    canvas = light_canvas(digit_28(), at=(40, 40)).astype(np.float64)
    canvas += np.random.default_rng(0).normal(0, 3, canvas.shape)  # paper grain
    path = tmp_path / "photo.jpg"
    Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)).save(path, quality=85)
    out = preprocess.preprocess_file(path)
    small = preprocess.to_mnist(digit_28())
    assert 19 <= max(ink_box(out > 0.1)) <= 21  # the noise did not inflate the crop
    assert preprocess.center_of_mass(out) == pytest.approx((13.5, 13.5), abs=0.25)
    assert np.corrcoef(out.ravel(), small.ravel())[0, 1] > 0.9


def test_transparent_png_ink_is_found(tmp_path):
    ink = digit_28()
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # black ink, transparent black canvas
    rgba[..., 3] = ink
    path = tmp_path / "drawn.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    np.testing.assert_allclose(preprocess.preprocess_file(path), preprocess.to_mnist(ink),
                               atol=1e-6)


def test_unreadable_files_are_clear_errors(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(digit_28()).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 40), 200, dtype=np.uint8)).save(blank)
    for path, words in [(truncated, "truncated"), (text, "not an image"),
                        (tmp_path / "missing.png", "no such file"), (blank, "no digit")]:
        with pytest.raises(ImageError) as info:
            preprocess.preprocess_file(path)
        message = str(info.value)
        assert str(path) in message and words in message, message


# ------------------------------------------------------------- end to end
def _start(args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mnist_experiments.commands.predict", *args],
                            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def predictions(trained_run, tmp_path_factory):
    """Render the pictures, run the CLI on them and compute the in-memory reference."""
    from omegaconf import OmegaConf

    from mnist_experiments.tracking import models as models_io
    from mnist_experiments.data import load_dataset

    uri, run_id = trained_run["uri"], trained_run["run"].info.run_id
    config = OmegaConf.create(models_io.run_config(run_id, uri))
    dataset = load_dataset(config.data, int(config.seed))  # digits, as trained
    x, y = dataset.x_test[:N_IMAGES], dataset.y_test[:N_IMAGES]

    folder = tmp_path_factory.mktemp("pictures")
    files = {"a": [], "b": [], "c": []}
    for i, image in enumerate(x):
        variants = {"a": image, "b": 255 - image,
                    "c": light_canvas(image, at=(20 + i % 40, 150 - i % 60))}
        for key, pixels in variants.items():
            path = folder / f"{key}{i:03d}.png"
            Image.fromarray(pixels).save(path)
            files[key].append(str(path))
    truncated = folder / "truncated.png"
    truncated.write_bytes(Path(files["a"][0]).read_bytes()[:80])
    text = folder / "notes.txt"
    text.write_text("3, not a picture of a 3")
    order = [files["a"][0], str(truncated), *files["a"][1:], str(text), *files["b"],
             *files["c"]]

    cli = _start([run_id, *order, "--json"], trained_run["dir"])

    # in-memory reference, while the CLI runs
    from mnist_experiments.training.evaluation import predict_proba

    loaded = models_io.load(run_id, tracking_uri=uri)
    reference = predict_proba(loaded.model, x).argmax(axis=1)
    shifted = np.stack([np.roll(x, (dy, dx), axis=(1, 2))
                        for dy in range(-2, 3) for dx in range(-2, 3)])
    shifted_pred = predict_proba(loaded.model, shifted.reshape(-1, 28, 28)).argmax(axis=1)
    robust = (reference == y) & (shifted_pred.reshape(25, -1) == y).all(axis=0)

    out, err = cli.communicate(timeout=300)
    return {"x": x, "y": y, "files": files, "order": order, "truncated": str(truncated),
            "text": str(text), "reference": reference, "robust": robust,
            "rc": cli.returncode, "out": out, "err": err, "loaded": loaded, "uri": uri,
            "run_id": run_id}


@pytest.mark.slow
def test_cli_json_classifies_all_three_renderings(predictions):
    p = predictions
    assert "Traceback" not in p["err"], p["err"][-3000:]
    results = json.loads(p["out"])
    assert [r["file"] for r in results] == p["order"]  # every file, in the order given
    by_file = {r["file"]: r for r in results}
    y, reference, robust = p["y"], p["reference"], p["robust"]
    assert robust.sum() >= 3, "too few robustly classified images to check anything"
    correct = reference == y
    for key in ("a", "b", "c"):
        rows = [by_file[f] for f in p["files"][key]]
        for r in rows:
            assert set(r) == {"file", "label", "class_name", "probability", "probabilities"}
            assert r["class_name"] == str(r["label"])
            assert sum(r["probabilities"]) == pytest.approx(1.0, abs=1e-4)
            assert r["probability"] == pytest.approx(max(r["probabilities"]))
        labels = np.array([r["label"] for r in rows])
        # images the model recognises robustly in memory: the right label, every one
        assert (labels[robust] == y[robust]).all(), (key, labels[robust], y[robust])
        # all images it classifies correctly in memory: the large majority
        assert (labels[correct] == y[correct]).mean() >= 0.7, key
    # (a) and (b) are the same picture in two polarities: identical predictions
    assert [by_file[f]["label"] for f in p["files"]["a"]] == \
        [by_file[f]["label"] for f in p["files"]["b"]]


@pytest.mark.slow
def test_cli_reports_bad_files_and_still_classifies_the_rest(predictions):
    p = predictions
    assert p["rc"] == 1  # some file failed
    results = {r["file"]: r for r in json.loads(p["out"])}
    for path, words in [(p["truncated"], "truncated"), (p["text"], "not an image")]:
        assert set(results[path]) == {"file", "error"}
        assert words in results[path]["error"] and path in results[path]["error"]
        assert any(path in line and words in line for line in p["err"].splitlines())
    assert sum("error" not in r for r in results.values()) == 3 * N_IMAGES


def predict_in_process(args) -> dict:
    """``predict.main(args)`` in this process, leaving the environment as it was."""
    from mnist_experiments.commands import predict

    saved_env = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = predict.main(args)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return {"rc": rc, "out": out.getvalue(), "err": err.getvalue()}


@pytest.mark.slow
def test_bad_model_is_exit_2_with_one_clear_paragraph(predictions):
    p = predictions
    image = p["files"]["a"][0]
    for model, words in [(UNKNOWN_RUN, "not found"), ("no-such-thing", "not a model reference"),
                         ("models:/nobody/1", "nobody")]:
        bad = predict_in_process([model, image, "--tracking-uri", p["uri"]])
        assert bad["rc"] == 2 and bad["out"] == ""
        assert model in bad["err"] and words in bad["err"], bad["err"]
        assert len(bad["err"].strip().splitlines()) == 1


@pytest.mark.slow
def test_text_output_with_a_registry_alias(predictions):
    """``models:/<name>@<alias>`` (registered with models_io.register), table output."""
    from mnist_experiments.tracking import models as models_io

    p = predictions
    name = f"predict-test-{uuid.uuid4().hex[:8]}"
    models_io.register(p["run_id"], name, alias="champion", tracking_uri=p["uri"])
    files = [p["files"]["a"][0], p["files"]["c"][1]]
    result = predict_in_process([f"models:/{name}@champion", *files, "--tracking-uri", p["uri"]])
    assert result["rc"] == 0, result["err"]
    lines = result["out"].splitlines()
    assert len(lines) == 2
    for line, path in zip(lines, files):
        shown_path, class_name, probability = line.split()
        assert shown_path == path and class_name in [str(i) for i in range(10)]
        assert 0.0 < float(probability) <= 1.0
    json_labels = {r["file"]: r["class_name"] for r in json.loads(p["out"]) if "label" in r}
    assert [line.split()[1] for line in lines] == [json_labels[f] for f in files]


@pytest.mark.slow
def test_models_with_code_are_refused_even_if_unsafe_mode_was_enabled(tmp_path):
    """A .keras file with a Lambda layer (serialized code) is never deserialized."""
    import keras
    import mlflow
    from keras.src.saving import serialization_lib

    from mnist_experiments.tracking import models as models_io

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "lambda-model"  # an MLflow model directory, as logged models are
    mlflow.keras.save_model(model, str(path), pip_requirements=["keras"])
    before = serialization_lib.in_safe_mode()
    keras.config.enable_unsafe_deserialization()  # e.g. some other code in the process
    try:
        with pytest.raises(models_io.ModelError) as info:
            models_io.load(str(path), cwd=str(tmp_path))
    finally:
        serialization_lib.SafeModeScope(before).__enter__()  # put the global setting back
    message = str(info.value)
    assert "safe mode" in message and "Lambda" in message and str(path) in message
