"""``mnist-exp-reproduce`` end to end: real training runs, real reproductions, real stores.

One training run (on an npz file written here) is reproduced by run id, from its Hydra
run dir, from its downloaded config.yaml on a "TA's machine" (another directory with a
fresh store), and with a deliberately changed seed; those four reproductions run in
parallel subprocesses to keep the module fast. Then the npz is changed by one pixel,
which must be refused (and accepted with --allow-data-change). Configs that try to run
code are refused before anything is imported, built or logged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from conftest import all_runs, cli_env, compose_cfg, run_cli, store_uri

MODULE = "mnist_experiments.commands.reproduce"
# Small and fast: 300 training and 150 test digits from an npz, one epoch, nothing extra.
TRAIN_OVERRIDES = ["data=mnist", "train.epochs=1", "viz=off", "mlflow.log_model=false"]
HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
RESULT_METRICS = ["objective", "test_loss", "test_accuracy", "test_precision",
                  "test_recall", "test_f1_macro", "test_f1_weighted"]


def write_npz(path: Path) -> None:
    """Keras layout (x_train, y_train, x_test, y_test; uint8 images), from the digits."""
    from mnist_experiments.data import load_digits_28

    raw = load_digits_28()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=raw.x_train[:300], y_train=raw.y_train[:300],
             x_test=raw.x_test[:150], y_test=raw.y_test[:150])


class Job:
    """A ``python -m mnist_experiments.workflows.reproduce`` subprocess writing to files."""

    def __init__(self, args: Sequence[str], cwd: Path, name: str):
        self.args = list(args)
        self.out = cwd.parent / f"{cwd.name}-{name}.out"
        self.err = cwd.parent / f"{cwd.name}-{name}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", MODULE, *self.args], cwd=cwd,
                                         env=cli_env(), stdout=out, stderr=err, text=True)

    def result(self, timeout: float = 300) -> subprocess.CompletedProcess:
        self.proc.wait(timeout=timeout)
        return subprocess.CompletedProcess(self.args, self.proc.returncode,
                                           self.out.read_text(), self.err.read_text())


def reproduce(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_cli(list(args), cwd, module=MODULE)


def table(stdout: str) -> Dict[str, List[str]]:
    """The rows of the printed table: metric -> [original, reproduced, difference, ...]."""
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if cells and (cells[0] == "objective" or cells[0].startswith(("test_", "cv_"))):
            rows[cells[0]] = cells[1:]
    return rows


def new_runs(uri: str, before: Sequence) -> List:
    known = {r.info.run_id for r in before}
    return [r for r in all_runs(uri) if r.info.run_id not in known]


# ------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """One real training run on an npz file, launched in its own directory."""
    workdir = tmp_path_factory.mktemp("student")
    npz = workdir / "data" / "digits.npz"
    write_npz(npz)
    result = run_cli([*TRAIN_OVERRIDES, f"data.path={npz}"], workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    uri = store_uri(workdir)
    (run,) = all_runs(uri)
    assert run.info.status == "FINISHED"
    run_dir = Path(run.data.tags["hydra.output_dir"])
    assert run_dir.is_dir() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert run_dir.parent == workdir / "outputs" / "runs"
    return {"dir": workdir, "uri": uri, "run": run, "npz": npz, "run_dir": run_dir}


@pytest.fixture(scope="module")
def reproductions(original, tmp_path_factory):
    """Four reproductions of the original, run at the same time (bit-identity under load)."""
    workdir, run = original["dir"], original["run"]
    run_id = run.info.run_id

    # The TA's machine: another directory, its own (fresh) store, only the config file.
    ta_dir = tmp_path_factory.mktemp("ta")
    downloaded = Path(MlflowClient(original["uri"]).download_artifacts(
        run_id, "config.yaml", str(tmp_path_factory.mktemp("download"))))
    submitted = ta_dir / "submission" / "config.yaml"
    submitted.parent.mkdir()
    shutil.copy(downloaded, submitted)

    # Someone else's copy of the data, one pixel off.
    changed = ta_dir / "changed.npz"
    arrays = dict(np.load(original["npz"]))
    arrays["x_train"][0, 14, 14] ^= 0x01
    np.savez(changed, **arrays)

    jobs = {
        "run_id": Job([run_id], workdir, "run_id"),
        "run_dir": Job([str(original["run_dir"])], workdir, "run_dir"),
        "seed": Job([run_id, "--override", "seed=7", "--calibration-runs", "0"], workdir, "seed"),
        "config_file": Job([str(submitted)], ta_dir, "config_file"),
        "changed_data": Job([run_id, "--override", f"data.path={changed}",
                             "--allow-data-change", "--calibration-runs", "0"], workdir,
                            "changed_data"),
    }
    results = {name: job.result() for name, job in jobs.items()}
    return {"results": results, "ta_dir": ta_dir, "submitted": submitted, "changed": changed}


def the_reproduction(uri: str, reproduces: str):
    runs = [r for r in all_runs(uri) if r.data.tags.get("reproduces") == reproduces]
    return runs


# ------------------------------------------------------------- reproductions
@pytest.mark.slow
def test_reproduce_by_run_id_is_bit_identical(original, reproductions):
    result = reproductions["results"]["run_id"]
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "Verdict: REPRODUCED" in result.stdout
    assert "Traceback" not in result.stderr

    run = original["run"]
    rows = table(result.stdout)
    assert set(RESULT_METRICS) <= set(rows), result.stdout
    for name in RESULT_METRICS:
        orig, repro, diff = rows[name][:3]
        assert diff == "0", (name, rows[name])
        assert float(orig) == run.data.metrics[name] == float(repro), name

    # the new run: tagged with the run it reproduces, same config, same data
    client = MlflowClient(original["uri"])
    new_id = re.search(r"Reproduction: run ([0-9a-f]{32})", result.stdout).group(1)
    new = client.get_run(new_id)
    assert new.info.status == "FINISHED"
    assert new.info.experiment_id == run.info.experiment_id
    assert new.data.tags["reproduces"] == run.info.run_id
    assert new.data.tags["reproduction.verdict"] == "REPRODUCED"
    assert run.info.run_id in new.data.tags["mlflow.note.content"]
    assert new.data.tags["data.fingerprint"] == run.data.tags["data.fingerprint"]
    for name in RESULT_METRICS:
        assert new.data.metrics[name] == run.data.metrics[name], name
    original_params = {k: v for k, v in run.data.params.items()}
    assert new.data.params == original_params
    assert (yaml.safe_load(open(client.download_artifacts(new_id, "config.yaml")))
            == yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config.yaml"))))
    # the same overrides as the original (run name and overrides tag)
    assert new.info.run_name == run.info.run_name
    assert new.data.tags["overrides"] == run.data.tags["overrides"]


@pytest.mark.slow
def test_reproduce_from_the_hydra_run_dir(original, reproductions):
    result = reproductions["results"]["run_dir"]
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "Verdict: REPRODUCED" in result.stdout
    rows = table(result.stdout)
    assert set(RESULT_METRICS) <= set(rows)  # found the original run by its output dir
    assert all(row[2] == "0" for row in rows.values()), rows
    run_id = original["run"].info.run_id
    (new,) = [r for r in the_reproduction(original["uri"], run_id)
              if r.data.tags.get("reproduces.path")]
    assert new.data.tags["reproduces.path"] == str(original["run_dir"])
    assert new.data.tags["reproduces.kind"] == "run_dir"


@pytest.mark.slow
def test_reproduce_from_a_config_file_on_another_machine(original, reproductions):
    """Only the config file: no original metrics or data fingerprint beside it."""
    result = reproductions["results"]["config_file"]
    assert result.returncode == 2, result.stdout + result.stderr[-4000:]
    assert "Verdict: cannot compare (the original has no recorded metrics" in result.stdout
    assert "fingerprint is unknown" in result.stderr
    # logged in the TA's own store, tagged with the file it reproduces
    (new,) = all_runs(store_uri(reproductions["ta_dir"]))
    assert new.data.tags["reproduces"] == str(reproductions["submitted"])
    assert new.data.tags["reproduction.verdict"] == "NOTHING_TO_COMPARE"
    # and still the student's numbers, to the last bit
    for name in RESULT_METRICS:
        assert new.data.metrics[name] == original["run"].data.metrics[name], name
    rows = table(result.stdout)
    assert rows["test_accuracy"][0] == "-"  # no original value in the table


@pytest.mark.slow
def test_a_changed_seed_without_calibration_is_inconsistent(original, reproductions):
    result = reproductions["results"]["seed"]
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    assert "Verdict: INCONSISTENT" in result.stdout and "no calibration runs" in result.stdout
    rows = table(result.stdout)
    changed = {name: row for name, row in rows.items() if row[2] != "0"}
    assert "test_loss" in changed, rows  # a loss never survives another seed
    assert float(changed["test_loss"][2]) == pytest.approx(
        float(changed["test_loss"][1]) - float(changed["test_loss"][0]), rel=1e-2)
    assert "<-- differs" in result.stdout
    # the data files were checked with the original seed and passed: only a warning that
    # the seeded split (and so the fingerprint) differs
    assert "differ from the original run's" not in result.stderr
    assert "provenance differs: data.fingerprint" in result.stderr
    (new,) = [r for r in the_reproduction(original["uri"], original["run"].info.run_id)
              if r.data.tags.get("reproduces.overrides") == "seed=7"]
    assert new.data.params["seed"] == "7"
    assert new.data.tags["reproduction.verdict"] == "INCONSISTENT"


@pytest.mark.slow
def test_changed_data_are_refused_before_training(original):
    """One pixel of the npz changed in place: refused, naming both fingerprints."""
    npz, run = original["npz"], original["run"]
    backup = npz.read_bytes()
    arrays = dict(np.load(npz))
    arrays["x_train"][0, 14, 14] ^= 0x01  # one pixel of one training image
    np.savez(npz, **arrays)
    try:
        before = all_runs(original["uri"])
        result = reproduce([run.info.run_id], original["dir"])
    finally:
        npz.write_bytes(backup)
    assert result.returncode == 2, result.stdout + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    message = result.stderr
    assert "The data differ from the original run's" in message
    assert run.data.tags["data.fingerprint"] in message
    assert len(set(HEX64.findall(message))) == 2, message  # both fingerprints named
    assert f"npz:{npz}" in message and "--allow-data-change" in message
    assert "Nothing was trained or logged" in message
    assert new_runs(original["uri"], before) == []


@pytest.mark.slow
def test_changed_data_run_with_allow_data_change(original, reproductions):
    """Another copy of the data, one pixel off: with --allow-data-change it runs, warning."""
    result = reproductions["results"]["changed_data"]
    # training image 0 is in the seeded training split (seed 42, not the validation part):
    # the model, hence the metrics, differ from the original's
    assert result.returncode == 1, result.stdout + result.stderr[-4000:]
    assert "Verdict: INCONSISTENT" in result.stdout
    assert "The data differ from the original run's" in result.stderr
    assert "Going on because of --allow-data-change" in result.stderr
    assert "provenance differs: data.fingerprint" in result.stderr
    assert f"npz:{reproductions['changed']}" in result.stderr
    assert "Verdict:" in result.stdout
    run = original["run"]
    (new,) = [r for r in the_reproduction(original["uri"], run.info.run_id)
              if "data.path" in r.data.tags.get("reproduces.overrides", "")]
    assert new.data.tags["data.fingerprint"] != run.data.tags["data.fingerprint"]
    assert new.data.params["data.path"] == str(reproductions["changed"])


# ---------------------------------------------------------------------- safety
# case -> (how to make the clean config evil, what the refusal must say)
MALICIOUS = {
    "optimizer os.system": (lambda cfg, m: cfg.update(
        optimizer={"_target_": "os.system", "command": f"touch {m}"}),
        "Refusing optimizer._target_='os.system'"),
    "optimizer pathlib.Path.touch": (lambda cfg, m: cfg["optimizer"].update(
        {"_target_": "pathlib.Path.touch", "_args_": [str(m)]}),
        "Refusing optimizer._target_='pathlib.Path.touch'"),
    "new key subprocess.run": (lambda cfg, m: cfg.update(
        evil={"_target_": "subprocess.run", "args": ["touch", str(m)]}),
        "Refusing evil._target_='subprocess.run'"),
    "nested builtins.eval": (lambda cfg, m: cfg["model"]["conv_blocks"][0].update(
        {"_target_": "builtins.eval", "_args_": [f"open({str(m)!r}, 'w')"]}),
        "Refusing model.conv_blocks.0._target_='builtins.eval'"),
    # an allowed target, so that it is the hydra: section itself that is refused
    "hydra callbacks": (lambda cfg, m: cfg.update(hydra={"callbacks": {"evil": {
        "_target_": "mnist_experiments.models.builder.build_model", "cfg": f"touch {m}"}}}),
        "'hydra:' section"),
    "interpolation": (lambda cfg, m: cfg["mlflow"].update(run_name="${oc.env:HOME}"),
                      "is an interpolation"),
}


@pytest.fixture(scope="module")
def clean_config():
    """A composed config as a run logs it (config.yaml): resolved, enums as strings."""
    from omegaconf import OmegaConf

    cfg = compose_cfg("data=digits", "data.limit=300", "train.epochs=1")
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _assert_refused(result, marker: Path, workdir: Path, *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "mnist-exp-reproduce: error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert not marker.exists()
    assert not (workdir / "mlflow.db").exists()  # no store opened, no run created
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize("case", sorted(MALICIOUS))
@pytest.mark.slow
def test_a_config_that_would_run_code_is_refused(case, clean_config, tmp_path):
    import copy

    marker = tmp_path / "pwned"
    cfg = copy.deepcopy(clean_config)
    make_evil, needle = MALICIOUS[case]
    make_evil(cfg, marker)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    store = tmp_path / "store" / "mlflow.db"
    result = reproduce([str(path), "--tracking-uri", f"sqlite:///{store}"], tmp_path)
    _assert_refused(result, marker, tmp_path, needle)
    assert not store.parent.exists()  # the store was never even opened


@pytest.mark.slow
def test_a_python_yaml_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "config.yaml"
    # PyYAML's unsafe loader would call os.system while parsing this
    path.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    result = reproduce([str(path)], tmp_path)
    _assert_refused(result, marker, tmp_path, "not plain YAML")


@pytest.mark.slow
def test_a_tampered_run_dir_is_refused(original, tmp_path):
    """A student's Hydra run dir whose config names os.system and whose hydra.yaml has a
    callback: neither is run (hydra.yaml is never read)."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "outputs" / "runs" / "evil"
    shutil.copytree(original["run_dir"] / ".hydra", run_dir / ".hydra")
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    cfg["optimizer"] = {"_target_": "os.system", "command": f"touch {marker}"}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    hydra_yaml = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    hydra_yaml["hydra"]["callbacks"] = {"evil": {"_target_": "os.system",
                                                 "command": f"touch {marker}"}}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_yaml))
    result = reproduce([str(run_dir)], tmp_path)
    _assert_refused(result, marker, tmp_path, "Refusing optimizer._target_='os.system'")


