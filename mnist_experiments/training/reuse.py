"""Fits of one configuration in one process reuse the compiled model, not its weights.

Keras traces a model's train, test and predict functions the first time they run: on
2 cores about 2 s for the notebook's CNN, most of a small job's first epoch. The jobs
of a seed sweep (run one after another by Hydra's basic launcher, or by one joblib or
Ray worker), the folds of a k-fold run and its refit, and the runs of a reproduction
all build the same model again, and each would pay for the tracing again.

Instead, the model of the last fit is kept. The next fit of the same configuration
still builds and compiles a new model, drawing its initial weights and random-generator
seeds exactly as before, then loads all of that model's variables (weights, batch-norm
statistics, the random generators' states) and its freshly built optimizer's variables
(step count, learning rate, moments) into the kept model, whose traced functions then
run as they are. The result is bit-identical to a fit of the new model
(``tests/test_reuse.py`` checks it); only the tracing is skipped.

Only configurations that are equal apart from their seed, their tracking and their
figures share a model (see :func:`reuse_key`); anything else is built and traced anew.
``MNIST_EXP_REUSE_MODELS=0`` in the environment turns the reuse off (``bench/sweeps.py
overhead`` measures what it buys that way).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Tuple

import keras

from mnist_experiments.config.identity import canonical

log = logging.getLogger(__name__)

ENVIRONMENT = "MNIST_EXP_REUSE_MODELS"

_kept: Dict[str, Any] = {}  # at most one: {key: model}


def reuse_key(cfg: Any, steps: int, input_shape: Tuple[int, ...], one_hot: int) -> str:
    """What the compiled model depends on: the configuration as ``config_id`` sees it
    (without the seed, tracking and figures; unresolved, so that values interpolated
    from the seed stay equal), the optimizer's steps per epoch (schedules), the input
    shape and the label encoding."""
    return json.dumps([canonical(cfg, resolve=False), int(steps), list(input_shape),
                       int(one_hot)])


def reuse(key: str, fresh: keras.Model) -> keras.Model:
    """The model to fit: the kept one loaded with ``fresh``'s state when ``key`` is the
    key of the last completed fit and both models have the same variables, else
    ``fresh``."""
    if os.environ.get(ENVIRONMENT, "1").strip().lower() in ("0", "false", "no", "off"):
        return fresh
    kept = _kept.get(key)
    if kept is None or not _load(kept, fresh):
        return fresh
    log.info("the model's compiled functions are reused from the previous fit of this "
             "configuration (its weights and optimizer state are new)")
    return kept


def keep(key: str, model: keras.Model) -> None:
    """Remember ``model`` after a fit that completed (one model at a time)."""
    _kept.clear()
    _kept[key] = model


def forget() -> None:
    """Drop the kept model: the next fit builds and traces its own."""
    _kept.clear()


def _load(kept: keras.Model, fresh: keras.Model) -> bool:
    """Assign ``fresh``'s variables and its optimizer's to ``kept``; ``False`` (nothing
    assigned) if their layouts differ or either optimizer cannot be matched."""
    if not (kept.built and fresh.built) or kept.optimizer is None or fresh.optimizer is None:
        return False
    if not kept.optimizer.built:
        return False
    fresh.optimizer.build(fresh.trainable_variables)
    pairs = list(zip(kept.variables, fresh.variables))
    optimizer_pairs = list(zip(kept.optimizer.variables, fresh.optimizer.variables))
    if (len(kept.variables) != len(fresh.variables)
            or len(kept.optimizer.variables) != len(fresh.optimizer.variables)
            or any(_layout(a) != _layout(b) for a, b in pairs + optimizer_pairs)):
        return False
    for target, source in pairs + optimizer_pairs:
        target.assign(source)
    return True


def _layout(variable: Any) -> Tuple[Tuple[int, ...], str]:
    return tuple(variable.shape), str(variable.dtype)
