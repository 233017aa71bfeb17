"""Figures for a training run: NumPy arrays in, a Matplotlib ``Figure`` out.

Every function here is pure: it builds a new :class:`matplotlib.figure.Figure` with the
object-oriented API and returns it. ``matplotlib.pyplot`` is never imported, so no GUI
window can open and no figure is kept in pyplot's global registry: a figure is freed as
soon as the caller drops it (no leak across runs or k-fold folds). Save one with
:func:`save_png`; to change its resolution call ``fig.set_dpi(dpi)`` first (every size is
in inches/points, so the layout scales with the dpi).

Images (MNIST-style) may be ``uint8`` 0-255 or float 0-1 and shaped ``(n, 28, 28)`` or
``(n, 28, 28, 1)``; labels may be class indices or one-hot / probability rows. All
images are drawn with the same grayscale colour map (:data:`IMAGE_CMAP`).

This module imports neither TensorFlow/Keras nor MLflow.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.ticker import MaxNLocator

__all__ = [
    "sample_grid",
    "training_curves",
    "confusion_matrix_figure",
    "prediction_grid",
    "misclassified_grid",
    "input_image_figure",
    "activation_grid",
    "architecture_diagram",
    "fold_curves",
    "fold_summary",
    "objective_per_job",
    "save_png",
]

DEFAULT_DPI = 100
IMAGE_CMAP = "gray_r"  # ink dark on white paper, like the notebooks
ACTIVATION_CMAP = "viridis"
WRONG_COLOR = "#d62728"  # red: a wrong prediction
RIGHT_COLOR = "#1b7a34"  # dark green: a right prediction (readable on white)
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
BAR_COLOR = "#7ea6cf"
BEST_COLOR = "#e8710a"
SUPTITLE_SIZE = 13
EM_DASH = "\u2014"


# ---------------------------------------------------------------------- helpers
def _new_figure(width: float, height: float) -> Figure:
    """A white figure (inches) with the constrained layout engine (no overlapping text)."""
    fig = Figure(figsize=(width, height), dpi=DEFAULT_DPI, facecolor="white")
    fig.set_layout_engine("constrained")
    return fig


def _message_figure(title: str, message: str, width: float = 6.0, height: float = 2.4) -> Figure:
    """A figure with a title and one centred line of text (for empty inputs)."""
    fig = _new_figure(width, height)
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, wrap=True,
            transform=ax.transAxes)
    fig.suptitle(title, fontsize=SUPTITLE_SIZE, fontweight="bold")
    return fig


def _as_images(images: Any) -> np.ndarray:
    """``(n, h, w)`` from ``(n, h, w)``, ``(n, h, w, 1)`` (or one ``(h, w[, 1])`` image)."""
    arr = np.asarray(images)
    if arr.ndim >= 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(
            f"expected images shaped (n, h, w) or (n, h, w, 1), got shape {np.shape(images)}"
        )
    return arr


def _value_range(arr: np.ndarray) -> Tuple[float, float]:
    """The intensity range to show: 0-255 for integer images, 0-1 for float 0-1 images."""
    if arr.size == 0:
        return 0.0, 1.0
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        return 0.0, 255.0 if arr.max() > 1 else 1.0
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0 and hi > 1.0:
        return 0.0, 255.0
    return lo, hi if hi > lo else lo + 1.0


def _as_labels(labels: Any) -> np.ndarray:
    """Class indices from indices, or from one-hot / probability rows (argmax)."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        return arr.argmax(axis=1)
    return arr.reshape(-1)


def _name(class_names: Sequence[str], label: Any) -> str:
    """The class name of an index (or the label itself if it is not a valid index)."""
    try:
        i = int(label)
    except (TypeError, ValueError):
        return str(label)
    if class_names is not None and 0 <= i < len(class_names) and float(label) == i:
        return str(class_names[i])
    return str(label)


