"""The ``augment`` group: random changes to the training images, as Keras preprocessing
layers (``RandomTranslation``, ``RandomRotation``, ``RandomZoom``, ``RandomContrast``)
built in :mod:`mnist_experiments.training.augmentation`.

The layers sit at the model's input, so Keras applies them to training batches only
(validation, test and prediction pass through unchanged), each seeded from the run's
``seed``. ``none`` (the default) adds no layer: the model and its numbers are exactly
those of a config without this group, and a recorded config without an ``augment``
section is read as ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnist_experiments.config.registry import Option, Registry
from mnist_experiments.config.rules import FRACTION, bounded


@dataclass
class NoAugment:
    """The training images as they are."""
    name: str = "none"


@dataclass
class LightAugment:
    """Small shifts, turns and zooms: a digit stays the digit it was."""
    name: str = "light"
    translation: float = bounded(0.08, **FRACTION, note="a fraction of the image size")
    rotation: float = bounded(0.03, **FRACTION, note="a fraction of a full turn")
    zoom: float = bounded(0.08, **FRACTION, note="a fraction of the image size")
    contrast: float = bounded(0.0, **FRACTION, example=0.2)


@dataclass
class StrongAugment(LightAugment):
    """Larger shifts, turns and zooms, and contrast changes."""
    name: str = "strong"
    translation: float = bounded(0.12, **FRACTION, note="a fraction of the image size")
    rotation: float = bounded(0.06, **FRACTION, note="a fraction of a full turn")
    zoom: float = bounded(0.15, **FRACTION, note="a fraction of the image size")
    contrast: float = bounded(0.2, **FRACTION, example=0.2)


AUGMENTATIONS = Registry("augment", [
    Option("none", NoAugment),
    Option("light", LightAugment),
    Option("strong", StrongAugment),
], key="name", default="none")
