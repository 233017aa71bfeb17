"""What a user sees: a quiet, useful terminal (issue 14), with real CLI processes.

No TensorFlow start-up noise, no retracing warnings about Keras' own functions, a
short artifact timing line, no MLflow warning when registering, no colour codes from
Optuna outside a terminal, a progress bar on a terminal only (a real pseudo-terminal),
job numbers on parallel jobs' lines, ``--version`` and ``--help`` of our own, one
paragraph for a config that does not compose, and no autograph files left in the temp
dir.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest
from mlflow.tracking import MlflowClient

from conftest import FAST, REPO, all_runs, cli_env, run_cli, store_uri

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard",
         "This TensorFlow binary is optimized")
ESCAPES = re.compile(r"[\x1b\x08\r]")


def quiet_env(**extra: str) -> dict:
    """The tests' CLI environment without its TF_CPP_MIN_LOG_LEVEL=2: the package's own
    default must keep TensorFlow quiet."""
    env = cli_env(**extra)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def autograph_files(directory: Path) -> List[Path]:
    return sorted(directory.glob("__autograph_generated_file*.py"))


def run_in_pty(args: List[str], cwd: Path, env: dict, timeout: float = 600) -> Tuple[int, str]:
    """Run ``python -m mnist_experiments ARGS`` with a real pseudo-terminal as its stdin,
    stdout and stderr; its return code and everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mnist_experiments", *args], cwd=cwd,
                            env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    """One real run in pipes, with the package's default log level, a private temp dir
    and a registration."""
    workdir = tmp_path_factory.mktemp("quiet")
    temp = tmp_path_factory.mktemp("tmpdir")
    result = run_cli([*FAST, "viz.max_channels=2", "mlflow.register_as=quiet-cnn"], workdir,
                     env=quiet_env(TMPDIR=str(temp)))
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = all_runs(store_uri(workdir))
    return {"dir": workdir, "tmp": temp, "result": result, "run": run}


# ---------------------------------------------------------------- 1. start-up noise
@pytest.mark.slow
def test_a_run_prints_no_tensorflow_start_up_noise(quiet_run):
    output = quiet_run["result"].stdout + quiet_run["result"].stderr
    for needle in NOISE:
        assert needle not in output, (needle, output[-3000:])
    assert "epoch 1/1" in quiet_run["result"].stdout  # the run's own lines are there


@pytest.mark.slow
def test_evaluate_prints_no_tensorflow_start_up_noise(quiet_run):
    result = subprocess.run(
        [sys.executable, "-m", "mnist_experiments.commands.evaluate",
         quiet_run["run"].info.run_id],
        cwd=quiet_run["dir"], env=quiet_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test_accuracy" in result.stdout
    for needle in NOISE:
        assert needle not in result.stderr, (needle, result.stderr[-3000:])


def test_the_import_filter_keeps_warnings_errors_and_python_output(tmp_path):
    """Real file descriptors: what is written to fd 2 inside the filter comes back,
    except the INFO lines below the level and absl's notice."""
    code = (
        "import os, sys\n"
        "from mnist_experiments.terminal import filtered_stderr\n"
        "with filtered_stderr():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called"
        " are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796236067.453467   10697 port.cc:153] oneDNN custom"
        " operations are on.\\n')\n"
        "    os.write(2, b'W0000 00:00:1796236067.453467   10697 x.cc:1] a real warning\\n')\n"
        "    os.write(2, b'E0000 00:00:1796236067.453467   10697 y.cc:2] a real error\\n')\n"
        "    print('a Python warning', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=quiet_env(),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "W0000 00:00:1796236067.453467   10697 x.cc:1] a real warning",
        "E0000 00:00:1796236067.453467   10697 y.cc:2] a real error",
        "a Python warning",
    ]


