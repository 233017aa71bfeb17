"""The ``augment`` group: Keras preprocessing layers at the model's input that change
training batches only, seeded, and shown in a figure among the run's artifacts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import FAST, all_runs, compose_cfg, run_cli, store_uri
from mnist_experiments.config.validation import validate
from mnist_experiments.data import load_dataset
from mnist_experiments.training import fit as training
from mnist_experiments.training import seeding
from mnist_experiments.training.augmentation import augmenter, augmented_samples
from mnist_experiments.training.pipeline import to_float


def _cfg(*overrides):
    return validate(compose_cfg("data=digits", "data.limit=200", "model=seed_tiny", *overrides))


def test_none_adds_no_layer_and_the_others_sit_right_after_the_input():
    assert augmenter(_cfg()) is None and _cfg().augment.name == "none"
    for name in ("light", "strong"):
        model = training.build_and_compile(_cfg(f"augment={name}"))
        assert model.layers[1].name == "augment"
        assert model.count_params() == training.build_and_compile(_cfg()).count_params()
    kinds = [layer.__class__.__name__ for layer in augmenter(_cfg("augment=strong")).layers]
    assert kinds == ["RandomTranslation", "RandomRotation", "RandomZoom", "RandomContrast"]


@pytest.mark.parametrize("override, needle", [
    ("augment.rotation=1.5", "augment.rotation=1.5 is invalid"),
    ("augment.zoom=-0.1", "augment.zoom=-0.1 is invalid"),
    ("+augment.shear=0.1", "augment.shear is not a config key"),
])
def test_bad_amounts_are_refused(override, needle):
    from mnist_experiments.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        _cfg("augment=light", override)
    assert needle in str(refused.value)


def test_augmented_batches_differ_from_their_inputs_and_repeat_with_the_seed():
    data = load_dataset(_cfg().data, 42)
    images = data.x_train[:16]
    first = augmented_samples(_cfg("augment=light"), images)
    again = augmented_samples(_cfg("augment=light"), images)
    other_seed = augmented_samples(_cfg("augment=light", "seed=7"), images)
    assert first.shape == (3, 16, 28, 28)
    originals = to_float(images)[..., 0]
    assert all(not np.allclose(version, originals) for version in first)  # changed
    assert not np.array_equal(first[0], first[1])  # each draw differs
    np.testing.assert_array_equal(first, again)  # one seed: the same batches
    assert not np.array_equal(first, other_seed)


def test_validation_and_test_batches_pass_through_untouched():
    layer = augmenter(_cfg("augment=strong"))
    x = to_float(load_dataset(_cfg().data, 42).x_test[:32])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    # the whole model predicts exactly as the same weights without the layer do
    with_layer = training.build_and_compile(_cfg("augment=strong"))
    without = training.build_and_compile(_cfg())
    without.set_weights([w for layer in with_layer.layers if layer.name != "augment"
                         for w in layer.get_weights()])
    np.testing.assert_array_equal(with_layer.predict(x, verbose=0), without.predict(x, verbose=0))


@pytest.mark.slow
def test_two_trainings_with_one_seed_are_identical():
    def train():
        cfg = _cfg("augment=light", "train.epochs=2")
        data = load_dataset(cfg.data, int(cfg.seed))
        keras.backend.clear_session()
        seeding.seed_everything(int(cfg.seed), True)
        result = training.fit(cfg, data.x_train, data.y_train, data.x_val, data.y_val)
        return result.history, result.model.get_weights()

    (h1, w1), (h2, w2) = train(), train()
    assert h1 == h2
    assert all(np.array_equal(a, b) for a, b in zip(w1, w2))


@pytest.mark.slow
def test_a_run_logs_its_augmented_samples(tmp_path):
    done = run_cli([*FAST, "augment=light", "mlflow.log_model=false"], tmp_path)
    assert done.returncode == 0, done.stderr
    (run,) = all_runs(store_uri(tmp_path))
    from mlflow.tracking import MlflowClient

    plots = [a.path for a in MlflowClient(store_uri(tmp_path)).list_artifacts(
        run.info.run_id, "plots")]
    assert [p for p in plots if "augment" in p] == ["plots/augment_samples.png"]
    assert run.data.params["augment.name"] == "light"
