"""The study's pruner and its two settings, on real in-memory Optuna studies (no sweep:
``tests/test_optuna.py`` runs the pruned searches)."""

from __future__ import annotations

import json

import optuna
import pytest

from mnist_experiments.errors import UserError
from mnist_experiments.launch.study import StudyAddress, make_pruner


def _stopped_at(pruner, curve, peers=4, peer_curve=(0.9, 0.95, 0.97)):
    """The epoch at which ``pruner`` stops a trial whose validation accuracy follows
    ``curve``, after ``peers`` trials that followed ``peer_curve`` (None: never)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(peers):
        trial = study.ask()
        for epoch, value in enumerate(peer_curve, start=1):
            trial.report(value, epoch)
        study.tell(trial, peer_curve[-1])
    trial = study.ask()
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
        if trial.should_prune():
            return epoch
    return None


def test_the_median_pruner_waits_warmup_epochs_and_startup_trials():
    hopeless = (0.1, 0.1, 0.1)
    assert _stopped_at(make_pruner("median"), hopeless) == 1  # the defaults: 1 epoch
    assert _stopped_at(make_pruner("median", warmup_epochs=2), hopeless) == 2
    assert _stopped_at(make_pruner("median", warmup_epochs=3), hopeless) == 3
    # fewer trials finished than startup_trials: nothing is pruned yet
    assert _stopped_at(make_pruner("median", startup_trials=5), hopeless) is None
    assert _stopped_at(make_pruner("median", startup_trials=1), hopeless, peers=1) == 1
    # a trial as good as its peers is never stopped, and "none" stops nothing
    assert _stopped_at(make_pruner("median", warmup_epochs=0), (0.9, 0.95, 0.97)) is None
    assert _stopped_at(make_pruner("none", warmup_epochs=1), hopeless) is None


def test_each_name_gives_its_optuna_pruner():
    assert isinstance(make_pruner("median", warmup_epochs=1), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband", warmup_epochs=3),
                      optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)
    with pytest.raises(UserError, match="hydra.sweeper.pruner=sometimes is not a pruner"):
        make_pruner("sometimes")


@pytest.mark.parametrize("key, value", [("warmup_epochs", -1), ("startup_trials", -2),
                                        ("warmup_epochs", 1.5), ("startup_trials", True)])
def test_a_bad_count_is_refused_with_its_key_and_the_fix(key, value):
    with pytest.raises(UserError) as error:
        make_pruner("median", **{key: value})
    assert f"hydra.sweeper.{key}={value} is not a count" in str(error.value)
    assert "whole number >= 0" in str(error.value)


def test_a_study_address_keeps_the_pruner_settings_and_reads_older_files(tmp_path):
    StudyAddress("sqlite:///x.db", "s", "median", warmup_epochs=2, startup_trials=2).write(
        tmp_path)
    address = StudyAddress.read(tmp_path)
    assert (address.warmup_epochs, address.startup_trials) == (2, 2)
    assert _stopped_at(address.make_pruner(), (0.1, 0.1), peers=2) == 2
    # optuna.json of a sweep started before the settings existed: the defaults
    (tmp_path / "optuna.json").write_text(json.dumps(
        {"storage": "sqlite:///x.db", "study_name": "s", "pruner": "median",
         "direction": "maximize"}))
    address = StudyAddress.read(tmp_path)
    assert (address.warmup_epochs, address.startup_trials) == (1, 4)
    assert _stopped_at(address.make_pruner(), (0.1, 0.1, 0.1)) == 1
