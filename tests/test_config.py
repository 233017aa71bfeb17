"""The config interface: every option composes, builds and is validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import compose_cfg
from mnist_experiments.errors import ConfigError
from mnist_experiments.config.schema import validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_public_options_exist():
    assert options("data") == ["digits", "fashion_mnist", "mnist"]
    assert options("model") == ["bn_cnn", "lenet5", "seed_cnn", "seed_tiny"]
    assert options("optimizer") == ["adam", "adamw", "rmsprop", "sgd"]
    assert {"holdout"} <= set(options("cv"))
    assert {"seed_notebook", "seed_tiny"} <= set(options("experiment"))


@pytest.mark.parametrize("group", ["data", "model", "optimizer", "cv", "experiment", "debug", "viz"])
def test_every_option_composes_and_validates(group):
    for option in options(group):
        cfg = compose_cfg(f"{group}={option}")
        validate(cfg)


EXPECTED_PARAMS = {"seed_cnn": 93_322, "seed_tiny": 3_410, "lenet5": 61_706}


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds(model):
    from mnist_experiments.models.builder import build_model, conv_layer_names

    cfg = compose_cfg(f"model={model}")
    keras_model = build_model(cfg.model)
    assert keras_model.output_shape == (None, 10)
    if model in EXPECTED_PARAMS:
        assert keras_model.count_params() == EXPECTED_PARAMS[model]
    expected_convs = {"seed_cnn": 3, "seed_tiny": 1, "lenet5": 2, "bn_cnn": 4}[model]
    assert len(conv_layer_names(keras_model)) == expected_convs


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_instantiates_with_its_options(optimizer):
    from mnist_experiments.config.safety import safe_instantiate

    cfg = compose_cfg(f"optimizer={optimizer}", "optimizer.learning_rate=0.005")
    opt = safe_instantiate(cfg.optimizer)
    assert type(opt).__name__.lower() == optimizer
    assert float(opt.learning_rate) == pytest.approx(0.005)
    if optimizer == "sgd":
        assert float(compose_cfg("optimizer=sgd", "optimizer.momentum=0.9").optimizer.momentum) == 0.9


def test_experiment_presets_match_the_notebooks():
    cfg = compose_cfg("experiment=seed_notebook")
    assert (cfg.model.name, cfg.optimizer._target_, cfg.train.batch_size, cfg.train.epochs) == (
        "seed_cnn", "keras.optimizers.RMSprop", 64, 5)
    assert cfg.data.validation.value == "test_halves"
    cfg = compose_cfg("experiment=seed_tiny")
    assert (cfg.model.name, cfg.optimizer._target_, cfg.train.batch_size, cfg.train.epochs) == (
        "seed_tiny", "keras.optimizers.SGD", 1024, 5)


def test_a_layer_can_be_changed_from_the_command_line():
    from mnist_experiments.models.builder import build_model

    cfg = compose_cfg("model=seed_cnn", "model.conv_blocks.0.filters=8", "model.dense_layers.0.units=16")
    model = build_model(cfg.model)
    assert model.get_layer("conv1").filters == 8
    assert model.get_layer("dense1").units == 16


def test_an_architecture_can_be_added_in_yaml_alone(tmp_path):
    """A user's own --config-dir adds options to the packaged groups."""
    import yaml

    from conftest import run_cli
    from mnist_experiments.models.builder import build_model

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "wide.yaml").write_text(
        "defaults:\n  - /schema/model@_here_: model\n  - _self_\n"
        "name: wide\nconv_blocks:\n  - {filters: 5, kernel_size: 5, padding: same}\n"
        "dense_layers: []\n"
    )
    result = run_cli(["--config-dir", str(tmp_path), "model=wide", "--cfg", "job"], tmp_path)
    assert result.returncode == 0, result.stderr
    model_cfg = yaml.safe_load(result.stdout)["model"]
    assert model_cfg["conv_blocks"][0]["filters"] == 5
    from omegaconf import OmegaConf

    assert build_model(OmegaConf.create(model_cfg)).count_params() == (5 * 25 + 5) + (14 * 14 * 5 * 10 + 10)  # pool_size 2 by default


@pytest.mark.parametrize(
    "override",
    ["train.epoch=3", "data.foo=1", "model.conv_blocks.0.filter=3", "optimizer.momentom=0.9"],
)
def test_unknown_keys_are_errors(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


@pytest.mark.parametrize(
    "override", ["train.epochs=three", "train.batch_size=1.5", "data.validation=random",
                 "model.conv_blocks.0.padding=full", "train.deterministic=maybe"],
)
def test_wrong_types_are_errors(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(override)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["train.epochs=0"], "train.epochs=0"),
        (["train.batch_size=0"], "train.batch_size=0"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate=0"),
        (["optimizer=adam", "optimizer.learning_rate=-0.1"], "optimizer.learning_rate=-0.1"),
        (["data.val_fraction=1.0"], "data.val_fraction=1.0"),
        (["data.val_fraction=0"], "data.val_fraction=0"),
        (["model.conv_blocks.0.kernel_size=27"], "below 1x1"),
        (["model=lenet5", "model.conv_blocks.1.kernel_size=15"], "below 1x1"),
        (["model.conv_blocks.0.dropout=1.5"], "dropout=1.5"),
    ],
)
def test_out_of_range_values_are_clear_errors(overrides, named):
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate(cfg)