@pytest.mark.slow
def test_an_override_cannot_inject_a_target(original, tmp_path):
    marker = tmp_path / "pwned"
    result = reproduce([str(original["run_dir"]), "--override", "optimizer._target_=os.system",
                        "--override", f"optimizer.command=touch {marker}"], tmp_path)
    _assert_refused(result, marker, tmp_path, "Refusing optimizer._target_='os.system'",
                    "--override")


# ------------------------------------------------- config checks (in process, fast)
@pytest.mark.parametrize(
    "change, needle",
    [
        (lambda c: c["train"].update(epochs="many"), "train.epochs"),
        (lambda c: c["train"].update(epoch=3), "train.epoch is not a config key; did you "
                                               "mean train.epochs?"),
        (lambda c: c.update(extra=1), "extra is not a config key"),
        (lambda c: c["optimizer"].update(rhoo=0.9), "optimizer.rhoo"),
        (lambda c: c["optimizer"].update(learning_rate="fast"), "optimizer.learning_rate"),
        (lambda c: c["cv"].update(name="loo"), "cv.name='loo' is not a known cv"),
        (lambda c: c["cv"].update(folds=5), "cv.folds"),  # holdout has no folds
        (lambda c: c["train"].update(epochs=0), "train.epochs=0 is invalid"),
        (lambda c: c.pop("model"), "model"),
        (lambda c: c.update(defaults=["_self_"]), "'defaults:' section"),
    ],
)
def test_invalid_configs_are_refused_by_the_schema(change, needle, clean_config):
    import copy

    from mnist_experiments.errors import ConfigError
    from mnist_experiments.config.untrusted import build_config

    cfg = copy.deepcopy(clean_config)
    change(cfg)
    with pytest.raises(ConfigError) as info:
        build_config(cfg, [], "test.yaml")
    assert needle in str(info.value)
    assert "test.yaml" in str(info.value)


