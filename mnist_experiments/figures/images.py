"""Grids of images: training samples, test predictions, mistakes, one input, activations.

Images (MNIST-style) may be ``uint8`` 0-255 or float 0-1 and shaped ``(n, 28, 28)`` or
``(n, 28, 28, 1)``; labels may be class indices or one-hot / probability rows. Images
are drawn with the grayscale colour map :data:`~.style.IMAGE_CMAP`, one Axes per panel
in a square-ish grid laid out by constrained layout ("compressed", for images); long
titles are wrapped.
"""

from __future__ import annotations

import textwrap
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from mnist_experiments.figures.style import (
    ACTIVATION_CMAP,
    EM_DASH,
    FRAME_COLOR,
    IMAGE_CMAP,
    RIGHT_COLOR,
    TITLE_SIZE,
    WRONG_COLOR,
    as_images,
    as_labels,
    class_name,
    grid_shape,
    message_figure,
    new_figure,
    suptitle,
    value_range,
)

__all__ = ["sample_grid", "prediction_grid", "misclassified_grid", "input_image_figure",
           "activation_grid"]

_NORMAL_FRAME = (FRAME_COLOR, 0.6)
# characters per line of a panel title: about as wide as the image below it, so that
# constrained layout never has to squeeze a row of titles into less than the figure
_TITLE_CHARS = 22


def _grid(n: int, titles: Sequence[str], title_size: float, cell: float, title: str,
          footer: float = 0.0, colorbar: bool = False) -> Tuple[Figure, List[Any], Any]:
    """A figure with a square-ish grid of ``n`` image panels, and its colour bar's Axes.

    The size follows the number of panels: ``cell`` inches per image (wider if its
    title's longest line is) plus a band for its (possibly multi-line) title;
    ``footer`` adds room for a key or a note under the grid. With ``colorbar`` a narrow
    last column of the grid holds one colour bar for all panels (its own Axes:
    constrained layout measures it once, not once per panel as it does a colour bar
    attached to every panel).
    """
    rows, cols = grid_shape(n)
    lines = max((str(t).count("\n") + 1 for t in titles), default=1)
    chars = max((len(line) for t in titles for line in str(t).split("\n")), default=1)
    band = lines * title_size * 1.3 / 72 + 0.12
    cell_w = max(cell, chars * title_size * 0.62 / 72)  # a character is ~0.6 em wide
    width = max(cols * (cell_w + 0.2) + 0.2 + (1.1 if colorbar else 0.0), 3.2)
    height = max(rows * (cell + band + 0.08) + 0.55 + footer, 3.1)
    fig = new_figure(width, height, images=True)
    fig.get_layout_engine().set(w_pad=0.06, h_pad=0.06)
    ratios = [1.0] * cols + ([0.08] if colorbar else [])
    grid = fig.add_gridspec(rows, len(ratios), width_ratios=ratios)
    axes = [fig.add_subplot(grid[i // cols, i % cols]) for i in range(n)]
    suptitle(fig, title)
    return fig, axes, fig.add_subplot(grid[:, -1]) if colorbar else None


def _panel(ax: Any, img: np.ndarray, title: str, size: float, cmap: str, vmin: float,
           vmax: float, color: str = "black", bold: bool = False,
           frame: Optional[Tuple[str, float]] = _NORMAL_FRAME) -> Any:
    """One image with its title above it and a frame around it.

    The Axes is switched off (no ticks, no spines): constrained layout then measures
    only its title, several times faster than an Axes with empty tick lists. The frame
    is a rectangle on the Axes' edges, and the title's fixed ``y`` skips Matplotlib's
    search for tick labels above the Axes.
    """
    im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=size, color=color, fontweight="bold" if bold else "normal",
                 linespacing=1.15, y=1.0, pad=4)
    if frame is not None:
        ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False,
                               edgecolor=frame[0], linewidth=frame[1], clip_on=False))
    return im


def _key(fig: Figure, entries: Sequence[Tuple[str, str, float]]) -> None:
    """A one-row legend under the grid: (label, frame colour, frame width).

    Below the grid, not under the figure title: constrained layout does not stack a
    figure legend and the figure title, it would overlap them.
    """
    handles = [Patch(facecolor="white", edgecolor=color, linewidth=lw, label=label)
               for label, color, lw in entries]
    legend = fig.legend(handles=handles, loc="outside lower center", ncols=len(handles),
                        fontsize=10.5, frameon=False, handlelength=1.4, handleheight=1.1)
    for text, (_, color, _) in zip(legend.get_texts(), entries):
        text.set_color(color if color != FRAME_COLOR else RIGHT_COLOR)


def _wrap(text: str, chars: int = _TITLE_CHARS) -> str:
    """Each line of ``text`` wrapped at spaces (or within a word) to ``chars`` characters."""
    return "\n".join(textwrap.fill(line, chars) for line in text.split("\n"))


def _name_pair(class_names: Optional[Sequence[str]], actual: Any, predicted: Any) -> str:
    return _wrap(f"actual: {class_name(class_names, actual)}\n"
                 f"predicted: {class_name(class_names, predicted)}")


