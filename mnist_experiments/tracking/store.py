"""Where runs are stored: the tracking URI, its SQLite file, and creating a fresh store.

This module does not import MLflow (``mnist-exp`` calls it before the heavy imports).

- :func:`resolve_tracking_uri`: ``mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``,
  else ``sqlite:///<launch dir>/mlflow.db`` as an absolute path (Hydra may change the
  working directory; ``mlflow ui`` started in the launch dir shows the runs).
- :func:`refuse_credentials`: a tracking URI is recorded with every run (the config's
  params, ``config.yaml``, log lines), so one that carries a password is refused; the
  credentials belong in MLflow's environment variables or credentials file.
- :class:`StoreCreation`: a brand-new SQLite store is a copy of the template of this
  MLflow's schema (:mod:`~mnist_experiments.tracking.store_template`, a millisecond).
  Only the first one on a machine (or after an MLflow upgrade) costs ~3 s, importing
  MLflow and then ~1.4 s of alembic migrations: a job starts that work in a helper
  process, which runs on the second core while the job imports TensorFlow and loads its
  data, and keeps the template. Either way the DB is made under a temporary name and
  linked into place only when complete, so an interrupted creation never leaves a
  half-migrated ``mlflow.db`` behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Optional

from mnist_experiments.errors import UserError
from mnist_experiments.tracking.owner import creation_name, stale_creation
from mnist_experiments.tracking.preflight import check_store
from mnist_experiments.tracking.store_template import (
    build_template,
    copy_template,
    remove_quietly,
)

DEFAULT_DB = "mlflow.db"
SQLITE = "sqlite:///"


def resolve_tracking_uri(configured: Optional[str], launch_dir: str | os.PathLike) -> str:
    """The tracking URI to use, with any relative SQLite path made absolute."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{DEFAULT_DB}"
    refuse_credentials(uri)
    if uri.startswith(SQLITE):
        db_path = uri[len(SQLITE):]
        if not os.path.isabs(db_path):
            uri = SQLITE + os.path.abspath(os.path.join(launch_dir, db_path))
    elif "://" not in uri:  # a bare path: treat it as a SQLite file
        uri = SQLITE + os.path.abspath(os.path.join(launch_dir, uri))
    return uri


def refuse_credentials(uri: str) -> None:
    """Refuse a tracking URI with a password in it (``http://alice:secret@host:5000``).

    mnist-exp records its tracking URI with every run (the config's params, its
    ``config.yaml``, log lines, a sweep's files): everyone who may read the run would
    read the password. The message names the URI without its credentials.
    """
    try:
        parts = urllib.parse.urlsplit(uri)
        password = parts.password
    except ValueError:  # a malformed port: the store check names the URI
        return
    if password is None and not (parts.username and parts.scheme in ("http", "https")):
        return
    host = parts.netloc.rsplit("@", 1)[-1]
    masked = f"{parts.username}{':***' if password is not None else ''}@{host}"
    shown = urllib.parse.urlunsplit(parts._replace(netloc=masked))
    if parts.scheme in ("http", "https"):
        bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
        fix = ("give the server's URI without them (mlflow.tracking_uri=" + bare + ", or "
               "--tracking-uri for the other commands, or $MLFLOW_TRACKING_URI) and the "
               "account in the environment: MLFLOW_TRACKING_USERNAME and "
               "MLFLOW_TRACKING_PASSWORD (or in MLflow's credentials file, "
               "~/.mlflow/credentials)")
    else:
        bare = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))
        fix = ("give the URI without the password (" + bare + ") and the password to the "
               "database driver outside the URI (for PostgreSQL: $PGPASSWORD or ~/.pgpass)")
    raise UserError(
        f"The MLflow tracking URI {shown} carries credentials. "
        "mnist-exp records the tracking URI with every run (its params, config.yaml and "
        f"log lines), where everyone who may read the run would see them, so it is "
        f"refused. Instead, {fix}."
    )


def sqlite_file(uri: str) -> Optional[Path]:
    """The DB file of a ``sqlite:///`` tracking URI, or None for any other store."""
    return Path(uri[len(SQLITE):]) if uri.startswith(SQLITE) else None


def artifact_root_for(uri: str) -> Optional[str]:
    """Artifacts of a local SQLite store live in ``mlruns/`` beside the DB file."""
    db = sqlite_file(uri)
    return db.parent.joinpath("mlruns").as_uri() if db is not None else None


