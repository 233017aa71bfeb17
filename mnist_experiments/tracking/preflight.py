"""Check a tracking store before anything heavy: refuse, within seconds, one that cannot work.

Left to MLflow, a bad store is found late and slowly: a ``mlflow.db`` that is a
directory, or a store in a read-only directory, costs ~110 s of SQLAlchemy retries and
then a traceback; ``http://127.0.0.1:1`` costs ~255 s of HTTP retries in silence; a
corrupt file, or an unknown URI scheme, is a traceback; and an SQLite file of another
application silently gets MLflow's tables added. :func:`check_store` finds each of
these in well under a second (a bounded probe for servers), before TensorFlow is
imported and before any training, and raises a :class:`StoreError`: one paragraph that
names the store and the fix.

Standard library only: no MLflow (``mnist-exp`` calls it before the heavy imports).
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Optional, Set

from mnist_experiments.errors import UserError

SQLITE_HEADER = b"SQLite format 3\x00"
# tables every MLflow SQL store has (alembic's version table, and experiments)
MLFLOW_TABLES = {"alembic_version", "experiments"}
SERVER_SCHEMES = ("http", "https")
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
OTHER_SCHEMES = ("file", "databricks", "databricks-uc", "uc")
PROBE_SECONDS = 3.0  # per attempt; two attempts
FIX = ("Point mnist-exp at a usable store with mlflow.tracking_uri=sqlite:////abs/path/mlflow.db "
       "(or --tracking-uri for the other commands, or $MLFLOW_TRACKING_URI), or "
       "http://host:5000 for a tracking server.")


class StoreError(UserError):
    """The tracking store cannot be used (named, with the fix, in the message)."""


def check_store(uri: str, create: bool = True, write: bool = True,
                timeout: float = PROBE_SECONDS) -> None:
    """Refuse a tracking store that cannot work, without importing MLflow.

    Parameters
    ----------
    uri : str
        An absolute tracking URI (:func:`~mnist_experiments.tracking.store.resolve_tracking_uri`).
    create : bool
        A missing SQLite file may be created (a training run); else it must exist.
    write : bool
        The store will be written to: its file and directory must be writable.
    timeout : float
        Seconds per attempt to reach a server (two attempts).

    Raises
    ------
    StoreError
        For an SQLite path that is a directory, unreadable, corrupt, another
        application's database or not writable; a server that does not answer; an
        unknown URI scheme.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    base = scheme.split("+")[0]
    if uri.startswith("sqlite:///"):
        _check_sqlite(uri, Path(uri[len("sqlite:///"):]), create, write)
    elif base == "sqlite":
        return  # e.g. sqlite:// (in memory)
    elif base in SERVER_SCHEMES:
        _probe_server(uri, timeout)
    elif base in DATABASE_PORTS:
        _probe_database(uri, base, timeout)
    elif base in OTHER_SCHEMES or base in _plugin_schemes():
        return
    else:
        known = ", ".join(f"{s}://" for s in ("sqlite", *SERVER_SCHEMES, *DATABASE_PORTS,
                                              "file", "databricks"))
        raise StoreError(
            f"The MLflow tracking URI {uri!r} has a scheme ({scheme or 'none'}) that MLflow "
            f"does not know (known: {known}, or a plugin's). {FIX}"
        )