def test_importing_tensorflow_through_the_package_is_quiet(tmp_path):
    code = ("import importlib.util, mnist_experiments\n"
            "assert importlib.util.find_spec('tensorflow')  # asking imports nothing\n"
            "import tensorflow\n"
            "print(tensorflow.__loader__.__class__.__name__)\n")
    onednn = quiet_env(TF_ENABLE_ONEDNN_OPTS="1")  # TensorFlow then always says so
    quiet = subprocess.run([sys.executable, "-c", code], env=onednn, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.strip() == "SourceFileLoader"  # TensorFlow's own loader, after
    # without the package: TensorFlow's start-up lines, which the filter removes
    loud = subprocess.run([sys.executable, "-c", "import tensorflow"], env=onednn,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "absl::InitializeLog" in loud.stderr


# ---------------------------------------------------------------- 2. retracing
@pytest.mark.slow
def test_kfold_prints_no_retracing_warnings(tmp_path):
    result = run_cli([*FAST, "cv=kfold", "viz=off", "mlflow.log_model=false"], tmp_path,
                     env=quiet_env())
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert output.count("final val_accuracy=") == 5  # five models in one process
    assert "triggered tf.function retracing" not in output, output[-3000:]


def test_a_retracing_warning_about_other_functions_stays(tmp_path):
    code = ("import mnist_experiments, tensorflow as tf\n"
            "for i in range(8):\n"
            "    tf.function(lambda x: x * 2)(tf.constant([1.0] * (i + 1)))\n")
    result = subprocess.run([sys.executable, "-c", code], env=quiet_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "triggered tf.function retracing" in result.stderr, result.stderr[-3000:]


# ---------------------------------------------------------------- 3. timing line
@pytest.mark.slow
def test_the_artifact_timing_line_is_short(quiet_run):
    lines = [line for line in quiet_run["result"].stdout.splitlines()
             if "artifacts logged in" in line]
    assert len(lines) == 1, quiet_run["result"].stdout
    message = lines[0].split(" - ", 1)[1]
    assert len(message) <= 110, message  # was ~560 characters
    assert "slowest:" in message


# ---------------------------------------------------------------- 4. registering
@pytest.mark.slow
def test_registering_prints_no_mlflow_warning(quiet_run):
    output = quiet_run["result"].stdout + quiet_run["result"].stderr
    assert "registered as models:/quiet-cnn/1" in output
    assert "has no artifacts at artifact path" not in output, output[-3000:]
    assert "WARNING" not in output, output[-3000:]
    version = MlflowClient(store_uri(quiet_run["dir"])).get_model_version("quiet-cnn", "1")
    assert version.run_id == quiet_run["run"].info.run_id
    assert version.source.startswith("models:/m-")


# ---------------------------------------------------------------- 5. Optuna's colours
@pytest.mark.slow
def test_optuna_writes_no_colour_codes_outside_a_terminal(tmp_path):
    result = run_cli(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *FAST,
                      "viz=off", "mlflow.log_model=false"], tmp_path, env=quiet_env())
    assert result.returncode == 0, result.stderr[-4000:]
    output = result.stdout + result.stderr
    assert "Optuna study mnist-exp-" in output  # the sweeper says which study it uses
    assert "\x1b" not in output, repr(output[-2000:])
    logs = list((tmp_path / "outputs").rglob("*.log"))
    assert logs
    for log in logs:
        assert "\x1b" not in log.read_text(), log


# ---------------------------------------------------------------- 6. progress bar
@pytest.mark.slow
def test_a_terminal_shows_keras_progress_bar(tmp_path):
    code, output = run_in_pty([*FAST, "viz=off", "mlflow.log_model=false"], tmp_path,
                              env=quiet_env())
    assert code == 0, output[-3000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # without its colours
    assert re.search(r"\d+/\d+ ━+ .*/step", plain), repr(output[-3000:])
    assert "\r\x1b[K" in output  # erased at the epoch's end, where its log line goes
    assert "epoch 1/1 accuracy=" in output


@pytest.mark.slow
def test_pipes_get_plain_lines_without_a_bar(quiet_run):
    output = quiet_run["result"].stdout + quiet_run["result"].stderr
    assert "━" not in output
    assert not ESCAPES.search(output), repr(ESCAPES.search(output))
    assert re.search(r"epoch 1/1 accuracy=[\d.]+ loss=", output)


# ---------------------------------------------------------------- 7. job numbers
@pytest.mark.slow
def test_parallel_jobs_lines_carry_their_job_number_and_no_bar(tmp_path):
    """On a terminal too, joblib's workers keep plain lines (bars would interleave)."""
    code, output = run_in_pty(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                               *FAST, "viz=off", "mlflow.log_model=false",
                               "optimizer=adam,sgd"], tmp_path, env=quiet_env())
    assert code == 0, output[-3000:]
    for job in (0, 1):
        lines = [line for line in output.splitlines() if f"[job {job}][" in line]
        assert any("epoch 1/1 accuracy=" in line for line in lines), (job, output[-3000:])
        assert any("MLflow run " in line for line in lines), job
    assert "━" not in output
    for needle in NOISE:
        assert needle not in output, needle
    logs = sorted((tmp_path / "outputs" / "multirun").rglob("train.log"))
    assert len(logs) == 2
    for log in logs:
        assert f"[job {log.parent.name}][" in log.read_text()


@pytest.mark.slow
def test_a_single_run_has_no_job_number(quiet_run):
    assert "[job " not in quiet_run["result"].stdout


# ---------------------------------------------------------------- 8. --version, --help
def _scripts():
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_every_command_has_version(name, tmp_path):
    from importlib import metadata

    module = _scripts()[name].split(":")[0]
    result = subprocess.run([sys.executable, "-m", module, "--version"], cwd=tmp_path,
                            env=quiet_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name} {metadata.version('mnist-experiments')}"
    assert "Hydra" not in result.stdout
    assert not list(tmp_path.iterdir())


def test_help_hides_internal_groups_and_lists_the_other_commands(tmp_path):
    result = run_cli(["--help"], tmp_path, env=quiet_env())
    assert result.returncode == 0, result.stderr
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "model: bn_cnn, lenet5, seed_cnn, seed_tiny" in groups
    assert "schema" not in groups and "config_schema" not in result.stdout
    footer = result.stdout.split("Other commands")[1]
    for name in _scripts():
        if name != "mnist-exp":
            assert re.search(rf"^  {name}  +\S", footer, re.M), (name, footer)


# ---------------------------------------------------------------- 9. errors
@pytest.mark.parametrize("override, needles", [
    ("model=nope", ["model=nope", "bn_cnn, lenet5, seed_cnn, seed_tiny"]),
    ("model=seedcnn", ["Did you mean model=seed_cnn?"]),
    ("train.epochs=abc", ["train.epochs=abc", "'abc'", "Integer"]),
    ("train.epoch=3", ["train.epoch", "Did you mean train.epochs?"]),
    ("model=[a", ["'model=[a'", "override_grammar"]),
    ("train.epochs=0", ["train.epochs=0", "at least 1"]),
])
def test_a_config_error_is_one_paragraph_and_leaves_no_outputs(override, needles, tmp_path):
    result = run_cli(["data=digits", override], tmp_path, env=quiet_env())
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-exp: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    for boilerplate in ("HYDRA_FULL_ERROR", "Config search path", "Traceback",
                        "Error executing job", "+train.epoch"):
        assert boilerplate not in result.stderr, boilerplate
    assert not (tmp_path / "outputs").exists(), list(tmp_path.rglob("*"))
    assert not (tmp_path / "mlflow.db").exists()


def test_best_cnn_on_a_users_own_data_asks_for_its_augmentation(tmp_path):
    """best_cnn picks augment=best_for_<data>; a data set it does not know gets told why."""
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "kmnist.yaml").write_text(
        "defaults:\n  - mnist\n  - _self_\nname: kmnist\n")
    result = run_cli(["--config-dir", str(tmp_path / "conf"), "experiment=best_cnn",
                      "data=kmnist"], tmp_path, env=quiet_env())
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in ("augment=best_for_kmnist", "experiment=best_cnn", "data=kmnist",
                   "augment=light"):
        assert needle in result.stderr, (needle, result.stderr)
    assert "Did you mean" not in result.stderr  # best_for_mnist would be the wrong data
    assert not (tmp_path / "outputs").exists()


def test_hydra_full_error_still_shows_everything(tmp_path):
    result = run_cli(["model=nope"], tmp_path, env=quiet_env(HYDRA_FULL_ERROR="1"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "MissingConfigException" in result.stderr


# ---------------------------------------------------------------- 10. temp files
@pytest.mark.slow
def test_a_run_leaves_no_autograph_files_in_the_temp_dir(quiet_run, tmp_path):
    assert autograph_files(quiet_run["tmp"]) == []
    # the same kind of file is written by a process that ends normally, then removed:
    # look at one while it lives, so that this test knows where they go
    script = tmp_path / "probe.py"  # autograph needs the function's source file
    script.write_text("import mnist_experiments, tensorflow as tf, glob, os, tempfile\n"
                     "@tf.function\n"
                     "def f(x):\n"
                     "    return x * 2 if x > 0 else x\n"
                     "f(tf.constant(1))\n"
                     "print(len(glob.glob(os.path.join(tempfile.gettempdir(), "
                     "'__autograph_generated_file*.py'))))\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    probe = subprocess.run([sys.executable, str(script)], env=quiet_env(TMPDIR=str(temp)),
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert int(probe.stdout.strip()) >= 1  # autograph writes into TMPDIR ...
    assert autograph_files(temp) == []  # ... and removes them at a normal exit


def test_a_native_crash_in_a_run_shows_where_python_was(tmp_path):
    """SIGABRT in the middle of a fit (as glibc's heap checks or TensorFlow send): the
    run's stderr holds the Python stack of every thread, the training one included."""
    crash = ("import os, sys, threading, time\n"
             "from mnist_experiments.commands.mnist_exp import main\n"
             "def abort_in_fit():\n"
             "    while not any(f.f_code.co_filename.endswith('training/fit.py')\n"
             "                  and f.f_code.co_name == 'fit' for f in _frames()):\n"
             "        time.sleep(0.05)\n"
             "    time.sleep(0.5)  # in Keras's epochs\n"
             "    os.abort()\n"
             "def _frames():\n"
             "    frame = sys._current_frames().get(threading.main_thread().ident)\n"
             "    while frame is not None:\n"
             "        yield frame\n"
             "        frame = frame.f_back\n"
             "threading.Thread(target=abort_in_fit, daemon=True).start()\n"
             "sys.argv = ['mnist-exp', 'data=digits', 'train.epochs=50', 'viz=off',\n"
             "            'mlflow.log_model=false']\n"
             "main()\n")
    result = subprocess.run([sys.executable, "-c", crash], cwd=tmp_path, env=quiet_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGABRT, result.stderr[-3000:]
    assert "Fatal Python error: Aborted" in result.stderr, result.stderr[-3000:]
    # every thread's stack (faulthandler keeps a thread's 100 most recent frames: the
    # training thread's are Keras's and TensorFlow's)
    dump = result.stderr[result.stderr.index("Fatal Python error"):]
    assert "in abort_in_fit" in dump, dump[-3000:]
    assert "site-packages/keras/" in dump or "site-packages/tensorflow/" in dump, dump[-3000:]
    assert "mnist_experiments/tracking/liveness.py" in dump  # the run's heartbeat thread
