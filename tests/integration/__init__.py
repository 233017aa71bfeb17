"""A package, so that its conftest is imported as ``integration.conftest``.

Without this file, pytest's prepend import mode imports tests/integration/conftest.py
under the plain name ``conftest`` and drops tests/conftest.py from ``sys.modules``:
every ``from conftest import ...`` of the other test modules then fails to import.
Modules here import their neighbours as ``integration.<name>``.
"""
