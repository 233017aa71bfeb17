"""From loaded data to what training uses: :func:`split` and :func:`load_dataset`.

:func:`split` applies ``data.limit`` to a :class:`~mnist_experiments.data.arrays.RawData`
and carves out the validation set (``data.validation``), giving a :class:`Dataset`. The
same config and seed always give the same arrays, and :attr:`Dataset.fingerprint`
identifies them.

NumPy, and scikit-learn for the stratified splits (imported when a split needs it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from mnist_experiments.data.arrays import NUM_CLASSES, RawData, fingerprint
from mnist_experiments.data.loaders import load_raw
from mnist_experiments.errors import DataError

VALIDATION_MODES = ("test_halves", "holdout")
# The smallest data.limit: two images per class (20). This is the one definition of that
# bound; the config validation should import it rather than repeat the number.
MIN_LIMIT = 2 * NUM_CLASSES


@dataclass
class Dataset:
    """The arrays training uses: training, validation and test sets.

    Attributes
    ----------
    x_train, x_val, x_test : ndarray of uint8, shape (n, 28, 28)
        Grayscale images, 0-255.
    y_train, y_val, y_test : ndarray of int64, shape (n,)
        Labels 0-9.
    class_names : list of str
        The name of each label, indexed by label.
    source : str
        Where the raw data came from (see :attr:`RawData.source`).
    fingerprint : str
        SHA-256 hex digest of the six arrays (see :func:`fingerprint`); equal
        fingerprints mean the same data in the same order.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: List[str]
    source: str
    fingerprint: str

    def shapes(self) -> Dict[str, List[int]]:
        """Shape of each array, e.g. ``{"x_train": [54000, 28, 28], ...}``."""
        names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
        return {name: list(getattr(self, name).shape) for name in names}


# ------------------------------------------------------------------ entry points
def load_dataset(data_cfg: Any, seed: int) -> Dataset:
    """Load the data described by ``data_cfg`` and split it.

    Equivalent to ``split(load_raw(data_cfg), data_cfg, seed)``.

    Parameters
    ----------
    data_cfg : DictConfig or object
        The ``data`` section of the config (see :class:`~mnist_experiments.config.schema.DataConfig`).
    seed : int
        Seeds the subsample of ``data.limit`` and the ``holdout`` validation split.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        If the data cannot be found, downloaded or parsed.
    """
    return split(load_raw(data_cfg), data_cfg, seed)


def split(raw: RawData, data_cfg: Any, seed: int) -> Dataset:
    """Apply ``data.limit`` and carve out the validation set.

    1. If ``data.limit`` is set (at least :data:`MIN_LIMIT`), the training set and the
       test set are each capped at ``limit`` images by a stratified subsample seeded
       with ``seed`` (a seeded random subsample when stratifying is impossible, e.g. a
       class with one image). Kept images stay in their original order. A set with at
       most ``limit`` images is kept whole.
    2. ``data.validation``:

       * ``test_halves`` (as in the course notebooks): validation = the first half of
         the test set (``n // 2`` images), test = the second half.
       * ``holdout``: validation = a stratified, seeded ``data.val_fraction`` of the
         training set, training = the rest; the test set is kept whole.

    Parameters
    ----------
    raw : RawData
    data_cfg : DictConfig or object
        Uses ``validation`` (the ``Validation`` enum or its string value),
        ``val_fraction``, ``limit`` and ``class_names``.
    seed : int

    Returns
    -------
    Dataset
        Deterministic: the same ``raw``, config and seed give identical arrays.

    Raises
    ------
    DataError
        If ``validation`` is unknown, ``val_fraction`` or ``limit`` is out of range, or
        the data are too few to split.
    """
    validation = getattr(data_cfg, "validation", "holdout")
    validation = str(getattr(validation, "value", validation))
    limit = getattr(data_cfg, "limit", None)
    class_names = [str(c) for c in getattr(data_cfg, "class_names", range(NUM_CLASSES))]

    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if limit is not None:
        limit = int(limit)
        if limit < MIN_LIMIT:
            raise DataError(
                f"data.limit={limit} is invalid: it must be at least {MIN_LIMIT} (two images "
                "per class) or null for all images. Try data.limit=500."
            )
        keep = stratified_subsample(y_train, limit, seed)
        x_train, y_train = x_train[keep], y_train[keep]
        keep = stratified_subsample(y_test, limit, seed)
        x_test, y_test = x_test[keep], y_test[keep]

    if validation == "test_halves":
        half = len(y_test) // 2
        if half == 0:
            raise DataError(
                f"validation=test_halves needs at least 2 test images to halve, but there "
                f"are {len(y_test)}. Raise data.limit or use data.validation=holdout."
            )
        x_val, y_val = x_test[:half], y_test[:half]
        x_test, y_test = x_test[half:], y_test[half:]
    elif validation == "holdout":
        val_fraction = float(getattr(data_cfg, "val_fraction", 0.1))
        if not 0.0 < val_fraction < 1.0:
            raise DataError(
                f"data.val_fraction={val_fraction} is invalid: it must lie strictly between "
                "0 and 1. Try data.val_fraction=0.1."
            )
        train_idx, val_idx = _holdout(y_train, val_fraction, seed)
        x_val, y_val = x_train[val_idx], y_train[val_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
    else:
        raise DataError(
            f"data.validation={validation!r} is unknown. Choose "
            "data.validation=test_halves (validate on the first half of the test set) or "
            "data.validation=holdout (a data.val_fraction of the training set)."
        )

    arrays = (x_train, y_train, x_val, y_val, x_test, y_test)
    return Dataset(
        *arrays, class_names=class_names, source=raw.source, fingerprint=fingerprint(*arrays)
    )


def stratified_subsample(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified seeded subsample of ``limit`` items (or all)."""
    n = len(y)
    if limit >= n:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    try:
        keep, _ = train_test_split(np.arange(n), train_size=limit, stratify=y, random_state=seed)
    except ValueError:  # a class too small, or fewer images than classes on one side
        keep = np.random.default_rng(seed).choice(n, size=limit, replace=False)
    return np.sort(keep)


def _holdout(y: np.ndarray, val_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices of a stratified seeded holdout split."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(y))
    try:
        train_idx, val_idx = train_test_split(
            indices, test_size=val_fraction, stratify=y, random_state=seed
        )
    except ValueError:  # stratifying impossible: fall back to a plain seeded split
        try:
            train_idx, val_idx = train_test_split(
                indices, test_size=val_fraction, random_state=seed
            )
        except ValueError as exc:
            raise DataError(
                f"Cannot hold out data.val_fraction={val_fraction} of {len(y)} training "
                f"images ({exc}). Use more training images (raise data.limit) or "
                "data.validation=test_halves."
            ) from exc
    return np.sort(train_idx), np.sort(val_idx)

