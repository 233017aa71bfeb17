"""Launching jobs with Hydra: the job context, the MLflow sweep callback, the sweep files.

Light: what Hydra loads for every run imports no TensorFlow or MLflow; the hooks that
need MLflow import the heavy workflows when they run.
"""
