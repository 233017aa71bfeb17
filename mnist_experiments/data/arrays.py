"""The arrays every loader returns: :class:`RawData`, the checks that make them, fingerprints.

Every loader hands its arrays to :func:`check_pair`, which accepts the common forms of
MNIST-style data (``(n, 28, 28)`` or ``(n, 28, 28, 1)`` images as uint8, integers or
floats; labels as a vector of integers) and returns 28x28 ``uint8`` images (0-255) and
``int64`` labels (0-9), or raises a :class:`~mnist_experiments.errors.DataError` that
names the array and says how to fix it.

NumPy only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Tuple

import numpy as np

from mnist_experiments.errors import DataError

IMAGE_SIZE = 28
NUM_CLASSES = 10


@dataclass
class RawData:
    """A training and a test set as loaded, before any limit or validation split.

    Attributes
    ----------
    x_train, x_test : ndarray of uint8, shape (n, 28, 28)
        Grayscale images, 0-255.
    y_train, y_test : ndarray of int64, shape (n,)
        Labels 0-9.
    source : str
        Where the data came from, e.g. ``"keras:mnist"``, ``"idx:/abs/dir"``,
        ``"npz:/abs/file.npz"`` or ``"sklearn:load_digits"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def fingerprint(*arrays: np.ndarray) -> str:
    """SHA-256 hex digest identifying arrays by dtype, shape and contents, in order.

    For each array the digest covers its dtype string (e.g. ``"|u1"``), its shape and
    its C-contiguous bytes, so a changed pixel, a reshape or a cast all change it.
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


# ---------------------------------------------------------------------- checking
def check_pair(
    images: Any, labels: Any, images_where: str, labels_where: str
) -> Tuple[np.ndarray, np.ndarray]:
    """Check and convert one images/labels pair to uint8 (n, 28, 28) and int64 (n,)."""
    x = _as_images(np.asarray(images), images_where)
    y = _as_labels(np.asarray(labels), labels_where)
    if len(x) != len(y):
        raise DataError(
            f"{images_where} holds {len(x)} images but {labels_where} holds {len(y)} "
            "labels; they must match one to one. The two files do not belong together, "
            "or one is incomplete."
        )
    return x, y


def _as_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        size = f"{x.shape[1]}x{x.shape[2]} " if x.ndim == 3 else ""
        raise DataError(
            f"{where} has shape {x.shape}, i.e. {size}images, but (n, 28, 28) or "
            "(n, 28, 28, 1) is expected. Resize the images to 28x28 grayscale (the "
            "models expect MNIST-sized input)."
        )
    if len(x) == 0:
        raise DataError(f"{where} holds no images. Give a non-empty data set.")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise DataError(f"{where} contains NaN or infinite pixel values. Fix the data.")
        if x.max() <= 1.0:
            x = x * 255.0
    elif x.dtype.kind not in "iu":
        raise DataError(
            f"{where} has dtype {x.dtype}; images must be uint8 (0-255), integers or "
            "floats. Convert them, e.g. with x.astype(np.uint8)."
        )
    low, high = x.min(), x.max()
    if low < 0 or high > 255:
        raise DataError(
            f"{where} has pixel values from {low} to {high}, outside 0-255 (or 0-1 for "
            "floats). Give raw pixel intensities, not standardized values."
        )
    return np.rint(x).astype(np.uint8) if x.dtype.kind == "f" else x.astype(np.uint8)


def _as_labels(y: np.ndarray, where: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(
            f"{where} has shape {y.shape}, but labels must be a vector of shape (n,) "
            "holding class numbers 0-9 (not one-hot). Convert with y.argmax(axis=1) if "
            "they are one-hot."
        )
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.rint(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(
            f"{where} has dtype {y.dtype}, but labels must be integers 0-9. Convert them, "
            "e.g. with y.astype(np.int64)."
        )
    y = y.astype(np.int64)
    bad = (y < 0) | (y >= NUM_CLASSES)
    if bad.any():
        values = np.unique(y[bad])
        shown = ", ".join(str(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise DataError(
            f"{where} contains labels outside 0-9: {shown} (first at index "
            f"{int(np.argmax(bad))}). This framework handles 10 classes labelled 0-9; "
            "check the file or relabel the data."
        )
    return y
