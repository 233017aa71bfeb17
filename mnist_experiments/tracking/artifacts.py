"""Run artifacts: figures, reports, activation maps and the model, logged to MLflow.

Everything a course notebook shows for a model, plus what a practitioner expects:

==================================  ==================================================
``plots/samples.png``               training images with their labels
``plots/curves.png``                accuracy and loss per epoch, train vs validation
``plots/confusion_matrix.png``      test-set confusion matrix with counts
``metrics/confusion_matrix.json``   the counts, with the class labels
``metrics/classification_report.json``  per-class precision, recall, F1, support
``plots/predictions.png``           a grid of test images, actual vs predicted
``plots/misclassified.png``         the most confident mistakes
``activations/input.png``           the test image the activation maps are for
``activations/<conv layer>.png``    every Conv2D layer's feature maps for that image
``model/summary.txt``               ``model.summary()``
``model/architecture.png``          layers, output shapes and parameter counts
``model/``                          the model (MLflow Keras flavor, with a signature)
==================================  ==================================================

The ``viz`` config switches figures off (``viz=off`` or ``viz.<part>=false``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from importlib import metadata
from typing import Any, Dict, Iterator, List, Optional

import keras
import mlflow
import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from mnist_experiments.figures import plots
from mnist_experiments.models.builder import conv_layer_names, layer_table, summary_text
from mnist_experiments.training.fit import to_float

log = logging.getLogger(__name__)


class Timer:
    """Seconds spent per artifact, logged as ``artifact_seconds.json``."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)

    @property
    def total(self) -> float:
        return float(sum(self.seconds.values()))


def log_figure(fig: Any, artifact_file: str, dpi: Optional[int] = None) -> None:
    """Log a matplotlib figure as a PNG artifact, with the fast save settings of :mod:`plots`."""
    import matplotlib

    if dpi:
        fig.set_dpi(int(dpi))
    with matplotlib.rc_context(plots.SAVE_RC):
        mlflow.log_figure(fig, artifact_file, save_kwargs=plots.SAVEFIG_KWARGS)


def log_confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: List[str]) -> np.ndarray:
    """Log ``metrics/confusion_matrix.json`` (counts with class labels); return the counts."""
    labels = list(range(len(class_names)))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    mlflow.log_dict({"labels": labels, "class_names": list(class_names), "matrix": cm.tolist()},
                    "metrics/confusion_matrix.json")
    return cm


def log_classification_report(y_true: np.ndarray, y_pred: np.ndarray,
                              class_names: List[str]) -> None:
    """Log ``metrics/classification_report.json``: per-class precision, recall, F1, support."""
    report = classification_report(y_true, y_pred, labels=list(range(len(class_names))),
                                   target_names=list(class_names), output_dict=True,
                                   zero_division=0)
    mlflow.log_dict(report, "metrics/classification_report.json")


def _wanted(viz: Any, part: str) -> bool:
    return bool(viz.enabled) and bool(viz.get(part, True))


def sample_index(viz: Any, seed: int, n_test: int) -> int:
    """The test image whose activation maps are shown: ``viz.sample_index`` or seeded."""
    if viz.sample_index is not None:
        return int(viz.sample_index) % n_test
    return int(np.random.default_rng(int(seed)).integers(n_test))


