"""Integration tests: real servers and clusters that the tests start on this machine.

A package, so that its modules import their neighbours as ``integration.<name>`` (e.g.
``integration.servers``, the PostgreSQL and ``mlflow server`` harness) without clashing
with the modules of tests/. tests/conftest.py marks everything here ``integration`` and
``slow``.
"""
