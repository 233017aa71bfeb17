"""The ``optimizer`` group: Keras optimizers, each typed by its schema.

Adding an optimizer: a dataclass here, its :class:`Option` in :data:`OPTIMIZERS`, and
``conf/optimizer/<name>.yaml`` (defaults ``/schema/optimizer@_here_: <name>``).
Range rules sit on the fields (:func:`~mnist_experiments.config.rules.bounded`).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from mnist_experiments.config.registry import Option, Registry
from mnist_experiments.config.rules import FRACTION, bounded


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    learning_rate: float = bounded(0.001, gt=0.0)


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.RMSprop"
    rho: float = bounded(0.9, **FRACTION)
    momentum: float = bounded(0.0, ge=0.0)
    epsilon: float = bounded(1e-7, gt=0.0, example=1e-7)


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Adam"
    beta_1: float = bounded(0.9, **FRACTION)
    beta_2: float = bounded(0.999, **FRACTION)
    epsilon: float = bounded(1e-7, gt=0.0, example=1e-7)
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "keras.optimizers.AdamW"
    weight_decay: float = bounded(0.004, ge=0.0)


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.SGD"
    learning_rate: float = bounded(0.01, gt=0.0)
    momentum: float = bounded(0.0, ge=0.0)
    nesterov: bool = False


@dataclass
class NadamConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Nadam"
    beta_1: float = bounded(0.9, **FRACTION)
    beta_2: float = bounded(0.999, **FRACTION)
    epsilon: float = bounded(1e-7, gt=0.0, example=1e-7)


@dataclass
class AdamaxConfig(NadamConfig):
    _target_: str = "keras.optimizers.Adamax"


@dataclass
class AdagradConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Adagrad"
    initial_accumulator_value: float = bounded(0.1, ge=0.0)
    epsilon: float = bounded(1e-7, gt=0.0, example=1e-7)


@dataclass
class AdadeltaConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Adadelta"
    rho: float = bounded(0.95, **FRACTION)
    epsilon: float = bounded(1e-7, gt=0.0, example=1e-7)


@dataclass
class LionConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Lion"
    learning_rate: float = bounded(0.0001, gt=0.0)
    beta_1: float = bounded(0.9, **FRACTION)
    beta_2: float = bounded(0.99, **FRACTION)


OPTIMIZERS = Registry("optimizer", [
    Option("rmsprop", RMSpropConfig),
    Option("adam", AdamConfig),
    Option("adamw", AdamWConfig),
    Option("sgd", SGDConfig),
    Option("nadam", NadamConfig),
    Option("adamax", AdamaxConfig),
    Option("adagrad", AdagradConfig),
    Option("adadelta", AdadeltaConfig),
    Option("lion", LionConfig),
])