def activation_figures(model: keras.Model, image: np.ndarray, max_channels: int) -> Dict[str, Any]:
    """One figure per Conv2D layer: its feature maps for one uint8 image."""
    names = conv_layer_names(model)
    if not names:
        return {}
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe(to_float(image[np.newaxis]), training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return {
        name: plots.activation_grid(np.asarray(out)[0], name, max_channels=max_channels)
        for name, out in zip(names, outputs)
    }


def activation_artifacts(model: keras.Model, image: np.ndarray, label_name: str, index: int,
                         max_channels: int) -> Dict[str, Any]:
    """``activations/input.png`` and ``activations/<conv layer>.png`` figures for one image."""
    mlflow.set_tag("activations.sample_index", str(index))
    figures = {"activations/input.png": plots.input_image_figure(image, label_name, index)}
    for name, fig in activation_figures(model, image, max_channels).items():
        figures[f"activations/{name}.png"] = fig
    return figures


def figure_to_array(fig) -> np.ndarray:
    """An RGB uint8 array of a rendered figure (for step-wise ``mlflow.log_image``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


class ActivationLogger(keras.callbacks.Callback):
    """Every N epochs, log each Conv2D layer's feature maps as a step-wise MLflow image."""

    def __init__(self, image: np.ndarray, every: int, max_channels: int):
        super().__init__()
        self.image = image
        self.every = every
        self.max_channels = max_channels

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        for name, fig in activation_figures(self.model, self.image, self.max_channels).items():
            mlflow.log_image(figure_to_array(fig), key=f"activations/{name}", step=epoch + 1)


def training_callbacks(cfg: Any, dataset: Any) -> List[keras.callbacks.Callback]:
    """Callbacks that log artifacts during training (step-wise activation maps)."""
    viz = cfg.viz
    every = int(viz.activations_every_n_epochs)
    if every <= 0 or not _wanted(viz, "activations"):
        return []
    index = sample_index(viz, int(cfg.seed), len(dataset.y_test))
    return [ActivationLogger(dataset.x_test[index], every, int(viz.max_channels))]


def requirements() -> List[str]:
    """Pinned requirements of the logged model (inferring them costs ~10 s a run)."""
    pins = []
    for dist in ("mlflow", "keras", "tensorflow-cpu", "tensorflow", "numpy"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    if any(p.startswith("tensorflow-cpu==") for p in pins):
        pins = [p for p in pins if not p.startswith("tensorflow==")]
    return pins


def log_model(model: keras.Model, x_example: np.ndarray, proba_example: np.ndarray) -> Optional[str]:
    """Log ``model`` with MLflow's Keras flavor; return its ``models:/`` URI."""
    from mlflow.models import infer_signature

    signature = infer_signature(x_example.astype(np.float32), proba_example.astype(np.float32))
    info = mlflow.keras.log_model(model, name="model", signature=signature,
                                  pip_requirements=requirements())
    return getattr(info, "model_uri", None)


def log_run_artifacts(cfg: Any, dataset: Any, result: Any, proba: np.ndarray) -> Dict[str, float]:
    """Log everything a run shows in the MLflow UI besides params and metrics.

    Returns the seconds spent per artifact (also logged as ``artifact_seconds.json``
    and, in total, as the metric ``artifact_seconds``).
    """
    viz = cfg.viz
    names = list(dataset.class_names)
    model = result.model
    y_test = dataset.y_test
    y_pred = proba.argmax(axis=1)
    timer = Timer()

    with timer("reports"):
        cm = log_confusion_matrix(y_test, y_pred, names)
        log_classification_report(y_test, y_pred, names)
        mlflow.log_text(summary_text(model), "model/summary.txt")

    figures = {}
    if _wanted(viz, "samples"):
        with timer("samples"):
            n = min(25, len(dataset.y_train))
            figures["plots/samples.png"] = plots.sample_grid(
                dataset.x_train[:n], dataset.y_train[:n], names,
                n=n, title=f"Training samples ({dataset.source})")
    if _wanted(viz, "curves"):
        with timer("curves"):
            figures["plots/curves.png"] = plots.training_curves(result.history)
    if _wanted(viz, "confusion_matrix"):
        with timer("confusion_matrix"):
            figures["plots/confusion_matrix.png"] = plots.confusion_matrix_figure(cm, names)
    if _wanted(viz, "predictions"):
        with timer("predictions"):
            n = min(int(viz.grid_size) ** 2, len(y_test))
            figures["plots/predictions.png"] = plots.prediction_grid(
                dataset.x_test[:n], y_test[:n], y_pred[:n], names, n=n)
    if _wanted(viz, "misclassified"):
        with timer("misclassified"):
            figures["plots/misclassified.png"] = plots.misclassified_grid(
                dataset.x_test, y_test, y_pred, proba.max(axis=1), names)
    if _wanted(viz, "architecture"):
        with timer("architecture"):
            figures["model/architecture.png"] = plots.architecture_diagram(
                layer_table(model), title=f"Architecture: {model.name}")
    if _wanted(viz, "activations"):
        with timer("activations"):
            index = sample_index(viz, int(cfg.seed), len(y_test))
            figures.update(activation_artifacts(model, dataset.x_test[index],
                                                names[int(y_test[index])], index,
                                                int(viz.max_channels)))

    for path, fig in figures.items():
        with timer(f"save:{path}"):
            log_figure(fig, path, dpi=int(viz.dpi))
    figures.clear()  # Figure objects are not registered with pyplot: freed here

    if cfg.mlflow.log_model:
        with timer("model"):
            x_example = to_float(dataset.x_test[:2])
            log_model(model, x_example, proba[:2])

    mlflow.log_dict(timer.seconds, "artifact_seconds.json")
    mlflow.log_metric("artifact_seconds", timer.total)
    log.info("artifacts logged in %.2fs (%s)", timer.total,
             ", ".join(f"{k} {v:.2f}s" for k, v in timer.seconds.items()))
    return timer.seconds
