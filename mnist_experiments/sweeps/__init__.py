"""Sweeps: what Hydra loads for a multirun (the MLflow sweep callback) and the sweep files.

Light at import time: MLflow is imported by the hooks that need it.
"""
