"""The ``schedule`` group: every option composes, is validated, and the learning rate
that each epoch starts with (logged as ``learning_rate``) follows the schedule."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import compose_cfg
from mnist_experiments.config.groups import group_options
from mnist_experiments.config.schedule import SCHEDULES
from mnist_experiments.config.untrusted import build_config
from mnist_experiments.config.validation import validate
from mnist_experiments.data import load_dataset
from mnist_experiments.errors import ConfigError
from mnist_experiments.figures import training_curves
from mnist_experiments.training import fit as training
from mnist_experiments.training import seeding

BASE = 0.001
EPOCHS = 4


def test_every_registered_schedule_has_a_packaged_option_and_the_default_is_constant():
    assert group_options("schedule") == sorted(SCHEDULES.names)
    assert compose_cfg().schedule.name == "constant"
    for name in SCHEDULES.names:
        assert validate(compose_cfg(f"schedule={name}")).schedule.name == name


@pytest.mark.parametrize("overrides, needle", [
    (["schedule=piecewise", "schedule.factors=[1,0.1]"], "one factor more than boundaries"),
    (["schedule=piecewise", "schedule.boundaries=[4,2]", "schedule.factors=[1,0.1,0.01]"],
     "must be increasing"),
    (["schedule=exponential", "schedule.decay_rate=1.5"], "schedule.decay_rate=1.5 is invalid"),
    (["schedule=cosine", "schedule.alpha=-0.1"], "schedule.alpha=-0.1 is invalid"),
    (["schedule=warmup_cosine", "schedule.warmup_epochs=0"], "schedule.warmup_epochs=0"),
])
def test_bad_schedule_values_are_refused_before_anything_runs(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        validate(compose_cfg(*overrides))


def test_a_recorded_config_from_before_the_schedule_group_reads_as_constant():
    container = OmegaConf.to_container(compose_cfg("data=digits"), resolve=True)
    del container["schedule"]
    cfg = build_config(container, [], "of an older run")
    assert cfg.schedule.name == "constant"


def _expected(name: str, epoch: int) -> float:
    """The rate at the first step of 1-based ``epoch`` for the packaged option ``name``
    over EPOCHS epochs, from the schedules' formulas (not from Keras)."""
    t = epoch - 1  # epochs done
    if name == "constant":
        return BASE
    if name == "exponential":  # decay_rate 0.5 every epoch
        return BASE * 0.5 ** t
    if name == "cosine":  # down to alpha 0 over all the epochs
        return BASE * 0.5 * (1 + math.cos(math.pi * t / EPOCHS))
    if name == "warmup_cosine":  # from 0 over one epoch, then cosine over the other 3
        return BASE * t if t <= 1 else BASE * 0.5 * (1 + math.cos(math.pi * (t - 1) / 3))
    if name == "piecewise":  # boundaries [1, 2], factors [1, 0.1, 0.01]
        return BASE * [1, 0.1, 0.01, 0.01][t]
    raise AssertionError(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["constant", "exponential", "cosine", "warmup_cosine",
                                  "piecewise"])
def test_the_logged_learning_rate_follows_the_schedule(name):
    extra = ["schedule.boundaries=[1,2]", "schedule.factors=[1,0.1,0.01]"] \
        if name == "piecewise" else []
    cfg = validate(compose_cfg("data=digits", "data.limit=200", "model=seed_tiny",
                               f"train.epochs={EPOCHS}", "optimizer=adam",
                               f"optimizer.learning_rate={BASE}", f"schedule={name}", *extra))
    data = load_dataset(cfg.data, int(cfg.seed))
    keras.backend.clear_session()
    seeding.seed_everything(int(cfg.seed), True)
    logged = {}
    result = training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val,
                          on_metrics=lambda metrics, step: logged.update(
                              {step: metrics["learning_rate"]}))
    expected = [_expected(name, e) for e in range(1, EPOCHS + 1)]
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-5, atol=1e-9)
    assert logged == dict(zip(range(1, EPOCHS + 1), result.history["learning_rate"]))
    panels = len(training_curves(result.history).axes)
    assert panels == (2 if name == "constant" else 3)  # the rate is drawn when it changes
