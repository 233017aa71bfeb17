"""Resume: a fit stopped after any epoch goes on from its last state, and ends
bit-identical to a fit that was never stopped (weights, history, the learning rate and
every callback's state), with whatever augmentation, dropout, shuffle and callbacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import all_runs, compose_cfg, run_cli, store_uri
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


@pytest.mark.slow  # it trains models (the quick subset trains none)
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


# ------------------------------------------------------------------ mnist-exp resume=
# 12 short epochs, interrupted after the second (see _kill_after: the run is held stopped
# while its state is checked, so it is still training when the signal comes)
CLI = ["data=digits", "data.limit=1000", "model=seed_tiny", "optimizer=adam", "train.epochs=12",
       "viz.enabled=false"]
PER_EPOCH = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def _start(args, cwd):
    from conftest import cli_env
    from faults import default_sigint

    return subprocess.Popen([sys.executable, "-m", "mnist_experiments", *args], cwd=cwd,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)


def _kill_after(process, state: Path, epochs: int, signum: int) -> str:
    """Send ``signum`` once ``state`` holds ``epochs`` epochs; return the stderr.

    The run is held stopped (SIGSTOP) whenever its state is read, and goes on in 50 ms
    slices (SIGCONT) in between: it cannot train past the check before the signal comes,
    however slowly this process gets the CPU."""
    deadline = time.monotonic() + 300
    os.kill(process.pid, signal.SIGSTOP)
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if TrainingState.load(state).epochs_done >= epochs:
                    break
            except (OSError, ValueError, KeyError):
                pass  # not written yet
            os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.05)
            os.kill(process.pid, signal.SIGSTOP)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signum)  # (delivered as the run goes on, below)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    return stderr


def _history(client, run_id: str, key: str):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _weights(uri: str, run_id: str, cwd: Path):
    from mnist_experiments.tracking.models import load

    return load(run_id, tracking_uri=uri, cwd=str(cwd)).model.get_weights()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_run_interrupted_at_epoch_2_of_12_resumes_bit_identical(tmp_path, signum):
    from mlflow.tracking import MlflowClient

    whole_uri, uri = store_uri(tmp_path / "whole"), store_uri(tmp_path)
    (tmp_path / "whole").mkdir()
    done = run_cli([*CLI, f"mlflow.tracking_uri={whole_uri}",
                    f"hydra.run.dir={tmp_path / 'out-whole'}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    first = tmp_path / "out-first"
    process = _start([*CLI, f"mlflow.tracking_uri={uri}", f"hydra.run.dir={first}"], tmp_path)
    stderr = _kill_after(process, first / "checkpoints/resume/last.npz", 2, signum)
    (run,) = all_runs(uri)
    epochs_done = TrainingState.load(first / "checkpoints/resume/last.npz").epochs_done
    assert 2 <= epochs_done < 12
    if signum == signal.SIGINT:
        assert run.info.status == "KILLED"
        assert f"mnist-exp resume={run.info.run_id}" in stderr  # how to go on
    run_id = run.info.run_id

    # an override that would change the result is refused; nothing is touched
    refused = run_cli([f"resume={run_id}", "train.epochs=13", f"mlflow.tracking_uri={uri}"],
                      tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "train.epochs was 12, this would make it 13" in refused.stderr

    second = tmp_path / "out-second"
    resumed = run_cli([f"resume={run_id}", f"mlflow.tracking_uri={uri}",
                       f"hydra.run.dir={second}", "viz.enabled=false"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming after epoch {epochs_done} of 12" in resumed.stdout + resumed.stderr

    client, whole_client = MlflowClient(uri), MlflowClient(whole_uri)
    (run,) = all_runs(uri)  # the same run, not a new one
    (whole,) = all_runs(whole_uri)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.data.tags["resume.count"] == "1"
    for key in PER_EPOCH:  # one point per epoch, equal to the uninterrupted run's
        history = _history(client, run_id, key)
        assert [step for step, _ in history] == list(range(1, 13)), key
        assert history == _history(whole_client, whole.info.run_id, key), key
    for key in ("test_accuracy", "test_loss", "objective"):
        assert run.data.metrics[key] == whole.data.metrics[key], key
    for a, b in zip(_weights(uri, run_id, tmp_path),
                    _weights(whole_uri, whole.info.run_id, tmp_path)):
        np.testing.assert_array_equal(a, b)

    # the states are removed once the run FINISHED, here and in MLflow; their size is kept
    assert run.data.metrics["checkpoint_bytes"] > 0
    assert not (first / "checkpoints/resume").exists()
    assert not (second / "checkpoints/resume").exists()
    assert client.list_artifacts(run_id, "checkpoints/resume") == []

    again = run_cli([f"resume={run_id}", f"mlflow.tracking_uri={uri}"], tmp_path)
    assert again.returncode == 1 and "FINISHED: there is nothing to continue" in again.stderr


@pytest.mark.slow
def test_a_k_fold_run_resumes_at_its_fold_and_epoch(tmp_path):
    from mlflow.tracking import MlflowClient

    args = ["data=digits", "data.limit=600", "model=seed_tiny", "optimizer=adam",
            "train.epochs=2", "cv=kfold", "cv.folds=3", "viz.enabled=false"]
    whole_uri, uri = store_uri(tmp_path / "whole"), store_uri(tmp_path)
    (tmp_path / "whole").mkdir()
    done = run_cli([*args, f"mlflow.tracking_uri={whole_uri}"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    first = tmp_path / "out-first"
    process = _start([*args, f"mlflow.tracking_uri={uri}", f"hydra.run.dir={first}"], tmp_path)
    _kill_after(process, first / "checkpoints/resume/fold-2/last.npz", 1, signal.SIGTERM)
    parent = next(r for r in all_runs(uri) if "fold" not in r.data.tags)
    resumed = run_cli([f"resume={parent.info.run_id}", f"mlflow.tracking_uri={uri}",
                       f"hydra.run.dir={tmp_path / 'out-second'}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fold 1/3: finished before the run was interrupted" in resumed.stdout + resumed.stderr

    runs, whole = all_runs(uri), all_runs(whole_uri)
    assert len(runs) == len(whole) == 4  # the parent and three folds: none twice
    assert {r.info.status for r in runs} == {"FINISHED"}
    parent = next(r for r in runs if "fold" not in r.data.tags)
    whole_parent = next(r for r in whole if "fold" not in r.data.tags)
    for key in ("cv_val_accuracy_mean", "cv_val_loss_mean", "test_accuracy", "test_loss"):
        assert parent.data.metrics[key] == whole_parent.data.metrics[key], key
    client, whole_client = MlflowClient(uri), MlflowClient(whole_uri)
    for fold in ("1", "2", "3"):
        ours = next(r for r in runs if r.data.tags.get("fold") == fold)
        theirs = next(r for r in whole if r.data.tags.get("fold") == fold)
        assert (_history(client, ours.info.run_id, "val_accuracy")
                == _history(whole_client, theirs.info.run_id, "val_accuracy")), fold