# ----------------------------------------------------------------------------- SQLite
def _check_sqlite(uri: str, db: Path, create: bool, write: bool) -> None:
    where = f"The MLflow tracking store {db} (tracking URI {uri})"
    if db.is_dir():
        raise StoreError(f"{where} is a directory, not an SQLite file. Move or rename that "
                         f"directory, or {_lower(FIX)}")
    if not db.exists():
        if db.is_symlink():
            raise StoreError(f"{where} is a symbolic link to a missing file. Remove the link, "
                             f"or {_lower(FIX)}")
        if not create:
            return  # the caller says what a missing store means for it
        if write:
            _check_writable_dir(where, _existing_ancestor(db.parent), db)
        return
    if not db.is_file():
        raise StoreError(f"{where} is not a regular file. {FIX}")
    try:
        with open(db, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"{where} cannot be read ({_reason(exc)}). Fix its permissions, "
                         f"or {_lower(FIX)}") from None
    if header and header != SQLITE_HEADER:
        raise StoreError(f"{where} is not an SQLite database (corrupt, or another kind of "
                         "file): nothing in it can be read. Move it aside (mv "
                         f"{db} {db}.broken) to start a new store there, restore it from a "
                         f"backup, or {_lower(FIX)}")
    tables = _tables(where, db) if header else set()
    if tables and not MLFLOW_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        raise StoreError(f"{where} is an SQLite database of another application (tables "
                         f"{shown}; no MLflow schema), so mnist-exp will not add MLflow's "
                         f"tables to it. Keep runs elsewhere: {_lower(FIX)}")
    if write:
        _check_writable_dir(where, db.parent, db)
        if not os.access(db, os.W_OK):
            raise StoreError(f"{where} is read-only, so no run can be recorded in it. Make it "
                             f"writable, or {_lower(FIX)}")


def _tables(where: str, db: Path) -> Set[str]:
    """The table names of an SQLite file, read without writing anything."""
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise StoreError(f"{where} cannot be opened by SQLite ({exc}). {FIX}") from None
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return set(MLFLOW_TABLES)  # busy with another run: MLflow waits for it
        raise StoreError(f"{where} cannot be read by SQLite ({exc}). {FIX}") from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{where} is a damaged SQLite database ({exc}). Move it aside "
                         f"(mv {db} {db}.broken) to start a new store there, restore it "
                         f"from a backup, or {_lower(FIX)}") from None
    finally:
        connection.close()


def _existing_ancestor(directory: Path) -> Path:
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    return directory


def _check_writable_dir(where: str, directory: Path, db: Path) -> None:
    """SQLite writes a journal beside its file: the directory must take new files."""
    if not directory.is_dir():
        raise StoreError(f"{where} cannot be created: {directory} is not a directory. "
                         f"{FIX}")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{db.name}.", suffix=".probe", dir=directory)
    except OSError as exc:
        raise StoreError(
            f"{where} cannot be {'written' if db.exists() else 'created'}: its directory "
            f"{directory} does not accept new files ({_reason(exc)}). Run mnist-exp from a "
            f"writable directory, or {_lower(FIX)}"
        ) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


# --------------------------------------------------------------------------- servers
def _probe_server(uri: str, timeout: float) -> None:
    """Any HTTP answer from the server will do (even 401 or 404); no answer is an error."""
    url = uri.rstrip("/") + "/health"
    last: Optional[BaseException] = None
    for _ in range(2):
        try:
            with urllib.request.urlopen(url, timeout=timeout):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(getattr(exc, "reason", exc), ssl.SSLError):
                return  # a TLS server answered; MLflow's own TLS settings apply to it
            last = exc
    reason = getattr(last, "reason", last)
    reason = _reason(reason) if isinstance(reason, OSError) else reason
    raise StoreError(
        f"The MLflow tracking server {uri} does not answer ({reason}; tried twice, "
        f"{timeout:g} s each). Start it (mlflow server --host 127.0.0.1 --port 5000), "
        f"check the host and port, or {_lower(FIX)}"
    )


def _probe_database(uri: str, scheme: str, timeout: float) -> None:
    parts = urllib.parse.urlsplit(uri)
    host, port = parts.hostname, parts.port or DATABASE_PORTS[scheme]
    if not host or host.startswith("/"):
        return  # a Unix socket or a driver-specific form: left to the driver
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise StoreError(
            f"The {scheme} database of the MLflow tracking store {_redact(parts)} does not "
            f"answer at {host}:{port} ({_reason(exc)}). Start it, check the host and port, "
            f"or {_lower(FIX)}"
        ) from None


def _redact(parts: urllib.parse.SplitResult) -> str:
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _plugin_schemes() -> Set[str]:
    try:
        return {e.name for e in metadata.entry_points(group="mlflow.tracking_store")}
    except Exception:  # a broken distribution's metadata: no plugins
        return set()


def _reason(exc: OSError) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return str(exc)


def _lower(text: str) -> str:
    return text[0].lower() + text[1:]
