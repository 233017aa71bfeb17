"""The input pipeline and the training loop's speed settings (which must not change results)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import compose_cfg
from mnist_experiments.training import pipeline, seeding
from mnist_experiments.training import fit as training
from mnist_experiments.data import load_dataset


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_the_pipeline_gathers_scaled_batches_in_a_seeded_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
    labels = np.arange(100, dtype=np.int64)  # label i belongs to image i
    ds = pipeline.make_dataset(images, labels, batch_size=32, shuffle=True, seed=7)

    first, second = _batches(ds), _batches(ds)  # two epochs
    assert [len(y) for _, y in first] == [32, 32, 32, 4]
    order = np.concatenate([y for _, y in first])
    assert sorted(order) == list(range(100)) and list(order) != list(range(100))
    for x, y in first:  # each image travels with its own label, as float32 in [0, 1]
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
        np.testing.assert_allclose(x[..., 0], images[y] / 255.0, rtol=1e-6)
    assert list(np.concatenate([y for _, y in second])) != list(order)  # reshuffled
    again = pipeline.make_dataset(images, labels, batch_size=32, shuffle=True, seed=7)
    assert [list(y) for _, y in _batches(again)] == [list(y) for _, y in first]  # seeded

    # no autotuning: its model thread made every epoch end on its own schedule
    assert ds.options().autotune.enabled is False
    unshuffled = pipeline.make_dataset(images, labels, batch_size=32)
    assert list(np.concatenate([y for _, y in _batches(unshuffled)])) == list(range(100))


@pytest.mark.slow
def test_steps_per_execution_does_not_change_the_trained_model():
    runs = {}
    for steps in (1, 8):
        cfg = compose_cfg("data=digits", "data.limit=200", "model=seed_tiny", "train.epochs=2",
                          f"train.steps_per_execution={steps}")
        data = load_dataset(cfg.data, int(cfg.seed))
        keras.backend.clear_session()
        seeding.seed_everything(int(cfg.seed), True)
        result = training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val)
        runs[steps] = (result.model.get_weights(), result.history)
    (weights_1, history_1), (weights_8, history_8) = runs[1], runs[8]
    assert history_1 == history_8
    assert all(np.array_equal(a, b) for a, b in zip(weights_1, weights_8))
    assert compose_cfg().train.steps_per_execution == 8  # the default


def test_the_losses_and_their_labels():
    default = compose_cfg().train
    assert training.training_loss(default) == "sparse_categorical_crossentropy"
    assert not training.one_hot_labels(default)
    smoothed = compose_cfg("train.label_smoothing=0.1").train
    loss = training.training_loss(smoothed)
    assert isinstance(loss, keras.losses.CategoricalCrossentropy)
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    focal = training.training_loss(compose_cfg("train.loss=focal", "train.focal_gamma=1").train)
    assert isinstance(focal, keras.losses.CategoricalFocalCrossentropy)
    assert focal.get_config()["gamma"] == 1.0
    labels = np.array([3, 0, 9], dtype=np.int64)
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    (_, hot), = [(x.numpy(), y.numpy()) for x, y in pipeline.make_dataset(
        images, labels, batch_size=3, one_hot=10)]
    np.testing.assert_array_equal(hot, np.eye(10)[labels])


@pytest.mark.slow
def test_label_smoothing_is_the_loss_the_model_trains_on():
    """The training loss of one batch equals cross-entropy against smoothed targets."""
    from mnist_experiments.config.validation import validate

    cfg = validate(compose_cfg("data=digits", "data.limit=200", "model=seed_tiny",
                               "train.label_smoothing=0.2"))
    data = load_dataset(cfg.data, int(cfg.seed))
    model = training.build_and_compile(cfg)
    batch = pipeline.make_dataset(data.x_val[:32], data.y_val[:32], 32, one_hot=10)
    measured = model.evaluate(batch, verbose=0, return_dict=True)["loss"]
    probs = model.predict(pipeline.to_float(data.x_val[:32]), verbose=0).astype(np.float64)
    targets = np.eye(10)[data.y_val[:32]] * 0.8 + 0.2 / 10
    expected = float(np.mean(-np.sum(targets * np.log(np.clip(probs, 1e-7, 1)), axis=1)))
    assert measured == pytest.approx(expected, rel=1e-4)
