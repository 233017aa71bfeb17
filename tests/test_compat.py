"""Every private API this package relies on still exists upstream (see compat.py).

When one of these fails after an upgrade, the message names the library version, and
the fix goes into ``mnist_experiments/compat.py`` only.
"""

from __future__ import annotations

import hydra
import pytest

from mnist_experiments import compat


def test_hydra_help_patch_still_applies():
    if not hydra.__version__.startswith(compat.HYDRA_HELP_PATCH_VERSIONS):
        pytest.fail(f"Hydra {hydra.__version__} is not a version the --help patch was written "
                    f"for ({compat.HYDRA_HELP_PATCH_VERSIONS}); check CachingConfigRepository "
                    "and update compat.share_config_repository_for_help")
    from hydra._internal.config_repository import CachingConfigRepository

    original = CachingConfigRepository.__init__
    try:
        assert compat.share_config_repository_for_help(), (
            f"Hydra {hydra.__version__}: hydra._internal.config_repository."
            "CachingConfigRepository is gone; --help is slow again")
        repo = CachingConfigRepository(delegate="the delegate")
        assert repo.delegate == "the delegate" and repo.cache == {}
    finally:
        CachingConfigRepository.__init__ = original


def test_job_return_value_reads_a_failed_jobs_exception():
    from hydra.core.utils import JobReturn, JobStatus

    error = ValueError("boom")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_return_value(failed) is error, (
        f"Hydra {hydra.__version__}: JobReturn no longer keeps _return_value")
    assert compat.job_return_value(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) == 0.5


def test_keras_safe_mode_scope_beats_the_global_switch():
    import keras

    scope = compat.keras_safe_mode()
    assert type(scope).__name__ == "SafeModeScope", (
        f"Keras {keras.__version__}: keras.src.saving.serialization_lib.SafeModeScope is gone")
    from keras.src.saving import serialization_lib

    keras.config.enable_unsafe_deserialization()
    try:
        with scope:
            assert serialization_lib.in_safe_mode() is True
    finally:
        serialization_lib.SafeModeScope(True).__enter__()  # restore the default
