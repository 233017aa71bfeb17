"""Shared fixtures: real Hydra composition, real MLflow SQLite stores, real CLI runs."""

from __future__ import annotations

import atexit
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Sequence

import pytest
from hydra import compose, initialize_config_module

import mnist_experiments.commands.train  # noqa: F401  (registers the structured-config schemas)
from needs import skip_or_fail

REPO = Path(__file__).resolve().parents[1]

# the tests' own cache (the template of new stores, built once), never the user's
if "MNIST_EXP_CACHE_DIR" not in os.environ:
    os.environ["MNIST_EXP_CACHE_DIR"] = tempfile.mkdtemp(prefix="mnist-exp-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MNIST_EXP_CACHE_DIR"], ignore_errors=True)

# The temporary files of the tests and of every process they start (TensorFlow's
# autograph modules, MLflow's staging dirs, what a process killed on purpose leaves
# behind) go to one directory of the session, removed at its end, not into /tmp. Its
# path is short: Ray puts its sockets under it (a socket path has at most 107 bytes).
# pytest's own tmp_path dirs stay where they were (kept for the last three sessions), and
# so do the dirs of servers that run as another user (the session's dir is root's, 0700).
os.environ.setdefault("MNIST_EXP_SYSTEM_TMPDIR", tempfile.gettempdir())
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", os.environ["MNIST_EXP_SYSTEM_TMPDIR"])
if "MNIST_EXP_TEST_TMPDIR" not in os.environ:  # (xdist's workers inherit the first's)
    os.environ["MNIST_EXP_TEST_TMPDIR"] = tempfile.mkdtemp(prefix="mnist-t-")
    atexit.register(shutil.rmtree, os.environ["MNIST_EXP_TEST_TMPDIR"], ignore_errors=True)
os.environ["TMPDIR"] = tempfile.tempdir = os.environ["MNIST_EXP_TEST_TMPDIR"]

# Small and fast: a few hundred digits, one epoch, no network.
FAST = ["data=digits", "data.limit=300", "train.epochs=1"]
UI_WIDTH, UI_HEIGHT = 1400, 900  # the browser window of the MLflow UI tests


def compose_cfg(*overrides: str):
    """The config ``mnist-exp`` would run with these overrides (Hydra's Compose API)."""
    with initialize_config_module("mnist_experiments.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def cli_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            # a closed local port: nothing in a test can reach the network
            "HTTP_PROXY": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra)
    return env


def run_cli(args: Sequence[str], cwd: Path, module: str = "mnist_experiments",
            timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> ARGS`` in ``cwd`` (the same app as the console script)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def store_uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def all_runs(uri: str) -> List:
    """Every run in every experiment of the store (the Default one included)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiment_ids) if experiment_ids else []


def sweep_dir(workdir: Path) -> Path:
    """The one sweep dir under ``workdir``'s outputs/multirun/."""
    (found,) = list((workdir / "outputs" / "multirun").iterdir())
    return found


def parent_and_children(uri: str):
    """A store's one sweep parent run, its child runs, and all its runs."""
    runs = all_runs(uri)
    parents = [r for r in runs if r.data.tags.get("sweep") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in parents]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children, runs


def read_summary(directory: Path) -> List[dict]:
    """The rows of a sweep's leaderboard (``summary.csv``)."""
    with open(directory / "summary.csv") as fh:
        return list(csv.DictReader(fh))


GIB_PER_WORKER = 3  # a worker's pytest, its CLI subprocess with TensorFlow, a server/browser
MAX_WORKERS = 8  # each worker's runs use every core already: more workers only thrash


def pytest_xdist_auto_num_workers(config) -> int:
    """How many workers ``-n auto`` (pyproject's addopts) starts: one per usable core, as
    many as memory holds, at most 8. Most of a test's time is one single-threaded Python
    process (imports, Hydra, MLflow), so on 2 cores two workers take the quick subset
    from 4:45 to 2:43 (measured). ``-n 0`` runs everything in this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):  # not POSIX: trust the core count
        memory_gib = GIB_PER_WORKER * (cores or 1)
    return max(1, min(cores or 1, int(memory_gib // GIB_PER_WORKER), MAX_WORKERS))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One real ``mnist-exp`` training run on digits, shared by the tests that inspect it.

    Launched in an empty directory with no tracking URI set: the default store
    ``./mlflow.db`` of the launch directory is used.
    """
    workdir = tmp_path_factory.mktemp("trained")
    result = run_cli([*FAST, "data.limit=600", "train.epochs=2", "viz.max_channels=4",
                      "mlflow.register_as=digits-cnn", "mlflow.register_alias=champion"], workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    uri = store_uri(workdir)
    runs = all_runs(uri)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return {"dir": workdir, "uri": uri, "run": runs[0], "result": result}


# ---------------------------------------------------------------------------
# The MLflow UI in a real headless Chromium (tests/test_ui*.py)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_exe():
    """Session-scoped so that a missing browser is reported before any training starts."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        skip_or_fail("no `playwright` package: the MLflow UI browser tests need it "
                      "(pip install -e '.[test]')")
    from ui_helpers import find_chromium

    exe = find_chromium()
    if exe is None:
        skip_or_fail("no Chromium on PATH: the MLflow UI browser tests need Debian's "
                      "`chromium` (apt-get install chromium)")
    return exe


@pytest.fixture(scope="module")
def page(chromium_exe):
    """A Playwright page in Debian's headless Chromium, MLflow's first-visit panels off."""
    from ui_helpers import mlflow_page

    with mlflow_page(chromium_exe, width=UI_WIDTH, height=UI_HEIGHT, env=cli_env()) as p:
        yield p


# ---------------------------------------------------------------------------
# tests/integration/: real servers and clusters started on this machine
# ---------------------------------------------------------------------------
# (here, not in a tests/integration/conftest.py: every conftest.py outside a package is
# imported as module ``conftest`` and pytest drops the previous one from sys.modules,
# so a second one made ``from conftest import compose_cfg`` fail in every test module)
INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration/ is marked ``integration`` and ``slow``, so the
    fast subset (``pytest -m "not slow"``) skips it and ``pytest -m integration`` runs
    only it. Those tests need system packages and extras that ``.ci/run`` installs."""
    for item in items:
        if INTEGRATION in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
