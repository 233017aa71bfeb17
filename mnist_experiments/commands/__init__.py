"""Console scripts: argument parsing only; each calls a workflow.

Light: ``--help`` imports neither TensorFlow nor MLflow.
"""
