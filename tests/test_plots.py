"""Tests for mnist_experiments.figures: real Matplotlib, rendered to PNG and decoded.

What a reader of the figures sees is checked on the drawn figure: the renderer's boxes
of every text (inside the canvas, no two overlapping), frames around the images they
mark, arrows between the boxes they join, and the colours of the decoded PNG.
"""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import warnings
import weakref

import matplotlib.pyplot as plt  # only to check that figures leave its registry empty
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.text import Text
from PIL import Image

from mnist_experiments import figures
from mnist_experiments.figures import style

DIGITS = [str(i) for i in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
RED = to_hex(style.WRONG_COLOR)

LAYERS = [
    {"name": "input", "type": "InputLayer", "output_shape": "(None, 28, 28, 1)", "params": 0},
    {"name": "conv1", "type": "Conv2D", "output_shape": "(None, 26, 26, 32)", "params": 320},
    {"name": "bn1", "type": "BatchNormalization", "output_shape": "(None, 26, 26, 32)",
     "params": 128},
    {"name": "pool1", "type": "MaxPooling2D", "output_shape": "(None, 13, 13, 32)", "params": 0},
    {"name": "conv2", "type": "Conv2D", "output_shape": "(None, 11, 11, 64)", "params": 18496},
    {"name": "pool2", "type": "MaxPooling2D", "output_shape": "(None, 5, 5, 64)", "params": 0},
    {"name": "flatten", "type": "Flatten", "output_shape": "(None, 1600)", "params": 0},
    {"name": "dense1", "type": "Dense", "output_shape": "(None, 128)", "params": 204928},
    {"name": "dropout", "type": "Dropout", "output_shape": "(None, 128)", "params": 0},
    {"name": "output", "type": "Dense", "output_shape": "(None, 10)", "params": 1290},
]
HISTORY = {
    "accuracy": [0.90, 0.95, 0.97], "val_accuracy": [0.92, 0.955, 0.965],
    "loss": [0.35, 0.16, 0.09], "val_loss": [0.28, 0.15, 0.12],
}


# ---------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """40 digit-like uint8 images (n, 28, 28): a bright blob at a varying place."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    out = np.empty((40, 28, 28), dtype=np.uint8)
    for i in range(40):
        cy, cx = rng.integers(8, 20, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
        out[i] = np.clip(blob * 255 + rng.integers(0, 30, (28, 28)), 0, 255).astype(np.uint8)
    return out


def render(fig: Figure, tmp_path, name: str = "fig.png") -> np.ndarray:
    """Save with save_png, decode with PIL, check size and that it is not blank."""
    assert isinstance(fig, Figure)
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "constrained_layout not applied"
        figures.save_png(fig, path)
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert 300 <= w <= 4000 and 300 <= h <= 4000, (w, h)
    assert pixels.std() > 0, "blank image"
    return pixels


def all_texts(fig: Figure) -> list:
    """Every Text artist of the figure (titles, labels, tick labels, annotations)."""
    return [t for t in fig.findobj(Text) if t.get_text()]


def text_strings(fig: Figure) -> list:
    return [t.get_text() for t in all_texts(fig)]


def panel_titles(fig: Figure) -> list:
    """Titles of the image panels of a grid figure (titles starting with 'actual:')."""
    return [ax.title for ax in fig.axes if ax.get_title().startswith("actual:")]


def panel_frames(fig: Figure) -> list:
    """(panel Axes, frame rectangle) of every framed image panel, in panel order."""
    return [(ax, patch) for ax in fig.axes for patch in ax.patches]


def drawn_rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=int)


def is_red(rgb) -> bool:
    r, g, b = rgb
    return r > 150 and g < 110 and b < 110


def n_images(fig: Figure) -> int:
    return len(fig.findobj(AxesImage))


def drawn_renderer(fig: Figure):
    """The renderer of ``fig`` drawn at its size and dpi (as save_png draws it)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def drawn_text_boxes(fig: Figure) -> list:
    """(text, window extent, rotation) of every non-empty text that is drawn (tick
    labels of ticks outside the view limits are not drawn)."""
    renderer = drawn_renderer(fig)
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if loc is None or not (lo - 1e-9 <= loc <= hi + 1e-9):
                    hidden.update({id(tick.label1), id(tick.label2)})
    out = []
    for t in fig.findobj(Text):
        if id(t) in hidden or not t.get_visible() or not t.get_text().strip():
            continue
        out.append((t.get_text(), t.get_window_extent(renderer), t.get_rotation() % 180))
    return out


def assert_readable_layout(fig: Figure) -> None:
    """Every drawn text lies inside the figure and no two drawn texts overlap.

    Texts are compared by their axis-aligned boxes, except two texts rotated by the
    same oblique angle (the confusion matrix's x tick labels): their boxes overlap
    although the labels do not, so those are compared along the perpendicular.
    """
    boxes = drawn_text_boxes(fig)
    frame = fig.bbox
    for text, box, _ in boxes:
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, f"clipped: {text!r}"
        assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, f"clipped: {text!r}"
    texts = [text for text, _, _ in boxes]
    ext = np.array([[b.x0 + 1, b.y0 + 1, b.x1 - 1, b.y1 - 1] for _, b, _ in boxes])
    rot = np.array([r for _, _, r in boxes], dtype=float)
    x0, y0, x1, y1 = (ext[:, i:i + 1] for i in range(4))
    overlap = (x0 < x1.T) & (x0.T < x1) & (y0 < y1.T) & (y0.T < y1)
    oblique = (rot[:, None] == rot[None, :]) & ~np.isin(rot, (0, 90))[:, None]
    # parallel oblique labels: their centres must be further apart, across the text
    # direction, than one (10 pt) line of text is high
    theta = np.radians(rot)
    cx, cy = (ext[:, 0] + ext[:, 2]) / 2, (ext[:, 1] + ext[:, 3]) / 2
    across = np.abs(-np.sin(theta)[:, None] * (cx[None, :] - cx[:, None])
                    + np.cos(theta)[:, None] * (cy[None, :] - cy[:, None]))
    bad = np.where(oblique, across < fig.dpi * 10 / 72, overlap)
    np.fill_diagonal(bad, False)
    pairs = [(texts[i], texts[j]) for i, j in zip(*np.nonzero(np.triu(bad)))]
    assert not pairs, f"overlapping texts: {pairs[:5]}"


# ---------------------------------------------------------------------- sample_grid
@pytest.mark.parametrize("channel_axis", [False, True])
def test_sample_grid_both_shapes(images, tmp_path, channel_axis):
    x = images[..., None] if channel_axis else images
    labels = np.arange(40) % 10
    fig = figures.sample_grid(x, labels, DIGITS, n=25)
    render(fig, tmp_path)
    assert n_images(fig) == 25
    strings = text_strings(fig)
    assert "Training samples (first 25)" in strings
    for i in range(25):
        assert str(labels[i]) in strings


def test_sample_grid_float_images_one_hot_labels_and_long_names(images, tmp_path):
    x = images[:9].astype(np.float32) / 255.0
    fig = figures.sample_grid(x, np.eye(10)[np.arange(9)], FASHION, n=25, title="Fashion")
    render(fig, tmp_path)
    assert n_images(fig) == 9
    assert set(FASHION[:9]) <= set(text_strings(fig))
    im = fig.findobj(AxesImage)[0]
    assert im.get_clim() == (0.0, 1.0)
    assert im.get_cmap().name == style.IMAGE_CMAP


def test_sample_grid_uint8_range(images):
    fig = figures.sample_grid(images, np.zeros(40, int), DIGITS, n=4)
    assert fig.findobj(AxesImage)[0].get_clim() == (0.0, 255.0)


# ------------------------------------------------------------------ training_curves
def test_training_curves(tmp_path):
    fig = figures.training_curves(HISTORY)
    render(fig, tmp_path)
    acc_ax, loss_ax = fig.axes[:2]
    assert acc_ax.get_xlabel() == "epoch" and loss_ax.get_xlabel() == "epoch"
    assert acc_ax.get_ylabel() == "accuracy" and loss_ax.get_ylabel() == "loss"
    assert len(acc_ax.lines) == 2 and len(loss_ax.lines) == 2
    np.testing.assert_array_equal(acc_ax.lines[0].get_xdata(), [1, 2, 3])  # 1-based epochs
    assert all(line.get_marker() not in (None, "None", "") for line in acc_ax.lines)
    labels = [t.get_text() for t in acc_ax.get_legend().get_texts()]
    assert labels[0].startswith("train") and labels[1].startswith("validation")
    ticks = [t for t in acc_ax.get_xticks() if 0.5 <= t <= 3.5]
    assert ticks == [1, 2, 3]


def test_training_curves_single_epoch_and_missing_keys(tmp_path):
    fig = figures.training_curves({"accuracy": [0.9], "loss": [0.3]})
    render(fig, tmp_path)
    assert len(fig.axes[0].lines) == 1 and len(fig.axes[1].lines) == 1
    visible = [t for t in fig.axes[0].get_xticks() if 0.5 <= t <= 1.5]
    assert visible == [1]
    fig = figures.training_curves({"loss": [0.5, 0.4]})
    render(fig, tmp_path, "missing.png")
    assert "no accuracy recorded" in text_strings(fig)
    render(figures.training_curves({}), tmp_path, "empty.png")


# ---------------------------------------------------------------- confusion matrix
def test_confusion_matrix_counts_and_accuracy(tmp_path):
    rng = np.random.default_rng(1)
    cm = rng.integers(0, 30, (10, 10)) + np.eye(10, dtype=int) * 450
    fig = figures.confusion_matrix_figure(cm, FASHION)
    render(fig, tmp_path)
    ax = fig.axes[0]
    cell_texts = [t.get_text() for t in ax.texts]
    assert len(cell_texts) == 100
    assert sorted(cell_texts) == sorted(str(v) for v in cm.ravel())
    assert ax.get_xlabel() == "Predicted label" and ax.get_ylabel() == "True label"
    assert [t.get_text() for t in ax.get_xticklabels()] == FASHION
    assert [t.get_text() for t in ax.get_yticklabels()] == FASHION
    assert all(t.get_rotation() == 45 for t in ax.get_xticklabels())  # long names
    digits = figures.confusion_matrix_figure(cm, DIGITS).axes[0]
    assert all(t.get_rotation() == 0 for t in digits.get_xticklabels())  # short: upright
    acc = np.trace(cm) / cm.sum()
    title = fig.get_suptitle()
    assert f"accuracy {acc:.1%}" in title and f"(n={cm.sum()})" in title
    assert len(fig.axes) == 2  # the matrix and its colour bar


def test_confusion_matrix_normalized_and_empty(tmp_path):
    cm = np.array([[8, 2], [1, 9]], dtype=float)
    fig = figures.confusion_matrix_figure(cm / cm.sum(axis=1, keepdims=True), ["a", "b"])
    render(fig, tmp_path)
    assert "balanced accuracy 85.0%" in fig.get_suptitle()
    assert "0.80" in [t.get_text() for t in fig.axes[0].texts]
    fig = figures.confusion_matrix_figure(np.zeros((3, 3), int), ["x", "y", "z"])
    render(fig, tmp_path, "empty.png")
    assert "no samples" in fig.get_suptitle()


# ----------------------------------------------------------------- prediction_grid
@pytest.mark.parametrize("channel_axis", [False, True])
def test_prediction_grid_marks_exactly_the_wrong_ones(images, tmp_path, channel_axis):
    x = images[..., None] if channel_axis else images
    y_true = np.arange(40) % 10
    y_pred = y_true.copy()
    wrong = [2, 3, 11, 24, 30]  # 30 is outside the first 25: not shown
    y_pred[wrong] = (y_pred[wrong] + 1) % 10
    fig = figures.prediction_grid(x, y_true, y_pred, FASHION, n=25)
    render(fig, tmp_path)
    titles = panel_titles(fig)
    assert len(titles) == 25 and n_images(fig) == 25
    red = [i for i, t in enumerate(titles) if to_hex(t.get_color()) == RED]
    assert red == [2, 3, 11, 24]
    assert titles[2].get_text() == f"actual: {FASHION[2]}\npredicted: {FASHION[3]}"
    assert titles[0].get_text() == f"actual: {FASHION[0]}\npredicted: {FASHION[0]}"
    frames = panel_frames(fig)
    red = [i for i, (_, frame) in enumerate(frames) if to_hex(frame.get_edgecolor()) == RED]
    assert red == [2, 3, 11, 24]
    assert any("4 of 25 wrong" in s for s in text_strings(fig))


def test_prediction_grid_all_right(images, tmp_path):
    y = np.arange(40) % 10
    fig = figures.prediction_grid(images, y, y, DIGITS)
    render(fig, tmp_path)
    assert not [t for t in panel_titles(fig) if to_hex(t.get_color()) == RED]
    assert "all 25 right" in text_strings(fig)


def test_red_frames_are_drawn_around_the_wrong_images(images, tmp_path):
    """In the PNG, the edge of each wrong image is red and that of a right one is not."""
    y_true = np.arange(9) % 10
    y_pred = y_true.copy()
    y_pred[[1, 5]] = 0
    fig = figures.prediction_grid(images[:9], y_true, y_pred, FASHION, n=9)
    render(fig, tmp_path)
    rgb = drawn_rgb(tmp_path / "fig.png")
    height = rgb.shape[0]
    renderer = drawn_renderer(fig)
    for i, (ax, frame) in enumerate(panel_frames(fig)):
        image_box = ax.images[0].get_window_extent(renderer)
        frame_box = frame.get_window_extent(renderer)
        assert np.allclose(image_box.extents, frame_box.extents, atol=3)  # on the image
        x, y = round(frame_box.x0), height - round((frame_box.y0 + frame_box.y1) / 2)
        assert is_red(rgb[y, x]) == (i in (1, 5)), (i, rgb[y, x])


def test_long_titles_wrap_inside_the_figure(images, tmp_path):
    title = "Confusion matrix of a rather long experiment name on its held-out test set"
    fig = figures.confusion_matrix_figure(np.array([[5, 1], [2, 7]]), ["a", "b"], title=title)
    render(fig, tmp_path)
    assert_readable_layout(fig)  # inside the canvas, so it was wrapped
    fig = figures.sample_grid(images[:2], [0, 1], DIGITS, title="A long title " * 6)
    render(fig, tmp_path, "grid.png")
    assert_readable_layout(fig)


def test_long_class_names_are_wrapped_rather_than_overlap(images, tmp_path):
    names = [f"a class with a very long name number {i}" for i in range(9)] + ["x" * 60]
    y = np.arange(40) % 10
    fig = figures.prediction_grid(images, y, (y + 1) % 10, names, n=16)
    render(fig, tmp_path)
    assert_readable_layout(fig)
    first = panel_titles(fig)[0].get_text()
    assert first.count("\n") >= 3  # wrapped
    assert " ".join(first.split()) == f"actual: {names[0]} predicted: {names[1]}"
    fig = figures.sample_grid(images, y, names, n=16)
    render(fig, tmp_path, "samples.png")
    assert_readable_layout(fig)
    assert fig.axes[9].get_title().replace("\n", "") == "x" * 60


# -------------------------------------------------------------- misclassified_grid
def test_misclassified_grid_picks_most_confident_mistakes(images, tmp_path):
    rng = np.random.default_rng(2)
    y_true = np.arange(40) % 10
    y_pred = y_true.copy()
    wrong = np.arange(0, 40, 2)  # 20 mistakes
    y_pred[wrong] = (y_pred[wrong] + 3) % 10
    confidence = rng.uniform(0.3, 0.99, 40)
    confidence[1] = 1.0  # the most confident prediction is a right one: must not be shown
    fig = figures.misclassified_grid(images, y_true, y_pred, confidence, FASHION, n=16)
    render(fig, tmp_path)
    titles = [t.get_text() for t in panel_titles(fig)]
    expected = wrong[np.argsort(-confidence[wrong], kind="stable")][:16]
    assert len(titles) == 16 and n_images(fig) == 16
    for title, i in zip(titles, expected):
        assert title == (f"actual: {FASHION[y_true[i]]}\npredicted: {FASHION[y_pred[i]]}\n"
                         f"confidence {confidence[i]:.1%}")
    shown = [float(t.rsplit(" ", 1)[1].rstrip("%")) for t in titles]
    assert shown == sorted(shown, reverse=True)


def test_misclassified_grid_probability_matrix_and_few_mistakes(images, tmp_path):
    y_true = np.zeros(10, int)
    y_pred = np.zeros(10, int)
    y_pred[[3, 7]] = [4, 5]
    probs = np.full((10, 10), 0.02)
    probs[np.arange(10), y_pred] = 0.82
    probs[7, 5] = 0.95
    fig = figures.misclassified_grid(images[:10, ..., None], y_true, y_pred, probs, DIGITS)
    render(fig, tmp_path)
    titles = [t.get_text() for t in panel_titles(fig)]
    assert titles == ["actual: 0\npredicted: 5\nconfidence 95.0%",
                      "actual: 0\npredicted: 4\nconfidence 82.0%"]


def test_misclassified_grid_no_mistakes(images, tmp_path):
    y = np.arange(40) % 10
    fig = figures.misclassified_grid(images, y, y, np.ones(40), DIGITS)
    render(fig, tmp_path)
    assert n_images(fig) == 0
    assert any("No mistakes" in s for s in text_strings(fig))


# ------------------------------------------------------------ input image / activations
@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (1, 28, 28, 1)])
def test_input_image_figure(images, tmp_path, shape):
    fig = figures.input_image_figure(images[5].reshape(shape), "7", 123)
    render(fig, tmp_path)
    assert n_images(fig) == 1
    assert "Test image #123 \u2014 label: 7" in text_strings(fig)
    fig = figures.input_image_figure(images[5], "Ankle boot", 9, title="Custom")
    assert "Custom" in text_strings(fig)


@pytest.mark.parametrize("c,max_channels,expected", [(32, 16, 16), (6, 16, 6), (64, 8, 8)])
def test_activation_grid_channel_count(tmp_path, c, max_channels, expected):
    rng = np.random.default_rng(3)
    fm = np.maximum(rng.normal(size=(11, 11, c)), 0).astype(np.float32)
    fig = figures.activation_grid(fm, "conv2", max_channels=max_channels)
    render(fig, tmp_path)
    maps = fig.findobj(AxesImage)
    assert len(maps) == expected
    strings = text_strings(fig)
    assert [f"ch {j}" for j in range(expected)] == [s for s in strings if s.startswith("ch ")]
    assert f"conv2: {c} feature maps 11x11 (showing {expected})" in strings
    clims = {im.get_clim() for im in maps}
    assert clims == {(float(fm[..., :expected].min()), float(fm[..., :expected].max()))}
    assert maps[-1].colorbar is not None and maps[-1].colorbar.ax is fig.axes[-1]
    assert fig.axes[-1].get_ylabel() == "activation"
    assert {im.get_cmap().name for im in maps} == {"viridis"}
    assert len(fig.axes) == expected + 1  # one per channel and one shared colour bar


def test_activation_grid_constant_and_batched(tmp_path):
    fig = figures.activation_grid(np.zeros((1, 5, 5, 4)), "dead")
    render(fig, tmp_path)
    assert any("every activation shown is 0" in s for s in text_strings(fig))


# ------------------------------------------------------------------- architecture
def box_lines(fig: Figure) -> list:
    """The two lines of each layer box of an architecture diagram, top to bottom."""
    return [t.get_text().split("\n") for t in fig.axes[0].texts if t.get_text()]


def test_architecture_diagram_shows_every_layer(tmp_path):
    fig = figures.architecture_diagram(LAYERS)
    render(fig, tmp_path)
    boxes = box_lines(fig)
    assert len(boxes) == len(LAYERS)
    for (first, second), layer in zip(boxes, LAYERS):
        assert first.startswith(layer["name"] + " ") and first.endswith(" " + layer["type"])
        assert second.startswith(f"output {layer['output_shape']} ")
        assert second.endswith(f" {layer['params']:,} params")
    assert len({len(line) for box in boxes for line in box}) == 1  # boxes equally wide
    total = sum(layer["params"] for layer in LAYERS)
    assert fig.get_suptitle() == f"Architecture \u2014 {total:,} parameters"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Input", "Conv2D", "BatchNormalization", "Pooling", "Flatten", "Dense",
                      "Dropout"]


def test_architecture_arrows_join_consecutive_boxes(tmp_path):
    fig = figures.architecture_diagram(LAYERS[:5])
    render(fig, tmp_path)
    renderer = drawn_renderer(fig)
    ax = fig.axes[0]
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts if t.get_text()]
    arrows = [t.arrow_patch.get_window_extent(renderer) for t in ax.texts if not t.get_text()]
    assert len(arrows) == len(boxes) - 1 == 4
    for upper, lower, arrow in zip(boxes, boxes[1:], arrows):
        assert upper.y0 > lower.y1  # boxes do not overlap, the first one on top
        assert abs(arrow.y1 - upper.y0) < 3 and abs(arrow.y0 - lower.y1) < 3
        assert upper.x0 < (arrow.x0 + arrow.x1) / 2 < upper.x1


def test_architecture_diagram_scales_with_layers(tmp_path):
    many = [dict(LAYERS[1 + i % 9], name=f"layer_{i}") for i in range(20)]
    few = figures.architecture_diagram(LAYERS[:3])
    big = figures.architecture_diagram(many)
    pixels = render(big, tmp_path)
    assert big.get_size_inches()[1] > 3 * few.get_size_inches()[1] / 2
    assert pixels.shape[0] >= 20 * 0.5 * big.dpi  # at least half an inch per layer
    assert [box[0].split()[0] for box in box_lines(big)] == [f"layer_{i}" for i in range(20)]
    render(figures.architecture_diagram([]), tmp_path, "empty.png")
    odd = figures.architecture_diagram([{"name": "x", "type": "Activation"}])
    render(odd, tmp_path, "odd.png")
    assert box_lines(odd)[0][1].endswith("? params")


# ------------------------------------------------------------------------- k-fold
def test_fold_curves(tmp_path):
    folds = [{"val_accuracy": [0.9, 0.95, 0.96 + 0.002 * i]} for i in range(5)]
    fig = figures.fold_curves(folds)
    render(fig, tmp_path)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == [f"fold {i}" for i in range(1, 6)]
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "val_accuracy"
    render(figures.fold_curves([{"loss": [1.0]}], metric="val_accuracy"), tmp_path, "none.png")


def test_fold_summary(tmp_path):
    scores = [0.970, 0.975, 0.968, 0.980, 0.972]
    fig = figures.fold_summary(scores)
    render(fig, tmp_path)
    label = f"mean {np.mean(scores):.3f} \u00b1 {np.std(scores):.3f}"
    assert any(label in s for s in text_strings(fig))
    ax = fig.axes[0]
    assert math.isclose(ax.lines[0].get_ydata()[0], np.mean(scores))  # the mean line
    render(figures.fold_summary([0.97]), tmp_path, "one.png")
    fig = figures.fold_summary([0.97, float("nan"), 0.96])
    render(fig, tmp_path, "nan.png")
    assert "fold 2\n(failed)" in [t.get_text() for t in fig.axes[0].get_xticklabels()]


# ------------------------------------------------------------------------- sweeps
def test_objective_per_job(tmp_path):
    labels = ["optimizer=adam,model=lenet5",
              "optimizer=sgd,model=lenet5,optimizer.learning_rate=0.1,train.epochs=20",
              "optimizer=rmsprop,model=bn_cnn", "optimizer=adamw,model=seed_cnn"]
    values = [0.981, 0.902, float("nan"), 0.987]
    fig = figures.objective_per_job(labels, values, best_index=3)
    render(fig, tmp_path)
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # no bar for the failed job
    strings = [t.get_text() for t in ax.texts]
    assert "failed" in strings and "0.981" in strings and "0.987  (best)" in strings
    ticks = [t.get_text().replace("\n", "") for t in ax.get_yticklabels()]
    assert ticks == labels
    colors = {to_hex(p.get_facecolor()) for p in ax.patches}
    assert to_hex(style.BEST_COLOR) in colors and len(colors) == 2
    tall = figures.objective_per_job([f"x={i}" for i in range(30)], list(range(30)), None)
    assert tall.get_size_inches()[1] > 2 * fig.get_size_inches()[1]
    render(tall, tmp_path, "tall.png")


# ------------------------------------------------------------ readable layout (all)
def _figures_for_layout(images):
    rng = np.random.default_rng(4)
    y = np.arange(40) % 10
    wrong = (y + 1) % 10
    overrides = [f"optimizer={o},model={m},optimizer.learning_rate={lr},train.epochs=20"
                 for o in ("adam", "rmsprop") for m in ("lenet5", "bn_cnn") for lr in (0.1, 1e-3)]
    return {
        "sample_fashion": lambda: figures.sample_grid(images, y, FASHION),
        "curves": lambda: figures.training_curves(HISTORY),
        "curves_tiny_loss": lambda: figures.training_curves({"loss": [2e-4, 1e-4]}),
        "cm_fashion": lambda: figures.confusion_matrix_figure(
            rng.integers(0, 2000, (10, 10)), FASHION),
        "cm_digits": lambda: figures.confusion_matrix_figure(
            rng.integers(0, 2000, (10, 10)), DIGITS),
        "cm_20": lambda: figures.confusion_matrix_figure(
            rng.integers(0, 999, (20, 20)), [f"class {i}" for i in range(20)]),
        "predictions_fashion": lambda: figures.prediction_grid(images, y, wrong, FASHION),
        "mistakes_fashion": lambda: figures.misclassified_grid(
            images, y, wrong, rng.uniform(0, 1, 40), FASHION),
        "no_mistakes": lambda: figures.misclassified_grid(images, y, y, np.ones(40), FASHION),
        "input": lambda: figures.input_image_figure(images[0], "Ankle boot", 1234),
        "activations": lambda: figures.activation_grid(rng.normal(size=(26, 26, 32)), "conv1"),
        "activations_1": lambda: figures.activation_grid(rng.normal(size=(3, 3, 1)), "c"),
        "architecture_20": lambda: figures.architecture_diagram(
            [dict(LAYERS[i % 10], name=f"block{i}_{LAYERS[i % 10]['name']}") for i in range(20)]),
        "folds": lambda: figures.fold_curves([{"val_accuracy": list(rng.uniform(0.9, 1, 12))}
                                            for _ in range(10)]),
        "fold_summary": lambda: figures.fold_summary([0.97, float("nan"), 0.975, 0.969, 0.98]),
        "sweep": lambda: figures.objective_per_job(overrides, list(rng.uniform(0, 1, 8)), 2,
                                                 ylabel="val_accuracy"),
    }


LAYOUT_CASES = list(_figures_for_layout(np.zeros((40, 28, 28))).keys())


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_no_clipped_or_overlapping_text(images, tmp_path, case):
    fig = _figures_for_layout(images)[case]()
    render(fig, tmp_path)
    assert_readable_layout(fig)
    assert fig.get_suptitle() or any(ax.get_title() for ax in fig.axes), "no title"


def test_numpy_inputs_everywhere(images, tmp_path):
    """Arrays instead of lists (no ``array or []`` ambiguity errors)."""
    hist = {k: np.asarray(v) for k, v in HISTORY.items()}
    figs = [
        figures.training_curves(hist),
        figures.fold_curves([hist, hist]),
        figures.fold_summary(np.array([0.9, 0.95, 0.93])),
        figures.objective_per_job(np.array(["a=1", "a=2"]), np.array([0.5, 0.7]), np.int64(1)),
        figures.architecture_diagram(tuple(LAYERS[:3])),
    ]
    for i, fig in enumerate(figs):
        render(fig, tmp_path, f"{i}.png")


# ---------------------------------------------------------------------- the module
def test_no_pyplot_registry_leak(images, tmp_path):
    """No figure is registered with pyplot, and each is freed once the caller drops it
    (sklearn's ConfusionMatrixDisplay imports pyplot: it must draw on our Axes)."""
    plt.close("all")
    y = np.arange(40) % 10
    figs = [
        figures.sample_grid(images, y, DIGITS),
        figures.training_curves(HISTORY),
        figures.confusion_matrix_figure(np.eye(10, dtype=int), DIGITS),
        figures.prediction_grid(images, y, (y + 1) % 10, DIGITS),
        figures.misclassified_grid(images, y, (y + 1) % 10, np.ones(40), DIGITS),
        figures.input_image_figure(images[0], "0", 0),
        figures.activation_grid(np.ones((5, 5, 3)), "c"),
        figures.architecture_diagram(LAYERS),
        figures.fold_curves([HISTORY]),
        figures.fold_summary([0.9, 0.95]),
        figures.objective_per_job(["a=1"], [1.0], 0),
    ]
    for i, fig in enumerate(figs):
        figures.save_png(fig, tmp_path / f"{i}.png")
    assert plt.get_fignums() == []
    refs = [weakref.ref(fig) for fig in figs]
    del figs, fig
    gc.collect()
    assert [r for r in refs if r() is not None] == []


def test_package_imports_no_pyplot_tensorflow_or_mlflow():
    code = ("import sys, mnist_experiments.figures\n"
            "import mnist_experiments.figures.architecture, mnist_experiments.figures.confusion\n"
            "import mnist_experiments.figures.curves, mnist_experiments.figures.images\n"
            "import mnist_experiments.figures.style, mnist_experiments.figures.sweeps\n"
            "bad = [m for m in ('matplotlib.pyplot', 'tensorflow', 'keras', 'mlflow')"
            " if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_exports_every_figure_and_the_save_settings():
    for name in figures.__all__:
        assert hasattr(figures, name), name
    assert {"sample_grid", "prediction_grid", "misclassified_grid", "input_image_figure",
            "activation_grid", "training_curves", "fold_curves", "fold_summary",
            "confusion_matrix_figure", "architecture_diagram", "objective_per_job",
            "augmentation_grid",
            "save_png", "SAVE_RC", "SAVEFIG_KWARGS"} == set(figures.__all__)
    assert figures.SAVEFIG_KWARGS["facecolor"] == "white"
    assert figures.SAVE_RC == {"text.hinting": "no_hinting"}


def test_every_figure_uses_constrained_layout(images):
    y = np.arange(40) % 10
    for fig in (figures.sample_grid(images, y, DIGITS), figures.training_curves(HISTORY),
                figures.confusion_matrix_figure(np.eye(3, dtype=int), ["a", "b", "c"]),
                figures.architecture_diagram(LAYERS[:2]), figures.fold_summary([0.9]),
                figures.objective_per_job(["a=1"], [0.5], 0),
                figures.misclassified_grid(images, y, y, np.ones(40), DIGITS)):
        assert type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"


def test_save_png_creates_parent_dirs_and_keeps_size(tmp_path):
    fig = figures.fold_summary([0.9, 0.95])
    path = tmp_path / "a" / "b" / "summary.png"
    figures.save_png(fig, str(path))
    w_in, h_in = fig.get_size_inches()
    with Image.open(path) as im:
        w, h = im.size
    assert abs(w - w_in * fig.dpi) <= 1 and abs(h - h_in * fig.dpi) <= 1
