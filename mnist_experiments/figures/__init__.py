"""Figures: one module per kind of figure; pure Matplotlib, no TensorFlow or MLflow."""
