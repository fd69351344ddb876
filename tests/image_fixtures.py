"""Real test images made at test time: sample digits, a photo, every format, broken files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIGITS = REPO / "samples" / "digits"


def real_digit(digit: int = 2, index: int = 0) -> Image.Image:
    files = sorted((SAMPLE_DIGITS / "train" / str(digit)).glob("*.png"))
    with Image.open(files[index]) as image:
        return image.convert("L")


def real_photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((96, 64))


def oversized_png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims huge dimensions: a decompression bomb's calling card."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    header_start = 8 + 4  # signature, then chunk length
    ihdr = bytearray(data[header_start : header_start + 4 + 13])
    ihdr[4:12] = struct.pack(">II", width, height)
    data[header_start : header_start + 17] = ihdr
    data[header_start + 17 : header_start + 21] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def write_image_zoo(folder: Path) -> dict[str, list[str]]:
    """Every format and Pillow mode we promise to read, plus files that must be skipped/ignored.

    Returns {"good": [...], "bad": [...], "ignored": [...]} as file names.
    """
    folder.mkdir(parents=True, exist_ok=True)
    digit = real_digit()
    photo = real_photo()
    good = {
        "digit L.png": (digit, {}),
        "digit LA.png": (digit.convert("LA"), {}),
        "photo P.png": (photo.convert("P"), {}),
        "photo RGBA.png": (photo.convert("RGBA"), {}),
        "photo CMYK.jpg": (photo.convert("CMYK"), {}),
        "digit 16bit.png": (Image.fromarray(np.asarray(digit, dtype=np.uint16) * 257), {}),
        "digit 1bit.bmp": (digit.convert("1"), {}),
        "photo.gif": (photo.convert("P"), {}),
        "photo.webp": (photo, {}),
        "photo.tiff": (photo, {}),
        "photo.tif": (photo.convert("L"), {}),
        "PHOTO UPPER.JPG": (photo, {}),
        "photo.jpeg": (photo, {}),
        "чайка 猫 ü.png": (photo, {}),
    }
    for name, (image, options) in good.items():
        image.save(folder / name, **options)
    rotated = photo.copy()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    rotated.save(folder / "exif rotated.jpg", exif=exif)
    good_names = [*good, "exif rotated.jpg"]

    photo_bytes = (folder / "photo.jpeg").read_bytes()
    (folder / "truncated.jpg").write_bytes(photo_bytes[: len(photo_bytes) // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text pretending.png").write_text("this is not an image")
    (folder / "bomb.png").write_bytes(oversized_png_header(60_000, 60_000))
    bad_names = ["truncated.jpg", "empty.png", "text pretending.png", "bomb.png"]

    (folder / "notes.txt").write_text("not an image, ignored")
    (folder / "data.csv").write_text("a,b\n1,2\n")
    ignored_names = ["notes.txt", "data.csv"]
    return {"good": good_names, "bad": bad_names, "ignored": ignored_names}
