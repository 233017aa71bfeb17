"""Typed schema of the composed config (Hydra structured configs).

The YAML files under ``conf/`` are validated against these dataclasses: an unknown key
or a value of the wrong type is an error at composition time, not a silent default.
Range rules sit on the fields (``bounded(5, ge=1)``, see :mod:`.rules`); they and the
cross-field rules (an architecture that keeps the image at least 1x1, ...) are checked
by :func:`mnist_experiments.config.validation.validate` before anything is built or
logged. The options of the ``optimizer``, ``cv`` and ``schedule`` groups are typed by
their registries (:mod:`.optimizer`, :mod:`.cv`, :mod:`.schedule`).

This module imports neither TensorFlow nor MLflow, so ``mnist-exp --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from mnist_experiments.config.capacity import NUM_CLASSES
from mnist_experiments.config.options import REGISTRIES
from mnist_experiments.config.rules import bounded

# two images per class: mnist_experiments.data.MIN_LIMIT, which the loader checks too
# (a constant here: importing the data package would load NumPy into `mnist-exp --help`)
MIN_LIMIT = 2 * NUM_CLASSES

IMAGE_SIZE = 28
# oneDNN's instruction sets (ONEDNN_MAX_CPU_ISA), from the smallest to the largest
ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI",
        "AVX512_CORE_BF16", "AVX512_CORE_AMX")
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seed range
LOSSES = frozenset({"crossentropy", "focal"})

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
    val_fraction: float = bounded(0.1, gt=0.0, lt=1.0)
    # cap on the number of training and test images
    limit: Optional[int] = bounded(None, ge=MIN_LIMIT, example=500,
                                   note="two images per class, or null for all images")
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

    filters: int = bounded(MISSING, ge=1, example=32)
    kernel_size: int = bounded(3, ge=1)
    padding: Padding = Padding.valid
    activation: str = bounded("relu", choices=ACTIVATIONS)
    batch_norm: bool = False
    pool_size: Optional[int] = bounded(2, ge=1, note="or null for no pooling")
    pool_type: Pooling = Pooling.max
    dropout: float = bounded(0.0, ge=0.0, lt=1.0, example=0.25)


@dataclass
class DenseLayer:
    """Dense -> [BatchNorm] -> activation -> [dropout]."""

    units: int = bounded(MISSING, ge=1, example=64)
    activation: str = bounded("relu", choices=ACTIVATIONS)
    batch_norm: bool = False
    dropout: float = bounded(0.0, ge=0.0, lt=1.0, example=0.5)


@dataclass
class ModelConfig:
    name: str = MISSING
    conv_blocks: List[ConvBlock] = field(default_factory=list)
    head: Head = Head.flatten
    dense_layers: List[DenseLayer] = field(default_factory=list)
    # keras.layers.BatchNormalization's momentum for its moving mean and variance, which
    # inference uses. Keras's 0.99 needs a few hundred steps to settle: lower it for
    # small data (8,000 images at batch 128 are ~60 steps an epoch).
    batch_norm_momentum: float = bounded(0.99, ge=0.0, lt=1.0, example=0.9)


# ------------------------------------------------------------------ train, mlflow
@dataclass
class TrainConfig:
    epochs: int = bounded(5, ge=1)
    batch_size: int = bounded(32, ge=1, example=64)
    # Bit-identical re-runs on the same machine and software (TensorFlow op determinism).
    deterministic: bool = True
    jit_compile: bool = False  # XLA; measured slower for these small CNNs on CPU
    # Training steps per tf.function call: ~9% faster per epoch than 1 for seed_cnn on
    # CPU (less Python between steps), with bit-identical results.
    steps_per_execution: int = bounded(8, ge=1, example=1)
    # null: a full shuffle of the training set
    shuffle_buffer: Optional[int] = bounded(None, ge=1, note="or null for a full shuffle")
    # TensorFlow's intra- and inter-op thread counts. They change the numbers, not only
    # the speed, so they are part of the config: null means the cores this process may
    # use, resolved to a number when the run starts and recorded with the run (and
    # re-applied by mnist-exp-reproduce, so a run made on 1 core reproduces on 2).
    threads: Optional[int] = bounded(None, ge=1, le=512, example=2,
                                     note="or null for the cores this process may use")
    # oneDNN's kernels on or off, and the largest instruction set its kernels may use
    # (ONEDNN_MAX_CPU_ISA). They change the numbers too; null: what TensorFlow picks on
    # this CPU, resolved and recorded when the run starts (see launch/numerics.py).
    onednn: Optional[bool] = None
    cpu_isa: Optional[str] = bounded(None, choices=ISAS)
    # The training loss: crossentropy (Keras' sparse categorical cross-entropy, or the
    # categorical one on one-hot labels when label_smoothing > 0) or focal (Keras'
    # CategoricalFocalCrossentropy, which weighs hard images more by focal_gamma).
    # test_loss stays the plain cross-entropy of the test predictions, comparable
    # across losses.
    loss: str = bounded("crossentropy", choices=LOSSES)
    label_smoothing: float = bounded(0.0, ge=0.0, lt=1.0, example=0.1)
    focal_gamma: float = bounded(2.0, ge=0.0)


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
    # MLflow's system metrics (CPU, memory, disk, network) every 2 s of the run; null:
    # on for a single run, off for a sweep's jobs (its parent's dashboard would count
    # the same machine once per parallel job)
    system_metrics: Optional[bool] = None


class SweepFigures(str, Enum):
    """Which jobs of a sweep draw the figures and activation maps."""

    best = "best"  # the jobs that are the sweep's best so far when they end
    all = "all"  # every job


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
    # test image for activation maps; null: chosen by the seed
    sample_index: Optional[int] = bounded(None, ge=0, example=0)
    max_channels: int = bounded(16, ge=1)  # feature maps shown per Conv2D layer
    grid_size: int = bounded(5, ge=1)  # the predictions grid is grid_size x grid_size
    # 0: only after training
    activations_every_n_epochs: int = bounded(0, ge=0, example=1, note="0 is off")
    dpi: int = bounded(100, ge=10, le=600)
    # in a sweep: best (a job draws the figures only if it is the best job so far, so
    # the sweep's best job always has them) or all (every job draws them)
    sweep_figures: SweepFigures = SweepFigures.best


@dataclass
class Config:
    seed: int = bounded(42, ge=0, le=MAX_SEED)
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    optimizer: Any = MISSING  # typed by the schema its _target_ selects (config/optimizer.py)
    cv: Any = MISSING  # typed by the schema its name selects (config/cv.py)
    # typed by the schema its name selects (config/schedule.py); a recorded config
    # without one trained with a constant learning rate
    schedule: Any = field(default_factory=lambda: {"name": "constant"})
    # Keras callbacks by name, each typed by the schema its _target_ selects
    # (config/callbacks.py); none by default
    callbacks: Dict[str, Any] = field(default_factory=dict)
    # random changes to training images (config/augment.py); none before this group
    augment: Any = field(default_factory=lambda: {"name": "none"})
    train: TrainConfig = field(default_factory=TrainConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    viz: VizConfig = field(default_factory=VizConfig)
    # mnist-exp resume=<run id>: continue that interrupted run from its last epoch
    resume: Optional[str] = None


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/data", name="data", node=DataConfig)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    for registry in REGISTRIES:
        registry.store(cs)
    # hydra/sweeper=optuna: Hydra's plugin scan misses a package installed in editable
    # mode (pip install -e: an import hook, not a directory); importing it stores its
    # config, and Hydra's public Plugins.register adds the class (idempotent)
    from hydra.core.plugins import Plugins
    from hydra_plugins.mnist_exp_optuna.optuna_sweeper import OptunaSweeper

    Plugins.instance().register(OptunaSweeper)
