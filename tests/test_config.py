"""The config interface: every option composes, builds and is validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from conftest import compose_cfg
from mnist_experiments.errors import ConfigError
from mnist_experiments.config.validation import validate

CONF = Path(__file__).resolve().parents[1] / "conf"


def options(group: str):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_public_options_exist():
    assert options("data") == ["digits", "fashion_mnist", "mnist"]
    assert options("model") == ["bn_cnn", "lenet5", "seed_cnn", "seed_tiny"]
    assert {"adam", "adamw", "rmsprop", "sgd"} <= set(options("optimizer"))
    assert {"holdout"} <= set(options("cv"))
    assert {"seed_notebook", "seed_tiny", "best_cnn"} <= set(options("experiment"))


@pytest.mark.parametrize("group", ["data", "model", "optimizer", "cv", "experiment", "debug", "viz"])
def test_every_option_composes_and_validates(group):
    for option in options(group):
        cfg = compose_cfg(f"{group}={option}")
        validate(cfg)


EXPECTED_PARAMS = {"seed_cnn": 93_322, "seed_tiny": 3_410, "lenet5": 61_706}


@pytest.mark.parametrize("model", options("model"))
def test_every_model_builds(model):
    from mnist_experiments.models.builder import build_model
    from mnist_experiments.models.summary import conv_layer_names

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


def test_batch_norm_momentum_reaches_every_batch_normalization_layer():
    import keras

    from mnist_experiments.models.builder import build_model

    def momenta(*overrides):
        model = build_model(compose_cfg("model=bn_cnn", *overrides).model)
        return {layer.momentum for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)}

    assert momenta() == {0.99}  # Keras's own default, so existing configs are unchanged
    assert momenta("model.batch_norm_momentum=0.9") == {0.9}


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
        (["model=bn_cnn", "model.batch_norm_momentum=1.0"], "model.batch_norm_momentum=1.0"),
    ],
)
def test_out_of_range_values_are_clear_errors(overrides, named):
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate(cfg)


# ---------------------------------------------------------------- the registries
def test_each_registry_matches_its_config_group():
    """One entry per option: a YAML file per registry option, a schema in Hydra's store."""
    from hydra.core.config_store import ConfigStore

    from mnist_experiments.config.options import REGISTRIES, allowed_targets
    from mnist_experiments.config.safety import ALLOWED_TARGETS

    # a group of many options also has files that compose several of them, or none
    compositions = {"callbacks": {"none", "default"},
                    "augment": {f"best_for_{data}" for data in options("data")}}
    for registry in REGISTRIES:
        assert options(registry.group) == sorted(
            set(registry.names) | compositions.get(registry.group, set())), registry.group
        stored = ConfigStore.instance().list(f"schema/{registry.group}")
        assert sorted(s[:-5] for s in stored) == sorted(registry.names)
    assert set(ALLOWED_TARGETS) == set(allowed_targets())
    assert "keras.optimizers.Nadam" in ALLOWED_TARGETS  # 9 optimizers, 3 callbacks
    assert "keras.callbacks.EarlyStopping" in ALLOWED_TARGETS and len(ALLOWED_TARGETS) == 12


def _user_option(tmp_path, body: str) -> Path:
    (tmp_path / "optimizer").mkdir()
    (tmp_path / "optimizer" / "mine.yaml").write_text(body)
    return tmp_path


def _compose_with(conf_dir: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    from mnist_experiments.config.compose import CONFIG_MODULE

    with initialize_config_dir(str(conf_dir), version_base="1.3"):
        # the user's dir is searched besides the packaged conf (as --config-dir does)
        return compose(config_name="config", overrides=[
            f"hydra.searchpath=[pkg://{CONFIG_MODULE}]", *overrides])


def test_a_users_own_option_is_checked_like_a_packaged_one(tmp_path):
    """A user's optimizer YAML without our schema default: typed by its _target_ anyway,
    and refused with the same message by mnist-exp's validation and by reproduce."""
    from omegaconf import OmegaConf

    from mnist_experiments.config.untrusted import build_config

    (tmp_path / "config.yaml").write_text("defaults:\n  - config_schema\n  - base@_here_\n")
    # the packaged config.yaml as the base, found through the search path
    (tmp_path / "base.yaml").write_text((CONF / "config.yaml").read_text().split("hydra:")[0])
    good = _user_option(tmp_path, "_target_: keras.optimizers.Nadam\nlearning_rate: 0.002\n")
    cfg = validate(_compose_with(good, "data=digits", "optimizer=mine"))
    assert cfg.optimizer.beta_2 == 0.999  # typed: the schema's defaults filled in
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    rebuilt = build_config(container, [], "config.yaml")
    assert OmegaConf.to_container(rebuilt.optimizer) == container["optimizer"]

    (good / "optimizer" / "mine.yaml").write_text(
        "_target_: keras.optimizers.Nadam\nlearning_rate: 0.002\nbeta_3: 1\n")
    with pytest.raises(ConfigError) as composed:
        validate(_compose_with(good, "data=digits", "optimizer=mine"))
    container["optimizer"]["beta_3"] = 1
    with pytest.raises(ConfigError) as untrusted:
        build_config(container, [], "config.yaml")
    for exc in (composed, untrusted):
        assert "optimizer.beta_3" in str(exc.value)
        assert "The optimizer 'nadam' takes learning_rate, beta_1, beta_2, epsilon" in str(exc.value)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optimizer=adam", "optimizer.beta_1=5"], "optimizer.beta_1=5.0 is invalid: it must lie in [0, 1)"),
        (["optimizer.rho=-3"], "optimizer.rho=-3.0 is invalid"),
        (["optimizer.epsilon=-1"], "optimizer.epsilon=-1.0 is invalid: it must be a positive number"),
        (["seed=-1"], "seed=-1 is invalid: it must lie in [0, 4294967295]"),
        (["data.limit=10"], "data.limit=10 is invalid: it must be at least 20"),
        (["cv=kfold", "cv.folds=1"], "cv.folds=1 is invalid: it must be at least 2"),
        (["viz.dpi=5000"], "viz.dpi=5000 is invalid"),
        (["model.dense_layers.0.activation=relux"], "model.dense_layers.0.activation='relux'"),
    ],
)
def test_range_rules_come_from_the_schema(overrides, named):
    with pytest.raises(ConfigError) as exc:
        validate(compose_cfg(*overrides))
    assert named in str(exc.value)
    assert "Try " in str(exc.value) or "one of" in str(exc.value)


def test_the_best_cnn_preset_builds_the_batch_normalised_cnn_with_its_schedule():
    import keras

    from mnist_experiments.models.builder import build_model

    cfg = validate(compose_cfg("experiment=best_cnn"))
    assert (cfg.model.name, cfg.optimizer._target_, cfg.schedule.name) == (
        "bn_cnn", "keras.optimizers.Adam", "cosine")
    assert list(cfg.callbacks) == []  # the cosine decay's last epoch is the one kept
    model = build_model(cfg.model)
    momenta = {layer.momentum for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


@pytest.mark.parametrize("overrides, augment", [
    (["data=mnist"], "light"),
    (["data=digits"], "light"),
    (["data=fashion_mnist"], "none"),
    (["data=fashion_mnist", "augment=light"], "light"),  # the command line still decides
    (["data=mnist", "augment=none"], "none"),
])
def test_best_cnn_takes_the_augmentation_that_measured_best_for_its_data(overrides, augment):
    cfg = validate(compose_cfg("experiment=best_cnn", *overrides))
    assert cfg.augment.name == augment
