"""Typed schema of the composed config (Hydra structured configs).

The YAML files under ``conf/`` are validated against these dataclasses: an unknown key
or a value of the wrong type is an error at composition time, not a silent default.
Ranges and cross-field rules (epochs >= 1, an architecture that keeps the image at
least 1x1, ...) are checked by :func:`validate` before anything is built or logged.

This module imports neither TensorFlow nor MLflow, so ``mnist-exp --help`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from mnist_experiments.errors import ConfigError

IMAGE_SIZE = 28

# Keras activation names accepted in model configs (checked without importing Keras).
ACTIVATIONS = frozenset({
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish",
    "tanh", "sigmoid", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
    "exponential", "linear",
})


# --------------------------------------------------------------------------- data
class Validation(str, Enum):
    """Where the validation set comes from."""

    test_halves = "test_halves"  # the notebooks: first half of the test set; test = second half
    holdout = "holdout"  # a stratified ``val_fraction`` of the training set


@dataclass
class DataConfig:
    name: str = MISSING  # mnist | fashion_mnist | digits (selects the built-in loader)
    path: Optional[str] = None  # a Keras-layout .npz or a directory of MNIST IDX files
    validation: Validation = Validation.holdout
    val_fraction: float = 0.1
    limit: Optional[int] = None  # cap on the number of training and test images
    class_names: List[str] = field(default_factory=lambda: [str(i) for i in range(10)])


# -------------------------------------------------------------------------- model
class Padding(str, Enum):
    valid = "valid"
    same = "same"


class Pooling(str, Enum):
    max = "max"
    avg = "avg"


class Head(str, Enum):
    flatten = "flatten"
    global_avg = "global_avg"


@dataclass
class ConvBlock:
    """Conv2D -> [BatchNorm] -> activation -> [pooling] -> [dropout]."""

    filters: int = MISSING
    kernel_size: int = 3
    padding: Padding = Padding.valid
    activation: str = "relu"
    batch_norm: bool = False
    pool_size: Optional[int] = 2  # null: no pooling after this block
    pool_type: Pooling = Pooling.max
    dropout: float = 0.0


@dataclass
class DenseLayer:
    """Dense -> [BatchNorm] -> activation -> [dropout]."""

    units: int = MISSING
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0


@dataclass
class ModelConfig:
    name: str = MISSING
    conv_blocks: List[ConvBlock] = field(default_factory=list)
    head: Head = Head.flatten
    dense_layers: List[DenseLayer] = field(default_factory=list)


# ---------------------------------------------------------------------- optimizer
@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    learning_rate: float = 0.001


@dataclass
class RMSpropConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.RMSprop"
    rho: float = 0.9
    momentum: float = 0.0
    epsilon: float = 1e-7


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.Adam"
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    amsgrad: bool = False


@dataclass
class AdamWConfig(AdamConfig):
    _target_: str = "keras.optimizers.AdamW"
    weight_decay: float = 0.004


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "keras.optimizers.SGD"
    learning_rate: float = 0.01
    momentum: float = 0.0
    nesterov: bool = False


# ----------------------------------------------------------------------------- cv
@dataclass
class HoldoutConfig:
    name: str = "holdout"


@dataclass
class KFoldConfig:
    name: str = "kfold"
    folds: int = 5
    shuffle: bool = True
    stratified: bool = True
    refit: bool = True


# ------------------------------------------------------------------ train, mlflow
@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    # Bit-identical re-runs on the same machine and software (TensorFlow op determinism).
    deterministic: bool = True
    jit_compile: bool = False  # XLA; measured slower for these small CNNs on CPU
    # Training steps per tf.function call: ~9% faster per epoch than 1 for seed_cnn on
    # CPU (less Python between steps), with bit-identical results.
    steps_per_execution: int = 8
    shuffle_buffer: Optional[int] = None  # null: a full shuffle of the training set


@dataclass
class MlflowConfig:
    # null: $MLFLOW_TRACKING_URI, else sqlite:///<launch dir>/mlflow.db
    tracking_uri: Optional[str] = None
    experiment_name: str = "mnist-experiments"
    run_name: Optional[str] = None  # null: built from the command-line overrides
    log_model: bool = True
    # Register the trained model under this name (in a sweep: the best job's model).
    register_as: Optional[str] = None
    register_alias: Optional[str] = None  # e.g. champion -> models:/<name>@champion


@dataclass
class VizConfig:
    enabled: bool = True  # master switch for every figure and activation image
    samples: bool = True
    curves: bool = True
    confusion_matrix: bool = True
    predictions: bool = True
    misclassified: bool = True
    activations: bool = True
    architecture: bool = True
    sample_index: Optional[int] = None  # test image for activation maps; null: chosen by the seed
    max_channels: int = 16  # feature maps shown per Conv2D layer
    grid_size: int = 5  # the predictions grid is grid_size x grid_size
    activations_every_n_epochs: int = 0  # 0: only after training
    dpi: int = 100


@dataclass
class Config:
    seed: int = 42
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING  # validated by the option's own schema (see conf/optimizer)
    cv: Any = MISSING  # validated by the option's own schema (see conf/cv)
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    viz: VizConfig = field(default_factory=VizConfig)


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/data", name="data", node=DataConfig)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    for name, node in {
        "rmsprop": RMSpropConfig,
        "adam": AdamConfig,
        "adamw": AdamWConfig,
        "sgd": SGDConfig,
    }.items():
        cs.store(group="schema/optimizer", name=name, node=node)
    cs.store(group="schema/cv", name="holdout", node=HoldoutConfig)
    cs.store(group="schema/cv", name="kfold", node=KFoldConfig)


# ------------------------------------------------------------------- validation
def conv_output_size(size: int, block: Any) -> int:
    """Spatial size after one conv block (padding, then pooling)."""
    padding = getattr(block.padding, "value", block.padding)
    if padding == "valid":
        size = size - block.kernel_size + 1
    if block.pool_size:
        size = size // block.pool_size
    return size


def _range_problems(cfg: DictConfig) -> List[str]:
    problems: List[str] = []

    def need(ok: bool, key: str, value: Any, rule: str, fix: str) -> None:
        if not ok:
            problems.append(f"{key}={value!r} is invalid: {rule}. {fix}")

    t = cfg.train
    need(t.epochs >= 1, "train.epochs", t.epochs, "it must be at least 1", "Try train.epochs=5.")
    need(t.batch_size >= 1, "train.batch_size", t.batch_size, "it must be at least 1",
         "Try train.batch_size=64.")
    need(t.steps_per_execution >= 1, "train.steps_per_execution", t.steps_per_execution,
         "it must be at least 1", "Try train.steps_per_execution=1.")
    if t.shuffle_buffer is not None:
        need(t.shuffle_buffer >= 1, "train.shuffle_buffer", t.shuffle_buffer,
             "it must be at least 1 (or null for a full shuffle)", "Try train.shuffle_buffer=null.")

    d = cfg.data
    need(0.0 < d.val_fraction < 1.0, "data.val_fraction", d.val_fraction,
         "it must lie strictly between 0 and 1", "Try data.val_fraction=0.1.")
    if d.limit is not None:
        need(d.limit >= 20, "data.limit", d.limit,
             "it must be at least 20 (two images per class) or null for all images",
             "Try data.limit=500.")
    need(len(d.class_names) == 10, "data.class_names", list(d.class_names),
         "it must name exactly 10 classes", "Give one name per label 0-9.")

    opt = cfg.optimizer
    lr = opt.get("learning_rate")
    if isinstance(lr, (int, float)):
        need(lr > 0 and math.isfinite(lr), "optimizer.learning_rate", lr,
             "it must be a positive number", "Try optimizer.learning_rate=0.001.")
    for key in ("momentum", "weight_decay"):
        value = opt.get(key)
        if isinstance(value, (int, float)):
            need(value >= 0, f"optimizer.{key}", value, "it must not be negative",
                 f"Try optimizer.{key}=0.0.")

    m = cfg.model
    size = IMAGE_SIZE
    for i, block in enumerate(m.conv_blocks):
        key = f"model.conv_blocks.{i}"
        need(block.filters >= 1, f"{key}.filters", block.filters, "it must be at least 1",
             f"Try {key}.filters=32.")
        need(block.kernel_size >= 1, f"{key}.kernel_size", block.kernel_size,
             "it must be at least 1", f"Try {key}.kernel_size=3.")
        need(0.0 <= block.dropout < 1.0, f"{key}.dropout", block.dropout,
             "it must lie in [0, 1)", f"Try {key}.dropout=0.25.")
        need(block.activation in ACTIVATIONS, f"{key}.activation", block.activation,
             "it is not a Keras activation", f"Use one of {', '.join(sorted(ACTIVATIONS))}.")
        if block.pool_size is not None:
            need(block.pool_size >= 1, f"{key}.pool_size", block.pool_size,
                 "it must be at least 1 (or null for no pooling)", f"Try {key}.pool_size=2.")
        if problems:
            continue
        new_size = conv_output_size(size, block)
        if new_size < 1:
            problems.append(
                f"model '{m.name}' shrinks the 28x28 image below 1x1 at {key} "
                f"(a {size}x{size} input, kernel {block.kernel_size}, padding "
                f"{getattr(block.padding, 'value', block.padding)}, pool {block.pool_size} "
                f"gives {new_size}x{new_size}). Use padding=same, a smaller kernel or pool, "
                "or fewer conv blocks."
            )
            break
        size = new_size
    for i, layer in enumerate(m.dense_layers):
        key = f"model.dense_layers.{i}"
        need(layer.units >= 1, f"{key}.units", layer.units, "it must be at least 1",
             f"Try {key}.units=64.")
        need(0.0 <= layer.dropout < 1.0, f"{key}.dropout", layer.dropout,
             "it must lie in [0, 1)", f"Try {key}.dropout=0.5.")
        need(layer.activation in ACTIVATIONS, f"{key}.activation", layer.activation,
             "it is not a Keras activation", f"Use one of {', '.join(sorted(ACTIVATIONS))}.")

    cv = cfg.cv
    if cv.get("name") == "kfold":
        need(cv.folds >= 2, "cv.folds", cv.folds, "k-fold needs at least 2 folds",
             "Try cv.folds=3, or cv=holdout for a single split.")

    v = cfg.viz
    need(v.max_channels >= 1, "viz.max_channels", v.max_channels, "it must be at least 1",
         "Try viz.max_channels=16.")
    need(v.grid_size >= 1, "viz.grid_size", v.grid_size, "it must be at least 1",
         "Try viz.grid_size=5.")
    need(v.activations_every_n_epochs >= 0, "viz.activations_every_n_epochs",
         v.activations_every_n_epochs, "it must be 0 (off) or a positive number of epochs",
         "Try viz.activations_every_n_epochs=1.")
    if v.sample_index is not None:
        need(v.sample_index >= 0, "viz.sample_index", v.sample_index,
             "it must not be negative", "Try viz.sample_index=0 or null.")
    return problems


def validate(cfg: DictConfig) -> None:
    """Check ranges and cross-field rules of a composed config.

    Raises
    ------
    ConfigError
        Naming every bad value and how to fix it. Nothing has been built or logged.
    """
    from mnist_experiments.config.safety import check_targets  # no heavy imports

    if not isinstance(cfg.optimizer, DictConfig) or "_target_" not in cfg.optimizer:
        raise ConfigError(
            f"optimizer={OmegaConf.to_container(cfg.optimizer) if isinstance(cfg.optimizer, DictConfig) else cfg.optimizer!r} "
            "is not an optimizer config. Choose one with optimizer=rmsprop|adam|adamw|sgd."
        )
    if not isinstance(cfg.cv, DictConfig) or "name" not in cfg.cv:
        raise ConfigError(f"cv={cfg.cv!r} is not a cross-validation config. "
                          "Choose one with cv=holdout or cv=kfold.")
    check_targets(cfg)
    problems = _range_problems(cfg)
    if problems:
        raise ConfigError("Invalid config: " + " ".join(problems))
