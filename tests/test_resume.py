"""Resume: a fit stopped after any epoch goes on from its last state, and ends
bit-identical to a fit that was never stopped (weights, history, the learning rate and
every callback's state), with whatever augmentation, dropout, shuffle and callbacks."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import compose_cfg
from mnist_experiments.config.validation import validate
from mnist_experiments.data import load_dataset
from mnist_experiments.training import fit as training
from mnist_experiments.training import seeding
from mnist_experiments.training.checkpoints import Checkpoints, TrainingState

TINY = ["data=digits", "data.limit=300", "model=seed_tiny", "optimizer=adam", "train.epochs=4"]


class Stop(Exception):
    """Stands for a kill after an epoch's state was saved."""


def _fit(cfg, data, checkpoints):
    keras.backend.clear_session()
    seeding.seed_everything(int(cfg.seed), True)
    return training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val,
                        checkpoints=checkpoints)


def _stopped_after(epoch: int):
    def saved(path: Path, name: str) -> None:
        if TrainingState.load(path).epochs_done == epoch:
            raise Stop
    return saved


@pytest.mark.parametrize("overrides", [
    [],
    ["augment=light", "callbacks=[early_stopping,reduce_lr]", "schedule=constant",
     "callbacks.early_stopping.patience=3"],
], ids=["plain", "augment-callbacks"])
def test_a_fit_stopped_after_epoch_2_of_4_resumes_bit_identical(tmp_path, overrides):
    cfg = validate(compose_cfg(*TINY, *overrides))
    data = load_dataset(cfg.data, int(cfg.seed))
    whole = _fit(cfg, data, Checkpoints(tmp_path / "whole"))

    root = tmp_path / "stopped"
    with pytest.raises(Stop):
        _fit(cfg, data, Checkpoints(root, on_saved=_stopped_after(2)))
    assert TrainingState.load(root / "last.npz").epochs_done == 2
    resumed = _fit(cfg, data, Checkpoints(root, resuming=True))

    assert resumed.history == whole.history  # every epoch's metrics, once each
    assert len(resumed.history["loss"]) == 4
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(resumed.epoch_seconds) == 4
