"""Classifying picture files with a logged model (``mnist-exp-predict``).

Each picture is turned into an MNIST-style image (:mod:`mnist_experiments.data.images`)
and classified by the model; a file that cannot be read gets an error entry and the
others are still classified.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from mnist_experiments.data.images import ImageError, preprocess_file
from mnist_experiments.training.evaluation import predict_proba


def classify(model: Any, class_names: Sequence[str], paths: Sequence[str]) -> List[Dict[str, Any]]:
    """Preprocess and classify ``paths``: one result dict per path, in order.

    A file that cannot be read gives ``{"file", "error"}``; the others
    ``{"file", "label", "class_name", "probability", "probabilities"}``.
    """
    results: List[Dict[str, Any]] = []
    images, slots = [], []
    for path in paths:
        try:
            images.append(preprocess_file(path))
        except ImageError as exc:
            results.append({"file": path, "error": str(exc)})
            continue
        except Exception as exc:  # never let one odd file stop the others
            results.append({"file": path, "error": f"{path}: cannot be processed "
                                                   f"({type(exc).__name__}: {exc})."})
            continue
        slots.append(len(results))
        results.append({"file": path})
    if images:
        proba = predict_proba(model, np.stack(images)[..., np.newaxis])
        for slot, row in zip(slots, proba):
            label = int(row.argmax())
            results[slot].update({
                "label": label,
                "class_name": class_names[label] if label < len(class_names) else str(label),
                "probability": float(row[label]),
                "probabilities": [float(p) for p in row],
            })
    return results


