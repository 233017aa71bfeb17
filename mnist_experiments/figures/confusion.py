"""The confusion matrix, drawn by scikit-learn's ``ConfusionMatrixDisplay`` on our Figure."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mnist_experiments.figures.style import (
    CM_CMAP,
    EM_DASH,
    TITLE_SIZE,
    class_name,
    new_figure,
    suptitle,
)

__all__ = ["confusion_matrix_figure"]


def _summary(cm: np.ndarray, integer: bool, row_normalized: bool) -> str:
    total = cm.sum()
    if not total:
        return "no samples"
    if integer:
        return f"accuracy {float(np.trace(cm) / total):.1%} (n={int(total)})"
    if row_normalized:  # mean of the per-class recalls
        return f"balanced accuracy {float(np.trace(cm) / cm.shape[0]):.1%}"
    return f"accuracy {float(np.trace(cm) / total):.1%}"


def confusion_matrix_figure(cm, class_names, title="Confusion matrix (test set)") -> Figure:
    """Counts in every cell, a colour bar, and the overall accuracy in the title.

    Rows are true labels, columns predicted labels (as sklearn's ``confusion_matrix``).
    The x tick labels are rotated by 45 degrees when any class name is longer than a
    cell is wide (e.g. Fashion-MNIST names); short names such as digits stay upright.
    A float matrix whose rows sum to 1 is taken as row-normalized (balanced accuracy
    shown). ``ConfusionMatrixDisplay.plot`` is given our Axes, so it adds no pyplot
    figure (it only imports pyplot for a helper).
    """
    from sklearn.metrics import ConfusionMatrixDisplay  # heavy: only when drawing one

    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square confusion matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = [class_name(class_names, i) for i in range(k)]
    integer = np.issubdtype(cm.dtype, np.integer) or bool(np.all(np.mod(cm, 1) == 0))
    row_normalized = (not integer and k > 0
                      and bool(np.allclose(cm.sum(axis=1), 1.0, atol=1e-3)))
    values = cm.astype(np.int64) if integer else cm
    bar_label = "count" if integer else ("fraction of true class" if row_normalized else "value")

    cell = min(0.6, max(0.25, 8.0 / max(k, 1)))  # inches per cell
    side = max(k * cell, 3.0)
    digits = max((len(f"{int(v)}" if integer else f"{v:.2f}") for v in values.ravel()),
                 default=1)
    # a digit is about 0.6 em wide: the largest font (<= 10 pt) whose numbers fit a cell
    cell_font = max(4.5, min(10.0, (side / max(k, 1)) * 72 * 0.8 / (0.62 * digits)))
    tick_font = 10.0 if k <= 15 else 8.0
    longest = max((len(s) for s in names), default=1)
    rotate = longest * 0.6 * tick_font / 72 > 0.8 * side / max(k, 1)
    label_room = longest * 0.6 * tick_font / 72
    fig = new_figure(side + label_room + 2.3,
                     side + (label_room * 0.71 if rotate else 0.2) + 1.4, images=True)
    ax = fig.subplots()
    ConfusionMatrixDisplay(values, display_labels=names).plot(
        ax=ax, cmap=CM_CMAP, values_format="d" if integer else ".2f",
        xticks_rotation=45 if rotate else "horizontal", text_kw={"fontsize": cell_font})
    ax.images[0].colorbar.set_label(bar_label)
    ax.tick_params(labelsize=tick_font)
    if rotate:  # at 45 degrees, anchored at the tick, so that neighbours cannot overlap
        for label in ax.get_xticklabels():
            label.set(ha="right", rotation_mode="anchor")
    ax.set_xlabel("Predicted label", fontsize=11)
    ax.set_ylabel("True label", fontsize=11)
    suptitle(fig, f"{title} {EM_DASH} {_summary(cm, integer, row_normalized)}", TITLE_SIZE)
    return fig
