"""The harsh inputs of the reliability suite: awkward and broken image files, odd texts.

Each image case says whether a robust loader must accept it (and what the result must look
like) or refuse it (and which words the refusal must contain).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class ImageCase:
    """One image file: a name, the file, and the expected outcome.

    ``error`` is None for a file that must load (to RGB of ``size``, if given) or the
    words the refusal must contain.
    """

    name: str
    path: Path
    error: str | None = None
    size: tuple[int, int] | None = None


def garment(size: int = 64, colour: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    """A small drawn dress on a light background (RGB)."""
    img = Image.new("RGB", (size, size), (200, 200, 190))
    s = size / 64
    ImageDraw.Draw(img).polygon([(24 * s, 8 * s), (40 * s, 8 * s), (52 * s, 58 * s), (12 * s, 58 * s)], fill=colour)
    return img


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` 1-bit pixels (a decompression bomb).

    The single compressed row is all a decoder would see before allocating the whole image.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(row)) + _png_chunk(b"IEND", b"")


def _exif_rotated(path: Path) -> None:
    """A 48x32 JPEG whose EXIF orientation 6 says "rotate 90° clockwise" (shown 32x48)."""
    img = garment(64).resize((48, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, exif=exif.tobytes())


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    garment(128).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _huge_jpeg(path: Path) -> None:
    """A 4000x3000 (12 Mpx) photo-sized JPEG: valid, must load."""
    garment(64).resize((4000, 3000), Image.NEAREST).save(path, "JPEG", quality=70)


_WRITERS: dict[str, tuple[str, Callable[[Path], None], str | None, tuple[int, int] | None]] = {
    "truncated JPEG": ("truncated.jpg", _truncated_jpeg, "truncated", None),
    "text file named .jpg": ("notes.jpg", lambda p: p.write_text("this is not a picture\n"), "not an image", None),
    "zero bytes": ("empty.jpg", lambda p: p.write_bytes(b""), "empty", None),
    "decompression bomb (40000x40000 in 200 bytes)": ("bomb.png", lambda p: p.write_bytes(bomb_png(40000, 40000)), "too many pixels", None),
    "over max_pixels (9000x8000)": ("big1bit.png", lambda p: p.write_bytes(bomb_png(9000, 8000)), "too many pixels", None),
    "1x1 pixel": ("one.png", lambda p: Image.new("RGB", (1, 1), (9, 9, 9)).save(p), None, (1, 1)),
    "16-bit greyscale": ("i16.png", lambda p: Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(p), None, (64, 64)),
    "greyscale": ("gray.png", lambda p: garment().convert("L").save(p), None, (64, 64)),
    "palette": ("palette.png", lambda p: garment().convert("P", palette=Image.ADAPTIVE, colors=8).save(p), None, (64, 64)),
    "RGBA (transparent)": ("rgba.png", lambda p: Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(p), None, (64, 64)),
    "CMYK JPEG": ("cmyk.jpg", lambda p: garment().convert("CMYK").save(p, "JPEG"), None, (64, 64)),
    "EXIF-rotated JPEG": ("rotated.jpg", _exif_rotated, None, (32, 48)),
    "animated GIF": ("animated.gif", _animated_gif, None, (32, 32)),
    "huge valid JPEG (4000x3000)": ("huge.jpg", _huge_jpeg, None, (4000, 3000)),
}


def write_image_cases(folder: str | Path) -> list[ImageCase]:
    """Write every image case under ``folder``; returns them in a fixed order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, (filename, write, error, size) in _WRITERS.items():
        path = folder / filename
        write(path)
        cases.append(ImageCase(name, path, error, size))
    return cases


# name -> (text, has catalogue words): the texts a search box receives.
TEXT_CASES: dict[str, tuple[str, bool]] = {
    "empty": ("", False),
    "only spaces": ("   \t  ", False),
    "10,000 characters": (("red striped dress " * 600)[:10_000], True),
    "only unknown words": ("zzxq blorft quuxish", False),
    "emoji only": ("👗🔥✨", False),
    "emoji with words": ("red 👗 dress ✨", True),
    "non-Latin scripts": ("красное платье 红色连衣裙 فستان أحمر", False),
    "control characters": ("red\x00 dress\x07\x1b[31m\r\n", True),
}
