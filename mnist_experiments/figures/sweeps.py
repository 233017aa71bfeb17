"""A sweep's objective per job: one horizontal bar per job, the best one highlighted."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
from matplotlib.figure import Figure

from mnist_experiments.figures.style import (
    BAR_COLOR,
    BEST_COLOR,
    TITLE_SIZE,
    WRONG_COLOR,
    fmt,
    message_figure,
    new_figure,
    series,
    suptitle,
)

__all__ = ["objective_per_job"]

_LABEL_FONT = 9  # points
_VALUE_ROOM = 0.25  # of the bars' span, left beyond the longest bar for its value


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
    failed: no bar, the word "failed". Each bar's value is written at its end.
    """
    labels = [str(s) for s in (labels if labels is not None else [])]
    vals = series(values)
    m = min(len(labels), vals.size)
    labels, vals = labels[:m], vals[:m]
    if m == 0:
        return message_figure(title, "No jobs.")
    wrapped = [_wrap_override(s) for s in labels]
    lines = [w.count("\n") + 1 for w in wrapped]
    longest = max(len(line) for w in wrapped for line in w.split("\n"))
    fig = new_figure(5.8 + longest * 0.6 * _LABEL_FONT / 72,
                     max(3.1, 1.2 + sum(0.24 + 0.16 * c for c in lines)))
    ax = fig.subplots()
    y = np.arange(m)
    ok = np.isfinite(vals)
    best = int(best_index) if best_index is not None and 0 <= int(best_index) < m else None
    colors = [BEST_COLOR if i == best else BAR_COLOR for i in range(m)]
    bars = ax.barh(y[ok], vals[ok], color=[colors[i] for i in y[ok]], edgecolor="#4a4a4a",
                   linewidth=0.6, height=0.65)
    texts = [fmt(v) + ("  (best)" if i == best else "") for i, v in enumerate(vals) if ok[i]]
    for i, text in zip(y[ok], ax.bar_label(bars, labels=texts, padding=3,
                                           fontsize=_LABEL_FONT)):
        if i == best:
            text.set_fontweight("bold")
    for i in y[~ok]:
        ax.annotate("failed", (0, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=_LABEL_FONT, style="italic", color=WRONG_COLOR)
    finite = vals[ok]
    lo = min(float(finite.min()), 0.0) if finite.size else 0.0
    hi = max(float(finite.max()), 0.0) if finite.size else 1.0
    room = _VALUE_ROOM * ((hi - lo) or 1.0)
    ax.set_xlim(lo - (room if lo < 0 else 0.0), hi + (room if hi > 0 or lo == 0 else 0.0))
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_yticks(y, labels=wrapped, fontsize=_LABEL_FONT)
    if best is not None:
        ax.get_yticklabels()[best].set_fontweight("bold")
        ax.get_yticklabels()[best].set_color(BEST_COLOR)
    ax.set_ylim(m - 0.5, -0.5)  # first job at the top
    ax.set_xlabel(ylabel)
    ax.grid(True, axis="x", alpha=0.3)
    suptitle(fig, title, TITLE_SIZE)
    return fig