def test_the_clean_config_passes_and_keeps_its_types(clean_config):
    from mnist_experiments.config import schema
    from mnist_experiments.config.untrusted import build_config

    cfg = build_config(clean_config, ["seed=7", "optimizer.learning_rate=0.01"], "x")
    assert cfg.seed == 7 and cfg.optimizer.learning_rate == 0.01
    assert cfg.optimizer.rho == 0.9 and cfg.data.validation == schema.Validation.holdout
    kfold = dict(clean_config, cv={"name": "kfold", "folds": 3, "shuffle": True,
                                   "stratified": True, "refit": True})
    assert build_config(kfold, [], "x").cv.folds == 3


def test_yaml_aliases_are_refused():
    from mnist_experiments.errors import ConfigError
    from mnist_experiments.config.untrusted import parse_config

    bomb = "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n"
    with pytest.raises(ConfigError, match="alias"):
        parse_config(bomb, "bomb.yaml")


def test_compare_and_expect():
    from mnist_experiments.errors import UserError
    from mnist_experiments.commands.reproduce import _parse_expect, render_table
    from mnist_experiments.workflows.reproduce.verdict import compare_metrics

    rows = compare_metrics({"test_accuracy": 0.5, "objective": 0.25, "fit_seconds": 3.0},
                           {"test_accuracy": 0.5 + 1e-9, "objective": 0.25, "cv_x": 1.0,
                            "fit_seconds": 9.0, "loss": 1.0})
    assert [r.name for r in rows] == ["objective", "test_accuracy", "cv_x"]
    assert [r.ok(0.0) for r in rows] == [True, False, True]
    assert all(r.ok(1e-8) for r in rows)
    text = render_table(rows, 0.0)
    assert "<-- differs" in text.splitlines()[2] and "+1e-09" in text
    assert _parse_expect(["test_accuracy=0.9871"]) == {"test_accuracy": 0.9871}
    for bad in ("test_accuracy", "test_accuracy=high", "fit_seconds=1"):
        with pytest.raises(UserError):
            _parse_expect([bad])


