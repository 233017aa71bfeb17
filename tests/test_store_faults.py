"""Store and server faults: each is refused within seconds, as one paragraph that names
the store and the fix, with a non-zero exit, no traceback, before TensorFlow is imported,
and with everything already in the store (or in the file that was not a store) kept.

Measured before these checks (issue 14): a ``mlflow.db`` directory took 112 s, a store
in a read-only directory 107 s (then ``OSError: [Errno 30]`` from the clean-up), a
closed server port 255 s of silence; a corrupt file and an unknown scheme were
tracebacks; another application's SQLite file silently got MLflow's tables.

Real files, real SQLite databases, real read-only mounts (tmpfs; skipped where the
kernel refuses to mount), real sockets, real CLI processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import cli_env, store_uri
from mnist_experiments.errors import UserError
from mnist_experiments.tracking.preflight import StoreError, check_store
from mnist_experiments.tracking.store import StoreCreation, existing_store_uri

QUICK = ["data=digits", "debug=fast"]
SECONDS = 25  # generous on a loaded 2-core machine; before: 107-255 s
RUN_ID = "0123456789abcdef0123456789abcdef"

# mnist-exp, reporting at exit which heavy modules it had imported
PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write(
    "\\nHEAVY " + ",".join(m for m in ("tensorflow", "keras") if m in sys.modules) + "\\n"))
sys.argv = ["mnist-exp", *sys.argv[1:]]
from mnist_experiments.commands.train import main
main()
"""


# --------------------------------------------------------------------------- helpers
def train(cwd: Path, *args: str) -> "tuple[subprocess.CompletedProcess, float]":
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", PROBE, *QUICK, *args], cwd=cwd,
                            env=cli_env(), capture_output=True, text=True, timeout=600)
    return result, time.monotonic() - started


