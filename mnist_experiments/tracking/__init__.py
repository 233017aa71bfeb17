"""Tracking: the MLflow store, runs and their status, provenance, logged models, artifacts.

Heavy (imports MLflow), except :mod:`.store`, which resolves and builds the store
before anything heavy is imported.
"""
