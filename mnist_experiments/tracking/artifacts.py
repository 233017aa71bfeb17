"""Run artifacts: figures and reports drawn from a run's results, logged to MLflow.

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

This is the last stage of a run: it receives the data, the training history and the
:class:`~mnist_experiments.training.evaluation.Evaluation` and only draws and logs; it
never calls back into Keras or the model code. The ``viz`` config switches figures off
(``viz=off`` or ``viz.<part>=false``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import matplotlib
import mlflow
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mnist_experiments import figures
from mnist_experiments.tracking import drawing
from mnist_experiments.tracking.models import log_model

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
    """Log a matplotlib figure as a PNG artifact, with the fast save settings of :mod:`figures`."""
    if dpi:
        fig.set_dpi(int(dpi))
    with matplotlib.rc_context(figures.SAVE_RC):
        mlflow.log_figure(fig, artifact_file, save_kwargs=figures.SAVEFIG_KWARGS)


def log_confusion(evaluation: Any, class_names: Sequence[str]) -> None:
    """``metrics/confusion_matrix.json``: the counts, with the class labels."""
    mlflow.log_dict({"labels": list(range(len(class_names))), "class_names": list(class_names),
                     "matrix": evaluation.confusion.tolist()}, "metrics/confusion_matrix.json")


def log_reports(evaluation: Any, class_names: Sequence[str]) -> None:
    """The confusion matrix and ``metrics/classification_report.json`` (per-class
    precision, recall, F1, support)."""
    log_confusion(evaluation, class_names)
    mlflow.log_dict(evaluation.report, "metrics/classification_report.json")


def log_fit_outcome(result: Any) -> None:
    """What the callbacks decided: ``best_epoch`` and ``kept_epoch`` (whose weights the
    model holds, tested and logged), and the checkpoint files under ``checkpoints/``."""
    if result.best_epoch is not None:
        mlflow.log_metrics({"best_epoch": result.best_epoch, "kept_epoch": result.kept_epoch})
    for path in result.checkpoints:
        mlflow.log_artifact(str(path), "checkpoints")


def wanted(viz: Any, part: str) -> bool:
    """Whether the ``viz`` config (or mapping) asks for the figure ``part``."""
    return bool(viz.get("enabled", True)) and bool(viz.get(part, True))


def activation_tasks(activations: Any, class_names: Sequence[str],
                     max_channels: int) -> List[drawing.Task]:
    """``activations/input.png`` and ``activations/<conv layer>.png`` for one image, as
    drawing tasks (the first timed as ``activations``)."""
    mlflow.set_tag("activations.sample_index", str(activations.index))
    label = class_names[activations.label]
    tasks: List[drawing.Task] = [("activations/input.png", "activations",
                                  lambda: figures.input_image_figure(
                                      activations.image, label, activations.index))]
    for name, maps in activations.maps.items():
        tasks.append((f"activations/{name}.png", f"activations:{name}",
                      lambda maps=maps, name=name: figures.activation_grid(
                          maps, name, max_channels=max_channels)))
    return tasks


def activation_figures(activations: Any, class_names: Sequence[str],
                       max_channels: int) -> Dict[str, Any]:
    """``activations/input.png`` and ``activations/<conv layer>.png`` for one image."""
    return {path: build() for path, _, build in activation_tasks(activations, class_names,
                                                                 max_channels)}


def figure_to_array(fig: Any) -> np.ndarray:
    """An RGB uint8 array of a rendered figure (for step-wise ``mlflow.log_image``)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_activation_images(maps: Dict[str, np.ndarray], step: int, max_channels: int) -> None:
    """Each Conv2D layer's feature maps as a step-wise MLflow image (``activations/<layer>``)."""
    for name, layer_maps in maps.items():
        fig = figures.activation_grid(layer_maps, name, max_channels=max_channels)
        mlflow.log_image(figure_to_array(fig), key=f"activations/{name}", step=step)


