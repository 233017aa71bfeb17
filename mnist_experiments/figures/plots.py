"""Figures for a training run: NumPy arrays in, a Matplotlib ``Figure`` out.

Every function here is pure: it builds a new :class:`matplotlib.figure.Figure` with the
object-oriented API and returns it. ``matplotlib.pyplot`` is never imported, so no GUI
window can open and no figure is kept in pyplot's global registry: a figure is freed as
soon as the caller drops it (no leak across runs or k-fold folds). Save one with
:func:`save_png`; to change its resolution call ``fig.set_dpi(dpi)`` first (every size is
in inches or points, so the whole layout scales with the dpi).

Layout is computed here, in inches, from the font sizes and the lengths of the labels
(no layout engine): text is by far the slowest thing Matplotlib draws, and a layout
engine measures every label once more before drawing it. Image grids are drawn on a
single Axes (one ``AxesImage`` and one title ``Text`` per panel) rather than one Axes per
panel, which is several times faster to build and draw. All figures of a typical run
(25 images, a 10x10 matrix, 3 conv layers x 16 channels, 10 layers) are built and saved
in about 1.5 s of CPU time on the small 2-core VM they were measured on.

Images (MNIST-style) may be ``uint8`` 0-255 or float 0-1 and shaped ``(n, 28, 28)`` or
``(n, 28, 28, 1)``; labels may be class indices or one-hot / probability rows. All
images are drawn with the same grayscale colour map (:data:`IMAGE_CMAP`).

This module imports neither TensorFlow/Keras nor MLflow.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch, Rectangle
from matplotlib.textpath import TextToPath
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
CM_CMAP = "Blues"
WRONG_COLOR = "#d62728"  # red: a wrong prediction
RIGHT_COLOR = "#1b7a34"  # dark green: a right prediction (readable on white)
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
BAR_COLOR = "#7ea6cf"
BEST_COLOR = "#e8710a"
SUPTITLE_SIZE = 13
TITLE_SIZE = 12
EM_DASH = "\u2014"
PLUS_MINUS = "\u00b1"


# ---------------------------------------------------------------------- helpers
_TEXT_TO_PATH = TextToPath()


@functools.lru_cache(maxsize=4096)
def _line_width(line: str, size: float, bold: bool, mono: bool) -> float:
    prop = FontProperties(size=size, weight="bold" if bold else "normal",
                          family="monospace" if mono else None)
    try:
        width_pt = _TEXT_TO_PATH.get_text_width_height_descent(line, prop, ismath=False)[0]
    except Exception:  # pragma: no cover - a font problem: fall back to an estimate
        width_pt = len(line) * size * (0.68 if bold else 0.62)
    return width_pt / 72.0


def _text_width(text: Any, size: float, bold: bool = False, mono: bool = False) -> float:
    """Width in inches of the widest line of ``text`` in the default font at ``size`` pt.

    Measured with the font itself (cached per line), plus 4% for rounding and hinting.
    """
    lines = [line for line in str(text).split("\n") if line]
    if not lines:
        return 0.0
    return 1.04 * max(_line_width(line, float(size), bool(bold), bool(mono)) for line in lines)


def _widest(texts: Sequence[Any], size: float, bold: bool = False, mono: bool = False) -> float:
    """Width in inches of the widest of ``texts`` (each may have several lines)."""
    return max((_text_width(t, size, bold, mono) for t in set(map(str, texts))), default=0.0)


def _text_height(lines: int, size: float) -> float:
    """Height in inches of ``lines`` lines of text at ``size`` pt."""
    return lines * size * 1.25 / 72.0


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DEFAULT_DPI, facecolor="white")


def _suptitle(fig: Figure, title: str, height: float, size: float = SUPTITLE_SIZE) -> None:
    """The figure title, 0.12 in below the top edge."""
    fig.suptitle(title, x=0.5, y=1.0 - 0.12 / height, va="top", fontsize=size,
                 fontweight="bold")


def _place(fig: Figure, ax: Any, left: float, bottom: float, width: float,
           height: float) -> None:
    """Put ``ax`` at a rectangle given in inches from the bottom-left corner."""
    w, h = fig.get_size_inches()
    ax.set_position((left / w, bottom / h, width / w, height / h))


def _add_axes(fig: Figure, left: float, bottom: float, width: float, height: float) -> Any:
    w, h = fig.get_size_inches()
    return fig.add_axes((left / w, bottom / h, width / w, height / h))


def _message_figure(title: str, message: str) -> Figure:
    """A figure with a title and one centred line of text (for empty inputs)."""
    width = max(6.4, _text_width(title, SUPTITLE_SIZE, True) + 0.5,
                _text_width(message, 12) + 0.5)
    height = 3.2
    fig = _figure(width, height)
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=12)
    _suptitle(fig, title, height)
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
    """The intensity range to show: 0-255 for 8-bit images, 0-1 for float 0-1 images."""
    if arr.size == 0:
        return 0.0, 1.0
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_):
        return 0.0, 255.0 if arr.max() > 1 else 1.0
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if lo >= 0.0 and hi <= 255.0:
        return 0.0, 255.0
    return lo, hi if hi > lo else lo + 1.0


def _as_labels(labels: Any) -> np.ndarray:
    """Class indices from indices, or from one-hot / probability rows (argmax)."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        return arr.argmax(axis=1)
    return arr.reshape(-1)


