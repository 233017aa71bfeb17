"""One generic builder: an architecture description (``conf/model/*.yaml``) -> a Keras model.

A description is data: a list of conv blocks and a list of dense layers. Each conv
block is ``Conv2D -> [BatchNormalization] -> activation -> [pooling] -> [Dropout]``,
each dense layer ``Dense -> [BatchNormalization] -> activation -> [Dropout]``, and the
classifier ``Dense(num_classes, softmax)`` is always appended. A new architecture is a
new YAML file; no Python is needed.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
from keras import layers

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


def _value(x: Any) -> Any:
    """An Enum's value, or the value itself (configs may hold either)."""
    return getattr(x, "value", x)


def build_model(model_cfg: Any, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES,
                augment: Optional[keras.layers.Layer] = None) -> keras.Model:
    """Build the (uncompiled) Keras model that ``model_cfg`` describes.

    Parameters
    ----------
    model_cfg : DictConfig or ModelConfig
        ``name``, ``conv_blocks``, ``head``, ``dense_layers`` and
        ``batch_norm_momentum`` as in :class:`mnist_experiments.config.schema.ModelConfig`
        (a recorded config without the key gets the schema's default when it is read).
    input_shape : tuple of int, default (28, 28, 1)
    num_classes : int, default 10
    augment : keras.layers.Layer, optional
        Training-time augmentation, put right after the input (Keras runs it in
        training only; see :mod:`mnist_experiments.training.augmentation`).

    Returns
    -------
    keras.Model
        Conv2D layers are named ``conv1``, ``conv2``, ... so that activation maps and
        summaries can refer to them.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    momentum = float(model_cfg.batch_norm_momentum)
    x = inputs if augment is None else augment(inputs)
    for i, block in enumerate(model_cfg.conv_blocks, start=1):
        x = _normalized(x, layers.Conv2D, f"conv{i}", block.activation, bool(block.batch_norm),
                        momentum=momentum, filters=int(block.filters),
                        kernel_size=int(block.kernel_size), padding=_value(block.padding))
        if block.pool_size:
            pool = layers.MaxPooling2D if _value(block.pool_type) == "max" else layers.AveragePooling2D
            x = pool(int(block.pool_size), name=f"pool{i}")(x)
        if block.dropout:
            x = layers.Dropout(float(block.dropout), name=f"conv{i}_dropout")(x)

    if _value(model_cfg.head) == "global_avg":
        x = layers.GlobalAveragePooling2D(name="global_avg")(x)
    else:
        x = layers.Flatten(name="flatten")(x)

    for i, dense in enumerate(model_cfg.dense_layers, start=1):
        x = _normalized(x, layers.Dense, f"dense{i}", dense.activation, bool(dense.batch_norm),
                        momentum=momentum, units=int(dense.units))
        if dense.dropout:
            x = layers.Dropout(float(dense.dropout), name=f"dense{i}_dropout")(x)

    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name=str(model_cfg.name))


def _normalized(x, layer_class, name: str, activation: str, batch_norm: bool,
                momentum: float, **kwargs):
    """``layer -> activation``, or ``layer (no bias) -> BatchNormalization -> activation``."""
    if not batch_norm:
        return layer_class(activation=activation, name=name, **kwargs)(x)
    x = layer_class(activation=None, use_bias=False, name=name, **kwargs)(x)
    x = layers.BatchNormalization(momentum=momentum, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


