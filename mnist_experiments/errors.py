"""Errors a user can fix.

Every problem with the user's input (a config value, a data file, a run id) is raised
as a :class:`UserError`. Its message is one paragraph that names the bad value and says
how to fix it. ``UserError`` derives from Hydra's ``CompactHydraException``, so the
Hydra app prints only that paragraph (no traceback) and exits with status 1.
"""

from hydra.errors import CompactHydraException


class UserError(CompactHydraException):
    """A problem with the user's input, reported as one clear paragraph."""


class ConfigError(UserError):
    """The composed config is invalid (bad value, unknown key, unsafe target)."""


class DataError(UserError):
    """The data could not be loaded (missing or malformed files, no network)."""


def no_space_left(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a full disk (``ENOSPC``, or
    SQLite's "database or disk is full")."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(exc: BaseException, where: str) -> "UserError":
    """The one paragraph for a run stopped by a full disk under ``where``."""
    import shutil

    try:
        free = f"{shutil.disk_usage(where).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return UserError(
        f"The disk holding the MLflow store or its artifacts ({where}, {free}) is full, so "
        "the run could not be recorded completely. What was recorded before is kept. Free "
        "some space (or point mlflow.tracking_uri at a store on another disk) and run "
        "again; the next mnist-exp on this host also marks the interrupted run KILLED."
    )
