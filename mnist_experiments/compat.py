"""Every use of another library's private API, in one place, each with its version note.

Nothing else in the package touches a private name of Hydra, Keras or MLflow. Each
function here degrades to a safe default when upstream changes, and
``tests/test_compat.py`` fails loudly, naming the upstream version, when one of them no
longer finds what it relies on.

Light: imports no TensorFlow, Keras or MLflow at module level.
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager

# Hydra versions whose private CachingConfigRepository has the shape patched below.
HYDRA_HELP_PATCH_VERSIONS = ("1.3.",)


def share_config_repository_for_help() -> bool:
    """Make ``mnist-exp --help`` fast (1.6 s -> under 0.5 s on Hydra 1.3).

    Hydra 1.3's help lists every config group, deep-copying the whole config repository
    twice per group (about 120 copies). Help only reads the repository and then exits,
    so the copies can share it. Private API: ``hydra._internal.config_repository.
    CachingConfigRepository.__init__`` (Hydra 1.3.x). Any other Hydra: left alone.

    Returns whether the patch was applied.
    """
    import hydra

    if not hydra.__version__.startswith(HYDRA_HELP_PATCH_VERSIONS):
        return False
    try:
        from hydra._internal.config_repository import CachingConfigRepository
    except ImportError:  # pragma: no cover - checked by tests/test_compat.py
        return False

    def __init__(self, delegate):
        self.delegate = delegate
        self.cache = {}

    CachingConfigRepository.__init__ = __init__
    return True


def job_return_value(job_return: Any) -> Any:
    """What a Hydra job returned, or the exception it raised, without re-raising it.

    ``JobReturn.return_value`` re-raises a failed job's exception; the sweep callback
    needs the exception to record it. Private API: ``JobReturn._return_value``
    (Hydra 1.1-1.3).
    """
    return getattr(job_return, "_return_value", None)


def keras_safe_mode() -> ContextManager[Any]:
    """A scope that forces Keras' safe deserialization on, even when a process called
    ``keras.config.enable_unsafe_deserialization()``.

    Private API: ``keras.src.saving.serialization_lib.SafeModeScope`` (Keras 3.0-3.15).
    Without it, ``load_model(safe_mode=True)`` still applies to the model file itself.
    """
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - checked by tests/test_compat.py
        return contextlib.nullcontext()
    return SafeModeScope(True)
