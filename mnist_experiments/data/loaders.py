"""Where the data come from: :func:`load_raw` and the loaders it dispatches to.

Every loader returns a :class:`~mnist_experiments.data.arrays.RawData`: 28x28 ``uint8``
images (0-255) and ``int64`` labels (0-9) for a training and a test set, exactly as
shipped (:func:`~mnist_experiments.data.splits.split` then applies ``data.limit`` and
the validation split).

* ``data.path`` set: a directory of the four MNIST IDX files
  (:func:`~mnist_experiments.data.idx.load_idx_dir`, e.g.
  ``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``) or a
  Keras-layout ``.npz`` file (:func:`load_npz`).
* ``data=mnist`` / ``data=fashion_mnist`` without a path: ``keras.datasets``, which
  downloads once and caches under ``~/.keras/datasets`` (or ``$KERAS_HOME/datasets``).
* ``data=digits``: scikit-learn's bundled 8x8 digits, upscaled to 28x28
  (:func:`load_digits_28`); works offline.

Every problem with the data (a missing or malformed file, no network) is raised as a
:class:`~mnist_experiments.errors.DataError` whose message names the file or value and
says how to fix it.

Importing this module is cheap: scikit-learn, Pillow and Hydra are imported only by the
loader that needs them, and Keras (with TensorFlow) only inside :func:`_load_keras`, when
``data=mnist`` or ``data=fashion_mnist`` is loaded without a path. MLflow never.
"""

from __future__ import annotations

import os
import socket
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mnist_experiments.data.arrays import IMAGE_SIZE, RawData, check_pair
from mnist_experiments.data.idx import load_idx_dir
from mnist_experiments.errors import DataError

BUILTIN_NAMES = ("mnist", "fashion_mnist", "digits")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

_OFFLINE_HINT = (
    "Either point data.path=/path/to/dir-or-npz at a local copy (a directory of the four "
    "MNIST IDX files or a Keras-layout .npz with x_train, y_train, x_test, y_test; on "
    "Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts Fashion-MNIST in "
    "/usr/share/datasets/fashion-mnist), or use data=digits, which is built in and works "
    "offline."
)


def load_raw(data_cfg: Any) -> RawData:
    """Load the training and test sets named by ``data_cfg``.

    With ``data.path`` set, a file ending in ``.npz`` is read by :func:`load_npz` and a
    directory by :func:`load_idx_dir`; ``data.name`` then only labels the run (any name
    but ``digits``). Without a path, ``mnist`` and ``fashion_mnist`` come from
    ``keras.datasets`` (downloaded once, then cached) and ``digits`` from
    :func:`load_digits_28`.

    Parameters
    ----------
    data_cfg : DictConfig or object
        Needs the attributes ``name`` and ``path``.

    Returns
    -------
    RawData

    Raises
    ------
    DataError
        If the path does not exist or holds malformed data, if ``digits`` is combined
        with a path, if the name is unknown, or if a Keras download fails (offline).
    """
    name = str(data_cfg.name)
    path = getattr(data_cfg, "path", None)
    if path not in (None, ""):
        if name == "digits":
            raise DataError(
                f"data=digits was given together with data.path={path!r}, but the digits "
                "data set is built in (scikit-learn's 8x8 digits) and reads no files. Drop "
                "data.path to use it, or choose data=mnist (or data=fashion_mnist) with "
                "data.path to load your own MNIST-format files."
            )
        return _load_path(str(path))
    if name in ("mnist", "fashion_mnist"):
        return _load_keras(name)
    if name == "digits":
        return load_digits_28()
    raise DataError(
        f"data.name={name!r} is not a built-in data set. Choose data=mnist, "
        "data=fashion_mnist or data=digits, or give data.path=/path/to/dir-or-npz to load "
        "MNIST-format files of your own."
    )


def _load_path(path: str) -> RawData:
    """Dispatch ``data.path`` to the IDX directory or npz loader."""
    from hydra.utils import to_absolute_path  # relative to the launch dir under Hydra

    resolved = Path(to_absolute_path(os.path.expanduser(path)))
    if not resolved.exists():
        raise DataError(
            f"data.path={path!r} does not exist (looked for {resolved}). Give an existing "
            "directory of the four MNIST IDX files (e.g. /usr/share/datasets/fashion-mnist) "
            "or a Keras-layout .npz file, or drop data.path to use the built-in loader."
        )
    if resolved.is_dir():
        return load_idx_dir(resolved)
    if resolved.suffix.lower() == ".npz":
        return load_npz(resolved)
    raise DataError(
        f"data.path={path!r} is a file but not an .npz archive. Give either a Keras-layout "
        ".npz file (x_train, y_train, x_test, y_test) or the directory that holds the four "
        f"IDX files (for an IDX file, that is data.path={str(resolved.parent)!r})."
    )


