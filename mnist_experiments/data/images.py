"""Turning a picture of a handwritten digit into an MNIST-style 28x28 image.

MNIST digits are light ink on a black background, fitted into a 20x20 box (keeping
their aspect ratio, with anti-aliasing) and placed in a 28x28 frame so that their
centre of mass is at the centre. :func:`to_mnist` does the same to any grayscale
picture, of any size and either polarity:

1. **Polarity.** The median of the border pixels (a frame about 5% of the shorter
   side wide, at least one pixel) is the background. A light background (median above
   0.5) means dark ink: the image is inverted, so ink is always light on dark.
2. **Background removal, no threshold.** The background level is subtracted and the
   rest scaled so that the brightest ink is 1.0; nothing is binarised. The level is the
   border median plus the noise floor ``sigma * sqrt(2 ln N)`` (Donoho and Johnstone's
   universal threshold: about the largest value N pixels of Gaussian noise reach),
   with ``sigma`` a robust estimate from the border (:func:`noise_sigma`). A clean
   image has ``sigma = 0``, so only the flat background is removed; in a grainy photo
   or a JPEG no background pixel is left over to inflate the crop.
3. **Crop** to the bounding box of the remaining ink (every pixel above zero).
4. **Fit** into 20x20 keeping the aspect ratio (the longer side becomes 20 pixels).
5. **Centre** in 28x28 by centre of mass: the digit is translated (by fractions of a
   pixel too) so that its centre of mass is the frame's centre -- pixel coordinates
   (13.5, 13.5), i.e. (14, 14) measured from the frame's corner -- unless that would
   cut ink off at an edge. Steps 4 and 5 are a single resampling with Pillow's Lanczos
   filter, which anti-aliases when shrinking (:func:`fit_and_centre`).

The result is ``float32`` of shape (28, 28) in [0, 1], the scale of
:func:`mnist_experiments.training.fit.to_float`; add the channel axis for a model.

:func:`read_image` opens PNG, JPEG (and BMP, GIF, TIFF, WebP) files with Pillow,
applies the EXIF orientation of photos and composites transparent images onto a
background that contrasts with their ink. A file that is missing, is not an image or
is damaged raises :class:`ImageError` with a message naming the file, and so does a
file over :data:`MAX_FILE_BYTES` or a picture over :data:`MAX_PIXELS` pixels, whose size
is read from its header before anything is decoded (:func:`check_image_file`).

This module imports neither TensorFlow/Keras nor MLflow.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from typing import Any, List, Sequence, Tuple, Union

import numpy as np

from mnist_experiments.errors import UserError

IMAGE_SIZE = 28
BOX_SIZE = 20
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
# The largest picture accepted: 4096x4096 (16.8 megapixels, a 12 MP phone photo fits).
# Preprocessing costs about 33 bytes per pixel (measured: a 164 KB PNG of 13000x13000
# black pixels peaked at 5.3 GiB of RSS after 26 s), so 16.8 Mpx stay near 550 MB. The
# size is read from the file's header, before anything is decoded.
MAX_PIXELS = 4096 * 4096
_BYTES_PER_PIXEL = 33
MAX_FILE_BYTES = 64 << 20  # 64 MiB: a picture of a digit is a few kB to a few MB
MIN_CONTRAST = 8.0 / 255.0  # ink must stand out from the background by this much
# E|X| of a Gaussian with sigma 1, truncated to its central 90%:
# sqrt(2/pi) * (1 - exp(-1.645**2 / 2)) / 0.9
_TRUNCATED_MEAN = 0.657


class ImageError(UserError):
    """A file cannot be read as an image, or holds no digit."""


# ------------------------------------------------------------------------ reading
def read_image(path: Any) -> np.ndarray:
    """A grayscale float64 array in [0, 1] (0 black, 1 white) of an image file.

    Parameters
    ----------
    path : str or Path
        A PNG, JPEG, BMP, GIF (first frame), TIFF or WebP file.

    Raises
    ------
    ImageError
        If the file does not exist, cannot be read, is not an image of those formats,
        or is truncated or damaged.
    """
    from PIL import Image, ImageOps

    name = os.fspath(path)
    try:
        with _open(name) as img:
            img.load()  # decode now: a truncated or corrupt file fails here
            try:
                img = ImageOps.exif_transpose(img)  # photos: apply the camera's rotation
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                pass
            return _to_gray(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused, the image is implausibly large ({exc}).") from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        raise ImageError(
            f"{name}: the image is damaged or truncated and cannot be decoded "
            f"({type(exc).__name__}: {exc}). Save or export it again."
        ) from exc


def check_image_file(path: Any) -> Tuple[int, int]:
    """(width, height) of an image file, read from its header; nothing is decoded.

    Raises
    ------
    ImageError
        If the file is missing, unreadable, over :data:`MAX_FILE_BYTES`, not an image
        of :data:`FORMATS`, or over :data:`MAX_PIXELS` pixels.
    """
    with _open(os.fspath(path)) as img:
        return img.size


def _open(name: str) -> Any:
    """``PIL.Image.open`` (lazy: the header only) after the checks of
    :func:`check_image_file`; the caller closes the image."""
    from PIL import Image, UnidentifiedImageError

    try:
        size = os.stat(name).st_size
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file. Check the path.") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot be read ({exc.strerror or exc}).") from None
    if os.path.isdir(name):
        raise ImageError(f"{name}: is a directory, not an image file. Give PNG or JPEG files.")
    if size > MAX_FILE_BYTES:
        raise ImageError(
            f"{name}: the file is {size / 2**20:.0f} MiB, more than the "
            f"{MAX_FILE_BYTES >> 20} MiB a picture of a digit may be (MAX_FILE_BYTES in "
            "mnist_experiments/data/images.py). Crop or scale it down, or save it as JPEG.")
    try:
        with warnings.catch_warnings():  # over 89 Mpx Pillow warns; we refuse below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(name, formats=FORMATS)
    except Image.DecompressionBombError as exc:  # over 179 Mpx: Pillow's own refusal
        raise ImageError(f"{name}: refused, the image is implausibly large ({exc}). Scale "
                         "it down first (the model sees 28x28 pixels).") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name}: not an image file Pillow can read as {', '.join(FORMATS)} "
            "(is it a text or other file, or an image saved with the wrong extension?). "
            "Give PNG or JPEG images of handwritten digits."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        raise ImageError(
            f"{name}: cannot be read as an image ({type(exc).__name__}: {exc}). Check "
            "the file and its permissions, or save or export it again.") from exc
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise ImageError(
            f"{name}: the image is {width}x{height} pixels ({width * height / 1e6:.1f} "
            f"megapixels), more than the limit of {MAX_PIXELS / 1e6:.1f} megapixels "
            "(4096x4096, MAX_PIXELS in mnist_experiments/data/images.py), so it was not "
            "decoded: decoding it would take about "
            f"{width * height * _BYTES_PER_PIXEL / 2**30:.1f} GiB of memory. Scale it down first (the "
            "model sees 28x28 pixels), e.g. to 1000 pixels on its longer side.")
    return img


def _to_gray(img: Any) -> np.ndarray:
    """A Pillow image as grayscale float64 in [0, 1]; transparency composited."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        if values.ndim != 2:  # pragma: no cover - exotic multi-band integer images
            values = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
            return values
        finite = values[np.isfinite(values)]
        top = float(finite.max()) if finite.size else 1.0
        scale = 65535.0 if top > 255.0 else (255.0 if top > 1.0 else 1.0)
        return np.clip(np.nan_to_num(values / scale), 0.0, 1.0)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if not has_alpha:
        return np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    rgba = img.convert("RGBA")
    gray = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    if alpha.min() >= 1.0:
        return gray
    # Drawn digits are often ink on a transparent canvas whose hidden colour is
    # arbitrary: put the ink on a background of the opposite brightness.
    weight = alpha.sum()
    ink = float((gray * alpha).sum() / weight) if weight > 0 else 0.0
    background = 1.0 if ink < 0.5 else 0.0
    return gray * alpha + background * (1.0 - alpha)


