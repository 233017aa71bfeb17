"""Inspecting a Keras model: its Conv2D layers, a layer table and its summary text."""

from __future__ import annotations

from typing import Any, Dict, List

import keras
from keras import layers


def conv_layer_names(model: keras.Model) -> List[str]:
    """Names of the model's Conv2D layers, in order."""
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]


def layer_table(model: keras.Model) -> List[Dict[str, Any]]:
    """One row per layer: name, type, output shape and parameter count."""
    rows = []
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape) if shape is not None else None
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "output_shape": str(shape),
                "params": int(layer.count_params()),
            }
        )
    return rows


def summary_text(model: keras.Model) -> str:
    """``model.summary()`` as plain text (no terminal colours)."""
    lines: List[str] = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    return "\n".join(lines) + "\n"