def _figure_tasks(cfg: Any, viz: Any, dataset: Any, history: Dict[str, List[float]],
                  evaluation: Any, augmented: Optional[Any]) -> List[drawing.Task]:
    """What to draw, as (artifact path, timer name, builder) in the order they are drawn.

    The builders only read arrays and plain values (never the Keras model), so that a
    forked process can run them (:func:`~mnist_experiments.tracking.drawing.draw_files`).
    """
    names = list(dataset.class_names)
    y_test, y_pred, proba = dataset.y_test, evaluation.y_pred, evaluation.proba
    tasks: List[drawing.Task] = []
    if wanted(viz, "samples"):
        n = min(25, len(dataset.y_train))
        x, y, title = dataset.x_train[:n], dataset.y_train[:n], f"Training samples ({dataset.source})"
        tasks.append(("plots/samples.png", "samples",
                      lambda: figures.sample_grid(x, y, names, n=n, title=title)))
    if augmented is not None and wanted(viz, "samples"):
        images, labels, versions = augmented
        title_aug = f"Training augmentation ({cfg.augment.name})"
        tasks.append(("plots/augment_samples.png", "augment_samples",
                      lambda: figures.augmentation_grid(images, versions, labels, names,
                                                        title=title_aug)))
    if wanted(viz, "curves"):
        tasks.append(("plots/curves.png", "curves", lambda: figures.training_curves(history)))
    if wanted(viz, "confusion_matrix"):
        confusion = evaluation.confusion
        tasks.append(("plots/confusion_matrix.png", "confusion_matrix",
                      lambda: figures.confusion_matrix_figure(confusion, names)))
    if wanted(viz, "predictions"):
        k = min(int(viz.grid_size) ** 2, len(y_test))
        tasks.append(("plots/predictions.png", "predictions", lambda: figures.prediction_grid(
            dataset.x_test[:k], y_test[:k], y_pred[:k], names, n=k)))
    if wanted(viz, "misclassified"):
        confidence = proba.max(axis=1)
        tasks.append(("plots/misclassified.png", "misclassified",
                      lambda: figures.misclassified_grid(dataset.x_test, y_test, y_pred,
                                                         confidence, names)))
    if wanted(viz, "architecture"):
        layers, title_arch = evaluation.layers, f"Architecture: {evaluation.model.name}"
        tasks.append(("model/architecture.png", "architecture",
                      lambda: figures.architecture_diagram(layers, title=title_arch)))
    if wanted(viz, "activations") and evaluation.activations is not None:
        tasks += activation_tasks(evaluation.activations, names, int(viz.max_channels))
    return tasks


def log_run_artifacts(cfg: Any, dataset: Any, history: Dict[str, List[float]],
                      evaluation: Any, augmented: Optional[Any] = None,
                      draw: bool = True, workers: int = 1) -> Dict[str, float]:
    """Log everything a run shows in the MLflow UI besides params and metrics.

    ``augmented``: (images, labels, augmented versions) of a few training images, drawn
    as ``plots/augment_samples.png`` (a run with ``augment`` other than ``none``).
    ``draw=False`` (a sweep job that is not the best so far) logs the reports, the
    model summary and the model, and draws no figure. ``workers``: cores free for
    drawing (2: half of the figures are drawn by a forked process,
    :mod:`~mnist_experiments.tracking.drawing`).

    Returns the seconds spent per artifact (also logged as ``artifact_seconds.json``
    and, in total, as the metric ``artifact_seconds``).
    """
    viz = cfg.viz if draw else {"enabled": False}
    names = list(dataset.class_names)
    timer = Timer()

    with timer("reports"):
        log_reports(evaluation, names)
        mlflow.log_text(evaluation.summary, "model/summary.txt")

    tasks = _figure_tasks(cfg, viz, dataset, history, evaluation, augmented)
    if tasks:
        with tempfile.TemporaryDirectory(prefix="mnist-exp-figures-") as out:
            with timer("figures"):  # their wall time; per figure below (in parallel)
                steps = drawing.draw_files(tasks, Path(out), int(cfg.viz.dpi),
                                           workers=workers)
            with timer("log_figures"):
                mlflow.log_artifacts(out)

    if cfg.mlflow.log_model:
        with timer("model"):
            log_model(evaluation.model, *evaluation.example(dataset.x_test))

    total = timer.total  # wall time: the stages above ran one after the other
    if tasks:
        timer.seconds.update(steps)
    mlflow.log_dict(timer.seconds, "artifact_seconds.json")
    mlflow.log_metric("artifact_seconds", total)
    slowest = sorted(timer.seconds.items(), key=lambda item: -item[1])[:3]
    log.info("artifacts logged in %.1fs (slowest: %s)", total,  # all: artifact_seconds
             ", ".join(f"{k.rpartition('/')[2]} {v:.1f}s" for k, v in slowest))
    log.debug("artifact seconds: %s", timer.seconds)
    return timer.seconds
