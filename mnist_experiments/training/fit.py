"""Fitting one Keras model: build and compile it from the config, train it, report each epoch."""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np

from mnist_experiments.config.safety import safe_instantiate
from mnist_experiments.errors import UserError
from mnist_experiments.launch import signals
from mnist_experiments.models.builder import NUM_CLASSES, build_model
from mnist_experiments.training import reuse
from mnist_experiments.training.augmentation import augmenter
from mnist_experiments.training.callbacks import configure
from mnist_experiments.training.checkpoints import Checkpoints, restore_model
from mnist_experiments.training.pipeline import make_dataset
from mnist_experiments.training.schedules import (
    current_learning_rate,
    learning_rate,
    steps_per_epoch,
)

log = logging.getLogger(__name__)

EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite: the run is marked FAILED."""


class EpochLogger(keras.callbacks.Callback):
    """Reports each epoch: a console line and the metrics handed to ``on_metrics``.

    It also puts the epoch's learning rate (the optimizer's rate at the epoch's first
    step, whatever the schedule) into the epoch's logs as ``learning_rate``, so that it
    is in Keras' history and logged per epoch like the other metrics.
    """

    def __init__(self, epochs: int, on_metrics: Optional[Callable[[Dict[str, float], int], None]] = None,
                 prefix: str = "", epoch_seconds: Optional[List[float]] = None):
        super().__init__()
        self.epochs = epochs
        self.on_metrics = on_metrics
        self.prefix = prefix
        self._start = 0.0
        self.epoch_seconds: List[float] = epoch_seconds if epoch_seconds is not None else []

    def replay(self, history: Dict[str, List[float]], epochs: int) -> None:
        """Hand the first ``epochs`` epochs of a resumed fit's ``history`` to
        ``on_metrics`` again: a run killed just after a state was saved may not have
        logged its last epochs (the writer skips those it holds)."""
        if self.on_metrics is None:
            return
        for epoch in range(epochs):
            metrics = {k: v[epoch] for k, v in history.items()
                       if (k in EPOCH_METRICS or k == "learning_rate") and len(v) > epoch}
            if epoch < len(self.epoch_seconds):
                metrics["epoch_seconds"] = self.epoch_seconds[epoch]
            self.on_metrics(metrics, epoch + 1)

    def on_epoch_begin(self, epoch, logs=None):
        self._rate = current_learning_rate(self.model.optimizer)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        metrics = {k: float(v) for k, v in (logs or {}).items() if k in EPOCH_METRICS}
        shown = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
        log.info("%sepoch %d/%d %s (%.1fs)", self.prefix, epoch + 1, self.epochs, shown, seconds)
        if logs is not None:
            logs["learning_rate"] = self._rate
        if self.on_metrics is not None:
            self.on_metrics({**metrics, "learning_rate": self._rate, "epoch_seconds": seconds},
                            epoch + 1)
        bad = {k: v for k, v in metrics.items() if not np.isfinite(v)}
        if bad:
            raise TrainingDiverged(
                f"{self.prefix}Training diverged at epoch {epoch + 1}: "
                + ", ".join(f"{k}={v}" for k, v in bad.items())
                + ". The run is marked FAILED. Lower optimizer.learning_rate "
                "(e.g. optimizer.learning_rate=0.001) or choose another optimizer."
            )


class NoEpochAfterASignal(keras.callbacks.Callback):
    """No epoch starts once this process has received SIGINT or SIGTERM.

    The signal raises where the main thread is; code that catches it there and carries
    on (a library's clean-up) would let training go on, and a second signal is ignored
    as "already stopping" (see :mod:`~mnist_experiments.launch.signals`). So the next
    epoch raises it again, and the run ends KILLED within an epoch.
    """

    def on_epoch_begin(self, epoch, logs=None):
        signals.raise_if_received()


class TerminalProgress(keras.callbacks.ProgbarLogger):
    """Keras' own progress bar within each epoch, for a terminal only.

    It shows the steps done, the bar and the time left (no metrics: a short line that
    never wraps), and is erased at the end of the epoch, where :class:`EpochLogger`'s
    line takes its place. Validation stays silent, as in ``fit(verbose=1)``.
    """

    def set_params(self, params):
        super().set_params(params)
        self.verbose = 1  # fit() itself runs with verbose=0

    def on_epoch_begin(self, epoch, logs=None):
        self._reset_progbar()  # no "Epoch 1/5" header: the epoch's log line follows
        self._maybe_init_progbar()

    def on_train_batch_end(self, batch, logs=None):
        self._update_progbar(batch, None)

    def on_epoch_end(self, epoch, logs=None):
        self._erase()

    def on_train_end(self, logs=None):
        self._erase()

    def _erase(self):
        if self.progbar is not None:
            sys.stdout.write("\r\033[K")  # back to the line's start, clear it
            sys.stdout.flush()
            self.progbar = None


def progress_wanted() -> bool:
    """A progress bar only on a terminal, and only in the process that owns it: not in
    pipes and log files, and not in launcher or reproduce workers, whose bars would
    interleave (they keep the plain one-line-per-epoch log)."""
    isatty = getattr(sys.stdout, "isatty", None)
    if isatty is None or not isatty():
        return False
    if multiprocessing.parent_process() is not None:
        return False
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        hc = HydraConfig.get()
        if "joblib" in str(hc.launcher.get("_target_", "")).lower():
            return False
    return True


@dataclass
class FitResult:
    model: keras.Model
    history: Dict[str, List[float]]
    epoch_seconds: List[float]
    fit_seconds: float
    # the 1-based epoch whose weights the model holds (early stopping may restore an
    # earlier one than the last), the best epoch by the callbacks' monitor (None
    # without such callbacks), and the checkpoint files written
    kept_epoch: int = 0
    best_epoch: Optional[int] = None
    checkpoints: List[Path] = field(default_factory=list)

    def at_kept_epoch(self, key: str) -> float:
        """``history[key]`` at the epoch whose weights the model holds."""
        return self.history[key][self.kept_epoch - 1]


def one_hot_labels(train_cfg: Any) -> bool:
    """Whether the training loss wants one-hot labels (Keras' sparse cross-entropy has
    no label smoothing; its categorical losses do)."""
    return train_cfg.get("loss", "crossentropy") != "crossentropy" or float(
        train_cfg.get("label_smoothing", 0.0)) > 0


def training_loss(train_cfg: Any) -> Any:
    """The Keras loss of ``train.loss`` and ``train.label_smoothing``."""
    smoothing = float(train_cfg.get("label_smoothing", 0.0))
    if train_cfg.get("loss", "crossentropy") == "focal":
        return keras.losses.CategoricalFocalCrossentropy(
            gamma=float(train_cfg.get("focal_gamma", 2.0)), label_smoothing=smoothing)
    if smoothing > 0:
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    return "sparse_categorical_crossentropy"  # the notebook's, and the default


def build_and_compile(cfg: Any, steps: int = 1) -> keras.Model:
    """The model that ``cfg.model`` describes, compiled with ``cfg.optimizer`` and its
    learning rate under ``cfg.schedule`` (``steps``: optimizer steps per epoch)."""
    model = build_model(cfg.model, augment=augmenter(cfg))
    # a Keras schedule cannot go through Hydra's config merge: it is passed to the class
    optimizer = safe_instantiate(cfg.optimizer, _partial_=True)(
        learning_rate=learning_rate(cfg, steps))
    model.compile(
        optimizer=optimizer,
        loss=training_loss(cfg.train),
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
    name: str = "",
    checkpoints: Optional[Checkpoints] = None,
) -> FitResult:
    """Build, compile and train a model on uint8 images; validate after every epoch.

    ``x_val=None`` trains without a validation set (a k-fold refit). The callbacks of
    ``cfg.callbacks`` are added (:func:`~mnist_experiments.training.callbacks.configure`;
    ``name``: their checkpoints' subdirectory, e.g. ``fold-2``). With ``checkpoints``,
    the whole training state is saved after every epoch, and a fit that has a state
    there to resume from goes on from it
    (:mod:`~mnist_experiments.training.checkpoints`).
    """
    batch_size = int(cfg.train.batch_size)
    steps = steps_per_epoch(len(y_train), batch_size)
    classes = NUM_CLASSES if one_hot_labels(cfg.train) else 0
    compiled_as = reuse.reuse_key(cfg, steps, x_train.shape[1:], classes)
    model = reuse.reuse(compiled_as, build_and_compile(cfg, steps))  # its weights are new
    state = checkpoints.state(name) if checkpoints is not None else None
    done = 0
    if state is not None:
        restore_model(model, state)
        done = state.epochs_done
        log.info("%sresuming after epoch %d of %d", prefix, done, int(cfg.train.epochs))
    train_ds = make_dataset(x_train, y_train, batch_size, shuffle=True, seed=int(cfg.seed),
                            shuffle_buffer=cfg.train.shuffle_buffer, one_hot=classes,
                            epochs_done=done)
    val_ds = None if x_val is None else make_dataset(x_val, y_val, batch_size, one_hot=classes)
    epochs = int(cfg.train.epochs)
    logger = EpochLogger(epochs, on_metrics, prefix=prefix,
                         epoch_seconds=list(state.epoch_seconds) if state else None)
    if state is not None:
        logger.replay(state.history, done)
    progress = [TerminalProgress()] if progress_wanted() else []
    # before the logger: its learning_rate (the epoch's first step's) is the one kept
    configured = configure(cfg, validation=x_val is not None, name=name)
    # last: it saves what the others did this epoch, and restores them after Keras' reset
    resume = [] if checkpoints is None else [
        checkpoints.callback(name, configured.callbacks, state, logger.epoch_seconds)]
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        initial_epoch=epochs if state is not None and state.stopped else done,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles, seeded
        callbacks=[NoEpochAfterASignal(), *progress, *configured.callbacks, logger,
                   *(callbacks or []), *resume],
    )
    fit_seconds = time.perf_counter() - start
    reuse.keep(compiled_as, model)  # the next fit of this configuration skips the tracing
    kept = {k: list(v) for k, v in state.history.items()} if state else {}
    for key, values in history.history.items():
        kept.setdefault(key, []).extend(float(v) for v in values)
    return FitResult(
        model=model,
        history=kept,
        epoch_seconds=logger.epoch_seconds,
        fit_seconds=fit_seconds,
        kept_epoch=configured.kept_epoch(kept),
        best_epoch=configured.best_epoch(kept),
        checkpoints=configured.checkpoint_files(),
    )


class EveryNEpochs(keras.callbacks.Callback):
    """Calls ``action(model, epoch)`` after every ``every``-th epoch (1-based epochs)."""

    def __init__(self, every: int, action: Callable[[keras.Model, int], None]):
        super().__init__()
        self.every = every
        self.action = action

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.action(self.model, epoch + 1)
