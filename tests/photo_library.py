"""Real photo files with the EXIF a camera writes: capture time, offset, make, model, GPS.

Pillow writes the EXIF (IFD0, the Exif IFD and the GPS IFD), so the reader under test meets
the same bytes a phone's JPEG carries.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
FIXED_FILE_TIME = datetime(2020, 3, 4, 12, 0, tzinfo=timezone.utc).timestamp()
"""A file time at noon UTC: the same local date in every time zone within 11 hours of UTC."""


def camera_exif(
    taken: str | None = None,
    offset: str | None = None,
    make: str | None = None,
    model: str | None = None,
    position: tuple[float, float] | None = None,
    orientation: int | None = None,
) -> Image.Exif:
    """EXIF as a camera writes it; `taken` as "YYYY:MM:DD HH:MM:SS", `position` in degrees."""
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    if taken:
        details = exif.get_ifd(EXIF_IFD)
        details[0x9003] = taken
        if offset:
            details[0x9011] = offset
    if position:
        gps = exif.get_ifd(GPS_IFD)
        latitude, longitude = position
        gps[1], gps[2] = ("N" if latitude >= 0 else "S"), _sexagesimal(abs(latitude))
        gps[3], gps[4] = ("E" if longitude >= 0 else "W"), _sexagesimal(abs(longitude))
    return exif


def write_photo(
    path: Path, pixels: np.ndarray, exif: Image.Exif | None = None, file_time: float | None = None
) -> Path:
    """Save `pixels` (format from the suffix) with `exif`; set the file's time when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"exif": exif} if exif is not None else {}
    if path.suffix.lower() in (".jpg", ".jpeg"):
        options["quality"] = 90
    Image.fromarray(pixels).save(path, **options)
    if file_time is not None:
        os.utime(path, (file_time, file_time))
    return path


def _sexagesimal(degrees: float) -> tuple[float, float, float]:
    whole = int(degrees)
    minutes = int((degrees - whole) * 60)
    seconds = round((degrees - whole - minutes / 60) * 3600, 2)
    return (float(whole), float(minutes), seconds)
