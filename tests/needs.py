"""What a test needs from this machine, and what happens when it is missing.

A missing browser, database or cluster skips the test on a developer's machine, with the
command that installs it; under CI (``CI=true``, which ``.ci/run`` sets) it fails, so a
green CI never means "skipped".
"""

from __future__ import annotations

import os
import shutil

import pytest


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + " -- CI must install it")
    pytest.skip(reason)


def need_program(name: str, install: str) -> str:
    """The path of ``name`` on PATH or in /usr/sbin, /sbin (where Debian puts daemons)."""
    path = shutil.which(name, path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        skip_or_fail(f"no `{name}` on this machine: {install}")
    return path


def need_module(name: str, install: str) -> None:
    try:
        __import__(name)
    except ImportError:
        skip_or_fail(f"no `{name}` package: {install}")
