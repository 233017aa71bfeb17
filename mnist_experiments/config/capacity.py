"""What an architecture costs, computed from its description alone (no Keras).

:func:`count_parameters` is the arithmetic of :func:`mnist_experiments.models.builder.
build_model` (``tests/test_inputs.py`` checks it against Keras' ``count_params()`` for
every packaged architecture): a conv block is ``Conv2D -> [BatchNorm] -> activation ->
[pooling] -> [dropout]``, a dense layer ``Dense -> [BatchNorm] -> activation ->
[dropout]``, then ``Dense(10)``. With batch norm the layer has no bias and the batch
norm layer holds four values per unit (scale, offset, moving mean and variance).

:func:`count_activations` estimates the values a training batch keeps in memory for
the backward pass. A model over :data:`MAX_PARAMETERS`, or a batch over
:data:`MAX_BATCH_ACTIVATIONS`, is refused by
:func:`mnist_experiments.config.validation.validate` before anything is built: each
parameter costs 4 bytes, and as much again for its gradient and each optimizer slot
(Adam: two), so ``model.dense_layers.0.units=3000000`` (1.76 billion parameters in
seed_cnn) would need about 26 GiB.
"""

from __future__ import annotations

from typing import Any, List

IMAGE_SIZE = 28
CHANNELS = 1
NUM_CLASSES = 10
# 50 million parameters: 200 MB of weights, under 1 GB with gradients and Adam's slots.
# The packaged models have 3,410 (seed_tiny) to 468,778 (bn_cnn).
MAX_PARAMETERS = 50_000_000
# 2**30 layer outputs per training batch: 4 GiB of float32 kept for the backward pass.
# bn_cnn, the largest packaged model, outputs about 245,000 values per image (7.8
# million for a batch of 32, 1.0 billion for 4096); Conv2D(100000 filters, padding same) would need
# 78 million per image.
MAX_BATCH_ACTIVATIONS = 2**30


def _value(x: Any) -> Any:
    return getattr(x, "value", x)


def conv_output_size(size: int, block: Any) -> int:
    """Spatial size after one conv block (padding, then pooling)."""
    if _value(block.padding) == "valid":
        size = size - int(block.kernel_size) + 1
    if block.pool_size:
        size = size // int(block.pool_size)
    return size


def _layer(inputs: int, units: int, batch_norm: bool) -> int:
    """Weights of a layer with ``units`` outputs and ``inputs`` values per output."""
    return inputs * units + (4 * units if batch_norm else units)


def count_parameters(model_cfg: Any, image_size: int = IMAGE_SIZE, channels: int = CHANNELS,
                     num_classes: int = NUM_CLASSES) -> int:
    """The parameter count Keras' ``count_params()`` gives the built model.

    ``model_cfg`` must keep the image at least 1x1 (checked by validate first).
    """
    size, depth, total = image_size, channels, 0
    for block in model_cfg.conv_blocks:
        kernel = int(block.kernel_size)
        filters = int(block.filters)
        total += _layer(kernel * kernel * depth, filters, bool(block.batch_norm))
        size, depth = conv_output_size(size, block), filters
    features = depth if _value(model_cfg.head) == "global_avg" else size * size * depth
    for dense in model_cfg.dense_layers:
        total += _layer(features, int(dense.units), bool(dense.batch_norm))
        features = int(dense.units)
    return total + _layer(features, num_classes, False)


def count_activations(model_cfg: Any, image_size: int = IMAGE_SIZE) -> int:
    """Values the layers output for one image (what training keeps for the backward
    pass): each conv or dense layer's output, again for its batch norm and separate
    activation if it has batch norm, after pooling, after dropout."""
    size, total = image_size, 0
    for block in model_cfg.conv_blocks:
        filters = int(block.filters)
        convolved = size - int(block.kernel_size) + 1 if _value(block.padding) == "valid" \
            else size
        total += convolved * convolved * filters * (3 if block.batch_norm else 1)
        size = conv_output_size(size, block)
        if block.pool_size:
            total += size * size * filters
        if block.dropout:
            total += size * size * filters
    for dense in model_cfg.dense_layers:
        units = int(dense.units)
        total += units * (3 if dense.batch_norm else 1) + (units if dense.dropout else 0)
    return total


def capacity_problems(model_cfg: Any, batch_size: int = 1) -> List[str]:
    """Messages if the model has more than :data:`MAX_PARAMETERS` parameters, or a
    training batch more than :data:`MAX_BATCH_ACTIVATIONS` layer outputs."""
    problems = _activation_problems(model_cfg, batch_size)
    count = count_parameters(model_cfg)
    if count <= MAX_PARAMETERS:
        return problems
    return problems + [
        f"model '{model_cfg.name}' has {count:,} parameters, more than the limit of "
        f"{MAX_PARAMETERS:,} (MAX_PARAMETERS in mnist_experiments/config/capacity.py): "
        f"training it would need about {count * 16 / 2**30:.1f} GiB for the weights, "
        "their gradients and the optimizer's state. Use fewer units or filters "
        "(model.dense_layers.N.units, model.conv_blocks.N.filters), more pooling, or "
        "head=global_avg."
    ]


def _activation_problems(model_cfg: Any, batch_size: int) -> List[str]:
    per_image = count_activations(model_cfg)
    total = per_image * int(batch_size)
    if total <= MAX_BATCH_ACTIVATIONS:
        return []
    return [
        f"model '{model_cfg.name}' outputs {per_image:,} values per image in its layers, "
        f"{total:,} for a batch of train.batch_size={batch_size}: more than the limit of "
        f"{MAX_BATCH_ACTIVATIONS:,} (MAX_BATCH_ACTIVATIONS in mnist_experiments/config/"
        f"capacity.py), about {total * 4 / 2**30:.1f} GiB kept for the backward pass. Use "
        "fewer filters, more pooling (model.conv_blocks.N.pool_size) or a smaller "
        "train.batch_size."
    ]