def _grid_shape(n: int) -> Tuple[int, int]:
    """(rows, cols) of a square-ish grid for n panels (cols >= rows)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    return rows, cols


def _hide_ticks(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _text_width(chars: int, size: float, bold: bool = False) -> float:
    """Estimated width in inches of ``chars`` characters of DejaVu Sans at ``size`` pt."""
    return chars * size * (0.68 if bold else 0.62) / 72.0


def _longest_line(texts: Sequence[str]) -> int:
    return max((len(line) for t in texts for line in str(t).split("\n")), default=1)


class _Grid:
    """A grid of images laid out by hand, in inches, on one full-figure Axes.

    One Axes for the whole grid (instead of one per image) keeps the figure fast to
    build and draw; the layout is computed from the font sizes, so titles never overlap.
    Every image is an ``AxesImage`` (``ax.images``), every panel title a ``Text``.
    """

    MARGIN = 0.15

    def __init__(self, n: int, cell: float, titles: Sequence[str], title_size: float,
                 title: str, subtitle: Optional[str] = None, bold_titles: bool = False,
                 right: float = 0.0, gap: float = 0.2):
        self.n, self.cell, self.title_size = n, cell, title_size
        self.rows, self.cols = _grid_shape(n)
        lines = max((str(t).count("\n") + 1 for t in titles), default=1)
        title_w = _text_width(_longest_line(titles), title_size, bold_titles)
        self.cw = max(cell, title_w + 0.08) + gap
        self.th = lines * title_size * 1.25 / 72.0 + 0.06
        self.rh = self.th + cell + gap * 0.8
        self.header = 0.5 + (0.28 if subtitle else 0.0)
        grid_w = 2 * self.MARGIN + self.cols * self.cw + right
        head_w = max(_text_width(len(title), SUPTITLE_SIZE, True),
                     _text_width(len(subtitle or ""), 10.5)) + 0.4
        self.width = max(grid_w, head_w, 3.2)
        self.x_off = (self.width - grid_w) / 2 + self.MARGIN
        self.height = self.header + self.rows * self.rh + 0.08
        self.fig = Figure(figsize=(self.width, self.height), dpi=DEFAULT_DPI, facecolor="white")
        self.ax = self.fig.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_xlim(0.0, self.width)
        self.ax.set_ylim(self.height, 0.0)  # y in inches from the top
        self.ax.set_axis_off()
        self.fig.suptitle(title, x=0.5, y=1.0 - 0.12 / self.height, va="top",
                          fontsize=SUPTITLE_SIZE, fontweight="bold")
        self.subtitle = None
        if subtitle:
            self.subtitle = self.ax.text(self.width / 2, 0.47, subtitle, ha="center", va="top",
                                         fontsize=10.5)

    def cell_box(self, i: int) -> Tuple[float, float]:
        """(left, top) of image i in inches."""
        r, c = divmod(i, self.cols)
        left = self.x_off + c * self.cw + (self.cw - self.cell) / 2
        top = self.header + r * self.rh + self.th
        return left, top

    def image(self, i: int, img: np.ndarray, title: str, cmap: str, vmin: float,
              vmax: float, color: str = "black", bold: bool = False,
              frame: Optional[Tuple[str, float]] = ("#bbbbbb", 0.6)) -> Any:
        left, top = self.cell_box(i)
        im = self.ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                            extent=(left, left + self.cell, top + self.cell, top),
                            aspect="auto")
        self.ax.text(left + self.cell / 2, top - 0.04, title, ha="center", va="bottom",
                     fontsize=self.title_size, color=color,
                     fontweight="bold" if bold else "normal", linespacing=1.15)
        if frame is not None:
            self.ax.add_patch(Rectangle((left, top), self.cell, self.cell, fill=False,
                                        edgecolor=frame[0], linewidth=frame[1]))
        return im

    def colorbar(self, mappable: Any, label: str) -> Any:
        """A colour bar to the right of the grid (needs ``right`` >= 1 inch)."""
        top = self.header + self.th
        bottom = self.header + self.rows * self.rh - self.rh * 0.1 - 0.1
        x = self.x_off + self.cols * self.cw + 0.1
        h = max(bottom - top, 0.8)
        cax = self.fig.add_axes((x / self.width, 1.0 - (top + h) / self.height,
                                 0.16 / self.width, h / self.height))
        return self.fig.colorbar(mappable, cax=cax, label=label)


# ----------------------------------------------------------------------- images
def sample_grid(images, labels, class_names, n=25, title="Training samples") -> Figure:
    """A square-ish grid of the first ``n`` images, each titled with its class name."""
    imgs = _as_images(images)
    labs = _as_labels(labels)
    n = int(min(n, len(imgs), len(labs)))
    if n <= 0:
        return _message_figure(title, "No images to show.")
    vmin, vmax = _value_range(imgs[:n])
    titles = [_name(class_names, labs[i]) for i in range(n)]
    grid = _Grid(n, cell=1.3, titles=titles, title_size=9.5, title=f"{title} (first {n})")
    for i in range(n):
        grid.image(i, imgs[i], titles[i], IMAGE_CMAP, vmin, vmax)
    return grid.fig


def prediction_grid(images, y_true, y_pred, class_names, n=25, title="Test predictions") -> Figure:
    """A grid of the first ``n`` test images titled ``actual: X / predicted: Y``.

    Wrong predictions get a bold red title and a thick red frame, right ones a green
    title. A line under the figure title counts the wrong ones.
    """
    imgs = _as_images(images)
    t, p = _as_labels(y_true), _as_labels(y_pred)
    n = int(min(n, len(imgs), len(t), len(p)))
    if n <= 0:
        return _message_figure(title, "No predictions to show.")
    vmin, vmax = _value_range(imgs[:n])
    titles = [f"actual: {_name(class_names, t[i])}\npredicted: {_name(class_names, p[i])}"
              for i in range(n)]
    wrong = int(np.sum(t[:n] != p[:n]))
    summary = (f"{wrong} of {n} wrong (red title and frame), {n - wrong} right (green)"
               if wrong else f"all {n} right")
    grid = _Grid(n, cell=1.45, titles=titles, title_size=9, title=title, subtitle=summary,
                 bold_titles=True)
    grid.subtitle.set_color(WRONG_COLOR if wrong else RIGHT_COLOR)
    for i in range(n):
        ok = t[i] == p[i]
        grid.image(i, imgs[i], titles[i], IMAGE_CMAP, vmin, vmax,
                   color=RIGHT_COLOR if ok else WRONG_COLOR, bold=not ok,
                   frame=("#bbbbbb", 0.6) if ok else (WRONG_COLOR, 3.5))
    return grid.fig


def misclassified_grid(images, y_true, y_pred, confidence, class_names, n=16,
                       title="Most confident mistakes") -> Figure:
    """The ``n`` wrong predictions with the highest confidence, most confident first.

    ``confidence`` is the probability of the predicted class per image, shape ``(N,)``
    (0-1, or 0-100 if already in percent), or the full ``(N, classes)`` probability
    matrix (the predicted class's column is used). The mistakes are picked here from all
    N inputs. With no mistakes the figure says so in text.
    """
    imgs = _as_images(images)
    t, p = _as_labels(y_true), _as_labels(y_pred)
    conf = np.asarray(confidence, dtype=float)
    if conf.ndim == 2:
        conf = conf[np.arange(len(p)), p.astype(int)]
    conf = conf.reshape(-1)
    if conf.size and np.nanmax(conf) > 1.0:
        conf = conf / 100.0
    total = int(min(len(imgs), len(t), len(p), len(conf)))
    wrong_idx = np.flatnonzero(t[:total] != p[:total])
    if wrong_idx.size == 0 or n <= 0:
        return _message_figure(title, f"No mistakes: all {total} predictions are correct."
                               if wrong_idx.size == 0 else "Nothing to show (n = 0).")
    c = np.nan_to_num(conf[wrong_idx], nan=-np.inf)
    order = wrong_idx[np.argsort(-c, kind="stable")][: int(n)]
    k = len(order)
    vmin, vmax = _value_range(imgs[order])
    titles = [f"actual: {_name(class_names, t[i])}\npredicted: {_name(class_names, p[i])}\n"
              f"confidence {conf[i]:.1%}" for i in order]
    grid = _Grid(k, cell=1.45, titles=titles, title_size=9, title=title,
                 subtitle=f"the {k} most confident of {wrong_idx.size} mistakes "
                          f"in {total} images, most confident first")
    for j, i in enumerate(order):
        grid.image(j, imgs[i], titles[j], IMAGE_CMAP, vmin, vmax, color=WRONG_COLOR,
                   frame=(WRONG_COLOR, 1.5))
    return grid.fig


def input_image_figure(image, label_name, index, title=None) -> Figure:
    """The single test image used for the activation maps, with a pixel-value colour bar."""
    img = _as_images(image)[0]
    vmin, vmax = _value_range(img)
    fig = _new_figure(4.2, 3.9)
    ax = fig.subplots()
    im = ax.imshow(img, cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    _hide_ticks(ax)
    fig.colorbar(im, ax=ax, shrink=0.85, label="pixel value")
    ax.set_title(title or f"Test image #{index} {EM_DASH} label: {label_name}",
                 fontsize=12, fontweight="bold")
    return fig


def activation_grid(feature_maps, layer_name, max_channels=16, title=None) -> Figure:
    """The first ``min(c, max_channels)`` channels of one Conv2D output ``(h, w, c)``.

    All channels share one colour scale (``viridis``) and one colour bar.
    A leading batch axis of size 1 is accepted and dropped.
    """
    fm = np.asarray(feature_maps, dtype=float)
    while fm.ndim > 3 and fm.shape[0] == 1:
        fm = fm[0]
    if fm.ndim == 2:
        fm = fm[..., None]
    if fm.ndim != 3:
        raise ValueError(f"expected feature maps shaped (h, w, c), got {np.shape(feature_maps)}")
    h, w, c = fm.shape
    k = int(min(c, max_channels))
    full_title = title or f"{layer_name}: {c} feature maps {h}x{w} (showing {k})"
    if k <= 0:
        return _message_figure(full_title, "No channels to show.")
    shown = fm[..., :k]
    finite = shown[np.isfinite(shown)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    if vmax <= vmin:  # e.g. a dead ReLU layer: all zeros
        vmax = vmin + 1.0
    titles = [f"ch {j}" for j in range(k)]
    grid = _Grid(k, cell=1.3, titles=titles, title_size=9.5, title=full_title, right=1.1,
                 gap=0.14)
    im = None
    for j in range(k):
        im = grid.image(j, shown[..., j], titles[j], ACTIVATION_CMAP, vmin, vmax, frame=None)
    grid.colorbar(im, "activation")
    return grid.fig


# ----------------------------------------------------------------- evaluation
def _epoch_axis(ax: Any, n_epochs: int) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.grid(True, alpha=0.3)


def training_curves(history: Dict[str, List[float]], title="Training curves") -> Figure:
    """Accuracy and loss per epoch, train vs validation, side by side.

    ``history`` holds Keras history keys (``accuracy``, ``val_accuracy``, ``loss``,
    ``val_loss``); any may be missing, and one epoch is fine.
    """
    history = dict(history or {})
    fig = _new_figure(10.0, 4.2)
    axes = fig.subplots(1, 2)
    panels = (("accuracy", "accuracy"), ("loss", "loss"))
    for ax, (key, ylabel) in zip(axes, panels):
        n_epochs = 0
        for k, label, color, marker in ((key, "train", TRAIN_COLOR, "o"),
                                        (f"val_{key}", "validation", VAL_COLOR, "s")):
            values = np.asarray(history.get(k) or [], dtype=float).reshape(-1)
            if values.size == 0:
                continue
            epochs = np.arange(1, values.size + 1)
            n_epochs = max(n_epochs, values.size)
            ax.plot(epochs, values, marker=marker, markersize=5, color=color, linewidth=1.8,
                    label=f"{label} (last {_fmt(values[-1])})")
        _epoch_axis(ax, n_epochs)
        ax.set_ylabel(ylabel)
        ax.set_title(ylabel.capitalize(), fontsize=11)
        if n_epochs:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center",
                    transform=ax.transAxes, fontsize=11, color="#666666")
    fig.suptitle(title, fontsize=SUPTITLE_SIZE, fontweight="bold")
    return fig


def confusion_matrix_figure(cm, class_names, title="Confusion matrix (test set)") -> Figure:
    """Counts in every cell, a colour bar, and the overall accuracy in the title."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = [_name(class_names, i) for i in range(k)]
    total = cm.sum()
    integer = np.issubdtype(cm.dtype, np.integer) or bool(np.all(np.mod(cm, 1) == 0))
    n_text = str(int(total)) if integer else f"{total:g}"
    acc = float(np.trace(cm) / total) if total else float("nan")
    acc_text = f"accuracy {acc:.1%}" if total else "no samples"
    longest = max((len(s) for s in names), default=1)
    side = max(5.0, 0.55 * k + 1.5) + 0.07 * longest
    fig = _new_figure(side + 1.2, side)
    ax = fig.subplots()
    im = ax.imshow(cm, cmap="Blues", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="count" if integer else "value")
    vmax = float(cm.max()) if cm.size else 0.0
    cell_font = max(5.0, min(10.0, 110.0 / max(k, 1)))
    for i in range(k):
        for j in range(k):
            v = cm[i, j]
            ax.text(j, i, f"{int(v)}" if integer else f"{v:.2f}", ha="center", va="center",
                    fontsize=cell_font, color="white" if vmax and v > 0.5 * vmax else "black",
                    in_layout=False)  # inside the axes: no need to measure for the layout
    ax.set_xticks(np.arange(k), labels=names)
    ax.set_yticks(np.arange(k), labels=names)
    ax.tick_params(axis="x", labelrotation=45)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
        lab.set_rotation_mode("anchor")
    ax.set_xlabel("Predicted label", fontsize=11)
    ax.set_ylabel("True label", fontsize=11)
    ax.set_title(f"{title} {EM_DASH} {acc_text} (n={n_text})", fontsize=12, fontweight="bold")
    return fig


# ------------------------------------------------------------------ architecture
_LAYER_KINDS = (  # (legend label, colour, predicate on the lower-cased type)
    ("Input", "#e3e3e3", lambda t: "input" in t),
    ("Conv2D", "#aec7e8", lambda t: "conv" in t),
    ("Pooling", "#98df8a", lambda t: "pool" in t),
    ("BatchNormalization", "#f7b6d2", lambda t: "normalization" in t or "batchnorm" in t),
    ("Dropout", "#c5b0d5", lambda t: "dropout" in t),
    ("Flatten", "#dbdb8d", lambda t: "flatten" in t or "reshape" in t),
    ("Dense", "#ffbb78", lambda t: "dense" in t),
    ("Other", "#9edae5", lambda t: True),
)


def _layer_kind(layer_type: str) -> Tuple[str, str]:
    t = layer_type.lower()
    for label, color, match in _LAYER_KINDS:
        if match(t):
            return label, color
    return _LAYER_KINDS[-1][0], _LAYER_KINDS[-1][1]


def _as_int(v: Any) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def architecture_diagram(layers: List[Dict[str, Any]], title="Architecture") -> Figure:
    """A vertical stack of boxes, one per layer, coloured by type, joined by arrows.

    Each layer is a dict with ``name``, ``type``, ``output_shape`` and ``params``; the
    total parameter count is in the title. The height grows with the number of layers.
    """
    layers = list(layers or [])
    params = [_as_int(layer.get("params")) for layer in layers]
    total = sum(p for p in params if p is not None)
    full_title = f"{title} {EM_DASH} {total:,} parameters"
    if not layers:
        return _message_figure(full_title, "No layers.")
    n = len(layers)
    unit = 0.62  # inches per layer
    fig = _new_figure(8.2, n * unit + 1.0)
    ax = fig.subplots()
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(n - 0.15, -0.15)  # layer i occupies [i, i + 1), first layer at the top
    ax.set_axis_off()
    box_h, x0, x1 = 0.70, 0.02, 0.98
    kinds_seen: Dict[str, str] = {}
    for i, (layer, p) in enumerate(zip(layers, params)):
        ltype = str(layer.get("type", "?"))
        kind, color = _layer_kind(ltype)
        kinds_seen.setdefault(kind, color)
        top = i
        ax.add_patch(FancyBboxPatch((x0, top), x1 - x0, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.015",
                                    facecolor=color, edgecolor="#555555", linewidth=1.0,
                                    mutation_aspect=1.0 / 0.6))
        ax.text(x0 + 0.02, top + box_h * 0.30, f"{layer.get('name', f'layer {i}')}",
                ha="left", va="center", fontsize=10, fontweight="bold", in_layout=False)
        ax.text(x1 - 0.02, top + box_h * 0.30, ltype, ha="right", va="center", fontsize=9.5,
                style="italic", color="#333333", in_layout=False)
        shape = layer.get("output_shape", "?")
        p_text = f"{p:,} params" if p is not None else "? params"
        ax.text(x0 + 0.02, top + box_h * 0.74, f"output {shape}", ha="left", va="center",
                fontsize=9, family="monospace", in_layout=False)
        ax.text(x1 - 0.02, top + box_h * 0.74, p_text, ha="right", va="center", fontsize=9,
                family="monospace", in_layout=False)
        if i + 1 < n:
            ax.add_patch(FancyArrowPatch((0.5, top + box_h), (0.5, top + 1.0),
                                         arrowstyle="-|>", mutation_scale=12,
                                         color="#444444", linewidth=1.2,
                                         shrinkA=0, shrinkB=0))
    handles = [Patch(facecolor=c, edgecolor="#555555", label=k) for k, c in kinds_seen.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, title="layer type",
               title_fontsize=9, frameon=False)
    ax.set_title(full_title, fontsize=12, fontweight="bold")
    return fig


# ------------------------------------------------------------------------ k-fold
def fold_curves(fold_histories: List[Dict[str, List[float]]], metric="val_accuracy",
                title=None) -> Figure:
    """k-fold: one line per fold (``fold 1``, ...) of ``metric`` per epoch."""
    folds = list(fold_histories or [])
    title = title or f"{metric} per epoch in each of {len(folds)} folds"
    fig = _new_figure(8.0, 4.5)
    ax = fig.subplots()
    n_epochs, plotted = 0, 0
    for i, hist in enumerate(folds):
        values = np.asarray((hist or {}).get(metric) or [], dtype=float).reshape(-1)
        if values.size == 0:
            continue
        n_epochs = max(n_epochs, values.size)
        plotted += 1
        ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=4,
                linewidth=1.6, label=f"fold {i + 1}")
    _epoch_axis(ax, n_epochs)
    ax.set_ylabel(metric)
    if plotted:
        fig.legend(loc="outside right upper", fontsize=9, frameon=False)
    else:
        ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=11, color="#666666")
    ax.set_title(title, fontsize=12, fontweight="bold")
    return fig


