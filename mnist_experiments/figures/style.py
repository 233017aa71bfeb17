"""What every figure shares: colours, the empty figure, input coercion and PNG saving.

Every figure is built with Matplotlib's object-oriented API on a new
:class:`matplotlib.figure.Figure` with ``layout="constrained"``: Matplotlib itself makes
room for titles, tick labels, legends and colour bars when the figure is drawn.
``matplotlib.pyplot`` is never imported here, so no GUI window can open and no figure
is kept in pyplot's global registry: a figure is freed as soon as the caller drops it.
Save one with :func:`save_png`; to change its resolution call ``fig.set_dpi(dpi)`` first
(sizes are in inches and points, so the layout scales with the dpi).
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Sequence, Tuple

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

DEFAULT_DPI = 100
IMAGE_CMAP = "gray_r"  # ink dark on white paper, like the notebooks
ACTIVATION_CMAP = "viridis"
CM_CMAP = "Blues"
WRONG_COLOR = "#d62728"  # red: a wrong prediction
RIGHT_COLOR = "#1b7a34"  # dark green: a right prediction (readable on white)
FRAME_COLOR = "#bbbbbb"
MUTED_COLOR = "#666666"
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
BAR_COLOR = "#7ea6cf"
BEST_COLOR = "#e8710a"
SUPTITLE_SIZE = 13
TITLE_SIZE = 12
EM_DASH = "\u2014"
PLUS_MINUS = "\u00b1"

# Drawing text dominates the time to save these figures; without glyph hinting it is
# ~20% faster and looks the same at these sizes. zlib level 3 instead of 6: ~40% faster
# PNG encoding for ~15% larger files (tens of kB). To get the same when saving another
# way, e.g. through MLflow:
#     with matplotlib.rc_context(figures.SAVE_RC):
#         mlflow.log_figure(fig, "plots/x.png", save_kwargs=figures.SAVEFIG_KWARGS)
SAVE_RC = {"text.hinting": "no_hinting"}
SAVEFIG_KWARGS = {"facecolor": "white", "pil_kwargs": {"compress_level": 3}}


def new_figure(width: float, height: float, images: bool = False) -> Figure:
    """A white figure of ``width`` x ``height`` inches laid out by constrained layout.

    ``images``: for Axes of fixed aspect (images, the confusion matrix), the
    "compressed" variant, which lays out the Axes at their drawn (square) size; plain
    constrained layout lays them out before fitting the aspect, and labels beside an
    image then drift outwards each time the figure is drawn.
    """
    return Figure(figsize=(width, height), dpi=DEFAULT_DPI, facecolor="white",
                  layout="compressed" if images else "constrained")


def suptitle(fig: Figure, title: str, size: float = SUPTITLE_SIZE) -> None:
    """The bold figure title, wrapped at spaces to the figure's width if too long."""
    fig.suptitle(title, fontsize=size, fontweight="bold", wrap=True)


def message_figure(title: str, message: str) -> Figure:
    """A figure with a title and one centred line of text (for empty inputs)."""
    fig = new_figure(6.4, 3.2)
    fig.text(0.5, 0.45, message, ha="center", va="center", fontsize=12, wrap=True)
    suptitle(fig, title)
    return fig


def note_axes(ax: Any, message: str) -> None:
    """Grey text in the middle of an empty plot (a series that was not recorded)."""
    ax.set_yticks([])
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes,
            fontsize=11, color=MUTED_COLOR)


def save_png(fig: Figure, path) -> None:
    """Write ``fig`` as a PNG at its own dpi and exact size.

    No ``bbox_inches="tight"``: constrained layout already keeps every label inside the
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


# ------------------------------------------------------------------------ inputs
def as_images(images: Any) -> np.ndarray:
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


def value_range(arr: np.ndarray) -> Tuple[float, float]:
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


def as_labels(labels: Any) -> np.ndarray:
    """Class indices from indices, or from one-hot / probability rows (argmax)."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        return arr.argmax(axis=1)
    return arr.reshape(-1)


def class_name(class_names: Optional[Sequence[str]], label: Any) -> str:
    """The class name of an index (or the label itself if it is not a valid index)."""
    try:
        i = int(label)
    except (TypeError, ValueError):
        return str(label)
    if class_names is not None and 0 <= i < len(class_names) and float(label) == i:
        return str(class_names[i])
    return str(label)


def grid_shape(n: int) -> Tuple[int, int]:
    """(rows, cols) of a square-ish grid for n panels (cols >= rows)."""
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    return rows, cols


def series(values: Any) -> np.ndarray:
    """A 1-D float array from a list, tuple or array of numbers (or None: empty)."""
    return np.asarray(list(values) if values is not None else [], dtype=float).reshape(-1)


def fmt(v: float) -> str:
    return f"{v:.4g}"
