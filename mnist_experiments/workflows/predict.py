"""Classifying picture files with a logged model (``mnist-exp-predict``).

Each picture is turned into an MNIST-style image (:mod:`mnist_experiments.data.images`)
and classified by the model; a file that cannot be read gets an error entry and the
others are still classified. The command preprocesses the files first
(:func:`~mnist_experiments.data.images.preprocess_files`: light, no TensorFlow) and
loads the model only if some file can be classified, so a missing or oversized file is
reported at once instead of after the model's ~10 s of loading.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from mnist_experiments.data.images import preprocess_files
from mnist_experiments.training.evaluation import predict_proba


def classify(model: Any, class_names: Sequence[str], paths: Sequence[str],
             prepared: Optional[Sequence[Union[np.ndarray, str]]] = None
             ) -> List[Dict[str, Any]]:
    """Preprocess and classify ``paths``: one result dict per path, in order.

    ``prepared`` is what :func:`~mnist_experiments.data.images.preprocess_files` gave
    for ``paths`` (computed here if None). A file that cannot be read gives
    ``{"file", "error"}``; the others
    ``{"file", "label", "class_name", "probability", "probabilities"}``.
    """
    prepared = preprocess_files(paths) if prepared is None else prepared
    results: List[Dict[str, Any]] = []
    images, slots = [], []
    for path, item in zip(paths, prepared):
        if isinstance(item, str):
            results.append({"file": path, "error": item})
            continue
        images.append(item)
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
