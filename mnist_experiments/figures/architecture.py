"""The model's layers as a stack of boxes joined by arrows, coloured by layer type."""

from __future__ import annotations

from itertools import pairwise
from typing import Any, Dict, List, Optional, Tuple

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mnist_experiments.figures.style import (
    EM_DASH,
    TITLE_SIZE,
    message_figure,
    new_figure,
    suptitle,
)

__all__ = ["architecture_diagram"]

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
_FONT = 9.5  # points
_MONO_ADVANCE = 0.602  # em: every glyph of DejaVu Sans Mono (Matplotlib's) is this wide
_PER_LAYER = 0.62  # inches of figure height per layer
_PAD = 0.5  # em: between a box's text and its edge


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


def _spread(left: str, right: str, width: int) -> str:
    """``left`` and ``right`` at the two ends of a line of ``width`` characters."""
    return left + " " * max(2, width - len(left) - len(right)) + right


def architecture_diagram(layers: List[Dict[str, Any]], title="Architecture") -> Figure:
    """A vertical stack of boxes, one per layer, coloured by type, joined by arrows.

    Each layer is a dict with ``name``, ``type``, ``output_shape`` and ``params``
    (missing keys show as "?"); the total parameter count is in the title. A box holds
    two lines in a monospaced font, name and type, then output shape and parameter
    count, so that every box is as wide as the longest line; Matplotlib sizes the box
    around its text and points each arrow from one box to the next. The figure height
    grows with the number of layers (about 0.62 inch per layer).
    """
    layers = list(layers) if layers is not None else []
    params = [_as_int(layer.get("params")) for layer in layers]
    total = sum(p for p in params if p is not None)
    full_title = f"{title} {EM_DASH} {total:,} parameters"
    if not layers:
        return message_figure(full_title, "No layers.")
    rows = []
    for i, (layer, p) in enumerate(zip(layers, params)):
        ltype = str(layer.get("type", "?"))
        rows.append((str(layer.get("name", f"layer {i}")), ltype, _layer_kind(ltype),
                     f"output {layer.get('output_shape', '?')}",
                     f"{p:,} params" if p is not None else "? params"))
    chars = max(max(len(a) + len(b), len(c) + len(d)) + 4 for a, b, _, c, d in rows)
    box_w = chars * _MONO_ADVANCE * _FONT / 72 + 0.3
    n = len(rows)
    fig = new_figure(max(box_w + 2.5, 6.4), max(n * _PER_LAYER + 0.8, 3.1))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(n, 0.0)  # layer i is centred at y = i + 0.5, the first one on top
    boxes = []
    for i, (name, ltype, (_, color), shape, p_text) in enumerate(rows):
        text = f"{_spread(name, ltype, chars)}\n{_spread(shape, p_text, chars)}"
        boxes.append(ax.text(0.5, i + 0.5, text, ha="center", va="center", family="monospace",
                             fontsize=_FONT, linespacing=1.4,
                             bbox={"boxstyle": f"round,pad={_PAD},rounding_size=0.4",
                                   "facecolor": color, "edgecolor": "#555555", "linewidth": 1.0}))
    edge = _PAD * _FONT  # points from a text to its box's edge
    for upper, lower in pairwise(boxes):  # bottom centre of a box to top centre of the next
        ax.annotate("", xy=(0.5, 1.0), xycoords=lower, xytext=(0.5, 0.0), textcoords=upper,
                    arrowprops={"arrowstyle": "-|>", "color": "#444444", "linewidth": 1.2,
                                "mutation_scale": 12, "shrinkA": edge, "shrinkB": edge})
    kinds: Dict[str, str] = {}
    for _, _, (kind, color), _, _ in rows:
        kinds.setdefault(kind, color)
    handles = [Patch(facecolor=c, edgecolor="#555555", label=k) for k, c in kinds.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, title="layer type",
               title_fontsize=9, frameon=False)
    suptitle(fig, full_title, TITLE_SIZE)
    return fig
