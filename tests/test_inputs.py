"""Inputs that used to be accepted and should not be (issue 14): each refused, clearly,
before anything runs or any memory is spent.

Real Hydra composition, real files, and the real commands in subprocesses wherever the
user-visible message or the memory of the process is what matters.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, cli_env, compose_cfg, run_cli
from mnist_experiments.config.validation import validate
from mnist_experiments.errors import ConfigError

CONF_MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def refused(*overrides: str) -> str:
    """The ConfigError message of validate() for the composed ``overrides``."""
    with pytest.raises(ConfigError) as info:
        validate(compose_cfg(*overrides))
    return str(info.value)


def run_measured(code: str, *args: str, cwd: Path = REPO, timeout: float = 120):
    """Run ``code`` in a fresh Python; return its result and its peak RSS in MiB.

    The peak is the process' own high-water mark (VmHWM): getrusage's ru_maxrss would
    carry over the RSS of the pytest process it was forked from, across exec.
    """
    code = textwrap.dedent(code) + textwrap.dedent("""
        import re, sys
        sys.stdout.flush()
        with open("/proc/self/status") as status:
            hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1))
        print("PEAK_MIB", hwm // 1024)
        """)
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=cli_env(),
                            capture_output=True, text=True, timeout=timeout)
    peak = int(result.stdout.rsplit("PEAK_MIB", 1)[-1].split()[0])
    return result, peak


# The real console-script function, as the installed script runs it.
MAIN = """
import importlib, sys
target, *args = sys.argv[1:]
module, _, function = target.partition(":")
sys.argv = [module, *args]
try:
    code = getattr(importlib.import_module(module), function)()
except SystemExit as exit:
    code = exit.code
print("EXIT", code)
"""


# ------------------------------------------------------------------ unknown keys
@pytest.mark.parametrize("overrides, message", [
    (["+train.epoch=3"], "train.epoch is not a config key; did you mean train.epochs?"),
    (["+foo=1"], "foo is not a config key. The keys at the top level are seed, data"),
    (["+epochs=3"], "epochs is not a config key; did you mean train.epochs?"),
    (["+model.conv_blocks.0.filter=3"], "did you mean model.conv_blocks.0.filters?"),
    (["+data.foo=1"], "data.foo is not a config key. The keys under data are name, path"),
    (["cv=kfold", "+cv.fold=3"], "cv.fold is not a config key; did you mean cv.folds?"),
    (["optimizer=adam", "+optimizer.momentum=0.9"],
     "the optimizer 'adam' has no momentum; rmsprop, sgd have it (optimizer=rmsprop)"),
    (["+optimizer.foo=1"], "The optimizer 'rmsprop' takes learning_rate, rho, momentum"),
])
def test_keys_added_with_plus_are_refused_with_the_closest_key(overrides, message):
    text = refused(*overrides)
    assert message in text, text
    assert "Unknown config key" in text


def test_every_unknown_key_is_named_at_once():
    text = refused("+train.epoch=3", "+viz.dpii=50")
    assert "train.epoch is not" in text and "did you mean viz.dpi?" in text


def test_every_packaged_key_is_known():
    """The walker agrees with the schema: no packaged option has a key it calls unknown."""
    from mnist_experiments.config.keys import all_keys, unknown_key_problems

    for group in ("data", "model", "optimizer", "cv", "experiment", "debug", "viz"):
        for path in sorted((REPO / "conf" / group).glob("*.yaml")):
            assert unknown_key_problems(compose_cfg(f"{group}={path.stem}")) == [], path
    keys = all_keys()
    assert {"train.epochs", "optimizer.momentum", "cv.folds", "model.conv_blocks.0.filters",
            "mlflow.register_as"} <= set(keys)


def test_unknown_keys_are_refused_by_the_cli_before_any_run(tmp_path):
    for override, message in [("+train.epoch=3", "did you mean train.epochs?"),
                              ("+foo=1", "foo is not a config key")]:
        result = run_cli(["data=digits", override], tmp_path)
        assert result.returncode == 1, result.stderr[-2000:]
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))  # no store, no run


def test_unknown_keys_are_refused_in_reproduce_with_the_same_message():
    """A config from someone else (reproduce, grade) goes through the same check."""
    from omegaconf import OmegaConf

    from mnist_experiments.config.untrusted import build_config

    container = OmegaConf.to_container(compose_cfg("data=digits"), resolve=True,
                                       enum_to_str=True)
    container["train"]["epoch"] = 3
    container["optimizer"]["rhoo"] = 0.5
    with pytest.raises(ConfigError) as info:
        build_config(container, [], "submitted.yaml")
    text = str(info.value)
    assert "submitted.yaml" in text
    assert "train.epoch is not a config key; did you mean train.epochs?" in text
    assert "optimizer.rhoo is not a config key; did you mean optimizer.rho?" in text


# ------------------------------------------------------------ optimizer options
def _out_of_range(bounds) -> float:
    if bounds.ge is not None:
        return bounds.ge - 1.0
    if bounds.gt is not None:
        return bounds.gt - 1.0
    return (bounds.le if bounds.le is not None else bounds.lt) + 1.0


def _bounded_options():
    from mnist_experiments.config.optimizer import OPTIMIZERS
    from mnist_experiments.config.rules import field_bounds

    for option in OPTIMIZERS:
        for f in dataclasses.fields(option.schema):
            if field_bounds(f) is not None:
                yield pytest.param(option.name, f.name, _out_of_range(field_bounds(f)),
                                   id=f"{option.name}.{f.name}")


def test_every_numeric_optimizer_option_has_a_range():
    """No gap: every float or int option of every optimizer carries a range rule."""
    from mnist_experiments.config.optimizer import OPTIMIZERS
    from mnist_experiments.config.rules import field_bounds

    unbounded = [f"{o.name}.{f.name}" for o in OPTIMIZERS for f in dataclasses.fields(o.schema)
                 if f.type in ("float", "int", float, int) and field_bounds(f) is None]
    assert unbounded == []


@pytest.mark.parametrize("optimizer, key, value", list(_bounded_options()))
def test_out_of_range_optimizer_options_are_refused(optimizer, key, value):
    text = refused(f"optimizer={optimizer}", f"optimizer.{key}={value}")
    assert f"optimizer.{key}={value}" in text and "it must" in text


def test_seed_and_optimizer_values_are_refused_by_the_cli(tmp_path):
    """seed=-1 with the notebook's validation: a problem with seed (and its range), not
    with data.val_fraction; beta_1, rho and epsilon refused before anything runs."""
    result = run_cli(["data=digits", "seed=-1", "data.validation=test_halves",
                      "optimizer=adam", "optimizer.beta_1=5", "optimizer.epsilon=-1"], tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert "seed=-1 is invalid: it must lie in [0, 4294967295]" in err
    assert "optimizer.beta_1=5.0 is invalid" in err and "optimizer.epsilon=-1.0 is invalid" in err
    assert "val_fraction" not in err and "Traceback" not in err
    result = run_cli(["data=digits", "optimizer.rho=-3"], tmp_path)
    assert result.returncode == 1 and "optimizer.rho=-3.0 is invalid" in result.stderr
    assert not list(tmp_path.glob("*mlflow.db*"))


# --------------------------------------------------------------- groups set to null
@pytest.mark.parametrize("group, options", [
    ("optimizer", "adadelta, adagrad, adam, adamax, adamw, lion, nadam, rmsprop, sgd"),
    ("model", "bn_cnn, lenet5, seed_cnn, seed_tiny"),
    ("data", "digits, fashion_mnist, mnist"),
])
def test_a_group_set_to_null_names_the_group_and_its_options(group, options):
    from mnist_experiments.config.compose import compose_config
    from mnist_experiments.config.groups import check_group_overrides

    with pytest.raises(ConfigError) as info:
        check_group_overrides(["-m", f"{group}=null", "seed=1"])
    assert f"{group}=null cannot be used" in str(info.value) and options in str(info.value)
    check_group_overrides([f"{group}.name=null", "seed=1"])  # a key, not the group: fine
    if group == "data":  # evaluate and grade compose through compose_config
        with pytest.raises(ConfigError, match="data=null cannot be used.*digits"):
            compose_config(["data=null"])
    # ~group (deleting it) composes a config without the group: refused as clearly
    text = refused(f"~{group}")
    assert f"the config has no {group}" in text and options in text


# ------------------------------------------------------------- registry names
BAD_NAMES = ["a/b", "team:cnn", "", "   ", ".", "..", "../x", "a%b", "a\\b", "x" * 257]
# MLflow's file store refuses % and \ and the SQL stores' name column holds 256
# characters, which SQLite does not enforce: refused for every store alike.
STRICTER_THAN_SQLITE = {"a%b", "a\\b", "x" * 257}
GOOD_NAMES = ["digits-cnn", "Digits CNN v2", "cnn.final", "x" * 256, "ünïcode"]
BAD_ALIASES = ["latest", "LATEST", "v3", "V12", "has space", "a/b", "", "x" * 256]
GOOD_ALIASES = ["champion", "v1a", "best_2", "x" * 255]


def test_registry_names_are_refused_before_the_run():
    for name in BAD_NAMES:
        text = refused(f"mlflow.register_as='{name}'")
        assert "mlflow.register_as=" in text and "is not a name MLflow accepts" in text
    for name in GOOD_NAMES:
        validate(compose_cfg(f"mlflow.register_as='{name}'"))
    for alias in BAD_ALIASES:
        text = refused("mlflow.register_as=m", f"mlflow.register_alias='{alias}'")
        assert "is not an alias MLflow accepts" in text
    assert "needs a logged model" in refused("mlflow.register_as=m", "mlflow.log_model=false")
    assert "no model is registered" in refused("mlflow.register_alias=champion")


@pytest.mark.slow
def test_our_name_rules_agree_with_a_real_mlflow_registry(tmp_path):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from mnist_experiments.config.names import alias_problem, model_name_problem

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in BAD_NAMES + GOOD_NAMES:
        try:
            client.create_registered_model(name)
            accepted = True
        except MlflowException:
            accepted = False
        if name in STRICTER_THAN_SQLITE:  # refused by MLflow's other stores
            assert accepted and model_name_problem(name) is not None, name
            continue
        assert (model_name_problem(name) is None) == accepted, name
    version = client.create_model_version("digits-cnn", str(tmp_path)).version
    for alias in BAD_ALIASES + GOOD_ALIASES:
        try:
            client.set_registered_model_alias("digits-cnn", alias, version)
            accepted = True
        except MlflowException:
            accepted = False
        assert (alias_problem(alias) is None) == accepted, alias


# ---------------------------------------------------------- evaluate's class names
@pytest.mark.slow  # imports the evaluate workflow: TensorFlow and MLflow
def test_class_names_are_compared_only_when_the_run_recorded_them():
    from omegaconf import OmegaConf

    from mnist_experiments.workflows.evaluate import class_names_mismatch

    digits = OmegaConf.create({"name": "digits", "class_names": [str(i) for i in range(10)]})
    fashion = compose_cfg("data=fashion_mnist").data
    recorded = {"data": {"name": "digits", "class_names": [str(i) for i in range(10)]}}
    assert class_names_mismatch(recorded, digits) == ""
    assert class_names_mismatch(None, fashion) == ""  # nothing recorded: nothing to say
    assert class_names_mismatch({"data": {"name": "x"}}, fashion) == ""
    line = class_names_mismatch(recorded, fashion)
    assert "\n" not in line and "(data digits)" in line and "Ankle boot" in line


@pytest.mark.slow
def test_evaluating_a_digits_model_on_fashion_mnist_warns_about_the_class_names(
        trained_run, tmp_path):
    from mnist_experiments.data.idx import save_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 100)):
        save_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                 rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        save_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz",
                 (np.arange(n) % 10).astype(np.uint8))
    run_id = trained_run["run"].info.run_id
    result = run_cli([run_id, "data=fashion_mnist", f"data.path={tmp_path}",
                      "--tracking-uri", trained_run["uri"]], trained_run["dir"],
                     module="mnist_experiments.commands.evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "Class names differ" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] (data digits)" in warnings[0]
    assert "fashion_mnist names its classes [T-shirt/top, Trouser" in warnings[0]
    assert "Traceback" not in result.stderr


def test_a_group_set_to_null_on_the_command_line_is_one_paragraph(tmp_path):
    result = run_cli(["optimizer=null"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "optimizer=null cannot be used" in result.stderr and "rmsprop" in result.stderr
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()
