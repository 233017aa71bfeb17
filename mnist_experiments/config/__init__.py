"""Configuration: the typed schema, the option registry, validation and untrusted configs.

Light: imports neither TensorFlow, Keras nor MLflow.
"""
