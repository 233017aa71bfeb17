"""Data: loaders (Keras, IDX, npz, digits), splits, fingerprints, image files.

One job a module:

* :mod:`~mnist_experiments.data.arrays`: :class:`RawData`, the checks every loader
  applies to its arrays, :func:`fingerprint`.
* :mod:`~mnist_experiments.data.idx`: the IDX file format (:func:`load_idx`,
  :func:`save_idx`, :func:`load_idx_dir`).
* :mod:`~mnist_experiments.data.loaders`: :func:`load_raw` and the npz, Keras and
  digits loaders it dispatches to.
* :mod:`~mnist_experiments.data.splits`: :func:`split` (``data.limit``, the validation
  set) into a :class:`Dataset`, and :func:`load_dataset`.
* :mod:`~mnist_experiments.data.images`: image files for ``predict``.

Light: NumPy only (scikit-learn and Pillow where a loader needs them); no TensorFlow or
MLflow at import time.
"""

from mnist_experiments.data.arrays import IMAGE_SIZE, NUM_CLASSES, RawData, fingerprint
from mnist_experiments.data.idx import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    MAX_IDX_BYTES,
    load_idx,
    load_idx_dir,
    save_idx,
)
from mnist_experiments.data.loaders import (
    BUILTIN_NAMES,
    NPZ_KEYS,
    load_digits_28,
    load_npz,
    load_raw,
)
from mnist_experiments.data.splits import (
    MIN_LIMIT,
    VALIDATION_MODES,
    Dataset,
    load_dataset,
    split,
)

__all__ = [
    "BUILTIN_NAMES",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IMAGE_SIZE",
    "MAX_IDX_BYTES",
    "MIN_LIMIT",
    "NPZ_KEYS",
    "NUM_CLASSES",
    "VALIDATION_MODES",
    "Dataset",
    "RawData",
    "fingerprint",
    "load_dataset",
    "load_digits_28",
    "load_idx",
    "load_idx_dir",
    "load_npz",
    "load_raw",
    "save_idx",
    "split",
]