def sample_grid(images, labels, class_names, n=25, title="Training samples") -> Figure:
    """A square-ish grid of the first ``n`` images, each titled with its class name."""
    imgs = as_images(images)
    labs = as_labels(labels)
    n = int(min(n, len(imgs), len(labs)))
    if n <= 0:
        return message_figure(title, "No images to show.")
    vmin, vmax = value_range(imgs[:n])
    titles = [_wrap(class_name(class_names, labs[i]), 18) for i in range(n)]
    fig, axes, _ = _grid(n, titles, 9.5, cell=1.3, title=f"{title} (first {n})")
    for ax, img, name in zip(axes, imgs, titles):
        _panel(ax, img, name, 9.5, IMAGE_CMAP, vmin, vmax)
    return fig


def prediction_grid(images, y_true, y_pred, class_names, n=25, title="Test predictions") -> Figure:
    """A grid of the first ``n`` test images titled ``actual: X / predicted: Y``.

    Wrong predictions get a bold red title and a thick red frame, right ones a green
    title. A key under the grid counts the wrong and the right ones.
    """
    imgs = as_images(images)
    t, p = as_labels(y_true), as_labels(y_pred)
    n = int(min(n, len(imgs), len(t), len(p)))
    if n <= 0:
        return message_figure(title, "No predictions to show.")
    vmin, vmax = value_range(imgs[:n])
    titles = [_name_pair(class_names, t[i], p[i]) for i in range(n)]
    wrong = int(np.sum(t[:n] != p[:n]))
    fig, axes, _ = _grid(n, titles, 9, cell=1.45, title=title, footer=0.35)
    for i, ax in enumerate(axes):
        ok = bool(t[i] == p[i])
        _panel(ax, imgs[i], titles[i], 9, IMAGE_CMAP, vmin, vmax,
               color=RIGHT_COLOR if ok else WRONG_COLOR, bold=not ok,
               frame=_NORMAL_FRAME if ok else (WRONG_COLOR, 3.5))
    if wrong:
        _key(fig, [(f"{wrong} of {n} wrong (red title and frame)", WRONG_COLOR, 2.5),
                   (f"{n - wrong} right (green title)", FRAME_COLOR, 1.0)])
    else:
        _key(fig, [(f"all {n} right", FRAME_COLOR, 1.0)])
    return fig


def misclassified_grid(images, y_true, y_pred, confidence, class_names, n=16,
                       title="Most confident mistakes") -> Figure:
    """The ``n`` wrong predictions with the highest confidence, most confident first.

    ``confidence`` is the probability of the predicted class per image, shape ``(N,)``
    (0-1, or 0-100 if already in percent), or the full ``(N, classes)`` probability
    matrix (the predicted class's column is used). The mistakes are picked here from all
    N inputs (ties keep input order). With no mistakes the figure says so in text.
    """
    imgs = as_images(images)
    t, p = as_labels(y_true), as_labels(y_pred)
    conf = np.asarray(confidence, dtype=float)
    if conf.ndim == 2:
        conf = conf[np.arange(len(p)), p.astype(int)]
    conf = conf.reshape(-1)
    if conf.size and np.nanmax(conf) > 1.0:
        conf = conf / 100.0
    total = int(min(len(imgs), len(t), len(p), len(conf)))
    wrong_idx = np.flatnonzero(t[:total] != p[:total])
    if wrong_idx.size == 0:
        return message_figure(title, f"No mistakes: all {total} predictions are correct.")
    if n <= 0:
        return message_figure(title, f"{wrong_idx.size} mistakes (none shown: n = 0).")
    c = np.nan_to_num(conf[wrong_idx], nan=-np.inf)
    order = wrong_idx[np.argsort(-c, kind="stable")][: int(n)]
    k = len(order)
    vmin, vmax = value_range(imgs[order])
    titles = [f"{_name_pair(class_names, t[i], p[i])}\nconfidence {conf[i]:.1%}" for i in order]
    fig, axes, _ = _grid(k, titles, 9, cell=1.45, title=title, footer=0.35)
    for ax, i, text in zip(axes, order, titles):
        _panel(ax, imgs[i], text, 9, IMAGE_CMAP, vmin, vmax, color=WRONG_COLOR,
               frame=(WRONG_COLOR, 1.5))
    note = f"the {k} most confident of {wrong_idx.size} mistakes in {total} images"
    _key(fig, [(f"{note}, most confident first", WRONG_COLOR, 1.5)])
    return fig


def input_image_figure(image, label_name, index, title=None) -> Figure:
    """The single test image used for the activation maps, with a pixel-value colour bar."""
    img = as_images(image)[0]
    vmin, vmax = value_range(img)
    fig = new_figure(4.8, 3.9, images=True)
    ax = fig.subplots()
    im = ax.imshow(img, cmap=IMAGE_CMAP, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, label="pixel value", shrink=0.8)
    suptitle(fig, title or f"Test image #{index} {EM_DASH} label: {label_name}", TITLE_SIZE)
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
        return message_figure(full_title, "No channels to show.")
    shown = fm[..., :k]
    finite = shown[np.isfinite(shown)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    constant = vmax <= vmin  # e.g. a dead ReLU layer: all zeros
    if constant:
        vmax = vmin + 1.0
    titles = [f"ch {j}" for j in range(k)]
    fig, axes, cax = _grid(k, titles, 9.5, cell=1.3, title=full_title, colorbar=True,
                           footer=0.3 if constant else 0.0)
    im = None
    for j, ax in enumerate(axes):
        im = _panel(ax, shown[..., j], titles[j], 9.5, ACTIVATION_CMAP, vmin, vmax, frame=None)
    fig.colorbar(im, cax=cax, label="activation")
    if constant:
        fig.supxlabel(f"every activation shown is {vmin:g}", fontsize=10.5)
    return fig
