"""Integration tests: real servers and clusters that the tests start on this machine.

Everything under tests/integration/ is marked ``integration`` and ``slow``, so the fast
subset (``pytest -m "not slow"``) skips it and ``pytest -m integration`` runs only it.
They need system packages and extras that ``.ci/run`` installs; see the README.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)