@pytest.mark.slow
def test_an_unknown_run_id_is_a_clear_error(original, tmp_path, monkeypatch, capsys):
    from mnist_experiments.commands.reproduce import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["0" * 32, "--tracking-uri", original["uri"]]) == 2
    assert "There is no run 00000000000000000000000000000000" in capsys.readouterr().err
    assert main(["0" * 32]) == 2  # no ./mlflow.db here: refused, and not created either
    assert "There is no MLflow tracking store" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
    assert main([str(tmp_path / "nothing.yaml")]) == 2
    assert "neither an existing file or directory nor an MLflow run id" in capsys.readouterr().err


def test_provenance_differences_are_named():
    from mnist_experiments.tracking import provenance

    original = {"version.tensorflow": "2.20.0", "version.numpy": "2.1.0", "platform.cpu": "A",
                "data.fingerprint": "f" * 64, "git_commit": "abc", "version.extra": "1"}
    now = {"version.tensorflow": "2.21.0", "version.numpy": "2.1.0", "platform.cpu": "B",
           "data.fingerprint": "f" * 64, "version.python": "3.11.9", "git_commit": "abc"}
    found = {d.key: d for d in provenance.compare(original, now)}
    assert set(found) == {"version.tensorflow", "platform.cpu", "version.extra"}
    assert found["version.tensorflow"].describe() == (
        "version.tensorflow: original '2.20.0', reproduction '2.21.0'")
    assert "reproduction not recorded" in found["version.extra"].describe()
    assert provenance.compare({}, now) == []  # nothing recorded: nothing to compare


def test_the_command_and_the_workflow_agree_on_the_calibration_default():
    from mnist_experiments.commands import reproduce as command
    from mnist_experiments.workflows.reproduce import run

    assert command.DEFAULT_CALIBRATION_RUNS == run.DEFAULT_CALIBRATION_RUNS
    assert command.build_parser().parse_args(["x"]).calibration_runs == run.Request("x").calibration_runs
