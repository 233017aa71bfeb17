"""The IDX file format of MNIST: read and write one file, load a directory of four.

An IDX file is a 4-byte big-endian magic number (two zero bytes, a type code, the
number of dimensions), one big-endian 4-byte size per dimension, then the values in C
order; MNIST ships four of them, gzipped. :func:`load_idx` reads one file (plain or
gzipped) in chunks and never holds more than the header declares, and refuses a header
that declares more than :data:`MAX_IDX_BYTES` before reading any data;
:func:`load_idx_dir` reads the four headers first and refuses image and label counts
that differ before reading any data. So a damaged or hostile file (a gzip "bomb")
fails with a :class:`~mnist_experiments.errors.DataError` instead of exhausting memory.

NumPy only.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

import numpy as np

from mnist_experiments.data.arrays import RawData, check_pair
from mnist_experiments.errors import DataError

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

# The most data one IDX file may declare: 256 MiB. The largest MNIST file (the training
# images) holds 47 MB, EMNIST Digits' 188 MB; the data pipeline holds a few float copies
# of the images, so 2 GiB (the earlier limit) let a 2 MB gzip "bomb" take 2 GiB before
# any error. A header that declares more is refused before any data are read.
MAX_IDX_BYTES = 256 << 20
_CHUNK = 1 << 20  # read (and decompress) 1 MiB at a time


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
        fewer or more bytes than its header declares, or declares more than
        :data:`MAX_IDX_BYTES` of data.
    """
    return _open_idx(Path(path), expected_magic)


def _open_idx(path: Path, expected_magic: Optional[int], header_only: bool = False) -> Any:
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"File {path} does not exist. Check the path.") from None
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    with raw:
        compressed = path.suffix == ".gz" or raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            return _read_idx(stream, path, expected_magic, compressed, header_only)
        except (OSError, EOFError, zlib.error) as exc:
            if not compressed:
                raise _unreadable(path, exc) from exc
            raise DataError(
                f"{path} is not a valid gzip file ({type(exc).__name__}: {exc}). The "
                "download is incomplete or damaged: download it again (`gunzip -t` "
                "checks a .gz file), or store it uncompressed without the .gz suffix."
            ) from exc


def _unreadable(path: Path, exc: Exception) -> DataError:
    return DataError(f"Could not read {path}: {exc}. Check the file and its permissions.")


def idx_shape(path: Any, *, expected_magic: Optional[int] = None) -> Tuple[int, ...]:
    """The shape an IDX file's header declares, checked like :func:`load_idx` does, but
    without reading its data (a gzipped file is decompressed only as far as its header).

    Raises
    ------
    DataError
        As :func:`load_idx`, for everything that the header alone shows.
    """
    return _open_idx(Path(path), expected_magic, header_only=True)


