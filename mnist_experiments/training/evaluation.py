"""Evaluating a fitted model: everything later stages need, computed once, as data.

:func:`evaluate` predicts the test (or a fold's validation) images and computes the
metrics, the confusion matrix, the classification report, the model's layer table and
summary and, when asked, the feature maps of every Conv2D layer for one image. The
recording stage (:mod:`mnist_experiments.tracking.artifacts`) draws and logs from this
:class:`Evaluation` alone: it never calls back into Keras or the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np

from mnist_experiments.models.summary import conv_layer_names, layer_table, summary_text
from mnist_experiments.training.pipeline import image_batches, to_float


@dataclass
class ActivationMaps:
    """Every Conv2D layer's feature maps for one image (``maps[layer]``: h x w x channels)."""

    index: int
    image: np.ndarray  # uint8 28x28
    label: int
    maps: Dict[str, np.ndarray]


@dataclass
class Evaluation:
    """A fitted model's results on one labelled set of images."""

    metrics: Dict[str, float]
    proba: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray
    report: Dict[str, Any]
    model: keras.Model
    layers: List[Dict[str, Any]]
    summary: str
    activations: Optional[ActivationMaps] = None

    def example(self, images: np.ndarray, n: int = 2):
        """``(float32 inputs, probabilities)`` of the first ``n`` images: a model signature."""
        return to_float(images[:n]).astype(np.float32), self.proba[:n].astype(np.float32)


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (n, 10) for uint8 or float images."""
    return np.asarray(model.predict(image_batches(images, batch_size), verbose=0),
                      dtype=np.float64)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, prefix: str = "test_") -> Dict[str, float]:
    """Loss, accuracy, precision, recall and F1 (macro and weighted) from probabilities."""
    # scikit-learn is imported here, after the fit, not before the first epoch
    from sklearn.metrics import f1_score, precision_score, recall_score

    y_pred = proba.argmax(axis=1)
    eps = 1e-7
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0 - eps)
    labels = list(range(proba.shape[1]))
    kwargs = dict(labels=labels, zero_division=0)
    return {
        f"{prefix}loss": float(-np.mean(np.log(p_true))),
        f"{prefix}accuracy": float(np.mean(y_pred == y_true)),
        f"{prefix}precision": float(precision_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}recall": float(recall_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}f1_macro": float(f1_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}f1_weighted": float(f1_score(y_true, y_pred, average="weighted", **kwargs)),
    }


def activation_maps(model: keras.Model, image: np.ndarray) -> Dict[str, np.ndarray]:
    """Each Conv2D layer's output for one uint8 image, in layer order."""
    names = conv_layer_names(model)
    if not names:
        return {}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe(to_float(image[np.newaxis]), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {name: np.asarray(out)[0] for name, out in zip(names, outputs)}


def sample_index(viz: Any, seed: int, n: int) -> int:
    """The image whose activation maps are shown: ``viz.sample_index`` or seeded."""
    if viz.sample_index is not None:
        return int(viz.sample_index) % n
    return int(np.random.default_rng(int(seed)).integers(n))


def evaluate(model: keras.Model, images: np.ndarray, labels: np.ndarray,
             class_names: Sequence[str], prefix: str = "test_",
             activation_index: Optional[int] = None) -> Evaluation:
    """Predict ``images`` and compute everything the run records about them.

    ``activation_index``: the image whose Conv2D feature maps to compute (None: none).
    """
    from sklearn.metrics import classification_report, confusion_matrix

    proba = predict_proba(model, images)
    y_pred = proba.argmax(axis=1)
    ids = list(range(len(class_names)))
    activations = None
    if activation_index is not None:
        image = images[activation_index]
        activations = ActivationMaps(activation_index, image, int(labels[activation_index]),
                                     activation_maps(model, image))
    return Evaluation(
        metrics=classification_metrics(labels, proba, prefix=prefix),
        proba=proba,
        y_true=labels,
        y_pred=y_pred,
        confusion=confusion_matrix(labels, y_pred, labels=ids),
        report=classification_report(labels, y_pred, labels=ids, target_names=list(class_names),
                                     output_dict=True, zero_division=0),
        model=model,
        layers=layer_table(model),
        summary=summary_text(model),
        activations=activations,
    )
