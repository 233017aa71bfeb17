"""Training-time augmentation: Keras preprocessing layers from the ``augment`` config.

:func:`augmenter` builds a ``keras.Sequential`` of ``RandomTranslation``,
``RandomRotation``, ``RandomZoom`` and ``RandomContrast`` (those with a non-zero
amount), each seeded from the run's seed. The model builder puts it right after the
input, where Keras runs it in training only: validation, test and prediction batches
pass through unchanged, and the logged model carries it, inactive, so that reloading
it needs nothing else. :func:`augmented_samples` shows what it does, with a separate
instance, so that drawing it never moves the training's random state.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np

from mnist_experiments.training.pipeline import to_float

# per-layer seed offsets, so that the layers draw different random numbers
_SEED_OFFSETS = {"translation": 101, "rotation": 202, "zoom": 303, "contrast": 404}


def augmenter(cfg: Any) -> Optional[keras.Sequential]:
    """The augmentation layers of ``cfg.augment``; None for ``none`` (no layer at all)."""
    node = cfg.get("augment") or {"name": "none"}
    if node["name"] == "none":
        return None
    seed = int(cfg.seed)
    amount = {key: float(node.get(key, 0.0)) for key in _SEED_OFFSETS}
    fill = dict(fill_mode="constant", fill_value=0.0)  # digits on black: pad with black
    layers = []
    if amount["translation"]:
        layers.append(keras.layers.RandomTranslation(
            amount["translation"], amount["translation"], **fill,
            seed=seed + _SEED_OFFSETS["translation"], name="random_translation"))
    if amount["rotation"]:
        layers.append(keras.layers.RandomRotation(
            amount["rotation"], **fill, seed=seed + _SEED_OFFSETS["rotation"],
            name="random_rotation"))
    if amount["zoom"]:
        layers.append(keras.layers.RandomZoom(
            amount["zoom"], **fill, seed=seed + _SEED_OFFSETS["zoom"], name="random_zoom"))
    if amount["contrast"]:
        layers.append(keras.layers.RandomContrast(
            amount["contrast"], value_range=(0.0, 1.0), seed=seed + _SEED_OFFSETS["contrast"],
            name="random_contrast"))
    return keras.Sequential(layers, name="augment") if layers else None


def augmented_samples(cfg: Any, images: np.ndarray, variants: int = 3) -> Optional[np.ndarray]:
    """``variants`` augmented versions of each uint8 image, shape (variants, n, 28, 28),
    from a fresh augmenter with the run's seeds; None for ``augment=none``."""
    layer = augmenter(cfg)
    if layer is None:
        return None
    x = to_float(images)
    out = [keras.ops.convert_to_numpy(layer(x, training=True))[..., 0] for _ in range(variants)]
    return np.stack(out)