def _read_header(stream: BinaryIO, path: Path,
                 expected_magic: Optional[int]) -> Tuple[Tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header size) of an IDX stream, checked."""
    head = _read_up_to(stream, 4)
    if len(head) < 4:
        raise DataError(
            f"IDX file {path} is too short ({len(head)} bytes) to hold a header. The "
            "file is empty or incomplete; download it again."
        )
    (magic,) = struct.unpack(">I", head)
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
    dims = _read_up_to(stream, 4 * ndim)
    header_size = 4 + 4 * ndim
    if len(dims) < 4 * ndim:
        raise DataError(
            f"IDX file {path} is truncated: its magic number announces {ndim} dimensions "
            f"but the file ends after {4 + len(dims)} bytes, inside the header. Download "
            "it again."
        )
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = _IDX_TYPES[type_code]
    expected_bytes = math.prod(shape) * dtype.itemsize
    if expected_bytes > MAX_IDX_BYTES:
        raise DataError(
            f"IDX file {path} declares shape {tuple(shape)}, i.e. {expected_bytes} bytes "
            f"of data, more than the {MAX_IDX_BYTES} bytes ({MAX_IDX_BYTES >> 20} MiB, "
            "MAX_IDX_BYTES in mnist_experiments/data/idx.py) an IDX file may hold "
            "(MNIST's largest holds 47 MB), so it was not read: its header is damaged or "
            "it is not an MNIST-sized data set; download it again."
        )
    return shape, dtype, header_size


def _read_idx(stream: BinaryIO, path: Path, expected_magic: Optional[int], compressed: bool,
              header_only: bool = False) -> Any:
    """Parse the header, check what it declares, then read exactly that much data."""
    shape, dtype, header_size = _read_header(stream, path, expected_magic)
    expected_bytes = math.prod(shape) * dtype.itemsize
    if header_only:
        return shape
    if not compressed:  # the file's size tells, before anything is allocated
        found_bytes = os.fstat(stream.fileno()).st_size - header_size
        if found_bytes != expected_bytes:
            _raise_wrong_size(path, shape, expected_bytes, f"{found_bytes} bytes", found_bytes)
    # Never more than one byte past what the header declares: a gzip "bomb" stops here.
    data = _read_up_to(stream, expected_bytes + 1)
    if len(data) != expected_bytes:
        held = f"{len(data)} bytes" if len(data) < expected_bytes else "more than that"
        _raise_wrong_size(path, shape, expected_bytes, held, len(data))
    values = np.frombuffer(data, dtype=dtype).reshape(shape)  # writable: data is a bytearray
    native = dtype.newbyteorder("=")
    if native != dtype:
        values = values.byteswap(inplace=True).view(native)
    return values


def _read_up_to(stream: BinaryIO, size: int) -> bytearray:
    """Read ``size`` bytes, or fewer at the end of the file, ``_CHUNK`` at a time."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = stream.read(min(_CHUNK, size - len(buffer)))
        if not chunk:
            break
        buffer += chunk
    return buffer


def _raise_wrong_size(
    path: Path, shape: Any, expected_bytes: int, held: str, found_bytes: int
) -> None:
    state = "truncated" if found_bytes < expected_bytes else "longer than declared"
    raise DataError(
        f"IDX file {path} is {state}: its header says shape {tuple(shape)} "
        f"({expected_bytes} bytes of data) but it holds {held} after the header. The "
        "file is incomplete or damaged; download it again."
    )


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
    magics = {key: IDX_IMAGES_MAGIC if key[0] == "x" else IDX_LABELS_MAGIC for key in files}
    # the four headers first: a mismatch is refused before any file's data are read
    shapes = {key: idx_shape(path, expected_magic=magics[key]) for key, path in files.items()}
    for images, labels in (("x_train", "y_train"), ("x_test", "y_test")):
        _check_shapes(files[images], shapes[images], files[labels], shapes[labels])
    arrays = {key: load_idx(path, expected_magic=magics[key]) for key, path in files.items()}
    x_train, y_train = check_pair(
        arrays["x_train"], arrays["y_train"], str(files["x_train"]), str(files["y_train"])
    )
    x_test, y_test = check_pair(
        arrays["x_test"], arrays["y_test"], str(files["x_test"]), str(files["y_test"])
    )
    return RawData(x_train, y_train, x_test, y_test, source=f"idx:{directory}")


def _check_shapes(images: Path, image_shape: Tuple[int, ...], labels: Path,
                  label_shape: Tuple[int, ...]) -> None:
    """Image and label counts, from the headers alone (the rest is checked on the data)."""
    if len(label_shape) == 1 and image_shape[0] != label_shape[0]:
        raise DataError(
            f"{images} holds {image_shape[0]} images but {labels} holds {label_shape[0]} "
            "labels (as their headers declare, so neither was read); they must match one "
            "to one. The two files do not belong together, or one is incomplete.")


def _describe_magic(magic: int) -> str:
    if magic == IDX_IMAGES_MAGIC:
        return "an MNIST images file: unsigned bytes, 3 dimensions"
    if magic == IDX_LABELS_MAGIC:
        return "an MNIST labels file: unsigned bytes, 1 dimension"
    return "IDX"