def assert_refused(result: subprocess.CompletedProcess, seconds: float, *words: str) -> str:
    """Exit 1 within seconds, one paragraph with ``words``, no traceback, no TensorFlow."""
    err = result.stderr
    assert result.returncode == 1, err[-3000:]
    assert seconds < SECONDS, f"took {seconds:.1f} s"
    assert "Traceback" not in err and "raised" not in err, err[-3000:]
    assert "\nHEAVY \n" in err, "TensorFlow or Keras was imported before the store was refused"
    paragraphs = [line for line in err.splitlines() if all(word in line for word in words)]
    assert len(paragraphs) == 1, (words, err[-3000:])  # one paragraph says it all
    paragraph = paragraphs[0]
    assert "mlflow.tracking_uri=" in paragraph  # says how to fix it
    return paragraph


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def mounted_tmpfs(path: Path) -> Iterator[Path]:
    """A real tmpfs at ``path`` (remount it read-only with :func:`remount_read_only`)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needed for a read-only directory that "
                    f"stops root too): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
    with pytest.raises(OSError):  # really read-only, for root too
        (path / "probe").write_text("x")


def foreign_sqlite(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
    connection.execute("INSERT INTO notes (text) VALUES ('keep me')")
    connection.commit()
    connection.close()


def tables(path: Path) -> List[str]:
    connection = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        connection.close()


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> Path:
    """A real MLflow SQLite store (made by the same helper as a first run)."""
    directory = tmp_path_factory.mktemp("store")
    with StoreCreation.start(store_uri(directory), "faults") as creation:
        assert creation.install()
    return directory / "mlflow.db"


# ------------------------------------------------------------- the CLI, one per fault
@pytest.mark.slow
def test_a_directory_named_mlflow_db_is_refused(tmp_path):
    (tmp_path / "mlflow.db").mkdir()
    (tmp_path / "mlflow.db" / "notes.txt").write_text("mine")
    result, seconds = train(tmp_path)
    assert_refused(result, seconds, f"{tmp_path / 'mlflow.db'}", "is a directory")
    assert (tmp_path / "mlflow.db" / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(".mlflow.db.*"))  # no temporary store left


@pytest.mark.slow
def test_a_store_in_a_read_only_directory_is_refused(tmp_path):
    with mounted_tmpfs(tmp_path / "ro") as ro:
        remount_read_only(ro)
        result, seconds = train(tmp_path, f"mlflow.tracking_uri=sqlite:///{ro}/mlflow.db")
        paragraph = assert_refused(result, seconds, f"{ro / 'mlflow.db'}", "EROFS")
        assert "Errno 30" not in result.stderr  # the clean-up no longer hides the cause
        assert "cannot be created" in paragraph


@pytest.mark.slow
def test_an_existing_store_on_a_read_only_mount_is_refused_for_training_and_still_read(
        tmp_path):
    from mlflow.tracking import MlflowClient

    with mounted_tmpfs(tmp_path / "ro") as ro:
        uri = store_uri(ro)
        with StoreCreation.start(uri, "kept") as creation:
            assert creation.install()
        # as a job does once the store is in place; in a process of its own, whose
        # open connection would keep the mount busy
        subprocess.run([sys.executable, "-c", "import sys; from mnist_experiments.tracking."
                        "runs import ensure_experiment; ensure_experiment(*sys.argv[1:])",
                        uri, "kept"], check=True, env=cli_env(), timeout=120)
        before = digest(ro / "mlflow.db")
        remount_read_only(ro)
        result, seconds = train(tmp_path, f"mlflow.tracking_uri={uri}")
        assert_refused(result, seconds, f"{ro / 'mlflow.db'}", "cannot be written")
        # reading it (reports, evaluate's model lookup) still works
        assert existing_store_uri(uri) == uri
        assert "kept" in {e.name for e in MlflowClient(uri).search_experiments()}
        assert digest(ro / "mlflow.db") == before


@pytest.mark.slow
def test_a_corrupt_store_is_refused_and_kept(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(os.urandom(64 * 1024))
    before = digest(tmp_path / "mlflow.db")
    result, seconds = train(tmp_path)
    paragraph = assert_refused(result, seconds, f"{tmp_path / 'mlflow.db'}",
                               "not an SQLite database")
    assert "mv " in paragraph  # how to start afresh without losing it
    assert "DatabaseError" not in result.stderr
    assert digest(tmp_path / "mlflow.db") == before


@pytest.mark.slow
def test_another_applications_sqlite_file_gets_no_mlflow_tables(tmp_path):
    foreign_sqlite(tmp_path / "mlflow.db")
    result, seconds = train(tmp_path)
    assert_refused(result, seconds, f"{tmp_path / 'mlflow.db'}", "another application",
                   "notes")
    assert tables(tmp_path / "mlflow.db") == ["notes"]
    connection = sqlite3.connect(tmp_path / "mlflow.db")
    assert connection.execute("SELECT text FROM notes").fetchall() == [("keep me",)]
    connection.close()


@pytest.mark.slow
def test_a_closed_server_port_is_reported_in_seconds(tmp_path):
    result, seconds = train(tmp_path, "mlflow.tracking_uri=http://127.0.0.1:1")
    assert_refused(result, seconds, "http://127.0.0.1:1", "does not answer", "mlflow server")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_an_unknown_scheme_is_reported(tmp_path):
    result, seconds = train(tmp_path, "mlflow.tracking_uri=garbage://x")
    assert_refused(result, seconds, "garbage://x", "scheme")


@pytest.mark.slow
def test_a_store_mlflow_cannot_migrate_is_one_paragraph(tmp_path):
    """Past the pre-flight check (it has MLflow's tables), MLflow's own error is
    wrapped too: one paragraph naming the store, no traceback."""
    connection = sqlite3.connect(tmp_path / "mlflow.db")
    connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    connection.execute("INSERT INTO alembic_version VALUES ('0123abcd')")
    connection.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "mnist_experiments", *QUICK], cwd=tmp_path,
                            env=cli_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert time.monotonic() - started < 60
    assert "Traceback" not in result.stderr
    assert f"Cannot use the MLflow tracking store {store_uri(tmp_path)}" in result.stderr
    assert "0123abcd" in result.stderr
    connection = sqlite3.connect(tmp_path / "mlflow.db")
    assert connection.execute("SELECT * FROM alembic_version").fetchall() == [("0123abcd",)]
    connection.close()


@pytest.mark.slow
def test_a_sweep_on_a_bad_store_stops_before_any_job(tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_experiments", "-m", *QUICK, "seed=1,2",
         "mlflow.tracking_uri=garbage://x", "hydra.sweep.dir=sweep"],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert time.monotonic() - started < SECONDS
    assert "The sweep did not start, no job ran" in result.stderr
    assert "garbage://x" in result.stderr
    assert "Traceback" not in result.stderr and "raised" not in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()  # no job ran


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["mnist_experiments.commands.evaluate", RUN_ID],
    ["mnist_experiments.commands.predict", RUN_ID, "digit.png"],
    ["mnist_experiments.commands.reproduce", RUN_ID],
    ["mnist_experiments.commands.report", RUN_ID],
], ids=lambda c: c[0].rsplit(".", 1)[-1])
def test_reporting_commands_refuse_a_corrupt_store(tmp_path, command):
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 255)  # a dark stroke on white: predict reads it first
    ImageDraw.Draw(image).line([(14, 4), (14, 24)], fill=0, width=3)
    image.save(tmp_path / "digit.png")
    (tmp_path / "mlflow.db").write_bytes(os.urandom(16 * 1024))
    before = digest(tmp_path / "mlflow.db")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", *command], cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - started < 60  # they import TensorFlow first: ~8 s here
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'mlflow.db'}" in result.stderr
    assert "not an SQLite database" in result.stderr
    assert digest(tmp_path / "mlflow.db") == before


# ----------------------------------------------------- check_store itself, in-process
def test_check_store_accepts_a_real_mlflow_store(mlflow_store):
    check_store(f"sqlite:///{mlflow_store}")
    check_store(f"sqlite:///{mlflow_store}", create=False, write=False)


def test_a_store_busy_with_another_writer_is_not_refused(mlflow_store):
    writer = sqlite3.connect(mlflow_store, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        check_store(f"sqlite:///{mlflow_store}")
        assert time.monotonic() - started < 10
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_new_store_may_be_made_in_a_writable_place(tmp_path):
    check_store(f"sqlite:///{tmp_path}/mlflow.db")
    check_store(f"sqlite:///{tmp_path}/new/sub/dir/mlflow.db")  # MLflow makes the dirs
    (tmp_path / "empty.db").touch()  # SQLite's own empty database: MLflow fills it
    check_store(f"sqlite:///{tmp_path}/empty.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]  # no probe left


def test_a_dangling_symlink_is_refused(tmp_path):
    (tmp_path / "mlflow.db").symlink_to(tmp_path / "gone" / "mlflow.db")
    with pytest.raises(StoreError, match="symbolic link"):
        check_store(f"sqlite:///{tmp_path}/mlflow.db")


def test_a_missing_store_is_refused_by_the_reporting_commands(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # in-process tests may set it
    with pytest.raises(UserError, match="no MLflow tracking store"):
        existing_store_uri(None, str(tmp_path))


def test_a_server_that_answers_anything_is_accepted():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check_store(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_never_answers_is_refused_within_the_bound():
    """A port that accepts connections but never answers (a hung server): two attempts
    of ``timeout`` seconds each, then the error, not MLflow's minutes of retries."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"http://127.0.0.1:{port} does not answer"):
            check_store(f"http://127.0.0.1:{port}", timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        silent.close()


def test_a_database_server_that_is_down_is_refused_without_its_password():
    with pytest.raises(StoreError) as caught:
        check_store("postgresql://alice:s3cret@127.0.0.1:1/mlflow")
    assert "127.0.0.1:1" in str(caught.value) and "s3cret" not in str(caught.value)


def test_known_schemes_pass_and_unknown_ones_do_not():
    for uri in ("file:///tmp/mlruns", "databricks://profile", "sqlite://"):
        check_store(uri)
    for uri in ("garbage://x", "mlflow.db://x", "htp://host:5000"):
        with pytest.raises(StoreError, match="scheme"):
            check_store(uri)
