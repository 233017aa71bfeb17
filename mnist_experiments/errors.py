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
