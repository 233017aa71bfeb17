"""mnist-experiments: Hydra-configured Keras CNN experiments on MNIST-style data, tracked in MLflow."""

from mnist_experiments import terminal as _terminal

__version__ = "0.1.0"

# before anything can import TensorFlow: its start-up noise filtered (see terminal.py)
_terminal.install()
