"""Keras callbacks from the ``callbacks`` config (:mod:`mnist_experiments.config.callbacks`).

Keras' own classes, built through the ``_target_`` allow-list: ``EarlyStopping``,
``ReduceLROnPlateau``, and ``ModelCheckpoint`` twice for ``checkpoint`` (the best
epoch's weights by its monitor, and the last epoch's), written in the run's Hydra
directory under ``checkpoints/``. :class:`Configured` also says which epoch's weights the
model holds once ``fit`` returns, so that the objective is measured on them.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import keras
import numpy as np

from mnist_experiments.config.safety import safe_instantiate

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("best.weights.h5", "last.weights.h5")


@dataclass
class Configured:
    """The callbacks of one ``fit`` and what they decide about its weights."""

    callbacks: List[keras.callbacks.Callback] = field(default_factory=list)
    early_stopping: Optional[keras.callbacks.EarlyStopping] = None
    checkpoint_dir: Optional[Path] = None
    best_by: Optional[Dict[str, str]] = None  # {"monitor": ..., "mode": ...}

    def kept_epoch(self, history: Dict[str, List[float]]) -> int:
        """The 1-based epoch whose weights the model holds after ``fit``."""
        stopper = self.early_stopping
        if stopper is not None and stopper.restore_best_weights and stopper.best_weights is not None:
            return int(stopper.best_epoch) + 1
        return len(history.get("loss", [])) or 1

    def best_epoch(self, history: Dict[str, List[float]]) -> Optional[int]:
        """The 1-based best epoch by the monitor of early stopping or the checkpoint."""
        stopper = self.early_stopping
        if stopper is not None and stopper.best_weights is not None:
            return int(stopper.best_epoch) + 1
        if stopper is not None:
            return _best(history, stopper.monitor, stopper.mode)
        if self.best_by is not None:
            return _best(history, self.best_by["monitor"], self.best_by["mode"])
        return None

    def checkpoint_files(self) -> List[Path]:
        if self.checkpoint_dir is None:
            return []
        return [self.checkpoint_dir / name for name in CHECKPOINT_FILES
                if (self.checkpoint_dir / name).exists()]


def _mode(monitor: str, mode: str) -> str:
    if mode != "auto":
        return mode
    return "min" if monitor.endswith("loss") else "max"


def _best(history: Dict[str, List[float]], monitor: str, mode: str) -> Optional[int]:
    values = history.get(monitor)
    if not values:
        return None
    pick = np.argmin if _mode(monitor, mode) == "min" else np.argmax
    return int(pick(np.asarray(values))) + 1  # the first of equal values


def checkpoint_dir(name: str = "") -> Path:
    """``<the run's Hydra dir>/checkpoints[/name]``, or a new temporary directory for a
    run without one (the task function called outside Hydra), removed when the process
    exits: the run's MLflow artifacts keep the files."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and HydraConfig.get().runtime.output_dir:
        base = Path(HydraConfig.get().runtime.output_dir) / "checkpoints"
    else:
        base = Path(tempfile.mkdtemp(prefix="mnist-exp-checkpoints-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
    directory = base / name if name else base
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def configure(cfg: Any, validation: bool, name: str = "") -> Configured:
    """Build the callbacks of ``cfg.callbacks`` for one ``fit``.

    Parameters
    ----------
    validation : bool
        Whether this fit has a validation set. Without one (a k-fold refit on the whole
        pool), callbacks that monitor a ``val_`` metric are left out, with a log line.
    name : str
        A subdirectory of ``checkpoints/`` (``fold-2``) for this fit's files.
    """
    configured = Configured()
    for key, node in (cfg.get("callbacks") or {}).items():
        target, monitor = str(node["_target_"]), str(node.get("monitor", ""))
        if not validation and monitor.startswith("val_"):
            log.info("callbacks.%s is left out of this fit: it monitors %s and there is no "
                     "validation set", key, monitor)
            continue
        if target == "keras.callbacks.ModelCheckpoint":
            directory = checkpoint_dir(name)
            build = safe_instantiate(node, _partial_=True)
            configured.callbacks += [
                build(filepath=str(directory / CHECKPOINT_FILES[0]), save_best_only=True,
                      save_weights_only=True),
                build(filepath=str(directory / CHECKPOINT_FILES[1]), save_weights_only=True),
            ]
            configured.checkpoint_dir = directory
            configured.best_by = {"monitor": monitor, "mode": str(node["mode"])}
            continue
        callback = safe_instantiate(node)
        if isinstance(callback, keras.callbacks.EarlyStopping):
            configured.early_stopping = callback
        configured.callbacks.append(callback)
    return configured
