"""Resume checkpoints: the whole training state after every epoch, so that a run killed
at epoch 19 of 20 goes on from epoch 19, bit-identical to a run that was never stopped.

What one state holds (``last.npz``, one file, replaced atomically each epoch):

- every variable of the model (weights, batch-norm statistics and the random state of
  the augmentation and dropout layers: Keras' ``model.variables``) and of the optimizer
  (its step count, moments and learning rate);
- the epochs done, so that the input pipeline's shuffle order is moved on by as many
  epochs (:func:`~mnist_experiments.training.pipeline.make_dataset`), and Keras goes
  on at ``initial_epoch``;
- the per-epoch history so far, and the state of the callbacks (early stopping's
  patience, best value and best weights; the plateau's wait; the checkpoint's best);
- Python's and NumPy's random state.

:class:`Checkpoints` says where the states of one run live
(``<run's Hydra dir>/checkpoints/resume/``, a subdirectory per fit: ``fold-2``,
``refit``) and hands each new state to ``on_saved`` (the run copies the last one to
MLflow). They are removed once the run has FINISHED.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import keras
import numpy as np

log = logging.getLogger(__name__)

STATE_FILE = "last.npz"
# the callbacks' attributes that carry over epochs (Keras resets them in on_train_begin)
CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


@dataclass
class TrainingState:
    """Everything one fit needs to go on after ``epochs_done`` epochs."""

    epochs_done: int
    history: Dict[str, List[float]]
    epoch_seconds: List[float]
    stopped: bool  # a callback (early stopping) ended training at this epoch
    model: List[np.ndarray]
    optimizer: List[np.ndarray]
    callbacks: List[Dict[str, Any]] = field(default_factory=list)
    best_weights: Dict[int, List[np.ndarray]] = field(default_factory=dict)
    python_random: Any = None
    numpy_random: Any = None

    def save(self, path: Path) -> int:
        """Write the state to ``path`` atomically (a kill mid-write leaves the previous
        state whole); return its size in bytes."""
        arrays = {f"model/{i}": a for i, a in enumerate(self.model)}
        arrays.update({f"optimizer/{i}": a for i, a in enumerate(self.optimizer)})
        for index, weights in self.best_weights.items():
            arrays.update({f"best/{index}/{i}": a for i, a in enumerate(weights)})
        meta = {"epochs_done": self.epochs_done, "history": self.history,
                "epoch_seconds": self.epoch_seconds, "stopped": self.stopped,
                "callbacks": self.callbacks, "python_random": self.python_random,
                "numpy_random": self.numpy_random, "models": len(self.model),
                "optimizers": len(self.optimizer),
                "best": {str(k): len(v) for k, v in self.best_weights.items()}}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".last-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.stat().st_size

    @classmethod
    def load(cls, path: Path) -> "TrainingState":
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            best = {int(k): [data[f"best/{k}/{i}"] for i in range(n)]
                    for k, n in meta["best"].items()}
            return cls(
                epochs_done=int(meta["epochs_done"]), history=meta["history"],
                epoch_seconds=meta["epoch_seconds"], stopped=bool(meta["stopped"]),
                model=[data[f"model/{i}"] for i in range(meta["models"])],
                optimizer=[data[f"optimizer/{i}"] for i in range(meta["optimizers"])],
                callbacks=meta["callbacks"], best_weights=best,
                python_random=meta["python_random"], numpy_random=meta["numpy_random"])


def _python_random_state() -> Any:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _numpy_random_state() -> Any:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def _assign(variables: List[Any], arrays: List[np.ndarray], what: str) -> None:
    if len(variables) != len(arrays) or any(
            tuple(v.shape) != a.shape for v, a in zip(variables, arrays)):
        raise ValueError(f"the checkpoint's {what} do not match this config's "
                         f"({len(arrays)} arrays for {len(variables)} variables)")
    for variable, array in zip(variables, arrays):
        variable.assign(array)


def restore_model(model: keras.Model, state: TrainingState) -> None:
    """Put the state's model and optimizer variables into a freshly compiled ``model``."""
    _assign(model.variables, state.model, "model variables")
    model.optimizer.build(model.trainable_variables)
    _assign(model.optimizer.variables, state.optimizer, "optimizer variables")


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the :class:`TrainingState` after every epoch; restores the callbacks' and
    the random state of ``state`` (if given) when training begins.

    It must come after every callback whose state it keeps, in ``fit``'s list: Keras
    resets them in ``on_train_begin``, and early stopping sets ``stop_training`` in its
    ``on_epoch_end``.
    """

    def __init__(self, path: Path, watched: List[keras.callbacks.Callback],
                 history: Dict[str, List[float]], epoch_seconds: List[float],
                 state: Optional[TrainingState] = None,
                 on_saved: Optional[Callable[[Path, int], None]] = None):
        super().__init__()
        self.path = path
        self.watched = watched
        self.history = history  # the epochs of earlier fits first, this fit's appended
        self.epoch_seconds = epoch_seconds
        self.state = state
        self.on_saved = on_saved
        self.size = 0

    def on_train_begin(self, logs=None):
        state = self.state
        if state is None:
            return
        for callback, saved in zip(self.watched, state.callbacks):
            for name, value in saved.items():
                setattr(callback, name, value)
        for index, weights in state.best_weights.items():
            self.watched[index].best_weights = weights
        if state.python_random is not None:
            version, internal, gauss = state.python_random
            random.setstate((version, tuple(internal), gauss))
        if state.numpy_random is not None:
            name, keys, pos, has_gauss, gauss = state.numpy_random
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        callbacks, best = [], {}
        for index, callback in enumerate(self.watched):
            names = next((n for cls, n in CALLBACK_STATE.items() if isinstance(callback, cls)), ())
            callbacks.append({n: _plain(getattr(callback, n, None)) for n in names})
            weights = getattr(callback, "best_weights", None)
            if isinstance(callback, keras.callbacks.EarlyStopping) and weights is not None:
                best[index] = [np.asarray(w) for w in weights]
        state = TrainingState(
            epochs_done=epoch + 1, history=self.history, epoch_seconds=self.epoch_seconds,
            stopped=bool(self.model.stop_training),
            model=[v.numpy() for v in self.model.variables],
            optimizer=[v.numpy() for v in self.model.optimizer.variables],
            callbacks=callbacks, best_weights=best,
            python_random=_python_random_state(), numpy_random=_numpy_random_state())
        self.size = state.save(self.path)
        if self.on_saved is not None:
            self.on_saved(self.path, epoch + 1)


def _plain(value: Any) -> Any:
    """A JSON value for a callback attribute (NumPy and tensor scalars to Python's)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return float(np.asarray(value))


@dataclass
class Checkpoints:
    """Where one run keeps its resume states, and whether it resumes from them.

    Parameters
    ----------
    root : Path
        ``<the run's Hydra dir>/checkpoints/resume``; a fit's state is
        ``root/<name>/last.npz`` (``name``: ``""``, ``fold-2``, ``refit``).
    resuming : bool
        Whether states found under ``root`` are continued (``mnist-exp resume=<run>``);
        a new run starts from nothing whatever is there.
    on_saved : callable, optional
        Called with each new state's path and its path relative to ``root`` (the run
        copies it to MLflow).
    """

    root: Path
    resuming: bool = False
    on_saved: Optional[Callable[[Path, str], None]] = None
    sizes: Dict[str, int] = field(default_factory=dict)

    def path(self, name: str = "") -> Path:
        return self.root / name / STATE_FILE if name else self.root / STATE_FILE

    def state(self, name: str = "") -> Optional[TrainingState]:
        """The state to continue the fit ``name`` from, if resuming and there is one."""
        path = self.path(name)
        if not self.resuming or not path.is_file():
            return None
        return TrainingState.load(path)

    def callback(self, name: str, watched: List[keras.callbacks.Callback],
                 state: Optional[TrainingState], epoch_seconds: List[float]) -> ResumeCheckpoint:
        """The callback that saves the fit ``name``'s state each epoch (``epoch_seconds``:
        the list the epoch logger fills, earlier epochs' first)."""
        history = {k: list(v) for k, v in state.history.items()} if state else {}

        def saved(path: Path, epoch: int) -> None:
            self.sizes[name] = path.stat().st_size
            if self.on_saved is not None:
                self.on_saved(path, str(path.parent.relative_to(self.root)))

        return ResumeCheckpoint(self.path(name), watched, history, epoch_seconds, state, saved)

    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def remove(self) -> None:
        """Delete the states (after the run FINISHED)."""
        shutil.rmtree(self.root, ignore_errors=True)
        parent = self.root.parent
        if parent.name == "checkpoints" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
