"""An empty, migrated SQLite store kept once per MLflow version, copied for new stores.

MLflow builds a new SQLite store by running its alembic migrations one by one (about
70 revisions, ~1.4 s of one core after ~1.7 s of imports). What they produce depends
only on MLflow's version, so the first new store on a machine also keeps an empty,
migrated copy (the *template*) in the user's cache, and every later new store starts as
a copy of it: a millisecond file copy instead of a helper process's 3-4 s. MLflow then
only verifies the schema and adds its Default experiment when the store is first opened.

- Where: ``$MNIST_EXP_CACHE_DIR``, else ``$XDG_CACHE_HOME/mnist-experiments``, else
  ``~/.cache/mnist-experiments``; the file is named after MLflow's version and the
  names of its migrations (``mlflow-3.17.2-<digest>.db``), so an upgraded MLflow gets a
  new template and never a stale schema.
- What: MLflow's tables at their newest revision and nothing else: no experiment, so no
  artifact location of another store's (``compat.migrated_sqlite_store``).
- Safety: a template is built under a temporary name and renamed into place whole; one
  that fails SQLite's own check (``PRAGMA quick_check``) or holds no schema is removed,
  never copied, and built again. An unwritable or full cache only means that every new
  store is migrated, as MLflow does it.

Light: the standard library only (MLflow is imported only to build a template).
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Optional

CACHE_ENV = "MNIST_EXP_CACHE_DIR"
_SQLITE_HEADER = b"SQLite format 3\x00"


def cache_dir() -> Path:
    """Where this package keeps what it can rebuild (today: the store templates)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser().absolute()  # jobs may change directory
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mnist-experiments"


def template_path() -> Optional[Path]:
    """The template of the installed MLflow (None if its migrations cannot be found)."""
    name = _template_name()
    return cache_dir() / name if name is not None else None


@functools.lru_cache(maxsize=None)
def _template_name() -> Optional[str]:
    """``mlflow-<version>-<digest of its migrations' names>.db``: read once a process
    (the cache dir is not: it comes from the environment)."""
    import hashlib  # (here: the command line imports this module, and needs neither)
    from importlib import metadata, util

    try:
        spec = util.find_spec("mlflow")
        version = metadata.version("mlflow")
    except (ImportError, ValueError, metadata.PackageNotFoundError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    migrations = Path(list(spec.submodule_search_locations)[0], "store", "db_migrations",
                      "versions")
    try:
        names = sorted(name for name in os.listdir(migrations) if name.endswith(".py"))
    except OSError:
        return None
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return f"mlflow-{version}-{digest}.db"


def copy_template(dest: Path) -> bool:
    """Copy the template to ``dest``, a new file; False (and no ``dest``) if there is no
    usable template or the copy fails. A signal during the copy (Ctrl-C, SIGTERM) leaves
    no ``dest`` behind either."""
    template = template_path()
    if template is None:
        return False
    try:
        source = open(template, "rb")
    except OSError:
        return False
    created = False
    try:
        with source:
            if not _sound(template, source):
                remove_quietly(template)  # the helper builds it again
                return False
            source.seek(0)
            with open(dest, "xb") as target:
                created = True
                shutil.copyfileobj(source, target)
    except BaseException as exc:  # nothing half-copied is left, whatever stopped it
        if created:
            remove_quietly(Path(dest))
        if isinstance(exc, OSError):  # a full disk, say: no template then
            return False
        raise
    return True


def _sound(template: Path, source) -> bool:
    """Whether ``template`` is an intact SQLite file holding MLflow's schema."""
    if source.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
        return False
    try:
        connection = sqlite3.connect(f"{template.as_uri()}?mode=ro", uri=True)
        try:
            checked = connection.execute("PRAGMA quick_check").fetchone()
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return checked == ("ok",) and revision is not None


def remove_quietly(*paths: os.PathLike) -> None:
    """Remove these files if they exist; an error (EROFS, say) is left unsaid, so that it
    never hides the error that brought the caller here."""
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def build_template() -> Optional[Path]:
    """The template, built now if there is none yet; None if it cannot be (an unusable
    cache dir): the caller then lets MLflow migrate the new store in place."""
    template = template_path()
    if template is None:
        return None
    if template.is_file():
        return template
    partial = None
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(prefix=f".{template.name}.", suffix=".partial",
                                               dir=template.parent)
        os.close(descriptor)
        from mnist_experiments.compat import migrated_sqlite_store

        migrated_sqlite_store(partial)
        os.replace(partial, template)  # whole or not at all; a concurrent build is as good
        partial = None
    except Exception:  # noqa: BLE001 - a template is an optimisation, never a dependency
        return None
    finally:
        if partial is not None:
            remove_quietly(partial, partial + "-journal")
    return template