def _name(class_names: Optional[Sequence[str]], label: Any) -> str:
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


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _tick_label_width(labels: Sequence[Any], size: float = 10.0) -> float:
    """Width in inches of the widest tick label (labels already formatted)."""
    texts = [t.get_text() if hasattr(t, "get_text") else str(t) for t in labels]
    return _widest(texts or ["0.00"], size)


def _y_margin(ax: Any, ylabel: bool = True) -> float:
    """Left margin (inches) that fits the y tick labels and the y label of ``ax``."""
    return _tick_label_width(ax.get_yticklabels()) + 0.12 + (0.3 if ylabel else 0.0) + 0.08


# --------------------------------------------------------------------- image grid
class _Grid:
    """A grid of images laid out by hand, in inches, on one full-figure Axes.

    Each panel is an ``AxesImage`` (``ax.images``) with a title ``Text`` above it and
    an optional frame. Cell width and title band height come from the font size and the
    longest title, so titles never overlap however long the class names are.
    """

    MARGIN = 0.15
    MIN_HEIGHT = 3.1  # inches: at least ~300 px at 100 dpi

    def __init__(self, n: int, cell: float, titles: Sequence[str], title_size: float,
                 title: str, subtitle: Optional[str] = None, bold_titles: bool = False,
                 right: float = 0.0, gap: float = 0.2):
        self.n, self.cell, self.title_size = n, cell, title_size
        self.rows, self.cols = _grid_shape(n)
        lines = max((str(t).count("\n") + 1 for t in titles), default=1)
        title_w = _widest(titles, title_size, bold_titles)
        self.cw = max(cell, title_w + 0.08) + gap
        self.th = _text_height(lines, title_size) + 0.06
        self.rh = self.th + cell + gap * 0.8
        self.header = 0.5 + (0.28 if subtitle else 0.0)
        grid_w = 2 * self.MARGIN + self.cols * self.cw + right
        grid_h = self.header + self.rows * self.rh + 0.08
        head_w = max(_text_width(title, SUPTITLE_SIZE, True),
                     _text_width(subtitle or "", 10.5)) + 0.4
        self.width = max(grid_w, head_w, 3.2)
        self.height = max(grid_h, self.MIN_HEIGHT)
        self.x_off = (self.width - grid_w) / 2 + self.MARGIN
        self.y_off = (self.height - grid_h) / 2
        self.fig = _figure(self.width, self.height)
        self.ax = self.fig.add_axes((0.0, 0.0, 1.0, 1.0))
        self.ax.set_xlim(0.0, self.width)
        self.ax.set_ylim(self.height, 0.0)  # data units are inches from the top-left
        self.ax.set_axis_off()
        _suptitle(self.fig, title, self.height)
        self.subtitle = None
        if subtitle:
            self.subtitle = self.ax.text(self.width / 2, 0.47, subtitle, ha="center",
                                         va="top", fontsize=10.5)

    def cell_box(self, i: int) -> Tuple[float, float]:
        """(left, top) of image i, in inches from the top-left corner."""
        r, c = divmod(i, self.cols)
        left = self.x_off + c * self.cw + (self.cw - self.cell) / 2
        top = self.y_off + self.header + r * self.rh + self.th
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
        """A colour bar right of the grid (the grid needs ``right`` >= 1.1 inch)."""
        top = self.y_off + self.header + self.th
        bottom = self.y_off + self.header + (self.rows - 1) * self.rh + self.th + self.cell
        h = max(bottom - top, 1.0)
        x = self.x_off + self.cols * self.cw + 0.05
        cax = _add_axes(self.fig, x, self.height - top - h, 0.16, h)
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
    N inputs (ties keep input order). With no mistakes the figure says so in text.
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
    if wrong_idx.size == 0:
        return _message_figure(title, f"No mistakes: all {total} predictions are correct.")
    if n <= 0:
        return _message_figure(title, f"{wrong_idx.size} mistakes (none shown: n = 0).")
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
    title = title or f"Test image #{index} {EM_DASH} label: {label_name}"
    side, cbar_w = 3.0, 1.0  # image; colour bar with its ticks and label
    group_w = side + 0.15 + cbar_w
    width = max(group_w + 0.4, _text_width(title, TITLE_SIZE, True) + 0.4)
    height = side + 0.75
    fig = _figure(width, height)
    x0 = (width - group_w) / 2
    ax = _add_axes(fig, x0, 0.2, side, side)
    im = ax.imshow(img, cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    cax = _add_axes(fig, x0 + side + 0.15, 0.2 + side * 0.1, 0.16, side * 0.8)
    fig.colorbar(im, cax=cax, label="pixel value")
    _suptitle(fig, title, height, TITLE_SIZE)
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
    k = int(max(0, min(c, max_channels)))
    full_title = title or f"{layer_name}: {c} feature maps {h}x{w} (showing {k})"
    if k == 0:
        return _message_figure(full_title, "No channels to show.")
    shown = fm[..., :k]
    finite = shown[np.isfinite(shown)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    subtitle = None
    if vmax <= vmin:  # e.g. a dead ReLU layer: all zeros
        subtitle = f"every activation shown is {vmin:g}"
        vmax = vmin + 1.0
    titles = [f"ch {j}" for j in range(k)]
    grid = _Grid(k, cell=1.3, titles=titles, title_size=9.5, title=full_title,
                 subtitle=subtitle, right=1.1, gap=0.14)
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


def _series(values: Any) -> np.ndarray:
    """A 1-D float array from a list, tuple or array of numbers (or None: empty)."""
    return np.asarray(list(values) if values is not None else [], dtype=float).reshape(-1)


def _plot_series(ax: Any, values: Any, label: str, **kw: Any) -> int:
    """Plot one per-epoch series (epochs 1..n); returns n (0 if empty)."""
    v = _series(values)
    if v.size:
        ax.plot(np.arange(1, v.size + 1), v, label=label, **kw)
    return int(v.size)


def training_curves(history: Dict[str, List[float]], title="Training curves") -> Figure:
    """Accuracy and loss per epoch, train vs validation, side by side.

    ``history`` holds Keras history keys (``accuracy``, ``val_accuracy``, ``loss``,
    ``val_loss``); any may be missing, and one epoch is fine. The legend shows each
    series' last value.
    """
    history = dict(history) if history is not None else {}
    keys = ("accuracy", "val_accuracy", "loss", "val_loss")
    all_epochs = max((len(_series(history.get(k))) for k in keys), default=0)
    marker_size = 5 if all_epochs <= 40 else (3 if all_epochs <= 80 else 0)
    width, height, top, bottom = 10.0, 4.3, 0.75, 0.55
    fig = _figure(width, height)
    axes = fig.subplots(1, 2)
    margins = []
    for ax, key in zip(axes, ("accuracy", "loss")):
        n_epochs = 0
        for k, label, color, marker in ((key, "train", TRAIN_COLOR, "o"),
                                        (f"val_{key}", "validation", VAL_COLOR, "s")):
            values = history.get(k)
            if values is not None and len(values):
                label = f"{label} (last {_fmt(float(values[-1]))})"
            n_epochs = max(n_epochs, _plot_series(ax, values, label, marker=marker,
                                                  markersize=marker_size, color=color,
                                                  linewidth=1.8))
        _epoch_axis(ax, all_epochs)
        ax.set_ylabel(key)
        ax.set_title(key.capitalize(), fontsize=11)
        if n_epochs:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.set_yticks([])
            ax.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center",
                    transform=ax.transAxes, fontsize=11, color="#666666")
        margins.append(_y_margin(ax))
    panel_w = (width - margins[0] - margins[1] - 0.45) / 2
    _place(fig, axes[0], margins[0], bottom, panel_w, height - top - bottom)
    _place(fig, axes[1], margins[0] + panel_w + margins[1] + 0.25, bottom, panel_w,
           height - top - bottom)
    _suptitle(fig, title, height)
    return fig


def confusion_matrix_figure(cm, class_names, title="Confusion matrix (test set)") -> Figure:
    """Counts in every cell, a colour bar, and the overall accuracy in the title.

    Rows are true labels, columns predicted labels (as sklearn's ``confusion_matrix``).
    The x tick labels are rotated by 45 degrees when any class name is wider than a
    cell (e.g. Fashion-MNIST names); short names such as digits stay upright. A float
    matrix whose rows sum to 1 is taken as row-normalized (balanced accuracy shown).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = [_name(class_names, i) for i in range(k)]
    total = cm.sum()
    integer = np.issubdtype(cm.dtype, np.integer) or bool(np.all(np.mod(cm, 1) == 0))
    cells = [[f"{int(v)}" if integer else f"{v:.2f}" for v in row] for row in cm]
    row_normalized = (not integer and k > 0
                      and bool(np.allclose(cm.sum(axis=1), 1.0, atol=1e-3)))
    if not total:
        summary = "no samples"
    elif integer:
        summary = f"accuracy {float(np.trace(cm) / total):.1%} (n={int(total)})"
    elif row_normalized:  # mean of the per-class recalls
        summary = f"balanced accuracy {float(np.trace(cm) / k):.1%}"
    else:
        summary = f"accuracy {float(np.trace(cm) / total):.1%}"
    full_title = f"{title} {EM_DASH} {summary}"
    bar_label = "count" if integer else ("fraction of true class" if row_normalized else "value")

    cell = min(0.6, max(0.25, 8.0 / max(k, 1)))  # inches per cell
    side = max(k * cell, 3.0)
    digits = max((len(s) for row in cells for s in row), default=1)
    cell_font = max(4.5, min(10.0, (side / max(k, 1)) * 72 * 0.8 / (0.62 * digits)))
    tick_font = 10.0 if k <= 15 else 8.0
    name_w = _widest(names, tick_font)
    left = name_w + 0.15 + 0.35 + 0.1
    rotate = name_w > 0.8 * side / max(k, 1)
    if rotate:
        bottom = (name_w + _text_height(1, tick_font)) * math.sin(math.radians(45)) + 0.55
    else:
        bottom = _text_height(1, tick_font) + 0.55
    right = 0.2 + 0.16 + 0.55 + 0.35 + 0.1  # gap, colour bar, its ticks and label
    top = 0.6
    title_w = _text_width(full_title, TITLE_SIZE, True) + 0.3
    extra = max(0.0, title_w / 2 - (side / 2 + min(left, right)))  # title centred on axes
    left, right = left + extra, right + extra
    width, height = left + side + right, bottom + side + top
    fig = _figure(width, height)
    ax = _add_axes(fig, left, bottom, side, side)
    im = ax.imshow(cm, cmap=CM_CMAP, interpolation="nearest", aspect="auto")
    cax = _add_axes(fig, left + side + 0.2, bottom + side * 0.1, 0.16, side * 0.8)
    fig.colorbar(im, cax=cax, label=bar_label)
    vmax = float(cm.max()) if cm.size else 0.0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, cells[i][j], ha="center", va="center", fontsize=cell_font,
                    color="white" if vmax and cm[i, j] > 0.5 * vmax else "black")
    if rotate:  # long names: at 45 degrees so that neighbours cannot overlap
        ax.set_xticks(np.arange(k), labels=names, fontsize=tick_font, rotation=45,
                      ha="right", rotation_mode="anchor")
    else:  # short names (digits): upright
        ax.set_xticks(np.arange(k), labels=names, fontsize=tick_font)
    ax.set_yticks(np.arange(k), labels=names, fontsize=tick_font)
    ax.set_xlabel("Predicted label", fontsize=11)
    ax.set_ylabel("True label", fontsize=11)
    ax.set_title(full_title, fontsize=TITLE_SIZE, fontweight="bold", pad=10)
    return fig


# ------------------------------------------------------------------ architecture
_LAYER_KINDS = (  # (legend label, colour, predicate on the lower-cased layer type)
    ("Input", "#e3e3e3", lambda t: "input" in t),
    ("Conv2D", "#aec7e8", lambda t: "conv" in t),
    ("Pooling", "#98df8a", lambda t: "pool" in t),
    ("BatchNormalization", "#f7b6d2", lambda t: "normalization" in t or "batchnorm" in t),
    ("Dropout", "#c5b0d5", lambda t: "dropout" in t),
    ("Flatten", "#dbdb8d", lambda t: "flatten" in t),
    ("Dense", "#ffbb78", lambda t: "dense" in t),
    ("Other", "#9edae5", lambda t: True),
)


def _layer_kind(layer_type: str) -> Tuple[str, str]:
    t = layer_type.lower()
    for label, color, match in _LAYER_KINDS:
        if match(t):
            return label, color
    return _LAYER_KINDS[-1][0], _LAYER_KINDS[-1][1]  # pragma: no cover


def _as_int(v: Any) -> Optional[int]:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def architecture_diagram(layers: List[Dict[str, Any]], title="Architecture") -> Figure:
    """A vertical stack of boxes, one per layer, coloured by type, joined by arrows.

    Each layer is a dict with ``name``, ``type``, ``output_shape`` and ``params``
    (missing keys show as "?"); the total parameter count is in the title. The figure
    height grows with the number of layers (about 0.62 inch per layer).
    """
    layers = list(layers) if layers is not None else []
    params = [_as_int(layer.get("params")) for layer in layers]
    total = sum(p for p in params if p is not None)
    full_title = f"{title} {EM_DASH} {total:,} parameters"
    if not layers:
        return _message_figure(full_title, "No layers.")
    rows = []
    for i, (layer, p) in enumerate(zip(layers, params)):
        ltype = str(layer.get("type", "?"))
        rows.append((str(layer.get("name", f"layer {i}")), ltype, _layer_kind(ltype),
                     f"output {layer.get('output_shape', '?')}",
                     f"{p:,} params" if p is not None else "? params"))
    n = len(rows)
    unit, box_h, pad = 0.62, 0.46, 0.14  # inches: per layer, per box, text inset
    box_w = max(5.8, max(_text_width(a, 10, True) + _text_width(b, 9.5) + 2 * pad + 0.4
                         for a, b, _, _, _ in rows),
                max(_text_width(c, 9, mono=True) + _text_width(d, 9, mono=True) + 2 * pad + 0.4
                    for _, _, _, c, d in rows))
    kinds: Dict[str, str] = {}
    for _, _, (kind, color), _, _ in rows:
        kinds.setdefault(kind, color)
    legend_w = _widest(list(kinds), 9) + 0.75
    header = 0.6
    width = max(0.2 + box_w + 0.25 + legend_w, _text_width(full_title, TITLE_SIZE, True) + 0.4)
    height = max(header + n * unit + 0.1, 3.1)
    fig = _figure(width, height)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, width)
    ax.set_ylim(height, 0.0)  # data units are inches from the top-left
    ax.set_axis_off()
    x0 = 0.2
    for i, (name, ltype, (_, color), shape, p_text) in enumerate(rows):
        top = header + i * unit
        ax.add_patch(FancyBboxPatch((x0, top), box_w, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=color, edgecolor="#555555", linewidth=1.0))
        y1, y2 = top + box_h * 0.29, top + box_h * 0.73
        ax.text(x0 + pad, y1, name, ha="left", va="center", fontsize=10, fontweight="bold")
        ax.text(x0 + box_w - pad, y1, ltype, ha="right", va="center", fontsize=9.5,
                style="italic", color="#333333")
        ax.text(x0 + pad, y2, shape, ha="left", va="center", fontsize=9, family="monospace")
        ax.text(x0 + box_w - pad, y2, p_text, ha="right", va="center", fontsize=9,
                family="monospace")
        if i + 1 < n:
            ax.add_patch(FancyArrowPatch((x0 + box_w / 2, top + box_h),
                                         (x0 + box_w / 2, top + unit), arrowstyle="-|>",
                                         mutation_scale=12, color="#444444", linewidth=1.2,
                                         shrinkA=0, shrinkB=0))
    handles = [Patch(facecolor=c, edgecolor="#555555", label=k) for k, c in kinds.items()]
    fig.legend(handles=handles, loc="upper left", fontsize=9, title="layer type",
               title_fontsize=9, frameon=False,
               bbox_to_anchor=((x0 + box_w + 0.15) / width, 1.0 - header / height))
    _suptitle(fig, full_title, height, TITLE_SIZE)
    return fig


# ------------------------------------------------------------------------ k-fold
def fold_curves(fold_histories: List[Dict[str, List[float]]], metric="val_accuracy",
                title=None) -> Figure:
    """k-fold: one line per fold (``fold 1``, ...) of ``metric`` per epoch."""
    folds = list(fold_histories) if fold_histories is not None else []
    title = title or f"{metric} per epoch in each of {len(folds)} folds"
    width, height, top, bottom = 8.0, 4.6, 0.6, 0.55
    width = max(width, _text_width(title, TITLE_SIZE, True) + 0.4)
    fig = _figure(width, height)
    ax = fig.subplots()
    n_epochs = 0
    for i, hist in enumerate(folds):
        n_epochs = max(n_epochs, _plot_series(ax, (hist or {}).get(metric), f"fold {i + 1}",
                                              marker="o", markersize=4, linewidth=1.6))
    _epoch_axis(ax, n_epochs)
    ax.set_ylabel(metric)
    legend_w = 0.0
    if n_epochs:
        legend_w = _text_width(f"fold {len(folds)}", 9) + 0.75
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", va="center",
                transform=ax.transAxes, fontsize=11, color="#666666")
    left = _y_margin(ax)
    _place(fig, ax, left, bottom, width - left - legend_w - 0.2, height - top - bottom)
    if n_epochs:
        fig.legend(loc="upper left", fontsize=9, frameon=False,
                   bbox_to_anchor=(1.0 - (legend_w + 0.1) / width, 1.0 - top / height))
    _suptitle(fig, title, height, TITLE_SIZE)
    return fig


def fold_summary(final_scores: List[float], metric="val_accuracy", title=None) -> Figure:
    """k-fold: each fold's final score as a point, the mean as a dashed line and the
    band mean ± std shaded, labelled ``mean 0.973 ± 0.004``.

    ``std`` is the population standard deviation (``np.std``, as sklearn reports it);
    NaN scores (failed folds) are left out of both and marked "failed".
    """
    scores = _series(final_scores)
    k = scores.size
    title = title or f"Final {metric} per fold ({k} fold{'s' if k != 1 else ''})"
    if k == 0 or not np.isfinite(scores).any():
        return _message_figure(title, "No fold scores.")
    mean, std = float(np.nanmean(scores)), float(np.nanstd(scores))
    band_label = f"mean {mean:.3f} {PLUS_MINUS} {std:.3f}"
    failed = int(np.sum(~np.isfinite(scores)))
    summary = band_label + (f" (over {k - failed} folds; {failed} failed)" if failed else "")
    legend_w = _text_width(band_label, 9) + 0.75
    top, bottom = 0.85, 0.45 + (0.2 if failed else 0.0)
    width = max(max(5.5, 0.75 * k + 2.0) + legend_w,
                _text_width(f"{title}\n{summary}", TITLE_SIZE, True) + 0.4)
    height = 4.4
    fig = _figure(width, height)
    ax = fig.subplots()
    x = np.arange(1, k + 1)
    ok = np.isfinite(scores)
    ax.axhspan(mean - std, mean + std, color=TRAIN_COLOR, alpha=0.15, linewidth=0,
               label=f"mean {PLUS_MINUS} std")
    ax.axhline(mean, color=TRAIN_COLOR, linewidth=1.8, linestyle="--", label=band_label)
    ax.plot(x[ok], scores[ok], "o", color=BEST_COLOR, markersize=9, zorder=3,
            label="fold score")
    for xi, s in zip(x[ok], scores[ok]):
        ax.annotate(f"{s:.3f}", (xi, s), textcoords="offset points", xytext=(0, 9),
                    ha="center", fontsize=9)
    ax.set_xticks(x, labels=[f"fold {i}" if np.isfinite(s) else f"fold {i}\n(failed)"
                             for i, s in zip(x, scores)])
    for lab, s in zip(ax.get_xticklabels(), scores):
        if not np.isfinite(s):
            lab.set_color(WRONG_COLOR)
    ax.set_xlim(0.4, k + 0.6)
    finite = scores[ok]
    lo, hi = min(finite.min(), mean - std), max(finite.max(), mean + std)
    margin = max((hi - lo) * 0.35, abs(mean) * 0.002, 1e-3)
    ax.set_ylim(lo - margin, hi + margin)
    ax.set_ylabel(f"final {metric}")
    ax.grid(True, axis="y", alpha=0.3)
    left = _y_margin(ax)
    _place(fig, ax, left, bottom, width - left - legend_w - 0.2, height - top - bottom)
    fig.legend(loc="upper left", fontsize=9, frameon=False,
               bbox_to_anchor=(1.0 - (legend_w + 0.1) / width, 1.0 - top / height))
    _suptitle(fig, f"{title}\n{summary}", height, TITLE_SIZE)
    return fig


# ------------------------------------------------------------------------- sweeps
def _wrap_override(label: str, width: int = 42) -> str:
    """Wrap a long ``a=1,b=2,...`` override string after its commas."""
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

    Jobs are listed top to bottom in the given order; long override strings are wrapped
    at commas and the figure height grows with the number of jobs. ``ylabel`` names the
    objective (it labels the value axis, horizontal here). NaN values are jobs that
    failed: no bar, the word "failed".
    """
    labels = [str(s) for s in (labels if labels is not None else [])]
    vals = _series(values)
    m = min(len(labels), vals.size)
    labels, vals = labels[:m], vals[:m]
    if m == 0:
        return _message_figure(title, "No jobs.")
    wrapped = [_wrap_override(s) for s in labels]
    lines = [w.count("\n") + 1 for w in wrapped]
    rows_h = sum(0.24 + 0.16 * c for c in lines)
    top, bottom, right, bars_w = 0.55, 0.55, 0.3, 5.0
    left = _widest(wrapped, 9, True) + 0.2
    width = max(left + bars_w + right, _text_width(title, TITLE_SIZE, True) + 0.4)
    height = max(3.1, top + bottom + rows_h)
    fig = _figure(width, height)
    ax = _add_axes(fig, left, bottom, width - left - right, height - top - bottom)
    y = np.arange(m)
    ok = np.isfinite(vals)
    best = int(best_index) if best_index is not None and 0 <= int(best_index) < m else None
    colors = [BEST_COLOR if i == best else BAR_COLOR for i in range(m)]
    ax.barh(y[ok], vals[ok], color=[colors[i] for i in y[ok]], edgecolor="#4a4a4a",
            linewidth=0.6, height=0.65)
    finite = vals[ok]
    lo = min(float(finite.min()), 0.0) if finite.size else 0.0
    hi = max(float(finite.max()), 0.0) if finite.size else 1.0
    texts = [(_fmt(v) + ("  (best)" if i == best else "")) if np.isfinite(v) else "failed"
             for i, v in enumerate(vals)]
    # room for the value written at the end of each bar, as a fraction of the axes width
    axes_w = width - left - right
    room = [(_text_width(t, 9, bold=(i == best)) + 0.1) / axes_w for i, t in enumerate(texts)]
    f_right = max((r for r, v in zip(room, vals) if not v < 0), default=0.0)
    f_left = max((r for r, v in zip(room, vals) if v < 0), default=0.0)
    span = ((hi - lo) or 1.0) / max(1.0 - f_left - f_right, 0.3)
    off = 0.01 * span
    for i, (v, text) in enumerate(zip(vals, texts)):
        if np.isfinite(v):
            ax.text(v + off if v >= 0 else v - off, i, text, va="center",
                    ha="left" if v >= 0 else "right", fontsize=9,
                    fontweight="bold" if i == best else "normal")
        else:
            ax.text(off, i, text, va="center", ha="left", fontsize=9, style="italic",
                    color=WRONG_COLOR)
    ax.set_xlim(lo - f_left * span, hi + f_right * span)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_yticks(y, labels=wrapped, fontsize=9)
    if best is not None:
        ax.get_yticklabels()[best].set_fontweight("bold")
        ax.get_yticklabels()[best].set_color(BEST_COLOR)
    ax.set_ylim(m - 0.5, -0.5)  # first job at the top
    ax.set_xlabel(ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    _suptitle(fig, title, height, TITLE_SIZE)
    return fig


# --------------------------------------------------------------------------- I/O
# Drawing text dominates the time to save these figures; without glyph hinting it is
# ~20% faster and looks the same at these sizes. zlib level 3 instead of 6: ~40% faster
# PNG encoding for ~15% larger files (tens of kB). To get the same when saving another
# way, e.g. through MLflow:
#     with matplotlib.rc_context(plots.SAVE_RC):
#         mlflow.log_figure(fig, "plots/x.png", save_kwargs=plots.SAVEFIG_KWARGS)
SAVE_RC = {"text.hinting": "no_hinting"}
SAVEFIG_KWARGS = {"facecolor": "white", "pil_kwargs": {"compress_level": 3}}


def save_png(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG at its own dpi and exact size.

    No ``bbox_inches="tight"``: the layout above already keeps every label inside the
    figure (and a fixed size keeps images from different runs comparable). The parent
    directory is created if needed. The rc settings in :data:`SAVE_RC` apply only
    while this figure is drawn (``rc_context`` restores them afterwards).
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with rc_context(SAVE_RC):
        fig.savefig(path, format="png", dpi=fig.dpi, **SAVEFIG_KWARGS)