def fold_summary(final_scores: List[float], metric="val_accuracy", title=None) -> Figure:
    """k-fold: each fold's final score as a point, the mean as a line, mean ± std shaded.

    ``std`` is the population standard deviation (``np.std``, as sklearn reports it).
    """
    scores = np.asarray(list(final_scores or []), dtype=float).reshape(-1)
    k = scores.size
    title = title or f"Final {metric} per fold ({k} folds)"
    if k == 0 or not np.isfinite(scores).any():
        return _message_figure(title, "No fold scores.")
    mean, std = float(np.nanmean(scores)), float(np.nanstd(scores))
    fig = _new_figure(max(5.5, 0.7 * k + 3.0), 4.2)
    ax = fig.subplots()
    x = np.arange(1, k + 1)
    band_label = f"mean {mean:.3f} \u00b1 {std:.3f}"
    ax.axhspan(mean - std, mean + std, color=TRAIN_COLOR, alpha=0.15, linewidth=0,
               label="mean \u00b1 std")
    ax.axhline(mean, color=TRAIN_COLOR, linewidth=1.8, linestyle="--", label=band_label)
    ok = np.isfinite(scores)
    ax.plot(x[ok], scores[ok], "o", color=BEST_COLOR, markersize=9, zorder=3,
            label="fold score")
    for xi, s in zip(x, scores):
        if np.isfinite(s):
            ax.annotate(f"{s:.3f}", (xi, s), textcoords="offset points", xytext=(0, 9),
                        ha="center", fontsize=9)
        else:
            ax.annotate("failed", (xi, mean), ha="center", va="center", fontsize=9,
                        color=WRONG_COLOR)
    ax.set_xticks(x, labels=[f"fold {i}" for i in x])
    ax.set_xlim(0.4, k + 0.6)
    finite = scores[ok]
    lo, hi = min(finite.min(), mean - std), max(finite.max(), mean + std)
    pad = max((hi - lo) * 0.35, abs(mean) * 0.002, 1e-3)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(f"final {metric}")
    ax.grid(True, axis="y", alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=9, frameon=False)
    ax.set_title(f"{title}\n{band_label}", fontsize=12, fontweight="bold")
    return fig


