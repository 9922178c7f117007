"""Decode any image a user or a data set hands us into a plain RGB ``PIL.Image``.

Real catalogues hold every kind of file: greyscale and palette images, transparent PNGs,
CMYK and 16-bit files, phone photos rotated by an EXIF tag, animated GIFs, and broken
files (empty, truncated, not an image at all). ``load_image`` turns all the good ones into
the same thing and refuses the bad ones with an ``ImageLoadError`` that names the source
and the problem.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# About 67 megapixels: far above any catalogue photo, below PIL's own bomb warning limit.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

_JPEG_EOI = b"\xff\xd9"  # end of image marker
_JPEG_SOS = b"\xff\xda"  # start of scan marker
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageLoadError(ValueError):
    """An image could not be loaded; the message names the source and the problem."""


def load_image(src: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``src`` into an RGB ``PIL.Image`` (fully loaded, detached from any file).

    ``src`` may be a path (str or Path), bytes, a binary file object, a PIL image or an
    ``(H, W)`` / ``(H, W, C)`` uint8 numpy array. EXIF orientation is applied, animated
    images give their first frame, transparent images are composited on white, and
    greyscale, palette, CMYK and 16-bit images are converted to 8-bit RGB.

    Raises ``ImageLoadError`` (a ``ValueError``) when the file is missing, empty, not an
    image, truncated, or has more than ``max_pixels`` pixels (checked before decoding).
    """
    if isinstance(src, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(src) or src, "<PIL image>")
    if isinstance(src, np.ndarray):
        return _from_array(src)
    name, data = _read_bytes(src)
    if not data:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    img = _decode(name, data, max_pixels)
    return _to_rgb(img, name)


def _read_bytes(src: Any) -> tuple[str, bytes]:
    """The display name and the raw bytes of a path, bytes or file-object source."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>", bytes(src)
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        try:
            return str(path), path.read_bytes()
        except FileNotFoundError:
            raise ImageLoadError(f"{path}: file not found") from None
        except IsADirectoryError:
            raise ImageLoadError(f"{path}: is a directory, not an image file") from None
        except OSError as exc:
            raise ImageLoadError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if hasattr(src, "read"):
        name = str(getattr(src, "name", "<file object>"))
        data = src.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(f"{name}: file object must be opened in binary mode")
        return name, bytes(data)
    raise ImageLoadError(
        f"cannot load an image from a {type(src).__name__}; expected a path, bytes, a "
        "binary file object, a PIL image or a uint8 numpy array"
    )


def _decode(name: str, data: bytes, max_pixels: int) -> Image.Image:
    """Open, size-check and fully decode the first frame of an encoded image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image (unrecognised file format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{name}: too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"{name}: not a readable image ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        # Refuse before decoding: a decompression bomb must not allocate its pixels.
        raise ImageLoadError(
            f"{name}: too many pixels ({width}x{height} = {width * height} > max_pixels={max_pixels})"
        )
    if img.format == "JPEG" and _jpeg_truncated(data):
        raise ImageLoadError(f"{name}: truncated JPEG (no end-of-image marker after the last scan)")
    try:
        img.seek(0)  # animated GIF / WebP / APNG: the first frame
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc)
        problem = (
            "truncated image"
            if "truncated" in msg or isinstance(exc, EOFError)
            else "corrupt image"
        )
        raise ImageLoadError(f"{name}: {problem} ({msg})") from None
    return ImageOps.exif_transpose(img) or img


def _jpeg_truncated(data: bytes) -> bool:
    """True when the JPEG has no end-of-image marker after its last scan.

    PIL pads a truncated JPEG with grey when ``ImageFile.LOAD_TRUNCATED_IMAGES`` is set
    (some libraries set it globally), so the check is done on the bytes. An EXIF thumbnail
    carries its own markers, but it sits before the main image's scans.
    """
    return data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS)


def _to_rgb(img: Image.Image, name: str) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB (alpha composited on white)."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageLoadError(f"{name}: cannot convert mode {img.mode} to RGB ({exc})") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale -> 8-bit greyscale, keeping the range."""
    arr = np.asarray(img).astype(np.float64)  # (H, W)
    if img.mode == "F":
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    else:
        # 16-bit data (I;16*, or mode I as PIL opens 16-bit PNGs) spans 0..65535.
        scale = (
            1.0 / 257.0 if img.mode.startswith("I;16") or (arr.size and arr.max() > 255) else 1.0
        )
    return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8))  # mode L


def _from_array(arr: np.ndarray) -> Image.Image:
    """An ``(H, W)`` or ``(H, W, C)`` uint8 array (C = 1, 3 or 4) -> RGB image."""
    if arr.dtype != np.uint8:
        raise ImageLoadError(f"<numpy array>: dtype must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")  # L -> RGB
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        img = Image.fromarray(np.ascontiguousarray(arr))  # RGB or RGBA
        return _to_rgb(img, "<numpy array>")
    raise ImageLoadError(
        f"<numpy array>: expected shape (H, W) or (H, W, C) with C in 1, 3, 4; got {arr.shape}"
    )
