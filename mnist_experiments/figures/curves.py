"""Metrics per epoch: a run's training curves, and k-fold's curves and final scores."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_experiments.figures.style import (
    BEST_COLOR,
    PLUS_MINUS,
    TITLE_SIZE,
    TRAIN_COLOR,
    VAL_COLOR,
    WRONG_COLOR,
    fmt,
    message_figure,
    new_figure,
    note_axes,
    series,
    suptitle,
)

__all__ = ["training_curves", "fold_curves", "fold_summary"]

RATE_COLOR = "#6a3d9a"  # neither train's blue nor validation's orange


def _epoch_axis(ax: Any, n_epochs: int) -> None:
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.grid(True, alpha=0.3)


def _plot_series(ax: Any, values: Any, label: str, **kw: Any) -> int:
    """Plot one per-epoch series (epochs 1..n); returns n (0 if empty)."""
    v = series(values)
    if v.size:
        ax.plot(np.arange(1, v.size + 1), v, label=label, **kw)
    return int(v.size)


def training_curves(history: Dict[str, List[float]], title="Training curves") -> Figure:
    """Accuracy and loss per epoch, train vs validation, side by side; and the learning
    rate in a third panel when a schedule changed it.

    ``history`` holds Keras history keys (``accuracy``, ``val_accuracy``, ``loss``,
    ``val_loss``, ``learning_rate``); any may be missing, and one epoch is fine. The
    legend shows each series' last value.
    """
    history = dict(history) if history is not None else {}
    keys = ("accuracy", "val_accuracy", "loss", "val_loss")
    all_epochs = max((len(series(history.get(k))) for k in keys), default=0)
    marker_size = 5 if all_epochs <= 40 else (3 if all_epochs <= 80 else 0)
    rates = series(history.get("learning_rate"))
    scheduled = rates.size > 1 and bool(np.ptp(rates) > 0)
    fig = new_figure(14.5 if scheduled else 10.0, 4.3)
    axes = fig.subplots(1, 3 if scheduled else 2)
    if scheduled:
        _learning_rate_panel(axes[2], rates, all_epochs, marker_size)
    for ax, key in zip(axes, ("accuracy", "loss")):
        n_epochs = 0
        for k, label, color, marker in ((key, "train", TRAIN_COLOR, "o"),
                                        (f"val_{key}", "validation", VAL_COLOR, "s")):
            values = history.get(k)
            if values is not None and len(values):
                label = f"{label} (last {fmt(float(values[-1]))})"
            n_epochs = max(n_epochs, _plot_series(ax, values, label, marker=marker,
                                                  markersize=marker_size, color=color,
                                                  linewidth=1.8))
        _epoch_axis(ax, all_epochs)
        ax.set_ylabel(key)
        ax.set_title(key.capitalize(), fontsize=11)
        if n_epochs:
            ax.legend(loc="best", fontsize=9)
        else:
            note_axes(ax, f"no {key} recorded")
    suptitle(fig, title)
    return fig


def _learning_rate_panel(ax: Any, rates: np.ndarray, n_epochs: int, marker_size: int) -> None:
    _plot_series(ax, rates, f"learning rate (last {fmt(float(rates[-1]))})", marker="o",
                 markersize=marker_size, color=RATE_COLOR, linewidth=1.8)
    _epoch_axis(ax, max(n_epochs, rates.size))
    ax.set_ylabel("learning rate (at the epoch's start)")
    ax.set_title("Learning rate", fontsize=11)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.legend(loc="best", fontsize=9)


def fold_curves(fold_histories: List[Dict[str, List[float]]], metric="val_accuracy",
                title=None) -> Figure:
    """k-fold: one line per fold (``fold 1``, ...) of ``metric`` per epoch."""
    folds = list(fold_histories) if fold_histories is not None else []
    fig = new_figure(8.0, 4.6)
    ax = fig.subplots()
    n_epochs = 0
    for i, hist in enumerate(folds):
        n_epochs = max(n_epochs, _plot_series(ax, (hist or {}).get(metric), f"fold {i + 1}",
                                              marker="o", markersize=4, linewidth=1.6))
    _epoch_axis(ax, n_epochs)
    ax.set_ylabel(metric)
    if n_epochs:
        fig.legend(loc="outside right upper", fontsize=9, frameon=False)
    else:
        note_axes(ax, f"no {metric} recorded")
    suptitle(fig, title or f"{metric} per epoch in each of {len(folds)} folds", TITLE_SIZE)
    return fig


def fold_summary(final_scores: List[float], metric="val_accuracy", title=None) -> Figure:
    """k-fold: each fold's final score as a point, the mean as a dashed line and the
    band mean ± std shaded, labelled ``mean 0.973 ± 0.004``.

    ``std`` is the population standard deviation (``np.std``, as sklearn reports it);
    NaN scores (failed folds) are left out of both and marked "failed".
    """
    scores = series(final_scores)
    k = scores.size
    title = title or f"Final {metric} per fold ({k} fold{'s' if k != 1 else ''})"
    if k == 0 or not np.isfinite(scores).any():
        return message_figure(title, "No fold scores.")
    mean, std = float(np.nanmean(scores)), float(np.nanstd(scores))
    band_label = f"mean {mean:.3f} {PLUS_MINUS} {std:.3f}"
    failed = int(np.sum(~np.isfinite(scores)))
    summary = band_label + (f" (over {k - failed} folds; {failed} failed)" if failed else "")
    fig = new_figure(max(7.5, 0.75 * k + 4.0), 4.4)
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
    fig.legend(loc="outside right upper", fontsize=9, frameon=False)
    suptitle(fig, f"{title}\n{summary}", TITLE_SIZE)
    return fig
