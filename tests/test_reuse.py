"""Fits of one configuration in one process reuse the compiled model
(:mod:`mnist_experiments.training.reuse`): the results must be those of a new model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import compose_cfg
from mnist_experiments.data import load_dataset
from mnist_experiments.training import fit as training
from mnist_experiments.training import reuse, seeding

# dropout, batch normalization and a random augmentation: every kind of state that a
# reused model must take from the new one (weights, statistics, random generators)
SHAPES = ("data=digits", "data.limit=300", "model=bn_cnn", "augment=strong",
          "train.epochs=2", "optimizer=adam")


def _fit(*overrides: str) -> training.FitResult:
    cfg = compose_cfg(*SHAPES, *overrides)
    data = load_dataset(cfg.data, int(cfg.seed))
    seeding.seed_everything(int(cfg.seed), True)
    return training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val)


def _state(result: training.FitResult):
    model = result.model
    return ([v.numpy().copy() for v in model.variables],
            [v.numpy().copy() for v in model.optimizer.variables], result.history)


@pytest.mark.slow
def test_a_reused_model_trains_bit_identically_to_a_new_one():
    reuse.forget()
    first = _fit("seed=1")
    second = _fit("seed=2")
    assert second.model is first.model  # reused: its functions were not traced again
    reused = _state(second)

    reuse.forget()
    new = _fit("seed=2")
    assert new.model is not first.model
    weights, optimizer, history = _state(new)
    assert reused[2] == history
    assert len(reused[0]) == len(weights) and len(reused[1]) == len(optimizer)
    assert all(np.array_equal(a, b) for a, b in zip(reused[0], weights))
    assert all(np.array_equal(a, b) for a, b in zip(reused[1], optimizer))


@pytest.mark.slow
def test_only_the_same_configuration_reuses_a_model():
    reuse.forget()
    tiny = ("model=seed_tiny", "augment=none")
    first = _fit("seed=1", *tiny)
    assert _fit("seed=2", *tiny).model is first.model
    assert _fit("seed=2", *tiny, "optimizer=sgd").model is not first.model
    cfg = compose_cfg(*SHAPES)
    key = reuse.reuse_key(cfg, 10, (28, 28, 1), 0)
    assert key == reuse.reuse_key(compose_cfg(*SHAPES, "seed=7", "viz=off"), 10, (28, 28, 1), 0)
    assert key != reuse.reuse_key(cfg, 11, (28, 28, 1), 0)  # a schedule's steps
    assert key != reuse.reuse_key(cfg, 10, (28, 28, 1), 10)  # one-hot labels