# ------------------------------------------------------------------------- sweeps
def _wrap_override(label: str, width: int = 42) -> str:
    """Wrap a long ``a=1,b=2,...`` override string at its commas."""
    label = str(label)
    if len(label) <= width:
        return label
    lines, line = [], ""
    for part in label.split(","):
        piece = part if not line else "," + part
        if line and len(line) + len(piece) > width:
            lines.append(line + ",")
            line = part
        else:
            line += piece
    lines.append(line)
    return "\n".join(lines)


def objective_per_job(labels: List[str], values: List[float], best_index: Optional[int],
                      title="Sweep objective per job", ylabel="objective") -> Figure:
    """A horizontal bar per sweep job (labelled with its overrides), best one highlighted.

    ``ylabel`` names the objective (it labels the value axis, horizontal here). NaN
    values are jobs that failed: no bar, the word "failed".
    """
    labels = [str(s) for s in (labels or [])]
    vals = np.asarray(list(values or []), dtype=float).reshape(-1)
    m = min(len(labels), vals.size)
    labels, vals = labels[:m], vals[:m]
    if m == 0:
        return _message_figure(title, "No jobs.")
    wrapped = [_wrap_override(s) for s in labels]
    lines = [w.count("\n") + 1 for w in wrapped]
    longest = max(len(line) for w in wrapped for line in w.split("\n"))
    height = 1.3 + sum(0.22 + 0.17 * c for c in lines)
    width = min(16.0, 5.5 + 0.075 * longest)
    fig = _new_figure(width, max(2.6, height))
    ax = fig.subplots()
    y = np.arange(m)
    ok = np.isfinite(vals)
    best = best_index if best_index is not None and 0 <= best_index < m else None
    colors = [BEST_COLOR if i == best else BAR_COLOR for i in range(m)]
    ax.barh(y[ok], vals[ok], color=[colors[i] for i in y[ok]], edgecolor="#4a4a4a",
            linewidth=0.6, height=0.65)
    finite = vals[ok]
    span = (max(finite.max(), 0) - min(finite.min(), 0)) if finite.size else 1.0
    span = span or 1.0
    off = 0.01 * span
    for i in range(m):
        v = vals[i]
        if np.isfinite(v):
            text = _fmt(v) + ("  (best)" if i == best else "")
            ax.text(v + off if v >= 0 else v - off, i, text, va="center",
                    ha="left" if v >= 0 else "right", fontsize=9,
                    fontweight="bold" if i == best else "normal", in_layout=False)
        else:
            ax.text(off, i, "failed", va="center", ha="left", fontsize=9, style="italic",
                    color=WRONG_COLOR, in_layout=False)
    lo = min(finite.min(), 0.0) if finite.size else 0.0
    hi = max(finite.max(), 0.0) if finite.size else 1.0
    ax.set_xlim(lo - (0.25 * span if lo < 0 else 0), hi + 0.25 * span)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_yticks(y, labels=wrapped, fontsize=9)
    if best is not None:
        ax.get_yticklabels()[best].set_fontweight("bold")
        ax.get_yticklabels()[best].set_color(BEST_COLOR)
    ax.set_ylim(m - 0.5, -0.5)  # first job at the top
    ax.set_xlabel(ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    ax.set_title(title, fontsize=12, fontweight="bold")
    return fig


# --------------------------------------------------------------------------- I/O
def save_png(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG at its own dpi (its exact size: the layout engine already
    keeps every label inside). The parent directory is created if needed."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, format="png", dpi=fig.dpi, facecolor="white")
