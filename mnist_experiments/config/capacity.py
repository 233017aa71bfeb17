"""What an architecture costs, computed from its description alone (no Keras).

:func:`count_parameters` is the arithmetic of :func:`mnist_experiments.models.builder.
build_model` (``tests/test_inputs.py`` checks it against Keras' ``count_params()`` for
every packaged architecture): a conv block is ``Conv2D -> [BatchNorm] -> activation ->
[pooling] -> [dropout]``, a dense layer ``Dense -> [BatchNorm] -> activation ->
[dropout]``, then ``Dense(10)``. With batch norm the layer has no bias and the batch
norm layer holds four values per unit (scale, offset, moving mean and variance).

A model over :data:`MAX_PARAMETERS` is refused by
:func:`mnist_experiments.config.validation.validate` before anything is built: each
parameter costs 4 bytes, and as much again for its gradient and each optimizer slot
(Adam: two), so ``model.dense_layers.0.units=3000000`` (7.5 billion parameters) would
need over 100 GiB.
"""

from __future__ import annotations

from typing import Any, List

IMAGE_SIZE = 28
CHANNELS = 1
NUM_CLASSES = 10
# 50 million parameters: 200 MB of weights, under 1 GB with gradients and Adam's slots.
# The packaged models have 3,410 to about 420,000.
MAX_PARAMETERS = 50_000_000


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


def capacity_problems(model_cfg: Any) -> List[str]:
    """A message if the model has more than :data:`MAX_PARAMETERS` parameters."""
    count = count_parameters(model_cfg)
    if count <= MAX_PARAMETERS:
        return []
    return [
        f"model '{model_cfg.name}' has {count:,} parameters, more than the limit of "
        f"{MAX_PARAMETERS:,} (MAX_PARAMETERS in mnist_experiments/config/capacity.py): "
        f"training it would need about {count * 16 / 2**30:.1f} GiB for the weights, "
        "their gradients and the optimizer's state. Use fewer units or filters "
        "(model.dense_layers.N.units, model.conv_blocks.N.filters), more pooling, or "
        "head=global_avg."
    ]
