"""Training and evaluation of one Keras model: seeding, input pipeline, fit, metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import f1_score, precision_score, recall_score

from mnist_experiments.errors import UserError
from mnist_experiments.models.builder import build_model
from mnist_experiments.config.safety import safe_instantiate

log = logging.getLogger(__name__)

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run is marked FAILED."""


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) images -> float32 (n, 28, 28, 1) in [0, 1]."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x[..., np.newaxis] if x.ndim == 3 else x


# Buffered batches ahead of the model (a background thread fills them).
PREFETCH_BATCHES = 2


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning off.

    Autotuning runs a model thread whose sleep doubles from 10 ms (10, 20, 40 ms ...),
    and destroying an iterator waits for that sleep to end. Keras makes a new iterator
    every epoch, so each epoch ended on the thread's schedule (10.23 s, 20.47 s ...)
    rather than when its last batch was done: measured here on full Fashion-MNIST,
    epochs of 20.3-20.5 s with autotuning vs 17.6 s without, and ~3 s more at the end
    of ``fit``. Nothing here needs tuning: the batches are gathered from memory.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: Optional[int] = None,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data`` pipeline over uint8 images held in memory.

    The images stay uint8 in one tensor (a quarter of the memory of float32 copies);
    each batch is gathered by index and scaled to [0, 1] on the fly. Only the indices
    are shuffled (seeded, so every epoch's order is the same from run to run), which
    is far cheaper than shuffling the images themselves.
    """
    x = tf.constant(images[..., np.newaxis] if images.ndim == 3 else images)
    y = tf.constant(labels)
    ds = tf.data.Dataset.range(len(labels))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer or len(labels), seed=seed, reshuffle_each_iteration=True)

    def gather(index):
        return tf.cast(tf.gather(x, index), tf.float32) / 255.0, tf.gather(y, index)

    return without_autotune(ds.batch(batch_size).map(gather).prefetch(PREFETCH_BATCHES))


class EpochLogger(keras.callbacks.Callback):
    """Reports each epoch: a console line and the metrics handed to ``on_metrics``."""

    def __init__(self, epochs: int, on_metrics: Optional[Callable[[Dict[str, float], int], None]] = None,
                 prefix: str = ""):
        super().__init__()
        self.epochs = epochs
        self.on_metrics = on_metrics
        self.prefix = prefix
        self._start = 0.0
        self.epoch_seconds: List[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        metrics = {k: float(v) for k, v in (logs or {}).items() if k in EPOCH_METRICS}
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log.info("%sepoch %d/%d %s (%.1fs)", self.prefix, epoch + 1, self.epochs, shown, seconds)
        if self.on_metrics is not None:
            self.on_metrics({**metrics, "epoch_seconds": seconds}, epoch + 1)
        bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
        if bad:
            raise TrainingDiverged(
                f"{self.prefix}Training diverged at epoch {epoch + 1}: "
                + ", ".join(f"{k}={v}" for k, v in bad.items())
                + ". The run is marked FAILED. Lower optimizer.learning_rate "
                "(e.g. optimizer.learning_rate=0.001) or choose another optimizer."
            )


@dataclass
class FitResult:
    model: keras.Model
    history: Dict[str, List[float]]
    epoch_seconds: List[float]
    fit_seconds: float


def build_and_compile(cfg: Any) -> keras.Model:
    """The model that ``cfg.model`` describes, compiled with ``cfg.optimizer``."""
    model = build_model(cfg.model)
    optimizer = safe_instantiate(cfg.optimizer)
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=bool(cfg.train.jit_compile),
        steps_per_execution=int(cfg.train.steps_per_execution),
    )
    return model


def fit(
    cfg: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: Optional[np.ndarray],
    y_val: Optional[np.ndarray],
    on_metrics: Optional[Callable[[Dict[str, float], int], None]] = None,
    callbacks: Optional[List[keras.callbacks.Callback]] = None,
    prefix: str = "",
) -> FitResult:
    """Build, compile and train a model on uint8 images; validate after every epoch.

    ``x_val=None`` trains without a validation set (a k-fold refit).
    """
    model = build_and_compile(cfg)
    batch_size = int(cfg.train.batch_size)
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True,
                            seed=int(cfg.seed), shuffle_buffer=cfg.train.shuffle_buffer)
    val_ds = None if x_val is None else make_dataset(x_val, y_val, batch_size)
    epochs = int(cfg.train.epochs)
    logger = EpochLogger(epochs, on_metrics, prefix=prefix)
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[logger, *(callbacks or [])],
    )
    fit_seconds = time.perf_counter() - start
    return FitResult(
        model=model,
        history={k: [float(v) for v in vals] for k, vals in history.history.items()},
        epoch_seconds=logger.epoch_seconds,
        fit_seconds=fit_seconds,
    )


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (n, 10) for uint8 or float images."""
    x = to_float(images) if images.dtype == np.uint8 else images
    ds = without_autotune(tf.data.Dataset.from_tensor_slices(x).batch(batch_size))
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, prefix: str = "test_") -> Dict[str, float]:
    """Loss, accuracy, precision, recall and F1 (macro and weighted) from probabilities."""
    y_pred = proba.argmax(axis=1)
    eps = 1e-7
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1.0 - eps)
    labels = list(range(proba.shape[1]))
    kwargs = dict(labels=labels, zero_division=0)
    return {
        f"{prefix}loss": float(-np.mean(np.log(p_true))),
        f"{prefix}accuracy": float(np.mean(y_pred == y_true)),
        f"{prefix}precision": float(precision_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}recall": float(recall_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}f1_macro": float(f1_score(y_true, y_pred, average="macro", **kwargs)),
        f"{prefix}f1_weighted": float(f1_score(y_true, y_pred, average="weighted", **kwargs)),
    }