# ------------------------------------------------------------------ preprocessing
def border_pixels(gray: np.ndarray) -> np.ndarray:
    """The pixels of a frame about 5% of the shorter side wide (at least 1 pixel)."""
    gray = np.asarray(gray)
    h, w = gray.shape
    k = max(1, min(h, w) // 20)
    if 2 * k >= min(h, w):
        return gray.reshape(-1)
    return np.concatenate([
        gray[:k].reshape(-1), gray[-k:].reshape(-1),
        gray[k:-k, :k].reshape(-1), gray[k:-k, -k:].reshape(-1),
    ])


def is_light_background(gray: np.ndarray) -> bool:
    """True if the border is light (median above 0.5), i.e. the ink is dark."""
    return float(np.median(border_pixels(gray))) > 0.5


def noise_sigma(border: np.ndarray) -> float:
    """A robust standard deviation of the background noise in ``border``.

    The mean absolute deviation from the median over the 90% of pixels closest to it
    (ink reaching the border is left out), divided by that fraction's expectation for
    Gaussian noise (0.657 sigma). Unlike the median absolute deviation it does not
    collapse to 0 or 1 grey level for the integer pixels of a slightly noisy image.
    """
    border = np.asarray(border, dtype=np.float64)
    deviation = np.abs(border - np.median(border))
    kept = deviation[deviation <= np.quantile(deviation, 0.9)]
    return float(kept.mean() / _TRUNCATED_MEAN) if kept.size else 0.0


def center_of_mass(image: np.ndarray) -> Tuple[float, float]:
    """(row, column) of the intensity-weighted centre, in pixel-index coordinates."""
    image = np.asarray(image, dtype=np.float64)
    total = image.sum()
    if total <= 0:
        return ((image.shape[0] - 1) / 2.0, (image.shape[1] - 1) / 2.0)
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def to_mnist(gray: Any, name: str = "image") -> np.ndarray:
    """An MNIST-style float32 (28, 28) image in [0, 1] of a grayscale picture.

    Parameters
    ----------
    gray : array_like, 2-D
        Grayscale values; uint8 arrays are read as 0-255, anything else as 0-1.
    name : str
        Names the picture in error messages.

    Raises
    ------
    ImageError
        If the picture is empty or holds no ink (a blank or uniform image).
    """
    gray = np.asarray(gray)
    if gray.ndim == 3 and gray.shape[-1] == 1:
        gray = gray[..., 0]
    if gray.ndim != 2 or gray.size == 0:
        raise ImageError(f"{name}: expected a 2-D grayscale image, got shape {gray.shape}.")
    values = gray.astype(np.float64) / (255.0 if gray.dtype == np.uint8 else 1.0)

    # 1. polarity: ink light on dark
    if is_light_background(values):
        values = 1.0 - values

    # 2. subtract the background level (border median + noise floor), scale to 1
    border = border_pixels(values)
    median = float(np.median(border))
    background = median + noise_sigma(border) * math.sqrt(2.0 * math.log(values.size))
    ink = np.clip(values - background, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ImageError(
            f"{name}: no digit found: the image is blank or almost uniform (the "
            "brightest stroke stands out from the background by "
            f"{peak * 255:.1f} of 255 grey levels). Give a picture of one handwritten "
            "digit that contrasts with its background."
        )
    ink /= peak

    # 3. crop to the ink's bounding box
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    # 4.+5. fit into the 20x20 box and centre by centre of mass, in one resampling
    return fit_and_centre(ink, BOX_SIZE, IMAGE_SIZE).astype(np.float32)


def fit_and_centre(ink: np.ndarray, box: int = BOX_SIZE, size: int = IMAGE_SIZE) -> np.ndarray:
    """Scale ``ink`` to fit ``box`` x ``box`` and place it in ``size`` x ``size``.

    The longer side becomes ``box`` pixels (aspect ratio kept) and the picture is
    translated, by fractions of a pixel too, so that its centre of mass falls on the
    frame's centre -- unless that would push ink out of the frame, in which case it
    stops at the edge. Scaling and translation are one Lanczos resampling (Pillow's
    ``resize`` with a source ``box``), anti-aliased when shrinking, so a digit gives
    the same result whatever its size and position in the picture. Values are clipped
    to [0, 1] (Lanczos overshoots a little) and rescaled to a maximum of 1.
    """
    from PIL import Image

    h, w = ink.shape
    scale = box / float(max(h, w))
    cy, cx = center_of_mass(ink)
    # continuous coordinates: pixel i spans [i, i + 1); frame = scale * source + shift
    shift_y = min(max(size / 2.0 - scale * (cy + 0.5), 0.0), size - scale * h)
    shift_x = min(max(size / 2.0 - scale * (cx + 0.5), 0.0), size - scale * w)
    # the source region that maps onto the frame, inside a zero-padded copy
    y0, y1 = -shift_y / scale, (size - shift_y) / scale
    x0, x1 = -shift_x / scale, (size - shift_x) / scale
    top, left = int(math.ceil(max(0.0, -y0))) + 1, int(math.ceil(max(0.0, -x0))) + 1
    bottom = int(math.ceil(max(0.0, y1 - h))) + 1
    right = int(math.ceil(max(0.0, x1 - w))) + 1
    padded = np.pad(ink.astype(np.float32), ((top, bottom), (left, right)))
    frame = Image.fromarray(padded).resize(
        (size, size), Image.Resampling.LANCZOS,
        box=(x0 + left, y0 + top, x1 + left, y1 + top))
    out = np.clip(np.asarray(frame, dtype=np.float64), 0.0, 1.0)
    peak = out.max()
    return out / peak if peak > 0 else out


def preprocess_file(path: Any) -> np.ndarray:
    """:func:`read_image` then :func:`to_mnist`: float32 (28, 28) in [0, 1]."""
    return to_mnist(read_image(path), name=os.fspath(path))


def preprocess_files(paths: Sequence[Any]) -> List[Union[np.ndarray, str]]:
    """:func:`preprocess_file` of each path, in order: the image, or the one-paragraph
    error for a file that cannot be used (one odd file never stops the others)."""
    prepared: List[Union[np.ndarray, str]] = []
    for path in paths:
        try:
            prepared.append(preprocess_file(path))
        except ImageError as exc:
            prepared.append(str(exc))
        except Exception as exc:  # a Pillow or NumPy surprise on one odd file
            prepared.append(f"{os.fspath(path)}: cannot be processed "
                            f"({type(exc).__name__}: {exc}).")
    return prepared
