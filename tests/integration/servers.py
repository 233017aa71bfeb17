"""A throw-away PostgreSQL cluster and an ``mlflow server`` on it, as a team would run them.

- :class:`PostgresCluster`: Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl`` under
  ``/usr/lib/postgresql/<version>/bin``), a new cluster in a temporary directory on a
  free port of 127.0.0.1, its socket in that directory, ``trust`` authentication for the
  loopback (nobody else can reach it), fsync off (nothing here must survive a crash).
  PostgreSQL refuses to run as root, so as root it runs as the ``postgres`` user
  (``runuser``) in a directory that user owns. :meth:`~PostgresCluster.stop` stops it
  and removes the directory.
- :func:`tracking_server`: ``mlflow server`` with ``--backend-store-uri postgresql://...
  --serve-artifacts --artifacts-destination DIR`` (and optionally ``--app-name
  basic-auth``), healthy (GET /health) before it is handed out, stopped at the end.
- :class:`Rest`: the server's REST API as one user (HTTP basic auth), for what a user
  would see and for what the server refuses (403).

A missing ``postgresql`` package or ``server`` extra skips the tests on a developer's
machine and fails them under CI (``tests/needs.py``).
"""

from __future__ import annotations

import base64
import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from needs import need_module, skip_or_fail
from ui_helpers import MlflowServer, free_port

INSTALL_POSTGRES = "apt-get install postgresql (Debian's PostgreSQL server)"
INSTALL_SERVER = "pip install -e '.[server]' (mlflow[auth] and psycopg)"
# the loopback only, with no proxy in between: the servers run on this machine
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def postgres_bin() -> Path:
    """The directory of the newest installed PostgreSQL server's programs."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name)
                        if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found is None:
        skip_or_fail(f"no PostgreSQL server (initdb, pg_ctl) on this machine: {INSTALL_POSTGRES}")
    return Path(found).resolve().parent


class PostgresCluster:
    """A new PostgreSQL cluster on 127.0.0.1:``port``, superuser ``mlflow``, no password."""

    USER = "mlflow"

    def __init__(self, port: Optional[int] = None):
        self.bin = postgres_bin()
        self.port = port or free_port()
        self.root: Optional[Path] = None
        self.started = False
        self.startup_seconds: Optional[float] = None

    # -- as whom ---------------------------------------------------------------
    def _as_owner(self, command: Sequence[str]) -> List[str]:
        """Run as ``postgres`` when we are root (PostgreSQL refuses root), else as we are."""
        if os.geteuid() != 0:
            return list(command)
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        # (its temporary files, if any, in its own dir: the session's TMPDIR is root's)
        return [runuser, "-u", "postgres", "--", "env", f"TMPDIR={self.root}", *command]

    def _run(self, *command: str, timeout: float = 60) -> None:
        result = subprocess.run(self._as_owner(command), capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n{self.log_tail()}")

    # -- life cycle ------------------------------------------------------------
    def start(self) -> "PostgresCluster":
        t0 = time.monotonic()
        # not under pytest's basetemp nor the session's TMPDIR (mode 0700, root's): the
        # postgres user must own it and reach it (conftest.py)
        self.root = Path(tempfile.mkdtemp(prefix="mnist-exp-postgres-",
                                          dir=os.environ.get("MNIST_EXP_SYSTEM_TMPDIR")))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                self.stop()
                skip_or_fail(f"no `postgres` user to run PostgreSQL as: {INSTALL_POSTGRES}")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.USER,
                  "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -F", "start")
        self.started = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URI (SQLAlchemy's default driver: psycopg 3)."""
        self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  self.USER, "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
                  f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def uri(self, database: str) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def query(self, database: str, sql: str) -> str:
        """``psql -At`` output of one query (what the database really holds)."""
        command = self._as_owner([str(self.bin / "psql"), "-h", "127.0.0.1", "-p",
                                  str(self.port), "-U", self.USER, "-d", database, "-At",
                                  "-v", "ON_ERROR_STOP=1", "-c", sql])
        return subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=60).stdout.strip()

    def stop(self) -> None:
        if self.root is None:
            return
        if self.started:
            with contextlib.suppress(Exception):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop", timeout=60)
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except (OSError, TypeError):
            return ""


@contextlib.contextmanager
def postgres() -> Iterator[PostgresCluster]:
    """A started cluster, stopped and removed afterwards (also when a test failed)."""
    need_module("psycopg", INSTALL_SERVER)  # SQLAlchemy 2.1's driver for postgresql://
    cluster = PostgresCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def write_auth_config(path: Path, database_uri: str, admin: Tuple[str, str]) -> Path:
    """The basic-auth app's ini file (``MLFLOW_AUTH_CONFIG_PATH``): users and permissions
    in ``database_uri``; everyone may read everything (``default_permission = READ``);
    whoever creates an experiment may manage it (MLflow grants MANAGE to its creator).
    A checked password is trusted for 60 s: without that cache every request pays a
    scrypt hash (~0.1 s of the server's CPU here; a run makes hundreds of requests)."""
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {admin[0]}\n"
        f"admin_password = {admin[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n")
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def tracking_server(cluster: PostgresCluster, workdir: Path, env: dict, *,
                    auth: Optional[Tuple[str, str]] = None, workers: int = 1,
                    startup_timeout: float = 180) -> Iterator[MlflowServer]:
    """``mlflow server`` on a new database of ``cluster``, artifacts proxied into
    ``workdir/artifacts``; with ``auth`` (the admin's user name and password), the
    basic-auth app, its users in a second database."""
    need_module("psycopg", INSTALL_SERVER)
    workdir.mkdir(parents=True, exist_ok=True)
    backend = cluster.create_database("mlflow")
    args = ["--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts")]
    env = dict(env)
    if auth is not None:
        need_module("flask_wtf", INSTALL_SERVER)
        ini = write_auth_config(workdir / "basic_auth.ini",
                                cluster.create_database("mlflow_auth"), auth)
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str(ini),
                    # CSRF needs one static key for every worker of the server
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": base64.b64encode(os.urandom(24)).decode()})
        args += ["--app-name", "basic-auth"]
    server = MlflowServer(backend, workdir, env=env, args=args, workers=workers,
                          startup_timeout=startup_timeout)
    try:
        yield server.start()
    finally:
        server.stop()


class Rest:
    """The tracking server's REST API as one user (no user: anonymous)."""

    def __init__(self, url: str, user: Optional[Tuple[str, str]] = None):
        self.url = url
        self.headers = {"Content-Type": "application/json"}
        if user is not None:
            token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(self, method: str, endpoint: str, body: Optional[dict] = None,
             **params: Any) -> Tuple[int, Any]:
        """``(HTTP status, decoded JSON or raw text)``; errors are returned, not raised."""
        url = self.url + endpoint + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=self.headers, method=method)
        try:
            with _DIRECT.open(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def get(self, endpoint: str, **params: Any) -> Any:
        status, payload = self.call("GET", endpoint, **params)
        assert status == 200, (endpoint, status, payload)
        return payload

    def post(self, endpoint: str, body: dict) -> Any:
        status, payload = self.call("POST", endpoint, body)
        assert status == 200, (endpoint, status, payload)
        return payload