class StoreCreation:
    """Make a brand-new SQLite store for ``uri`` (with experiment ``name``) aside.

    Use as a context manager around the work that precedes the store's first use::

        with StoreCreation.start(uri, name) as creation:
            ...  # import TensorFlow, load data
            creation.install()

    :meth:`start` acts only for a ``sqlite:///`` URI whose DB does not exist yet
    (otherwise every method is a no-op); it first refuses, with a
    :class:`~mnist_experiments.tracking.preflight.StoreError`, any store that cannot
    work (:func:`~mnist_experiments.tracking.preflight.check_store`). It copies the
    template to a temporary name, or, without a template, spawns the helper that builds
    the template and the store there (with the experiment). :meth:`install` waits for
    the helper if there is one and links the store into place (unless a store appeared
    meanwhile); the caller's :func:`~mnist_experiments.tracking.runs.ensure_experiment`
    adds the experiment to a copied template. Leaving the block stops the helper and
    removes the temporary file, so a job that fails before it opens the store (bad
    data, say) leaves no store behind. The helper's failures are silent on purpose:
    the job then creates the store itself and reports any problem with the usual
    message.
    """

    def __init__(self, process: Optional[subprocess.Popen] = None,
                 db: Optional[Path] = None, temporary: Optional[Path] = None):
        self.process = process
        self.db = db
        self.temporary = temporary

    @classmethod
    def start(cls, uri: str, name: str) -> "StoreCreation":
        check_store(uri)  # a store that cannot work is refused here, in seconds
        db = sqlite_file(uri)
        if db is not None:
            remove_stale_creations(db)
        if not _missing(db):
            return cls()
        copied = cls._copy_of_template(db)
        if copied is not None:  # ready now: nothing to wait for
            return copied
        temporary = db.with_name(creation_name(db.name))
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mnist_experiments.tracking.create_store", str(temporary), name],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C goes to the job, which discards this
            )
        except OSError:
            return cls()
        return cls(process, db, temporary)

    @classmethod
    def _copy_of_template(cls, db: Path) -> Optional["StoreCreation"]:
        """The template copied to this process's temporary name beside ``db``, or None."""
        temporary = db.with_name(creation_name(db.name))
        return cls(None, db, temporary) if copy_template(temporary) else None

    @property
    def building(self) -> bool:
        """Whether a helper builds a new store (the caller has time to use meanwhile)."""
        return self.process is not None

    def install(self, timeout: float = 120.0) -> bool:
        """Wait for the helper, if any, and put the store in place; True if this
        installed it."""
        if self.temporary is None:
            return False
        code = 0  # a copied template is complete
        if self.process is not None:
            try:
                code = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
        installed = False
        if code == 0 and not self.db.exists():
            try:
                os.link(self.temporary, self.db)  # atomic; never replaces another store
                installed = True
            except OSError:  # created meanwhile, or a file system without hard links
                pass
        self.discard()
        return installed

    def discard(self) -> None:
        """Stop the helper if it still runs and remove the temporary file."""
        if self.temporary is None:
            return
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        remove_quietly(self.temporary, self.temporary.with_name(self.temporary.name + "-journal"))

    def __enter__(self) -> "StoreCreation":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def install_template(uri: str) -> bool:
    """Make the missing SQLite store of ``uri`` a copy of the template (built here first
    if there is none yet); True if this installed it. For a process that opens a new
    store itself, with MLflow imported already (:func:`runs.ensure_experiment`);
    otherwise, or if it cannot, MLflow migrates the new store in place."""
    db = sqlite_file(uri)
    if not _missing(db) or build_template() is None:
        return False
    copied = StoreCreation._copy_of_template(db)
    if copied is None:
        return False
    with copied:
        return copied.install()


def _missing(db: Optional[Path]) -> bool:
    """Whether ``db`` is an SQLite store to create: a file that does not exist yet, in a
    directory that does."""
    return db is not None and not db.exists() and db.parent.is_dir()


def remove_stale_creations(db: Path) -> None:
    """Remove temporary stores beside ``db`` left by jobs that died while building them
    (SIGKILL, the OOM killer); those of live jobs are theirs."""
    try:
        candidates = list(db.parent.glob(f".{db.name}.*.creating*"))
    except OSError:
        return
    for path in candidates:
        if stale_creation(path):
            path.unlink(missing_ok=True)


def existing_store_uri(tracking_uri: Optional[str] = None, cwd: Optional[str] = None,
                       must_exist: bool = True) -> str:
    """``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``.

    A relative SQLite path is made absolute against ``cwd`` (default: the working
    directory). With ``must_exist``, a SQLite file that does not exist is an error
    rather than a new, empty store created as a side effect. Either way, a store that
    cannot work is refused in seconds
    (:func:`~mnist_experiments.tracking.preflight.check_store`).
    """
    uri = resolve_tracking_uri(tracking_uri, cwd or os.getcwd())
    db = sqlite_file(uri)
    if must_exist and db is not None:
        if not db.is_file():
            raise UserError(
                f"There is no MLflow tracking store at {uri} ({db} does not exist), so no "
                "logged model can be found there. Run this command in the directory where "
                "you ran mnist-exp (it keeps its runs in ./mlflow.db), or point it at the "
                "store with --tracking-uri sqlite:////abs/path/mlflow.db (or "
                "http://host:5000), or set $MLFLOW_TRACKING_URI."
            )
    check_store(uri, create=not must_exist, write=False)
    return uri
