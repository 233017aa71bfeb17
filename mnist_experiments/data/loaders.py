"""Loading, checking and splitting MNIST-style data.

Every loader returns a :class:`RawData`: 28x28 ``uint8`` images (0-255) and ``int64``
labels (0-9) for a training and a test set, exactly as shipped. :func:`split` then makes
the :class:`Dataset` that training uses: it applies ``data.limit`` and carves out the
validation set (``data.validation``). The same config and seed always give the same
arrays, and :attr:`Dataset.fingerprint` identifies them.

Where the data can come from:

* ``data.path`` set: a directory of the four MNIST IDX files (:func:`load_idx_dir`,
  e.g. ``/usr/share/datasets/fashion-mnist`` from Debian's ``dataset-fashion-mnist``)
  or a Keras-layout ``.npz`` file (:func:`load_npz`).
* ``data=mnist`` / ``data=fashion_mnist`` without a path: ``keras.datasets``, which
  downloads once and caches under ``~/.keras/datasets`` (or ``$KERAS_HOME/datasets``).
* ``data=digits``: scikit-learn's bundled 8x8 digits, upscaled to 28x28
  (:func:`load_digits_28`); works offline.

Every problem with the data (a missing or malformed file, no network) is raised as a
:class:`~mnist_experiments.errors.DataError` whose message names the file or value and
says how to fix it.

This module imports neither TensorFlow/Keras nor MLflow, and imports scikit-learn and
Pillow only when they are needed, so importing it is cheap.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from mnist_experiments.errors import DataError

IMAGE_SIZE = 28
NUM_CLASSES = 10
BUILTIN_NAMES = ("mnist", "fashion_mnist", "digits")
VALIDATION_MODES = ("test_halves", "holdout")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# IDX magic numbers: two zero bytes, a type code, the number of dimensions.
IDX_IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension
_IDX_TYPES = {  # type code -> big-endian dtype
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in _IDX_TYPES.items()}

# The four files of an MNIST IDX directory, each with the spellings we accept
# (the official ``train-images-idx3-ubyte`` and the common ``train-images.idx3-ubyte``),
# plain or gzipped.
_IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}

_OFFLINE_HINT = (
    "Either point data.path=/path/to/dir-or-npz at a local copy (a directory of the four "
    "MNIST IDX files or a Keras-layout .npz with x_train, y_train, x_test, y_test; on "
    "Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts Fashion-MNIST in "
    "/usr/share/datasets/fashion-mnist), or use data=digits, which is built in and works "
    "offline."
)


# ------------------------------------------------------------------- containers
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
    x_train, y_train = _check_pair(x_train, y_train, f"{where} x_train", f"{where} y_train")
    x_test, y_test = _check_pair(x_test, y_test, f"{where} x_test", f"{where} y_test")
    return RawData(x_train, y_train, x_test, y_test, source=f"keras:{name}")


# --------------------------------------------------------------------------- IDX
def load_idx(path: Any, *, expected_magic: Optional[int] = None) -> np.ndarray:
    """Read one IDX file (the MNIST file format), gzipped or not.

    An IDX file is a 4-byte big-endian magic number (two zero bytes, a type code, the
    number of dimensions), one big-endian 4-byte size per dimension, then the values
    in C order. Gzip compression is detected from the ``.gz`` suffix or the gzip
    signature.

    Parameters
    ----------
    path : str or Path
        The file to read.
    expected_magic : int, optional
        If given, the magic number the file must have, e.g. ``IDX_IMAGES_MAGIC``
        (0x00000803) or ``IDX_LABELS_MAGIC`` (0x00000801).

    Returns
    -------
    ndarray
        In native byte order, with the shape from the header.

    Raises
    ------
    DataError
        If the file is missing, is a corrupt gzip, has a wrong magic number, or holds
        fewer or more bytes than its header declares.
    """
    path = Path(path)
    content = _read_maybe_gzip(path)
    if len(content) < 4:
        raise DataError(
            f"IDX file {path} is too short ({len(content)} bytes) to hold a header. The "
            "file is empty or incomplete; download it again."
        )
    (magic,) = struct.unpack(">I", content[:4])
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"IDX file {path} has magic number 0x{magic:08X} ({magic}), but "
            f"0x{expected_magic:08X} ({expected_magic}) was expected "
            f"({_describe_magic(expected_magic)}). Check that this is the right file (an "
            "images file where images are expected, a labels file where labels are "
            "expected) and not something else saved under that name."
        )
    if magic >> 16 != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DataError(
            f"{path} is not an IDX file: its magic number 0x{magic:08X} ({magic}) is not "
            "two zero bytes, a known type code and a dimension count (MNIST images have "
            "0x00000803, labels 0x00000801). Check that the file is an MNIST IDX file."
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(
            f"IDX file {path} is truncated: its magic number announces {ndim} dimensions "
            f"but the file ends after {len(content)} bytes, inside the header. Download "
            "it again."
        )
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    dtype = _IDX_TYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found_bytes = len(content) - header_size
    if found_bytes != expected_bytes:
        state = "truncated" if found_bytes < expected_bytes else "longer than declared"
        raise DataError(
            f"IDX file {path} is {state}: its header says shape {tuple(shape)} "
            f"({expected_bytes} bytes of data) but it holds {found_bytes} bytes after the "
            "header. The file is incomplete or damaged; download it again."
        )
    values = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def save_idx(path: Any, array: Any) -> None:
    """Write an array as an IDX file, gzipped if ``path`` ends in ``.gz``.

    The gzip header carries no timestamp, so equal arrays give byte-identical files.

    Parameters
    ----------
    path : str or Path
        The file to write (overwritten if it exists).
    array : array_like
        At least one dimension, each below 2**32, of dtype uint8, int8, int16, int32,
        float32 or float64. MNIST images are uint8 of shape (n, 28, 28), labels uint8
        of shape (n,).

    Raises
    ------
    ValueError
        If the dtype or the number of dimensions cannot be stored in IDX.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, "
            "float32 or float64 (e.g. labels.astype(np.uint8))."
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got an array of shape {array.shape}.")
    header = struct.pack(f">I{array.ndim}I", (code << 8) | array.ndim, *array.shape)
    body = np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    with open(path, "wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as compressed:
                compressed.write(header + body)
        else:
            raw.write(header + body)


def load_idx_dir(directory: Any) -> RawData:
    """Load the four MNIST IDX files of a directory.

    The directory must hold ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly gzipped
    (``.gz``); the spelling ``train-images.idx3-ubyte`` is accepted too. This is the
    layout of the original MNIST and Fashion-MNIST downloads and of
    ``/usr/share/datasets/fashion-mnist``.

    Parameters
    ----------
    directory : str or Path

    Returns
    -------
    RawData
        With ``source="idx:<absolute directory>"``.

    Raises
    ------
    DataError
        If a file is missing or malformed (wrong magic number, truncated, corrupt
        gzip), images are not 28x28, image and label counts differ, or a label is
        outside 0-9.
    """
    directory = Path(directory).expanduser().absolute()
    if not directory.is_dir():
        raise DataError(
            f"IDX directory {directory} does not exist or is not a directory. Give the "
            "directory that holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each possibly .gz)."
        )
    files: Dict[str, Path] = {}
    missing: List[str] = []
    for key, spellings in _IDX_FILES.items():
        candidates = [directory / (s + ext) for s in spellings for ext in ("", ".gz")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(f"{spellings[0]}[.gz]")
        else:
            files[key] = found
    if missing:
        present = sorted(p.name for p in directory.iterdir())
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "")
        raise DataError(
            f"IDX directory {directory} lacks {', '.join(missing)} (it holds: "
            f"{shown or 'nothing'}). An MNIST IDX directory needs the four files "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte, each possibly gzipped (.gz); add the missing ones or "
            "point data.path at the right directory."
        )
    arrays = {
        key: load_idx(path, expected_magic=IDX_IMAGES_MAGIC if key[0] == "x" else IDX_LABELS_MAGIC)
        for key, path in files.items()
    }
    x_train, y_train = _check_pair(
        arrays["x_train"], arrays["y_train"], str(files["x_train"]), str(files["y_train"])
    )
    x_test, y_test = _check_pair(
        arrays["x_test"], arrays["y_test"], str(files["x_test"]), str(files["y_test"])
    )
    return RawData(x_train, y_train, x_test, y_test, source=f"idx:{directory}")


def _read_maybe_gzip(path: Path) -> bytes:
    """Return the (decompressed) bytes of a file, with clear errors."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except FileNotFoundError:
        raise DataError(f"File {path} does not exist. Check the path.") from None
    except OSError as exc:
        raise DataError(
            f"Could not read {path}: {exc}. Check the file and its permissions."
        ) from exc
    if path.suffix == ".gz" or content[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(content)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path} is not a valid gzip file ({type(exc).__name__}: {exc}). The "
                "download is incomplete or damaged: download it again (`gunzip -t` "
                "checks a .gz file), or store it uncompressed without the .gz suffix."
            ) from exc
    return content


def _describe_magic(magic: int) -> str:
    if magic == IDX_IMAGES_MAGIC:
        return "an MNIST images file: unsigned bytes, 3 dimensions"
    if magic == IDX_LABELS_MAGIC:
        return "an MNIST labels file: unsigned bytes, 1 dimension"
    return "IDX"


# --------------------------------------------------------------------------- npz
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
    x_train, y_train = _check_pair(
        arrays["x_train"], arrays["y_train"], where["x_train"], where["y_train"]
    )
    x_test, y_test = _check_pair(
        arrays["x_test"], arrays["y_test"], where["x_test"], where["y_test"]
    )
    return RawData(x_train, y_train, x_test, y_test, source=f"npz:{path}")


# ------------------------------------------------------------------------ digits
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
        1347 training and 450 test images, ``source="sklearn:load_digits"``.
    """
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
    return RawData(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
        source="sklearn:load_digits",
    )


# ------------------------------------------------------------------------- split
def split(raw: RawData, data_cfg: Any, seed: int) -> Dataset:
    """Apply ``data.limit`` and carve out the validation set.

    1. If ``data.limit`` is set, the training set and the test set are each capped at
       ``limit`` images by a stratified subsample seeded with ``seed`` (a seeded random
       subsample when stratifying is impossible, e.g. a class with one image). Kept
       images stay in their original order. A set with at most ``limit`` images is
       kept whole.
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
        if limit < 1:
            raise DataError(
                f"data.limit={limit} is invalid: it must be a positive number of images "
                "(or null for all images). Try data.limit=500."
            )
        keep = _subsample(y_train, limit, seed)
        x_train, y_train = x_train[keep], y_train[keep]
        keep = _subsample(y_test, limit, seed)
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


def _subsample(y: np.ndarray, limit: int, seed: int) -> np.ndarray:
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


# ------------------------------------------------------------------- fingerprint
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
def _check_pair(
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