def _load_keras(name: str) -> RawData:
    """Load ``mnist`` or ``fashion_mnist`` with ``keras.datasets`` (imports Keras)."""
    import keras  # heavy: only imported when a Keras data set is actually used

    module = getattr(keras.datasets, name)
    cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "datasets")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a blackholed network fails instead of hanging
    try:
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:
        raise DataError(
            f"Could not load the built-in data set data={name}: "
            f"keras.datasets.{name}.load_data() failed with {type(exc).__name__}: {exc}. "
            f"It downloads the data once and caches it under {cache}, so this machine is "
            f"probably offline (or the cached file is damaged: delete it and retry). "
            + _OFFLINE_HINT
        ) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)
    where = f"keras.datasets.{name}"
    x_train, y_train = check_pair(x_train, y_train, f"{where} x_train", f"{where} y_train")
    x_test, y_test = check_pair(x_test, y_test, f"{where} x_test", f"{where} y_test")
    return RawData(x_train, y_train, x_test, y_test, source=f"keras:{name}")


def load_npz(path: Any) -> RawData:
    """Load a Keras-layout ``.npz`` archive.

    The archive must hold ``x_train``, ``y_train``, ``x_test`` and ``y_test``, as
    written by ``np.savez(path, x_train=..., ...)`` and as in Keras' ``mnist.npz``.
    Images may have shape (n, 28, 28) or (n, 28, 28, 1) and be uint8 (0-255), integers
    in 0-255, or floats in [0, 1] or [0, 255]; they are converted to uint8 0-255 (an
    array of floats whose maximum is at most 1.0 is multiplied by 255). Pickled
    objects are never loaded.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    RawData
        With ``source="npz:<absolute path>"``.

    Raises
    ------
    DataError
        If the file is not a valid npz archive, lacks a key, or holds arrays of the
        wrong shape, dtype or range, or image and label counts differ.
    """
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise DataError(
            f"npz file {path} does not exist. Check data.path, or give a directory of "
            "MNIST IDX files instead."
        )
    fix = (
        "Write it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) "
        "or point data.path at a directory of MNIST IDX files instead."
    )
    try:
        with open(path, "rb") as f:
            signature = f.read(6)
        if not signature.startswith(b"PK") and signature != b"\x93NUMPY":
            # np.load would take it for a pickle and blame pickling, which misleads
            raise DataError(
                f"{path} is not a valid .npz archive (it does not start with the zip "
                f"signature PK). {fix}"
            )
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single .npy array, not an .npz archive of x_train, "
                f"y_train, x_test and y_test. {fix}"
            )
        with archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(
                    f"npz file {path} lacks the key(s) {', '.join(missing)} (it holds: "
                    f"{', '.join(archive.files) or 'nothing'}). A Keras-layout archive "
                    f"needs x_train, y_train, x_test and y_test. {fix}"
                )
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            detail = "it holds pickled objects, which are never loaded for safety"
        else:
            detail = f"{exc}"
        raise DataError(f"Could not read npz file {path}: {detail}. {fix}") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise DataError(
            f"{path} is not a valid .npz archive ({type(exc).__name__}: {exc}). {fix}"
        ) from exc
    where = {key: f"{key} in {path}" for key in NPZ_KEYS}
    x_train, y_train = check_pair(
        arrays["x_train"], arrays["y_train"], where["x_train"], where["y_train"]
    )
    x_test, y_test = check_pair(
        arrays["x_test"], arrays["y_test"], where["x_test"], where["y_test"]
    )
    return RawData(x_train, y_train, x_test, y_test, source=f"npz:{path}")


def load_digits_28() -> RawData:
    """scikit-learn's 8x8 digits, upscaled to look like MNIST; works offline.

    Each of the 1797 images (values 0-16) is scaled to 0-255, resized to 20x20 with
    Pillow's bilinear filter and padded by 4 pixels on every side to 28x28, like the
    20x20 box of an MNIST digit in its 28x28 frame. The train/test split is fixed and
    does not depend on any seed: a stratified 75/25 split
    (``train_test_split(test_size=0.25, stratify=y, random_state=0)``), each part in
    the original order.

    Returns
    -------
    RawData
        1347 training and 450 test images, ``source="sklearn:load_digits"``; fresh
        arrays on every call. The resizing is done once a process (~50 ms; a sweep's
        jobs in one process share it).
    """
    return RawData(*(array.copy() for array in _digits_28()), source="sklearn:load_digits")


@lru_cache(maxsize=1)
def _digits_28() -> tuple:
    """:func:`load_digits_28`'s arrays, computed once a process."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pad = (IMAGE_SIZE - 20) // 2
    small = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    images = np.zeros((len(small), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, image in enumerate(small):
        resized = Image.fromarray(image).resize((20, 20), Image.Resampling.BILINEAR)
        images[i, pad : pad + 20, pad : pad + 20] = np.asarray(resized)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
