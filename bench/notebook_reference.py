"""Baseline A of the benchmark: the course notebook's code as plain Keras.

This is what a user runs before moving to ``mnist-exp``: NumPy arrays scaled to
[0, 1], the notebook's CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10), RMSprop,
batch 64, ``model.fit`` with the first half of the test set as validation data and
``model.evaluate`` on the second half. It is deliberately *not* optimized: it is the
reference that ``mnist-exp experiment=seed_notebook`` must match or beat.

The only additions to the notebook are measurements: a callback that times every
epoch and the moment the first epoch ends, and one JSON line printed at the end::

    {"wall_s": ..., "epoch_s": [...], "first_epoch_s": ..., "first_epoch_end_unix": ...,
     "test_accuracy": ..., "test_loss": ..., ...}

``wall_s`` and ``first_epoch_s`` count from the start of this process (interpreter
start-up and imports included).

Usage::

    python bench/notebook_reference.py --data-path /usr/share/datasets/fashion-mnist
    python bench/notebook_reference.py --data-path data.npz --epochs 1
    python bench/notebook_reference.py --digits 300 --epochs 1   # offline, seconds
"""

import time

_START_PERF = time.perf_counter()
_START_UNIX = time.time()


def _process_age() -> float:
    """Seconds since this process started (Linux /proc), else since this module loaded."""
    try:
        import os

        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        with open("/proc/self/stat") as f:
            stat = f.read()
        # field 22 (starttime, clock ticks after boot); the command name may hold spaces
        starttime = int(stat[stat.rindex(")") + 2:].split()[19])
        age = uptime - starttime / os.sysconf("SC_CLK_TCK")
        return max(age, time.perf_counter() - _START_PERF)
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _START_PERF


# The process started this long before _START_PERF (interpreter start-up, site imports).
_PROCESS_START_PERF = _START_PERF - max(0.0, _process_age() - (time.perf_counter() - _START_PERF))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402,F401  (the notebook's imports)
from keras import layers  # noqa: E402


def since_start() -> float:
    return time.perf_counter() - _PROCESS_START_PERF


class EpochTimer(keras.callbacks.Callback):
    """Each epoch's duration, and when (since process start) the first one ended."""

    def __init__(self):
        super().__init__()
        self.epoch_s = []
        self.first_epoch_s = None
        self.first_epoch_end_unix = None
        self.epoch_end_unix = []
        self._begin = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._begin = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.epoch_s.append(now - self._begin)
        self.epoch_end_unix.append(time.time())
        if self.first_epoch_s is None:
            self.first_epoch_s = now - _PROCESS_START_PERF
            self.first_epoch_end_unix = time.time()


def load_data(args):
    """(train_images, train_labels), (test_images, test_labels) as uint8 / int arrays."""
    from mnist_experiments.data import load_digits_28, load_idx_dir, load_npz

    if args.digits is not None:
        raw = load_digits_28()
        n = int(args.digits)
        return (raw.x_train[:n], raw.y_train[:n]), (raw.x_test, raw.y_test)
    path = os.path.expanduser(args.data_path)
    raw = load_idx_dir(path) if os.path.isdir(path) else load_npz(path)
    return (raw.x_train, raw.y_train), (raw.x_test, raw.y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-path", default="/usr/share/datasets/fashion-mnist",
                        help="a directory of the four MNIST IDX files, or a Keras-layout .npz")
    source.add_argument("--digits", type=int, metavar="N", default=None,
                        help="scikit-learn's digits at 28x28, the first N training images")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)

    # ---- the notebook ---------------------------------------------------------------
    (train_images, train_labels), (test_images, test_labels) = load_data(args)

    train_images = train_images.reshape((len(train_images), 28, 28, 1))
    train_images = train_images.astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28, 28, 1))
    test_images = test_images.astype("float32") / 255

    half = len(test_images) // 2
    val_images, val_labels = test_images[:half], test_labels[:half]
    test_images, test_labels = test_images[half:], test_labels[half:]

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.summary()
    model.compile(optimizer="rmsprop",
                  loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    timer = EpochTimer()
    model.fit(train_images, train_labels, epochs=args.epochs, batch_size=64,
              validation_data=(val_images, val_labels),
              callbacks=[timer])  # the only addition: timing

    test_loss, test_acc = model.evaluate(test_images, test_labels)
    print("test accuracy:", test_acc)
    # ---- end of the notebook --------------------------------------------------------

    result = {
        "variant": "A",
        "wall_s": since_start(),
        "epoch_s": timer.epoch_s,
        "first_epoch_s": timer.first_epoch_s,
        "first_epoch_end_unix": timer.first_epoch_end_unix,
        "epoch_end_unix": timer.epoch_end_unix,
        "seed": args.seed,
        "process_start_unix": _START_UNIX - (_START_PERF - _PROCESS_START_PERF),
        "test_accuracy": float(test_acc),
        "test_loss": float(test_loss),
        "n_train": int(len(train_labels)),
        "n_val": int(len(val_labels)),
        "n_test": int(len(test_labels)),
        "params": int(model.count_params()),
        "jit_compile": bool(model.jit_compile),
    }
    sys.stdout.flush()
    print("\n" + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
