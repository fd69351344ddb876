"""When, with what and where a photo was taken, and its size as shown: read from headers only.

`read_photo_metadata` opens a file with Pillow and reads its EXIF without decoding a pixel
(`Image.open` parses the headers; `getexif()` reads the EXIF block they hold), so the index pays
a fraction of a millisecond per file, not a second decode (benchmarks/metadata_cost.py).

- taken: EXIF DateTimeOriginal (0x9003, in the Exif IFD) as the camera's wall-clock time, with
  OffsetTimeOriginal (0x9011) when present; else the file's modification time in this
  machine's local time, flagged `taken_source="file"`.
- camera: Make (0x010F) and Model (0x0110).
- place: GPS latitude and longitude in degrees (GPS IFD: degrees, minutes, seconds rationals
  and N/S, E/W references), when present.
- width and height as displayed: swapped for EXIF orientations 5-8 (turned a quarter).

A file whose headers cannot be read still gets a record (its modification time), so filters by
date work for every indexed file.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, JpegImagePlugin

import foldervision.images  # noqa: F401  (registers the readers, HEIC included, once)

TAKEN_FORMAT = "%Y-%m-%dT%H:%M:%S"
"""How capture times are kept: wall-clock time where the photo was taken, sortable as text."""

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112
DATE_TIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
GPS_LATITUDE_REF, GPS_LATITUDE, GPS_LONGITUDE_REF, GPS_LONGITUDE = 1, 2, 3, 4
QUARTER_TURNS = (5, 6, 7, 8)
"""EXIF orientations shown turned by 90 degrees: the displayed width is the stored height."""
UPRIGHT_SIZED_FORMATS = ("TIFF",)
"""Formats whose size Pillow already reports as displayed (it applies the orientation itself)."""

TAKEN_FROM_EXIF = "exif"
TAKEN_FROM_FILE = "file"


@dataclass(frozen=True)
class PhotoMetadata:
    """What the catalogue's `photos` table keeps of one file (see the module docstring)."""

    taken: str
    """Local wall-clock time, "YYYY-MM-DDTHH:MM:SS"."""
    taken_source: str
    """"exif" (DateTimeOriginal) or "file" (the file's modification time)."""
    taken_offset: str | None = None
    """"+02:00" when the camera recorded its offset from UTC."""
    make: str | None = None
    model: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    """Pillow's name for the file's format ("JPEG", "PNG", "HEIF", ...)."""

    @property
    def camera(self) -> str | None:
        """Make and model as a person names the camera ("Canon EOS 5D", "Apple iPhone 12")."""
        return camera_name(self.make, self.model)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "camera": self.camera}


def camera_name(make: str | None, model: str | None) -> str | None:
    """ "make model", without repeating a make the model already starts with."""
    if make and model and model.lower().startswith(make.split()[0].lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def read_photo_metadata(path: str | Path, mtime_ns: int) -> PhotoMetadata:
    """The file's metadata from its headers; `mtime_ns` is the capture time when EXIF has none."""
    file_time = datetime.fromtimestamp(mtime_ns / 1e9).strftime(TAKEN_FORMAT)
    try:
        with _open_headers(Path(path)) as image:
            return _from_image(image, file_time)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, Image.DecompressionBombError):
        return PhotoMetadata(taken=file_time, taken_source=TAKEN_FROM_FILE)


def _open_headers(path: Path) -> Image.Image:
    """Open without decoding; a JPEG past the bomb limit too (it is read at reduced scale)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        return JpegImagePlugin.JpegImageFile(path)  # raises SyntaxError if it is no JPEG


def _from_image(image: Image.Image, file_time: str) -> PhotoMetadata:
    exif = _exif_of(image)
    taken, offset = _capture_time(exif)
    latitude, longitude = _position(exif)
    width, height = image.size
    if exif.get(ORIENTATION) in QUARTER_TURNS and image.format not in UPRIGHT_SIZED_FORMATS:
        width, height = height, width
    return PhotoMetadata(
        taken=taken or file_time,
        taken_source=TAKEN_FROM_EXIF if taken else TAKEN_FROM_FILE,
        taken_offset=offset if taken else None,
        make=_text(exif.get(MAKE)),
        model=_text(exif.get(MODEL)),
        latitude=latitude,
        longitude=longitude,
        width=width,
        height=height,
        format=image.format,
    )


def _exif_of(image: Image.Image) -> Image.Exif:
    """The EXIF the headers hold. A PNG keeps EXIF before or after its pixels; Pillow's PNG
    `getexif()` decodes the whole image to find one placed after, so only one before is read."""
    if image.format == "PNG" and "exif" not in image.info:
        return Image.Exif()
    return image.getexif()


def _capture_time(exif: Image.Exif) -> tuple[str | None, str | None]:
    """("YYYY-MM-DDTHH:MM:SS", "+HH:MM" or None) from DateTimeOriginal, or (None, None)."""
    details = exif.get_ifd(EXIF_IFD)
    text = _text(details.get(DATE_TIME_ORIGINAL))
    if text is None:
        return None, None
    try:
        taken = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:  # "0000:00:00 00:00:00", blanks, or another layout: no date
        return None, None
    offset = _text(details.get(OFFSET_TIME_ORIGINAL))
    valid_offset = offset if offset and len(offset) == 6 and offset[0] in "+-" else None
    return taken.strftime(TAKEN_FORMAT), valid_offset


def _position(exif: Image.Exif) -> tuple[float | None, float | None]:
    """(latitude, longitude) in degrees, south and west negative; (None, None) without GPS."""
    gps = exif.get_ifd(GPS_IFD)
    latitude = _degrees(gps.get(GPS_LATITUDE), gps.get(GPS_LATITUDE_REF), "S", 90)
    longitude = _degrees(gps.get(GPS_LONGITUDE), gps.get(GPS_LONGITUDE_REF), "W", 180)
    if latitude is None or longitude is None:
        return None, None
    return latitude, longitude


def _degrees(value: Any, reference: Any, negative: str, limit: float) -> float | None:
    """Degrees, minutes, seconds (rationals) to signed degrees; None when absent or invalid."""
    try:
        degrees, minutes, seconds = (float(part) for part in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    total = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(total) or total > limit:
        return None
    return round(-total if _text(reference) == negative else total, 7)


def _text(value: Any) -> str | None:
    """An EXIF ASCII value as clean text (NULs and padding dropped); None when empty."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "").strip()
    return cleaned or None
