"""mnist-experiments: Hydra-configured Keras CNN experiments on MNIST-style data, tracked in MLflow."""

__version__ = "0.1.0"
