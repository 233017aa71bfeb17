"""Figures: NumPy arrays in, a Matplotlib ``Figure`` out; one module per kind of figure.

``from mnist_experiments import figures`` then ``figures.sample_grid(...)`` and
``figures.save_png(fig, path)``. Every figure is built without pyplot and laid out by
Matplotlib's constrained layout (see :mod:`.style`). Nothing here imports TensorFlow,
Keras or MLflow.
"""

from mnist_experiments.figures.architecture import architecture_diagram
from mnist_experiments.figures.augmentation import augmentation_grid
from mnist_experiments.figures.confusion import confusion_matrix_figure
from mnist_experiments.figures.curves import fold_curves, fold_summary, training_curves
from mnist_experiments.figures.images import (
    activation_grid,
    input_image_figure,
    misclassified_grid,
    prediction_grid,
    sample_grid,
)
from mnist_experiments.figures.style import SAVE_RC, SAVEFIG_KWARGS, save_png
from mnist_experiments.figures.sweeps import objective_per_job

__all__ = [
    "sample_grid",
    "augmentation_grid",
    "training_curves",
    "confusion_matrix_figure",
    "prediction_grid",
    "misclassified_grid",
    "input_image_figure",
    "activation_grid",
    "architecture_diagram",
    "fold_curves",
    "fold_summary",
    "objective_per_job",
    "save_png",
    "SAVE_RC",
    "SAVEFIG_KWARGS",
]
