"""The ``callbacks`` group: each option composes and is validated, and Keras' callbacks do
what they should: early stopping stops and keeps the best weights (which the objective
and the test metrics then measure), ReduceLROnPlateau lowers the logged learning rate,
and the checkpoint keeps the best and the last weights with the run."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import FAST, all_runs, cli_env, compose_cfg, run_cli, store_uri
from mnist_experiments.config.callbacks import CALLBACKS
from mnist_experiments.config.validation import validate
from mnist_experiments.data import load_dataset
from mnist_experiments.errors import ConfigError
from mnist_experiments.training import fit as training
from mnist_experiments.training import seeding

TINY = ["data=digits", "data.limit=300", "model=seed_tiny", "optimizer=adam"]


@pytest.mark.parametrize("choice, names", [
    ("none", []),
    ("early_stopping", ["early_stopping"]),
    ("reduce_lr", ["reduce_lr"]),
    ("checkpoint", ["checkpoint"]),
    ("default", ["early_stopping", "reduce_lr", "checkpoint"]),
    ("[early_stopping,reduce_lr]", ["early_stopping", "reduce_lr"]),
])
def test_every_option_composes_into_typed_callbacks(choice, names):
    cfg = validate(compose_cfg(f"callbacks={choice}"))
    assert list(cfg.callbacks) == names
    for name in names:
        assert CALLBACKS.find(cfg.callbacks[name]).name == name
    assert list(compose_cfg().callbacks) == []  # the default trains without any


@pytest.mark.parametrize("overrides, needle", [
    (["callbacks=early_stopping", "callbacks.early_stopping.monitor=val_acc"],
     "callbacks.early_stopping.monitor='val_acc' is invalid"),
    (["callbacks=reduce_lr", "callbacks.reduce_lr.factor=1.5"],
     "callbacks.reduce_lr.factor=1.5 is invalid"),
    (["callbacks=early_stopping", "+callbacks.early_stopping.patiense=3"],
     "did you mean callbacks.early_stopping.patience"),
    (["callbacks=reduce_lr", "schedule=cosine"], "cannot do under schedule=cosine"),
])
def test_bad_callback_settings_are_refused_before_anything_runs(overrides, needle):
    with pytest.raises(ConfigError) as refused:
        validate(compose_cfg(*overrides))
    assert needle in str(refused.value)


def _fit(*overrides):
    cfg = validate(compose_cfg(*TINY, *overrides))
    data = load_dataset(cfg.data, int(cfg.seed))
    keras.backend.clear_session()
    seeding.seed_everything(int(cfg.seed), True)
    return data, training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val)


def _val_accuracy(model, data) -> float:
    from mnist_experiments.training.pipeline import make_dataset

    return float(model.evaluate(make_dataset(data.x_val, data.y_val, 32), verbose=0,
                                return_dict=True)["accuracy"])


@pytest.mark.slow
def test_early_stopping_stops_and_keeps_the_best_weights():
    data, result = _fit("train.epochs=40", "callbacks=early_stopping",
                        "callbacks.early_stopping.patience=2")
    ran = len(result.history["val_accuracy"])
    assert ran < 40  # it stopped
    best = int(np.argmax(result.history["val_accuracy"])) + 1
    assert result.best_epoch == result.kept_epoch == best
    assert ran - best == 2  # patience: two epochs without improvement
    assert result.at_kept_epoch("val_accuracy") == max(result.history["val_accuracy"])
    # the model holds the best epoch's weights: it scores that epoch's validation accuracy
    assert _val_accuracy(result.model, data) == pytest.approx(
        result.at_kept_epoch("val_accuracy"), abs=1e-6)


@pytest.mark.slow
def test_reduce_lr_halves_the_logged_learning_rate_on_a_plateau():
    # min_delta 10: after the first epoch (an improvement on nothing) no epoch counts as
    # one, so with patience 0 the end of every later epoch halves the rate that the
    # next epoch starts with
    _, result = _fit("train.epochs=4", "callbacks=reduce_lr", "callbacks.reduce_lr.patience=0",
                     "callbacks.reduce_lr.min_delta=10", "optimizer.learning_rate=0.001")
    np.testing.assert_allclose(result.history["learning_rate"],
                               [0.001, 0.001, 0.0005, 0.00025], rtol=1e-6)


@pytest.mark.slow
def test_checkpoint_keeps_the_best_and_the_last_weights():
    data, result = _fit("train.epochs=4", "callbacks=checkpoint")
    assert sorted(p.name for p in result.checkpoints) == ["best.weights.h5", "last.weights.h5"]
    best = int(np.argmax(result.history["val_accuracy"])) + 1
    assert result.best_epoch == best and result.kept_epoch == 4  # no restoring
    model = result.model
    model.load_weights(str(result.checkpoints[0]))
    assert _val_accuracy(model, data) == pytest.approx(max(result.history["val_accuracy"]),
                                                       abs=1e-6)
    model.load_weights(str(result.checkpoints[1]))
    assert _val_accuracy(model, data) == pytest.approx(result.history["val_accuracy"][-1],
                                                       abs=1e-6)


@pytest.mark.slow
def test_a_run_with_the_default_callbacks_records_what_they_decided(tmp_path):
    done = run_cli([*FAST, "train.epochs=6", "callbacks=default", "viz=off",
                    "mlflow.log_model=false", "callbacks.early_stopping.patience=1"], tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = all_runs(store_uri(tmp_path))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(tmp_path))
    val = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val_accuracy"),
                                   key=lambda m: m.step)]
    kept = int(run.data.metrics["kept_epoch"])
    assert kept == int(run.data.metrics["best_epoch"]) == int(np.argmax(val)) + 1
    assert run.data.metrics["objective"] == pytest.approx(val[kept - 1])
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")) == [
        "checkpoints/best.weights.h5", "checkpoints/last.weights.h5"]
    assert list((tmp_path / "outputs").glob("runs/*/checkpoints/best.weights.h5"))


def test_reproduce_reads_a_recorded_config_with_callbacks_and_one_without():
    from omegaconf import OmegaConf

    from mnist_experiments.config.untrusted import build_config

    recorded = OmegaConf.to_container(compose_cfg("data=digits", "callbacks=default"),
                                      resolve=True)
    cfg = build_config(recorded, [], "of a run")
    assert list(cfg.callbacks) == ["early_stopping", "reduce_lr", "checkpoint"]
    del recorded["callbacks"]  # recorded before the group existed
    assert list(build_config(recorded, [], "of an older run").callbacks) == []
    recorded["callbacks"] = {"evil": {"_target_": "os.system", "command": "true"}}
    with pytest.raises(ConfigError, match="os.system"):
        build_config(recorded, [], "of a run")


def test_checkpoints_outside_hydra_go_with_the_process(tmp_path):
    """The task function called outside Hydra (a notebook, a test) keeps its checkpoint
    files in a temporary directory, removed when the process exits (MLflow keeps them)."""
    script = ("from mnist_experiments.training.callbacks import checkpoint_dir\n"
              "d = checkpoint_dir('fold-1')\n"
              "(d / 'last.weights.h5').write_bytes(b'x')\n"
              "print(d.parent)\n")
    done = subprocess.run([sys.executable, "-c", script], env=cli_env(TMPDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    made = done.stdout.strip().splitlines()[-1]
    assert made.startswith(str(tmp_path)) and "mnist-exp-checkpoints-" in made
    assert list(tmp_path.iterdir()) == []  # made, written, and removed at exit
